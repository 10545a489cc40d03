"""What crosses a process boundary, defined once: both sides import it, so neither writes the other's strings.

- The control plane's record (`ServerRecord`): `HOME/server.json`, and the same record in the lock file, written
  by the control plane (server/daemon.py), read by every client (settings.py, sdk/autostart.py, tls.py).
  Unknown fields are ignored and missing ones defaulted, so a newer client reads an older server's file and an
  older client a newer one's.
- The control plane's exit codes and its restart signal, which the SDK's autostart and the systemd unit of
  `trainml server install` act on.
- The name of an endpoint's key file, in its job folder and in a Ray package.
- An endpoint's metrics totals (`/metrics?format=json`): their fields, flattened into one tagged gauge on a Ray
  replica and summed back on the control plane.
- A load failure: one JSON line the runtime writes on stderr (and a Ray replica raises), which one function
  reads back for both backends, instead of parsing prose.
- A Ray replica's revision: one JSON line it writes first on stdout and stderr, so the control plane tags each
  line it follows from that replica's files with the revision that printed it.
- A local endpoint's line stamps: each line it prints begins with the time it was printed, so the control plane,
  which reads stdout and stderr from two files, stores the lines of both in the order they were printed.
- The folders never packed with a model (the SDK's upload, the dashboard's, a Ray package).
- How an update or a rollback switches revisions (`STRATEGIES`): the CLI's choice, the API's field.
- An autoscaled local endpoint's scale (`ScaleState`): written by its leader process (runtime/waker.py) to the
  file the control plane names with `--scale-file`, read by `job get`, the dashboard and its workers' metrics.

Also in leaves of their own: the runtime's command line (launchspec.py) and routes (routespec.py).
A leaf: the standard library only, so the endpoint runtime (which runs in an environment holding only its own
requirements) can import it.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass, field, fields

# How `job update` / `job rollback` replace the serving revision (server/takeover.py): the first is the default.
STRATEGIES = ("blue-green", "recreate")


# -- the control plane's record ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerRecord:
    """The running control plane, as it records itself: where it answers, its pid, its home and its options."""

    url: str | None  # None in the lock file while it starts, before it listens
    pid: int
    home: str = ""
    version: str = ""
    started: str = ""
    options: dict = field(default_factory=dict)  # every effective option (serveroptions dests)
    tls_certfile: str | None = None  # clients trust it when it is self-signed (tls.client_verify)
    args: list | None = None  # control planes from before the options file recorded their command line instead

    def to_json(self) -> str:
        data = {name: value for name, value in asdict(self).items()
                if value is not None or name == "url"}
        return json.dumps(data) + "\n"

    def to_dict(self) -> dict:
        return {name: value for name, value in asdict(self).items() if value is not None}

    @classmethod
    def from_json(cls, text: str | bytes) -> ServerRecord | None:
        """The record in `text`, or None when it names no server (empty, spoiled, not a control plane's)."""
        try:
            data = json.loads(text)
        except ValueError:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("url"), str) or not data["url"].startswith("http"):
            return None
        try:
            pid = int(data.get("pid"))
        except (TypeError, ValueError):
            return None
        known = {f.name for f in fields(cls)}
        kept = {name: value for name, value in data.items() if name in known and name != "pid"}
        if not isinstance(kept.get("options"), dict):
            kept.pop("options", None)
        if not isinstance(kept.get("args"), list):
            kept.pop("args", None)
        if not isinstance(kept.get("tls_certfile"), str):
            kept.pop("tls_certfile", None)
        for name in ("home", "version", "started"):
            if not isinstance(kept.get(name), str):
                kept.pop(name, None)
        return cls(pid=pid, **kept)


def read_record(path: str | os.PathLike) -> ServerRecord | None:
    """The record in a server file (or the lock file); None when it is missing, spoiled or names no server."""
    try:
        with open(path, "rb") as f:
            return ServerRecord.from_json(f.read())
    except OSError:
        return None


def write_record(path: str | os.PathLike, record: ServerRecord) -> None:
    """Write the record whole or not at all (a client never reads half a file). Raises OSError."""
    path = os.fspath(path)
    partial = f"{path}.{os.getpid()}.partial"
    try:
        with open(partial, "w") as f:
            f.write(record.to_json())
        os.rename(partial, path)
    except OSError:
        try:
            os.unlink(partial)
        except OSError:
            pass
        raise


# -- the control plane's exit codes and restart signal -----------------------------------------------------------

# It lost a start race to another control plane on the same home: the SDK's autostart waits for the winner; for
# systemd a success (SuccessExitStatus).
EXIT_ALREADY_RUNNING = 75
# It stopped for a restart and left its endpoints serving: a service manager starts it again at once
# (RestartForceExitStatus), and the new one adopts them.
EXIT_RESTART = 76
# Stop, leaving the endpoints serving (`trainml server restart`, `systemctl --user reload`).
RESTART_SIGNAL = signal.SIGUSR1


def restart_signal_name() -> str:
    """The restart signal as kill(1) names it: `USR1`."""
    return RESTART_SIGNAL.name.removeprefix("SIG")


# -- endpoint keys -----------------------------------------------------------------------------------------------

# An endpoint's key file: in its job folder (server/endpointkeys.py, the runtime's --key-file), and its member's
# name in a Ray package (server/backends/rayapps.py, read by runtime/serve_entry.py).
KEY_FILE = "endpoint.key"


# -- metrics totals ----------------------------------------------------------------------------------------------

# A Ray replica's totals, as one gauge tagged (application, replica, field): set by runtime/serve_entry.py,
# exported by Ray's agents with RAY_METRIC_PREFIX, summed by server/backends/raymetrics.py.
REPLICA_TOTALS_GAUGE = "trainml_replica_totals"
RAY_METRIC_PREFIX = "ray_"
# Seconds: the bounds of the runtime's latency histogram, which the control plane's charts read p50/p99 from.
# Finer than prometheus_client's defaults at the low end: a trivial call is answered in under 1 ms.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# An endpoint's totals (`/metrics?format=json`), each a sum over its workers and so over replicas too.
# stream_first_items / stream_first_item_ms_sum: streams that sent a first item, and their summed time to it.
TOTAL_COUNTS = ("requests", "errors", "rejected", "latency_ms_sum", "in_flight", "waiting", "running", "batches",
                "batched_requests", "streams_open", "stream_items", "stream_first_items", "stream_first_item_ms_sum")
# status -> calls; reason -> rejections; route label ("POST /predict") -> calls, -> errors (5xx but 503), and -> 4xx
TOTAL_MAPS = ("responses", "rejected_by_reason", "route_requests", "route_errors", "route_client_errors")
TOTAL_LISTS = ("latency_buckets",)  # calls per LATENCY_BUCKETS bound, then past the last


def empty_totals() -> dict:
    """Totals with no call counted, in the shape every reader expects."""
    out: dict = {name: 0 for name in TOTAL_COUNTS}
    out["latency_ms_sum"] = out["stream_first_item_ms_sum"] = 0.0
    out.update({name: {} for name in TOTAL_MAPS})
    out["latency_buckets"] = [0] * (len(LATENCY_BUCKETS) + 1)
    return out


def flatten_totals(totals: dict) -> dict[str, float]:
    """Totals as flat fields ("requests", "responses.200", "latency_buckets.3"): what a Ray replica publishes as
    one tagged gauge."""
    flat: dict[str, float] = {}
    for name, value in totals.items():
        if name in TOTAL_MAPS and isinstance(value, dict):
            flat.update({f"{name}.{key}": v for key, v in value.items()})
        elif name in TOTAL_LISTS and isinstance(value, list):
            flat.update({f"{name}.{index}": v for index, v in enumerate(value)})
        elif name in TOTAL_COUNTS and isinstance(value, (int, float)):
            flat[name] = value
    return flat


def sum_totals(replicas: list[dict[str, float]]) -> dict:
    """The flat fields of several replicas summed, as totals (the inverse of flatten_totals)."""
    summed: dict[str, float] = {}
    for flat in replicas:
        for name, value in flat.items():
            summed[name] = summed.get(name, 0) + value
    out = empty_totals()
    for name, value in summed.items():
        base, dot, key = name.partition(".")
        number = round(value, 3) if base.endswith("_ms_sum") else int(value)
        if base in TOTAL_LISTS and dot and key.isdigit() and int(key) < len(out[base]):
            out[base][int(key)] = number
        elif base in TOTAL_MAPS and dot:
            out[base][key] = number
        elif base in TOTAL_COUNTS and not dot:
            out[base] = number
    return out


# -- an autoscaled endpoint's scale ------------------------------------------------------------------------------

SCALE_FILE = "scale.json"  # in the job's folder
# A job scaled to zero gives its GPUs back to the control plane's pool; to wake, its leader sets
# ScaleState.wants_gpus and waits for the control plane to write the devices it hands out here, beside SCALE_FILE
# (server/backends/gpulease.py on one side, runtime/autoscaler.py on the other).
GPU_GRANT_FILE = "gpus-granted"


@dataclass
class ScaleState:
    """Where an autoscaled endpoint stands: its workers ([{pid, state}], state STARTING, RUNNING or STOPPING),
    its bounds, the last cold start (a call held from scaled-to-zero until a worker was ready) and the last
    decision, in words."""

    workers: list = field(default_factory=list)
    min_replicas: int = 0
    max_replicas: int = 1
    cold_start_ms: float | None = None
    decision: str = ""
    wants_gpus: bool = False  # woken at zero, its GPUs gone back to the pool: waiting for GPU_GRANT_FILE

    @property
    def running(self) -> int:
        return sum(1 for worker in self.workers if worker.get("state") == "RUNNING")

    def metrics(self) -> dict:
        """The fields merged into the endpoint's /metrics JSON."""
        return {"replicas": self.running, "min_replicas": self.min_replicas, "max_replicas": self.max_replicas,
                "scaled_to_zero": not self.workers, "cold_start_ms": self.cold_start_ms}


def write_scale(path: str | os.PathLike, state: ScaleState) -> None:
    """Replace the file at once (readers never see half of it)."""
    temporary = f"{os.fspath(path)}.{os.getpid()}.tmp"
    with open(temporary, "w") as file:
        json.dump(asdict(state), file)
    os.replace(temporary, path)


def write_grant(path: str | os.PathLike, devices: str) -> None:
    """The control plane hands a waking job its GPUs (CUDA_VISIBLE_DEVICES), at once for its readers."""
    temporary = f"{os.fspath(path)}.{os.getpid()}.tmp"
    with open(temporary, "w") as file:
        file.write(devices)
    os.replace(temporary, path)


def take_grant(path: str | os.PathLike) -> str | None:
    """The devices granted (the file is consumed), or None while none are."""
    try:
        with open(path) as file:
            devices = file.read()
        os.unlink(path)
    except OSError:
        return None
    return devices


def read_scale(path: str | os.PathLike | None) -> ScaleState | None:
    if not path:
        return None
    try:
        with open(path) as file:
            raw = json.load(file)
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    known = {f.name for f in fields(ScaleState)}
    return ScaleState(**{k: v for k, v in raw.items() if k in known})


def scale_metrics(path: str | os.PathLike | None) -> dict:
    """An autoscaled endpoint's fields for /metrics; none for one that is not autoscaled."""
    state = read_scale(path)
    return state.metrics() if state else {}


# -- a load failure ----------------------------------------------------------------------------------------------

LOAD_FAILURE = "trainml.load_failure"  # the record's "event": how a reader tells it from the model's own output
_LOAD_FAILURE_START = f'{{"event": "{LOAD_FAILURE}"'


@dataclass(frozen=True)
class LoadFailure:
    """Why the model code did not load: `cause` in one line (for the job's reason and the CLI's error line), and
    the detail (the user's traceback) when there is one."""

    cause: str
    detail: str = ""

    @classmethod
    def from_message(cls, message: str) -> LoadFailure:
        """From a ModelCodeError's message: an import failure's first line ends with ':' and the traceback
        follows; its last line (the exception) completes the cause."""
        first, _, rest = message.strip().partition("\n")
        lines = [line.strip() for line in rest.splitlines() if line.strip()]
        if first.endswith(":") and lines:
            return cls(f"{first[:-1]}: {lines[-1]}", rest.strip("\n"))
        return cls(first.rstrip(":"), rest.strip("\n"))

    def record(self) -> str:
        """The one line the runtime writes on stderr (and a Ray replica raises): JSON, so newlines are escaped."""
        return json.dumps({"event": LOAD_FAILURE, "cause": self.cause, "detail": self.detail})

    @property
    def headline(self) -> str:
        """The first line of a failed job's reason, which the CLI's error line shows."""
        return "model code failed to load" + (f": {self.cause}" if self.cause else "")

    @property
    def reason(self) -> str:
        """A failed job's reason: the headline, then the detail."""
        return self.headline + (f"\n{self.detail}" if self.detail else "")


def is_load_failure(line: str) -> bool:
    return _LOAD_FAILURE_START in line


def find_load_failure(text: str | list[str]) -> LoadFailure | None:
    """The last load-failure record in an endpoint's output (lines) or a Ray deploy's message (where the record
    follows `RuntimeError: `); None when there is none."""
    lines = text.splitlines() if isinstance(text, str) else text
    decoder = json.JSONDecoder()
    for line in reversed(lines):
        start = line.rfind(_LOAD_FAILURE_START)
        if start < 0:
            continue
        try:
            data, _ = decoder.raw_decode(line, start)
        except ValueError:
            continue
        if isinstance(data, dict) and isinstance(data.get("cause"), str):
            detail = data.get("detail")
            return LoadFailure(data["cause"], detail if isinstance(detail, str) else "")
    return None


REPLICA_REVISION = "trainml.replica_revision"
_REPLICA_REVISION_START = f'{{"event": "{REPLICA_REVISION}", "revision": '


def replica_revision_record(revision: int) -> str:
    """The line a Ray replica of `revision` writes first on each of its streams."""
    return json.dumps({"event": REPLICA_REVISION, "revision": revision})


def replica_revision(line: str) -> int | None:
    """The revision a replica's record names; None for any other line (the model's own output)."""
    if not line.startswith(_REPLICA_REVISION_START):
        return None
    try:
        revision = json.loads(line).get("revision")
    except ValueError:
        return None
    return revision if isinstance(revision, int) and not isinstance(revision, bool) else None


# -- line stamps -------------------------------------------------------------------------------------------------

# Set in a local endpoint's environment: its processes stamp each line of stdout and stderr (runtime/stamps.py).
OUTPUT_STAMPS_ENV = "TRAINML_OUTPUT_STAMPS"
_STAMP_START, _STAMP_END = "\x1e", "\x1f"  # ASCII record and unit separators: never in printed text
STAMP_MAX = 24  # a stamp is shorter than this: the separators and at most 16 hex digits


def line_stamp(monotonic_ns: int) -> str:
    """The prefix of a line printed at this time.monotonic_ns() (one clock for every process of the machine)."""
    return f"{_STAMP_START}{monotonic_ns:x}{_STAMP_END}"


def split_stamp(line: str) -> tuple[int | None, str]:
    """(the time a line was printed, the line without its stamp); (None, line) for a line without one (written
    past the stamping: a C extension, a subprocess, bytes to sys.stdout.buffer)."""
    if not line.startswith(_STAMP_START):
        return None, line
    end = line.find(_STAMP_END, 1, STAMP_MAX)
    try:
        return (int(line[1:end], 16), line[end + 1:]) if end > 1 else (None, line)
    except ValueError:
        return None, line


# -- what is never packed ----------------------------------------------------------------------------------------

# Large, machine-specific and never model code: left out of the SDK's and the dashboard's uploads (packing.py,
# server/dashboard/static/upload.js gets the list from the page) and of a Ray package (server/backends/rayapps.py),
# so both backends run the same files for the same checkout. A folder holding `pyvenv.cfg` (any virtualenv) too.
SKIPPED_FOLDERS = frozenset({".git", "__pycache__", ".venv", "venv", ".mypy_cache", ".pytest_cache", ".ruff_cache",
                             "node_modules"})


def skipped_folder(parent: str | os.PathLike, name: str) -> bool:
    """True for a folder a model's package leaves out: by name, or a virtualenv by its marker file."""
    return name in SKIPPED_FOLDERS or os.path.isfile(os.path.join(parent, name, "pyvenv.cfg"))
