"""Environments: the virtualenv an endpoint runs in, built once with uv for every job that asks for the same one.

An environment is data (trainml_cli/environment.py): an interpreter, pip requirements from the payload and a
requirements file in the model folder. Its key hashes the interpreter, the requirements (the file's contents
included, and the contents of every file and folder of the model's they install: localpaths.py), the runtime's
own requirements (runtimerequirements.py) and the runtime's source, so a job gets an
environment holding exactly its packages, what the runtime needs to serve, and this very version of the
runtime. It lives in `HOME/envs/KEY`:

    uv venv --python INTERPRETER ENV            (never downloads a Python)
    uv pip install --python ENV/bin/python -r runtime.txt -r packages.txt -r MODEL/requirements.txt
                   + pip's configuration, translated (pipconfig.py)
    copy trainml_cli's runtime into its site-packages; check that the runtime imports
    write trainml-environment.json              (last: only a complete environment has it)

Jobs with the same key wait for one build (one task per key); each waiter's log shows the installer's lines. A
build that fails fails every waiter with uv's own first lines, and leaves nothing behind; so does one that is
cancelled because the last job waiting for it was stopped or removed. uv's cache is `HOME/uv-cache` (or
UV_CACHE_DIR), on the same disk, so packages shared by two environments are linked, not downloaded twice. The
platform's own interpreter and virtualenv are never touched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import localpaths
from ..endpointenv import installer_inherited
from ..environment import DEFAULT_REQUIREMENTS_FILE, command_line_wins, pinned, requirement_name
from ..errors import Conflict, NotFound, TrainMLError
from ..runtimerequirements import RUNTIME_REQUIREMENTS
from . import pipconfig
from .interpreters import Interpreter, Interpreters
from .sources import tree_size

log = logging.getLogger("trainml.server")

MARKER = "trainml-environment.json"
BUILD_TIMEOUT = 1800.0
REASON_LINES = 6
# What of trainml_cli an endpoint imports: the package but its CLI, SDK and control plane.
RUNTIME_EXCLUDE = ("cli", "sdk", "server", "__pycache__")
# Run in a new environment before it counts as built: the runtime must import with the user's packages beside it.
CHECK_IMPORTS = "import uvicorn, pydantic, jsonschema, trainml_cli.runtime.app, trainml_cli.runtime.server"


class BuildFailed(TrainMLError):
    """An environment could not be built; the job fails with this message."""


@dataclass(frozen=True)
class Plan:
    """One environment to have: what it holds, and the key that names it."""

    interpreter: Interpreter
    pip: tuple[str, ...]
    requirements_file: str | None  # relative to the model folder
    requirements_text: str
    key: str
    overrides: tuple[str, ...] = ()  # the job's pip requirements that replace the requirements file's

    def describe(self) -> str:
        parts = list(self.pip) + ([f"-r {self.requirements_file}"] if self.requirements_file else [])
        return f"Python {self.interpreter.version}" + (f" with {', '.join(parts)}" if parts else "")


@dataclass
class _Build:
    plan: Plan
    task: asyncio.Task | None = None
    listeners: dict[str, Callable[[str], None]] = field(default_factory=dict)


def runtime_source_digest() -> str:
    """A hash of the runtime files an environment gets a copy of: a changed runtime is a new environment."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(_runtime_files(root)):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _runtime_files(root: Path) -> list[Path]:
    files = []
    for folder, dirs, names in os.walk(root):
        if Path(folder) == root:
            dirs[:] = [d for d in dirs if d not in RUNTIME_EXCLUDE]
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        files += [Path(folder) / n for n in names if n.endswith(".py")]
    return files


def _normalized_lines(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        if line:
            lines.append(line)
    return lines


def find_uv() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found:
            return found
    raise BuildFailed("uv is not installed on the control plane's machine (pip install uv)")


class Environments:
    def __init__(self, folder: Path, interpreters: Interpreters, cache: Path, pass_env: tuple[str, ...] = ()):
        self.folder = folder
        self.pass_env = pass_env  # the control plane's variables builds inherit beyond the allowlist
        self.interpreters = interpreters
        self.cache = Path(os.environ["UV_CACHE_DIR"]) if os.environ.get("UV_CACHE_DIR") else cache
        self.folder.mkdir(parents=True, exist_ok=True)
        self._builds: dict[str, _Build] = {}
        self._runtime_digest: str | None = None
        self.collect_garbage()

    # -- planning -----------------------------------------------------------------------------------------------

    def plan(self, environment: dict, model_dir: Path) -> Plan | None:
        """What a job's environment must hold, or None when it runs on the default interpreter as it is."""
        own = list(environment.get("packages", {}).get("pip") or ())
        named = environment.get("requirements")
        file = named or DEFAULT_REQUIREMENTS_FILE
        path = model_dir / file
        text = ""
        if path.is_file():
            real, root = path.resolve(), model_dir.resolve()
            if root not in real.parents:
                raise BuildFailed(f"environment.requirements: {file} points outside the model folder")
            text = real.read_text(errors="replace")
        elif named:
            raise BuildFailed(f"environment.requirements: {named} is not a file in the model folder")
        else:
            file = None
        # What the environment name adds, but a project the requirements file pins too: the job's own pin wins.
        own_names = pinned(own, text)
        added = [p for p in environment.get("framework_packages") or () if requirement_name(p) not in own_names]
        pip = tuple(own + added)
        chosen = environment.get("interpreter")
        if not pip and file is None and not chosen:
            return None
        interpreter = self.interpreters.resolve(chosen["path"]) if chosen else self.interpreters.default()
        if self._runtime_digest is None:
            self._runtime_digest = runtime_source_digest()
        material = {
            "python": [interpreter.path, interpreter.version],
            "pip": sorted(set(pip)),
            "requirements": _normalized_lines(text),
            "runtime": list(RUNTIME_REQUIREMENTS),
            "runtime_source": self._runtime_digest,
        }
        # Only when there are local paths: the keys of environments built before stay as they were.
        local = localpaths.local_digest(model_dir, file, pip)
        if local is not None:
            material["local"] = local
        overrides = tuple(command_line_wins(own, text, RUNTIME_REQUIREMENTS))
        if overrides:  # likewise: only a job whose own pins meet the file's gets a key that says so
            material["overrides"] = sorted(overrides)
        key = hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
        return Plan(interpreter, pip, file, text, key, overrides)

    # -- having one ---------------------------------------------------------------------------------------------

    async def prepare(self, job_id: str, plan: Plan, model_dir: Path, say: Callable[[str], None]) -> Path:
        """The python of the plan's environment, built (or waited for) first. Raises BuildFailed."""
        marker = self.folder / plan.key / MARKER
        if marker.exists() and plan.key not in self._builds:
            self._touch(marker)
            say(f"environment {plan.key}: {plan.describe()} (built before)")
            return self.python(plan.key)
        build = self._builds.get(plan.key)
        if build is None:
            build = self._builds[plan.key] = _Build(plan)
            build.task = asyncio.create_task(self._build(build, model_dir), name=f"env-{plan.key}")
            build.task.add_done_callback(lambda _t: self._builds.pop(plan.key, None))
            say(f"environment {plan.key}: building {plan.describe()}")
        else:
            others = ", ".join(build.listeners) or "another job"
            say(f"environment {plan.key}: waiting for the build started for {others}")
        build.listeners[job_id] = say
        try:
            await asyncio.shield(build.task)
        except asyncio.CancelledError:
            build.listeners.pop(job_id, None)
            if not build.listeners and not build.task.done():
                log.info("environment %s: no job waits for it any more; cancelling its build", plan.key)
                build.task.cancel()
                # Until the installer is dead and the partial environment gone: a removal frees the disk.
                await asyncio.gather(build.task, return_exceptions=True)
            raise
        finally:
            build.listeners.pop(job_id, None)
        return self.python(plan.key)

    def python(self, key: str) -> Path:
        return self.folder / key / "bin" / "python"

    async def _build(self, build: _Build, model_dir: Path) -> None:
        plan, env_dir = build.plan, self.folder / build.plan.key

        def say(line: str) -> None:
            for listener in list(build.listeners.values()):
                listener(line)

        began = time.monotonic()
        shutil.rmtree(env_dir, ignore_errors=True)
        try:
            await asyncio.wait_for(self._install(plan, env_dir, model_dir, say), BUILD_TIMEOUT)
        except asyncio.TimeoutError:
            await asyncio.to_thread(shutil.rmtree, env_dir, True)
            raise BuildFailed(f"environment {plan.key}: the build took more than {BUILD_TIMEOUT:.0f} seconds") from None
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, env_dir, True)
            raise
        seconds = time.monotonic() - began
        size = await asyncio.to_thread(tree_size, env_dir)
        record = {
            "key": plan.key, "python": plan.interpreter.version, "interpreter": plan.interpreter.path,
            "pip": list(plan.pip), "requirements_file": plan.requirements_file,
            "requirements": _normalized_lines(plan.requirements_text), "runtime": list(RUNTIME_REQUIREMENTS),
            "size": size, "build_seconds": round(seconds, 2), "created": time.time(), "last_used": time.time(),
        }
        (env_dir / MARKER).write_text(json.dumps(record, indent=2))
        say(f"environment {plan.key}: built in {seconds:.1f}s ({size / 1e6:.0f} MB)")

    async def _install(self, plan: Plan, env_dir: Path, model_dir: Path, say: Callable[[str], None]) -> None:
        uv = find_uv()
        options = pipconfig.uv_options()
        for skipped in options.skipped:
            say(f"pip configuration: leaving out {skipped}")
        # Never the control plane's whole environment: a model's own package runs its setup.py in this build.
        env = {**installer_inherited(os.environ, self.pass_env), **options.env, "UV_CACHE_DIR": str(self.cache),
               "UV_PYTHON_DOWNLOADS": "never",
               "NO_COLOR": "1", "VIRTUAL_ENV": str(env_dir),
               # `-e ./mylib` is installed as a copy: the environment is shared by every job with its key and
               # outlives the job whose folder an editable install would point into. (The key follows the
               # package's contents, so an edit still gets a new environment.) An older uv ignores the variable.
               "UV_NO_EDITABLE": "1"}
        env.pop("PYTHONPATH", None)
        await self._run([uv, "venv", "--no-config", "--python", plan.interpreter.path, str(env_dir)], env, model_dir,
                        say)
        spec_dir = env_dir / "trainml"
        spec_dir.mkdir()
        (spec_dir / "runtime.txt").write_text("\n".join(RUNTIME_REQUIREMENTS) + "\n")
        install = [uv, "pip", "install", "--no-config", "--python", str(env_dir / "bin" / "python"),
                   "-r", str(spec_dir / "runtime.txt")]
        if plan.pip:
            (spec_dir / "packages.txt").write_text("\n".join(plan.pip) + "\n")
            install += ["-r", str(spec_dir / "packages.txt")]
        if plan.requirements_file:
            say(f"using {plan.requirements_file} from the model folder")
            install += ["-r", str(model_dir / plan.requirements_file)]
        if plan.overrides:
            say(f"--pip-packages replace {plan.requirements_file}'s requirement for: {', '.join(plan.overrides)}")
            (spec_dir / "overrides.txt").write_text("\n".join(plan.overrides) + "\n")
            install += ["--overrides", str(spec_dir / "overrides.txt")]
        if "--extra-index-url" in options.args:
            install += ["--index-strategy", "unsafe-best-match"]  # as pip does: the best version from any index
        lines = await self._run(install + options.args, env, model_dir, say, check=False)
        if lines is not None:
            raise BuildFailed(self._failure(plan, lines))
        site = await self._site_packages(env_dir, env, model_dir, say)
        await asyncio.to_thread(_copy_runtime, site / "trainml_cli")
        await self._run([str(env_dir / "bin" / "python"), "-I", "-c", CHECK_IMPORTS],
                        env, model_dir, say)

    async def _site_packages(self, env_dir, env, cwd, say) -> Path:
        code = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
        out: list[str] = []
        await self._run([str(env_dir / "bin" / "python"), "-I", "-c", code], env, cwd, out.append)
        return Path(out[-1].strip())

    async def _run(self, command: list[str], env: dict, cwd: Path, say, check: bool = True) -> list[str] | None:
        """Run one build step, each output line to `say`. None when it succeeded, else its lines (or raise)."""
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, env=env, cwd=str(cwd), start_new_session=True)
        lines: list[str] = []
        try:
            while raw := await process.stdout.readline():
                line = raw.decode(errors="replace").rstrip()
                if line:
                    lines.append(line)
                    say(line)
            code = await process.wait()
        except BaseException:  # cancelled (the last waiting job went away) or timed out: kill the installer
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await process.wait()
            raise
        if code == 0:
            return None
        if check:
            raise BuildFailed(f"environment build step failed ({Path(command[0]).name} exited with {code}): "
                              + " / ".join(lines[-REASON_LINES:]))
        return lines

    @staticmethod
    def _failure(plan: Plan, lines: list[str]) -> str:
        """The installer's own first lines (they name the package), and which side a conflict is with."""
        start = next((i for i, line in enumerate(lines) if line.lstrip().startswith(("error:", "×"))), 0)
        message = [line.strip() for line in lines[start:start + REASON_LINES]]
        text = " ".join(message)  # one line: the status line and `failed:` show the cause, not a colon
        reason = f"installing the environment's packages failed: {text}"
        names = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower(): r for r in RUNTIME_REQUIREMENTS}
        clashing = [req for name, req in names.items() if re.search(rf"you require {re.escape(name)}\b", text.lower())
                    or re.search(rf"\band {re.escape(name)}\b", text.lower())]
        if clashing and "unsatisfiable" in text:
            reason = (f"the model's packages conflict with what the endpoint runtime needs "
                      f"({', '.join(clashing)}): {text}")
        return reason

    # -- managing -----------------------------------------------------------------------------------------------

    def _touch(self, marker: Path) -> None:
        try:
            record = json.loads(marker.read_text())
            record["last_used"] = time.time()
            marker.write_text(json.dumps(record, indent=2))
        except (OSError, ValueError):
            pass

    def records(self) -> list[dict]:
        found = []
        for marker in sorted(self.folder.glob(f"*/{MARKER}")):
            try:
                found.append(json.loads(marker.read_text()))
            except (OSError, ValueError):
                continue
        for key, build in self._builds.items():
            plan = build.plan
            found.append({"key": key, "python": plan.interpreter.version, "interpreter": plan.interpreter.path,
                          "pip": list(plan.pip), "requirements_file": plan.requirements_file,
                          "requirements": _normalized_lines(plan.requirements_text), "size": None,
                          "building": True, "created": None, "last_used": None})
        return found

    def find(self, ref: str) -> str:
        """An environment's key from the key or a unique prefix of it (at least 4 characters)."""
        keys = [r["key"] for r in self.records()]
        if ref in keys:
            return ref
        matches = [k for k in keys if len(ref) >= 4 and k.startswith(ref)]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise Conflict(f"{len(matches)} environments start with {ref!r}: {', '.join(matches)}")
        raise NotFound(f"environment {ref!r} not found (see trainml environment list)")

    async def remove(self, key: str, users: list[str]) -> None:
        """Remove an environment no job uses; `users`: the names of the jobs that do (a Conflict names them)."""
        if key in self._builds:
            raise Conflict(f"environment {key} is being built; stop or remove the jobs waiting for it first")
        if users:
            raise Conflict(f"environment {key} is used by job(s) {', '.join(users)}; stop or remove them first",
                           details=users)
        target = self.folder / key
        if not (target / MARKER).exists():
            raise NotFound(f"environment {key!r} not found")
        # Renamed first, so a job starting meanwhile never sees half of it.
        trash = self.folder / f".removing-{key}-{os.getpid()}"
        target.rename(trash)
        await asyncio.to_thread(shutil.rmtree, trash, True)

    def collect_garbage(self) -> None:
        """Remove what an interrupted build or removal left (no marker: never complete)."""
        for path in self.folder.iterdir():
            if path.is_dir() and not (path / MARKER).exists() and path.name not in self._builds:
                shutil.rmtree(path, ignore_errors=True)


def _copy_runtime(dest: Path) -> None:
    source = Path(__file__).resolve().parent.parent
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest, ignore=lambda folder, names: [
        n for n in names if n == "__pycache__" or (Path(folder) == source and n in RUNTIME_EXCLUDE)
        or n.endswith((".pyc", ".js", ".css", ".html"))])
