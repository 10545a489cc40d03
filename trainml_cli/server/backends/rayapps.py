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
- `job_status`: a Serve application's status as a job status (see the table in `job_status`), and
  `failure_reason`: the useful end of a failed deploy's message.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import zipfile
from dataclasses import replace
from pathlib import Path

from ...environment import DEFAULT_REQUIREMENTS_FILE
from ...errors import UsageError
from .base import Launch

ENTRY = "trainml_cli.runtime.serve_entry:build"
KEY_FILE = "endpoint.key"  # the key file's place in the package, relative to the replica's working dir
PREFIX = "ep-"
SKIP_DIRS = {"__pycache__", ".git", ".venv", "venv", ".mypy_cache", ".pytest_cache", "node_modules"}
RETRY_AFTER_S = 1.0  # as our own limiter says
# While it builds an application's environment on a node, Ray sets this to the node's copy of the working_dir
# (our package) and expands it in the `uv` field's packages and options.
WORKING_DIR = "${RAY_RUNTIME_ENV_CREATE_WORKING_DIR}"
_PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the trainml_cli package itself
# How Ray's runtime_env setup error quotes a failed installer (ray/_private/runtime_env/utils.py).
_INSTALLER_OUTPUT = re.compile(r"Last \d+ lines of stdout:\n")


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
    files += [(f"trainml_cli/{rel}", path) for rel, path in _tree(_PACKAGE_ROOT) if rel.endswith(".py")]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, path in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = (os.stat(path).st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
    data = buffer.getvalue()
    return f"_ray_pkg_{hashlib.sha256(data).hexdigest()[:32]}.zip", data


def _tree(root: Path):
    for folder, dirs, names in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not (Path(folder) / d / "pyvenv.cfg").exists())
        for name in names:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink() and not name.endswith((".pyc", ".pyo")):
                yield path.relative_to(root).as_posix(), path


def uv_packages(launch: Launch) -> dict | None:
    """The job's packages as Ray's `uv` runtime_env field, installed as the local backend installs them.

    Plain lines (`--pip-packages` and the requirements file's requirements, index options) are listed as they
    are, so the environment is keyed by them alone and reused by the next version of the code. A line that
    names a file (`-r`, `-c`, `-e`, `-f`, a path, `file:`) is read by uv from Ray's copy of the uploaded model
    folder instead, with paths resolved against that folder as the local backend resolves them against its
    own. Raises UsageError for a line naming a file the upload lacks (outside the model folder, or missing).
    """
    model_dir = launch.model_dir
    named = launch.requirements
    file = model_dir / (named or DEFAULT_REQUIREMENTS_FILE)
    lines: list[tuple[int, str]] = []
    if file.is_file():
        if not _inside(file, model_dir):
            raise UsageError(f"environment.requirements: {named or DEFAULT_REQUIREMENTS_FILE} points outside the "
                             "model folder; only the model folder is uploaded to the Ray cluster")
        lines = _requirement_lines(file)
    elif named:
        raise UsageError(f"environment.requirements: {named} is not a file in the model folder")
    pip = list(launch.pip)
    if not pip and not lines:
        return None
    where = file.relative_to(model_dir).as_posix()
    # No options rather than Ray's default (--no-cache): uv's cache on the node, as the local backend keeps one
    # here, so the next environment with these packages links them instead of downloading them again.
    if not any(_names_a_file(line) for line in pip + [line for _, line in lines]):
        return {"packages": pip + [line for _, line in lines], "uv_check": False, "uv_pip_install_options": []}
    _check_files(model_dir, [("--pip-packages", i + 1, p) for i, p in enumerate(pip)], set())
    _check_files(model_dir, [(where, n, line) for n, line in lines], {file.resolve()})
    packages = pip + ([f"-r {WORKING_DIR}/model/{where}"] if lines else [])
    # uv resolves `-r` and `-c` against the file naming them, but paths against its working directory: Ray's
    # scratch directory unless told the model folder's copy (a global option, accepted after the subcommand).
    return {"packages": packages, "uv_check": False, "uv_pip_install_options": ["--directory", f"{WORKING_DIR}/model"]}


def _requirement_lines(file: Path) -> list[tuple[int, str]]:
    """(line number, text) of each requirement or option in a requirements file, comments left out."""
    found = []
    for number, line in enumerate(file.read_text(errors="replace").splitlines(), 1):
        line = line.split(" #")[0].strip()
        if line and not line.startswith("#"):
            found.append((number, line))
    return found


_FILE_OPTIONS = ("-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-f", "--find-links")


def _option(line: str) -> tuple[str, str] | None:
    """(option, value) for a line starting with one of the options naming files, else None."""
    for option in _FILE_OPTIONS:
        if line == option or line.startswith(option + " ") or line.startswith(option + "="):
            return option, line[len(option):].lstrip(" =").strip()
        if len(option) == 2 and line.startswith(option) and not line.startswith("--"):  # -rother.txt
            return option, line[2:].strip()
    return None


def _names_a_file(line: str) -> bool:
    return _option(line) is not None or line.startswith((".", "/", "~")) or "file:" in line


def _check_files(model_dir: Path, lines: list[tuple[str, int, str]], seen: set[Path]) -> None:
    """Every file a line names, if relative, is in the model folder (following `-r` and `-c` into the files)."""
    for where, number, line in lines:
        option = _option(line)
        value = option[1] if option else line
        if "://" in value or value.startswith(("/", "~")) or (not option and not value.startswith(".")):
            continue  # a URL, a path on the nodes themselves, or a requirement
        including = option is not None and option[0] in ("-r", "--requirement", "-c", "--constraint")
        # As uv reads them: an included file against the file including it, any other path against the folder.
        base = (model_dir / where).parent if including and where != "--pip-packages" else model_dir
        path = base / value
        shown = f"{where} line {number}: {line!r}"
        if not _inside(path, model_dir):
            raise UsageError(f"{shown}: {value} is outside the model folder; only the model folder is uploaded to "
                             "the Ray cluster, so move the file into it")
        if not path.exists():
            raise UsageError(f"{shown}: {value} is not in the model folder")
        if including and path.is_file() and path.resolve() not in seen:
            seen.add(path.resolve())
            rel = path.resolve().relative_to(model_dir.resolve()).as_posix()
            _check_files(model_dir, [(rel, n, text) for n, text in _requirement_lines(path)], seen)


def _inside(path: Path, folder: Path) -> bool:
    real, root = path.resolve(), folder.resolve()
    return real == root or root in real.parents


def deployment_options(launch: Launch) -> dict:
    """Serve's options for the job's one deployment: replicas or autoscaling, resources per replica, limits."""
    runtime = launch.runtime
    concurrency = runtime.max_concurrency or 8
    options: dict = {
        "ray_actor_options": {"num_cpus": launch.resources.get("cpu_count", 1),
                              "num_gpus": launch.resources.get("gpu_count", 0)},
        # Serve sends a replica at most this many calls; the rest wait in the proxy, at most max_queued_requests
        # (per proxy; Serve's default is unbounded), then 503 with Retry-After, as our own limiter answers.
        "max_ongoing_requests": concurrency,
        "max_queued_requests": runtime.max_queue if runtime.max_queue is not None else 64,
        "backpressure_config": {"status_code": 503, "retry_after_s": RETRY_AFTER_S},
        "health_check_period_s": 5.0,
    }
    scaling = launch.scaling
    if scaling.autoscaled:
        low = scaling.min_replicas or 1
        options["autoscaling_config"] = {
            "min_replicas": low, "initial_replicas": low, "max_replicas": max(low, scaling.max_replicas or low),
            "target_ongoing_requests": max(1, concurrency // 2),  # scale out before calls queue in the proxy
        }
    else:
        options["num_replicas"] = scaling.replicas or 1
    return options


def scale_text(options: dict) -> str:
    """How many replicas deployment options ask for, as the job's log says it."""
    if "num_replicas" in options:
        return f"{options['num_replicas']} replica(s)"
    scaling = options["autoscaling_config"]
    return f"{scaling['min_replicas']}-{scaling['max_replicas']} replicas (autoscaled)"


def app_config(launch: Launch, package_name: str, packages: dict | None) -> dict:
    """The Serve application for this job, in the declarative schema of `PUT /api/serve/applications/`, with
    `packages` (from `uv_packages`) as its runtime_env's `uv` field."""
    # Paths as the replica sees them in its working dir (the package). Serve's proxy speaks plain HTTP to the
    # replicas, so the control plane's TLS files stay here.
    runtime = replace(launch.runtime, model_dir="model", route_file="routes.json", workers=None, fd=None,
                      host=None, port=None, key_file=KEY_FILE if launch.runtime.key_file else None,
                      tls_certfile=None, tls_keyfile=None)
    env = dict(launch.job_env)
    env.setdefault("PYTHONUNBUFFERED", "1")  # prints reach the replica's log file as they happen
    runtime_env: dict = {"working_dir": f"gcs://{package_name}", "env_vars": env}
    if packages:
        runtime_env["uv"] = packages
    return {
        "name": app_name(launch.job_id),
        "route_prefix": route_prefix(launch.job_id),
        "import_path": ENTRY,
        "runtime_env": runtime_env,
        "args": {"argv": runtime.to_argv(), "deployment": deployment_options(launch)},
    }


def deploy_document(apps: list[dict], host: str, port: int) -> dict:
    """The full list Serve should run, with the one HTTP proxy port they all share."""
    return {"proxy_location": "EveryNode", "http_options": {"host": host, "port": port}, "applications": apps}


def job_status(app: dict | None) -> tuple[str, str]:
    """(starting|running|failed|stopped, message) for a Serve application's status document (None: absent).

    NOT_STARTED, DEPLOYING -> starting; RUNNING -> running; UNHEALTHY -> running (Serve replaces the unhealthy
    replicas itself); DEPLOY_FAILED -> failed (the message holds the replica's traceback); DELETING or absent
    -> stopped.
    """
    if app is None:
        return "stopped", ""
    status = app.get("status", "")
    message = app.get("message") or ""
    if status == "DEPLOY_FAILED":
        details = [d.get("message") for d in (app.get("deployments") or {}).values() if d.get("message")]
        return "failed", "\n".join([message] + details).strip() or "Ray Serve could not deploy the application"
    if status in ("RUNNING", "UNHEALTHY"):
        return "running", message
    if status == "DELETING":
        return "stopped", message
    return "starting", message


def failure_reason(message: str) -> str:
    """The useful end of Serve's failure message: our runtime's own line and the model code's traceback, or
    the installer's own lines when Ray could not build the job's environment."""
    marker = message.rfind("model code failed to load:")
    if marker >= 0:
        return message[marker:].strip()
    output = _INSTALLER_OUTPUT.search(message)
    if output and "runtime_env" in message[:output.start()]:
        # Ray's traceback ends with the installer's output; uv's own lines from its first error name the package.
        lines = [line.strip() for line in message[output.end():].splitlines() if line.strip()]
        start = next((i for i, line in enumerate(lines) if line.startswith(("error:", "×", "ERROR:"))), 0)
        return "installing the job's packages on the Ray cluster failed:\n" + "\n".join(lines[start:start + 6])
    lines = [line for line in message.splitlines() if line.strip()]
    return "Ray Serve could not deploy the endpoint: " + "\n".join(lines[-15:])


def replicas(app: dict | None) -> list[dict]:
    """The application's replicas: [{replica_id, actor_id, pid, node_id, node_ip, state}]."""
    found = []
    for deployment in ((app or {}).get("deployments") or {}).values():
        found += deployment.get("replicas") or []
    return found
