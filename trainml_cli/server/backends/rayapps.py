"""A job as a Ray Serve application, as data: its package, its config, and its status read back.

Pure functions, no I/O but reading the job's folder, so the payloads and the status mapping are unit-tested
against a fake head (tests/test_ray_backend.py) and used unchanged against a real one.

- `package`: one zip holding the model folder (as `model/`), the job's routes (`routes.json`) and this version
  of trainml_cli (what the replica imports: the runtime and its leaves), named by its content's hash, so the
  same code is uploaded once. Entries are sorted and timestamped 1980, so the same content zips the same.
  A job with an endpoint key also gets its key file (`endpoint.key`, mode 0600, which Ray keeps when it
  unpacks): the package is then the job's own, and the key never enters the application's config, which
  Ray's dashboard shows to anyone who can open it.
- `uv_packages`: the job's pip packages and requirements file as Ray's `uv` runtime_env field (Ray builds a
  virtualenv with uv on each node, as the local backend builds one here).
- `app_config`: the application in Serve's declarative schema: `name=ep-<job id>`, `route_prefix=/e/<job id>`,
  built by `trainml_cli.runtime.serve_entry:build` from the runtime's command line.
- `key_package`: a keyed job's current key alone, zipped, named by its hash: the deployment's `user_config`
  names it (a digest, never the key), and a rotation changes only that, so Serve calls the replicas'
  `reconfigure` instead of replacing them (runtime/serve_entry.py).
- `ServeStatus`: a Serve application's status; `job_status`: the job status it means (`JOB_STATUS`), and
  `failure_reason`: the useful end of a failed deploy's message, its cause on the first line, as the local
  backend's reason has it, and without the colour escapes Ray puts in tracebacks.
"""

from __future__ import annotations

import enum
import hashlib
import io
import json
import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path

from ...contracts import KEY_FILE, find_load_failure, skipped_folder
from ...environment import DEFAULT_REQUIREMENTS_FILE, command_line_wins, requirement_name
from ...errors import UsageError
from ...launchspec import KEY_PACKAGE_FIELD, KEY_PACKAGE_MEMBER
from ...localpaths import local_digest
from ...replicaspec import serve_autoscaling
from ...runtimerequirements import RUNTIME_REQUIREMENTS
from ...states import JobStatus
from .base import Launch

ENTRY = "trainml_cli.runtime.serve_entry:build"
PREFIX = "ep-"
RETRY_AFTER_S = 1.0  # as our own limiter says
# While it builds an application's environment on a node, Ray sets this to the node's copy of the working_dir
# (our package) and expands it in the `uv` field's packages and options.
WORKING_DIR = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the trainml_cli package itself
# How Ray's runtime_env setup error quotes a failed installer (ray/_private/runtime_env/utils.py).
_INSTALLER_OUTPUT = re.compile(r"Last \d+ lines of stdout:\n")
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]")  # Ray colours the traceback's first line, whatever NO_COLOR says
DEPLOYMENT = "endpoint"  # the deployment's name in serve_entry
# Serve's variables each replica runs with, whatever the cluster was started with: they are read in the replica's
# own process, so the application's runtime_env sets them there.
REPLICA_ENV = {
    # Throughput-optimized mode (the recommended cluster of docs/ray.md) turns this off, and Serve then writes prints
    # and errors to its own replica log file instead of the replica's stdout and stderr, which job logs follows.
    "RAY_SERVE_LOG_TO_STDERR": "1",
    # In HAProxy (direct ingress) mode a stopping replica stays in service 30 s so that HAProxy drops it first:
    # every stop, remove and key rotation took half a minute. HAProxy reloads within a second, and retries a
    # replica that refuses the connection.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1",
}
SHUTDOWN_LOOP_S = 0.2  # how often a stopping replica looks whether its calls have finished (Serve: 2 s)


def app_name(job_id: str) -> str:
    return PREFIX + job_id


def route_prefix(job_id: str) -> str:
    return f"/e/{job_id}"


def package(launch: Launch) -> tuple[str, bytes]:
    """(`_ray_pkg_<sha>.zip`, its bytes): model folder + routes + our runtime, reproducibly zipped."""
    files: list[tuple[str, Path]] = [("routes.json", launch.route_file)]
    if launch.runtime.key_file:
        files.append((KEY_FILE, Path(launch.runtime.key_file)))
    files += [(f"model/{rel}", path) for rel, path in _tree(launch.model_dir)]
    return zipped(files + runtime_files())


def runtime_files() -> list[tuple[str, Path]]:
    """(name in a package, path) of this version of trainml_cli's modules, which a replica imports."""
    return [(f"trainml_cli/{rel}", path) for rel, path in _tree(_PACKAGE_ROOT) if rel.endswith(".py")]


def zipped(files: list[tuple[str, Path]]) -> tuple[str, bytes]:
    """(`_ray_pkg_<sha>.zip`, its bytes) of these files, reproducibly: sorted, timestamped 1980, modes kept."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(path).st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return f"_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip", data


def key_package(key_file: Path) -> tuple[str, bytes]:
    """(`_ray_pkg_<sha>.zip`, its bytes): the job's current endpoint key, the one member `endpoint.key`."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        info = zipfile.ZipInfo(KEY_PACKAGE_MEMBER, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o100600 << 16
        archive.writestr(info, key_file.read_bytes())
    data = buffer.getvalue()
    return f"_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip", data


def with_key_package(config: dict, package_name: str) -> dict:
    """The application's config with its deployment's user_config naming this key package: the only change a
    rotation makes, a lightweight update for Serve (no replica is replaced)."""
    config = dict(config)
    config["deployments"] = [{"name": DEPLOYMENT, "user_config": {KEY_PACKAGE_FIELD: f"gcs://{package_name}"}}]
    return config


def _tree(root: Path):
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not skipped_folder(folder, d))
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink() and not name.endswith((".pyc", ".pyo")):
                yield path.relative_to(root).as_posix(), path


def uv_packages(launch: Launch) -> dict | None:
    """The job's packages as Ray's `uv` runtime_env field, installed as the local backend installs them.

    Plain lines (`--pip-packages` and the requirements file's requirements, index options) are listed as they
    are, so the environment is keyed by them alone and reused by the next version of the code. When a line names
    a file of the model folder (localpaths: `-r`, `-c`, `-e ./pkg`, a wheel, `file:`), uv reads the
    requirements file from Ray's copy of the uploaded model folder instead, with paths resolved against that
    folder as the local backend resolves them against its own. Raises UsageError for a named file the upload
    lacks, or a link out of the folder (its target's text would reach the cluster's configuration).
    """
    model_dir = launch.model_dir
    named = launch.requirements
    where = named or DEFAULT_REQUIREMENTS_FILE
    has_file = (model_dir / where).is_file() or (model_dir / where).is_symlink()
    if named and not has_file:
        raise UsageError(f"environment.requirements: {named} is not a file in the model folder")
    pip = list(launch.pip)
    # The local backend's check, on the job's own copy (a git checkout may hold links): every file the lines
    # name exists inside the folder, no link leads out, and no file is read past localpaths' caps.
    names_files = local_digest(model_dir, where if has_file else None, pip, hash_contents=False) is not None
    lines = _requirement_lines(model_dir / where) if has_file else []
    if not pip and not lines:
        return None
    if not names_files:
        # The command line wins, as it does on the local backend (server/environments.py): the file's line for a
        # project --pip-packages names is left out. (A file naming local files goes to uv whole; see the docs.)
        replaced = {requirement_name(p) for p in command_line_wins(pip, "\n".join(lines), RUNTIME_REQUIREMENTS)}
        lines = [line for line in lines if line.startswith("-") or requirement_name(line) not in replaced]
        # No options rather than Ray's default (--no-cache): uv's cache on the node, as the local backend keeps
        # one here, so the next environment with these packages links them instead of downloading them again.
        return {"packages": pip + lines, "uv_check": False, "uv_pip_install_options": []}
    packages = pip + ([f"-r {WORKING_DIR}/model/{where}"] if lines else [])
    # uv resolves `-r` and `-c` against the file naming them, but paths against its working directory: Ray's
    # scratch directory unless told the model folder's copy (a global option, accepted after the subcommand).
    return {"packages": packages, "uv_check": False, "uv_pip_install_options": ["--directory", f"{WORKING_DIR}/model"]}


def _requirement_lines(file: Path) -> list[str]:
    """Each requirement or option in a requirements file, comments left out."""
    found = []
    for line in file.read_text(errors="replace").splitlines():
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            found.append(line)
    return found


def deployment_options(launch: Launch, accelerator: str | None = None) -> dict:
    """Serve's options for the job's one deployment: replicas or autoscaling, resources per replica (GPUs may be
    fractional; `accelerator`: Ray's name for their type, see raycluster), limits."""
    runtime = launch.runtime
    concurrency = runtime.max_concurrency or 8
    scaling = launch.scaling
    # The job's own placement options (memory, custom resources, ...: actoroptions.py), never CPUs or GPUs, which
    # come from its resources; an accelerator_type given there wins over the one --gpu-type maps to.
    actor = {**scaling.ray_actor_options, "num_cpus": launch.resources.get("cpu_count", 1),
             "num_gpus": launch.resources.get("gpu_count", 0)}
    if accelerator:
        actor.setdefault("accelerator_type", accelerator)
    options: dict = {
        "ray_actor_options": actor,
        # Serve sends a replica at most this many calls; the rest wait in the proxy, at most max_queued_requests
        # (per proxy; Serve's default is unbounded), then 503 with Retry-After, as our own limiter answers.
        "max_ongoing_requests": concurrency,
        "max_queued_requests": runtime.max_queue if runtime.max_queue is not None else 64,
        "backpressure_config": {"status_code": 503, "retry_after_s": RETRY_AFTER_S},
        "health_check_period_s": 5.0,
        # An update (new code, packages or options) starts every new replica before it stops an old one, and a
        # new version that cannot start leaves the old replicas serving: Serve's default (0) stops first.
        "max_surge_percent": 100,
    }
    if scaling.autoscaled:
        options["autoscaling_config"] = serve_autoscaling({**scaling.as_endpoint(), "max_concurrency": concurrency})
    else:
        options["num_replicas"] = scaling.replicas or 1
    return options


def scale_text(options: dict) -> str:
    """How many replicas deployment options ask for, as the job's log says it."""
    if "num_replicas" in options:
        return f"{options['num_replicas']} replica(s)"
    scaling = options["autoscaling_config"]
    return f"{scaling['min_replicas']}-{scaling['max_replicas']} replicas (autoscaled)"


def shutdown_options(stop_grace: float) -> dict:
    """How a replica stops: our own stop grace (`--stop-grace`) for its calls to finish, looked at often."""
    return {"graceful_shutdown_timeout_s": stop_grace, "graceful_shutdown_wait_loop_s": SHUTDOWN_LOOP_S,
            # Our runtime writes its own access log line per call; Serve's would be a second one, filtered out.
            "logging_config": {"enable_access_log": False}}


def app_config(launch: Launch, package_name: str, packages: dict | None, accelerator: str | None = None,
               stop_grace: float = 10.0, key_package_name: str | None = None) -> dict:
    """The Serve application for this job, in the declarative schema of `PUT /api/serve/applications/`, with
    `packages` (from `uv_packages`) as its runtime_env's `uv` field, and for a keyed job the key package that
    holds its current key (`key_package`)."""
    # Paths as the replica sees them in its working dir (the package). Serve's proxy speaks plain HTTP to the
    # replicas, so the control plane's TLS files stay here; captured calls go to the replica's node, which the
    # control plane drains (raycaptures.py).
    runtime = replace(launch.runtime, model_dir="model", route_file="routes.json", workers=None, fd=None,
                      host=None, port=None, key_file=KEY_FILE if launch.runtime.key_file else None,
                      tls_certfile=None, tls_keyfile=None, capture_dir=None)
    env = dict(launch.job_env)
    env.setdefault("PYTHONUNBUFFERED", "1")  # prints reach the replica's log file as they happen
    env.update(REPLICA_ENV)
    runtime_env: dict = {"working_dir": f"gcs://{package_name}", "env_vars": env}
    if packages:
        runtime_env["uv"] = packages
    config = {
        "name": app_name(launch.job_id),
        "route_prefix": route_prefix(launch.job_id),
        "import_path": ENTRY,
        "runtime_env": runtime_env,
        "args": {"argv": runtime.to_argv(), "revision": launch.revision,
                 "deployment": {**deployment_options(launch, accelerator), **shutdown_options(stop_grace)}},
    }
    return with_key_package(config, key_package_name) if key_package_name else config


def version(config: dict | None) -> str | None:
    """What an application's config deploys, as Serve tells versions apart: its package, environment and arguments
    (a key package's user_config is not in it: Serve reconfigures replicas for that). None: nothing deployed."""
    if not config:
        return None
    return json.dumps({k: config.get(k) for k in ("import_path", "runtime_env", "args")}, sort_keys=True)


def deploy_document(apps: list[dict], host: str, port: int) -> dict:
    """The full list Serve should run, with the one HTTP proxy port they all share."""
    return {"proxy_location": "EveryNode", "http_options": {"host": host, "port": port}, "applications": apps}


class ServeStatus(str, enum.Enum):
    """A Serve application's status, as the head's /api/serve/applications/ reports it (Ray's ApplicationStatus)."""

    NOT_STARTED = "NOT_STARTED"
    DEPLOYING = "DEPLOYING"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    RUNNING = "RUNNING"
    UNHEALTHY = "UNHEALTHY"
    DELETING = "DELETING"

    @classmethod
    def of(cls, app: dict) -> ServeStatus | None:
        """The status of an application's document; None for a status this version does not know."""
        try:
            return cls(app.get("status"))
        except ValueError:
            return None


# What each means for the job. UNHEALTHY: Serve replaces the unhealthy replicas itself. DEPLOY_FAILED: the message
# holds the replica's traceback. A status a newer Ray may add counts as starting, until the deploy times out.
JOB_STATUS = {
    ServeStatus.NOT_STARTED: JobStatus.STARTING,
    ServeStatus.DEPLOYING: JobStatus.STARTING,
    ServeStatus.RUNNING: JobStatus.RUNNING,
    ServeStatus.UNHEALTHY: JobStatus.RUNNING,
    ServeStatus.DEPLOY_FAILED: JobStatus.FAILED,
    ServeStatus.DELETING: JobStatus.STOPPED,
}


def job_status(app: dict | None) -> tuple[JobStatus, str]:
    """(the job status, Serve's message) for a Serve application's status document; None (absent): stopped."""
    if app is None:
        return JobStatus.STOPPED, ""
    status = JOB_STATUS.get(ServeStatus.of(app), JobStatus.STARTING)
    message = plain(app.get("message") or "")
    if status is JobStatus.FAILED:
        details = [plain(d["message"]) for d in (app.get("deployments") or {}).values() if d.get("message")]
        return status, "\n".join([message] + details).strip() or "Ray Serve could not deploy the application"
    return status, message


def failure_reason(message: str) -> str:
    """The useful end of Serve's failure message: the runtime's load-failure record (its cause and the model
    code's traceback, as the local backend's reason has them), or the installer's own lines when Ray could not
    build the job's environment."""
    message = plain(message)
    failure = find_load_failure(message)  # the replica raised the runtime's record (runtime/serve_entry.py)
    if failure is not None:
        return failure.reason
    output = _INSTALLER_OUTPUT.search(message)
    if output and "runtime_env" in message[:output.start()]:
        # Ray's traceback ends with the installer's output; uv's own lines from its first error name the package.
        lines = [line.strip() for line in message[output.end():].splitlines() if line.strip()]
        start = next((i for i, line in enumerate(lines) if line.startswith(("error:", "×", "ERROR:"))), 0)
        quoted = [line.lstrip("×╰─▶ ").strip() for line in lines[start:start + 6]]
        # The first line is the CLI's error line: uv's first two lines on it, as they name the package.
        return ("installing the job's packages on the Ray cluster failed: "
                + "; ".join(line.rstrip(":") for line in quoted[:2]) + "".join(f"\n{line}" for line in quoted[2:]))
    lines = [line for line in message.splitlines() if line.strip()]
    return "Ray Serve could not deploy the endpoint: " + "\n".join(lines[-15:])


def plain(text: str) -> str:
    """Text without terminal escapes (colours), as every surface should show it."""
    return _ANSI.sub("", text)


def replicas(app: dict | None) -> list[dict]:
    """The application's replicas: [{replica_id, actor_id, pid, node_id, node_ip, state}]."""
    found = []
    for deployment in ((app or {}).get("deployments") or {}).values():
        found += deployment.get("replicas") or []
    return found


def scale_summary(launch: Launch, live_replicas: list[dict] | None) -> dict | None:
    """{replicas, min_replicas, max_replicas, scaled_to_zero, cold_start_ms, decision} of an autoscaled job, as the
    local backend's `job get` has them (backends/scaling.py): the replicas Serve runs now, by its last report.
    None for a fixed number of replicas, or before the first report. Serve says neither why it scaled nor how long a
    cold start took."""
    if not launch.scaling.autoscaled or live_replicas is None:
        return None
    config = serve_autoscaling(launch.scaling.as_endpoint())
    running = sum(1 for replica in live_replicas if replica.get("state") == "RUNNING")
    return {"replicas": running, "min_replicas": config["min_replicas"], "max_replicas": config["max_replicas"],
            "scaled_to_zero": not live_replicas, "cold_start_ms": None, "decision": None}


def live(app: dict | None) -> list[dict]:
    """The replicas as `job get` and the dashboard show them: [{replica_id, state, pid, node_ip}], RUNNING first."""
    found = [{key: replica.get(key) for key in ("replica_id", "state", "pid", "node_ip")} for replica in replicas(app)]
    return sorted(found, key=lambda r: (r["state"] != "RUNNING", str(r["replica_id"])))
