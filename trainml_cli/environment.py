"""An endpoint's environment as data: the pip packages, requirements file and interpreter a job asks for.

One module for the CLI, the SDK and the control plane, so each says the same thing about the same input:

    environment: {env: [{key, value}], packages: {pip: [...], apt: [...], conda: [...]},
                  python: "3.12" | "/path/to/python", type: "PYTORCH_PY39_113", requirements: "path/in/model",
                  custom_image: "..."}

`check_environment` returns the part of it that describes a build (what a backend turns into a virtualenv,
or into Ray's runtime_env), with the packages a trainML environment name adds (frameworks.py) less those the
job pins itself; what cannot be honoured on this platform is refused with a message saying why and
what to do instead. Stdlib only: the CLI imports this on start.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from . import frameworks
from .errors import UsageError
from .localpaths import local_digest, references

DEFAULT_REQUIREMENTS_FILE = "requirements.txt"
MAX_PACKAGES = 500
MAX_REQUIREMENT_LENGTH = 1000

# A requirement line names a project (or a URL): it starts with a letter or digit. Anything starting with '-'
# would be an installer option (--index-url, -e, -r) smuggled through a package list.
_REQUIREMENT = re.compile(r"^[A-Za-z0-9][^\x00-\x1f\x7f]*$")
_VERSION_CONTINUATION = re.compile(r"^\s*(===|==|!=|~=|<=|>=|<|>)")
# A requirement's project name, before any extras, version clause or marker.
_PROJECT = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")

REFUSED = {
    "apt": ("system (apt) packages are not installed: they need root and would change the machine for every "
            "endpoint; use pip packages (most libraries ship wheels with their native code), or install the "
            "system library on the machine yourself"),
    "conda": ("conda packages are not supported: environments are built with uv from PyPI; use --pip-packages "
              "or a requirements.txt (PyPI has wheels for numpy, scipy, torch, scikit-learn ...)"),
    "custom_image": ("custom images are not supported: this platform runs endpoints as processes, without a "
                     "container runtime; give the packages with --pip-packages or a requirements.txt instead"),
    "checkpoint": ("checkpoints are not supported: there is no checkpoint store to attach them from; put the "
                   "files in the model folder (or the git repository) and load them from there"),
}


def split_pip_packages(values: Iterable[str]) -> list[str]:
    """trainML's comma format ('a,b==1.2'), possibly repeated, as one list of requirements.

    A comma also separates a requirement's version clauses ('numpy>=1.20,<2'): a piece that starts with a
    comparison operator continues the requirement before it.
    """
    packages: list[str] = []
    for value in values:
        for piece in str(value).split(","):
            if _VERSION_CONTINUATION.match(piece) and packages:
                packages[-1] += "," + piece.strip()
            elif piece.strip():
                packages.append(piece.strip())
    return packages


def check_requirement(text, loc: tuple) -> str:
    if not isinstance(text, str):
        raise UsageError.at(loc, f"{text!r} must be a string such as 'scikit-learn' or 'numpy==2.1'")
    text = text.strip()
    if not text:
        raise UsageError.at(loc, "an empty package name")
    if len(text) > MAX_REQUIREMENT_LENGTH:
        raise UsageError.at(loc, f"longer than {MAX_REQUIREMENT_LENGTH} characters")
    if text.startswith("-"):
        raise UsageError.at(loc, f"{text!r} looks like an installer option; give package requirements only "
                         f"(put index settings in pip's configuration, which environments follow)")
    if not _REQUIREMENT.match(text):
        raise UsageError.at(loc, f"{text!r} is not a package requirement (e.g. 'scikit-learn', 'numpy>=2,<3')")
    return text


def check_requirements_path(path, loc: tuple = ("environment", "requirements")) -> str:
    """A requirements file's path inside the model folder (relative, no '..')."""
    if not isinstance(path, str) or not path.strip() or "\x00" in path:
        raise UsageError.at(loc, "a path inside the model folder is required, e.g. requirements.txt")
    pure = PurePosixPath(path.strip())
    if pure.is_absolute() or re.match(r"^[A-Za-z]:", path) or "\\" in path:
        raise UsageError.at(loc, f"{path!r} is absolute; give a path relative to the model folder")
    if ".." in pure.parts:
        raise UsageError.at(loc, f"{path!r} leaves the model folder; the file must be inside it")
    return str(pure)


def requirement_name(text: str) -> str | None:
    """The project a requirement names, normalized as PyPI compares names ('Scikit_Learn>=1' -> 'scikit-learn');
    None for a URL or a path, which name no project before they are built."""
    match = _PROJECT.match(text.strip())
    if match is None or "://" in text or text.strip().startswith((".", "/")):
        return None
    return re.sub(r"[-_.]+", "-", match[1]).lower()


def pinned(pip: list[str], requirements_text: str = "") -> set[str]:
    """The projects a job's own requirements name (its pip list, its requirements file's lines)."""
    lines = [line for line in requirements_text.splitlines()
             if line.strip() and not line.lstrip().startswith(("#", "-"))]
    return {requirement_name(item) for item in [*pip, *lines]} - {None}


def command_line_wins(pip: list[str], requirements_text: str, keep: Iterable[str] = ()) -> list[str]:
    """The job's pip requirements that replace the requirements file's for the same project, as a later `pip install`
    on trainML replaces what the file installed: `--pip-packages tabulate==0.8.10` against `tabulate==0.9.0` in
    requirements.txt installs 0.8.10. Projects in `keep` (what the endpoint runtime needs) are never replaced, so a
    clash with the runtime is still reported as one."""
    in_file = pinned([], requirements_text)
    kept = {requirement_name(item) for item in keep}
    return [item for item in pip if requirement_name(item) in in_file and requirement_name(item) not in kept]


def framework_packages(kind: str | None, pip: list[str]) -> tuple[list[str], list[str]]:
    """(the requirements a trainML environment name adds, those of them the job's own pins replace).

    The job's own requirement for a project wins over the name's: `--environment PYTORCH_PY39_113
    --pip-packages torch==2.1.0` installs torch 2.1.0 (and so does a requirements file pinning it, once the
    control plane reads it: server/environments.py).
    """
    known = frameworks.find(kind) if kind else None
    if known is None:
        return [], []
    own = pinned(pip)
    added = [p for p in known.packages if requirement_name(p) not in own]
    return added, [p for p in known.packages if p not in added]


def job_pip(environment: dict) -> list[str]:
    """Every pip requirement of a job's environment spec: its own, then what its environment name adds."""
    return list((environment.get("packages") or {}).get("pip") or []) + list(environment.get("framework_packages")
                                                                               or [])


def check_environment(environment: dict | None) -> dict:
    """The build part of a job's environment, checked: {pip, requirements, python, type, framework_packages,
    replaced} (the last two: what the environment name adds, and what of it the job's pip pins replace).
    Raises UsageError (422/2).

    `requirements` is None when the job names no file (a requirements.txt at the model folder's root is then
    used when there is one); `python` is the request as given (resolved by the control plane).
    """
    environment = environment or {}
    if not isinstance(environment, dict):
        raise UsageError.at(("environment",), "must be an object")
    packages = environment.get("packages") or {}
    if not isinstance(packages, dict):
        raise UsageError.at(("environment", "packages"), "must be an object {pip: [...]}")
    for kind in ("apt", "conda"):
        if packages.get(kind):
            raise UsageError.at(("environment", "packages", kind), REFUSED[kind])
    unknown = sorted(set(packages) - {"pip", "apt", "conda"})
    if unknown:
        raise UsageError.at(("environment", "packages", unknown[0]), "not a package kind; use pip")
    if environment.get("custom_image"):
        raise UsageError.at(("environment", "custom_image"), REFUSED["custom_image"])
    pip = packages.get("pip") or []
    if isinstance(pip, str):
        pip = split_pip_packages([pip])
    if not isinstance(pip, list):
        raise UsageError.at(("environment", "packages", "pip"), "must be a list of requirements")
    if len(pip) > MAX_PACKAGES:
        raise UsageError.at(("environment", "packages", "pip"),
                            f"more than {MAX_PACKAGES} packages; use a requirements file")
    pip = [check_requirement(item, ("environment", "packages", "pip", i)) for i, item in enumerate(pip)]
    references(None, pip, lambda name, where: None)  # a package from a path must name one inside the model folder
    requirements = environment.get("requirements")
    if requirements is not None:
        requirements = check_requirements_path(requirements)
    python = environment.get("python")
    if python is not None and (not isinstance(python, str) or not python.strip() or "\x00" in python):
        raise UsageError.at(("environment", "python"),
                            f"{python!r} must be a version such as '3.12' or an interpreter's path")
    kind = environment.get("type")
    if kind is not None and (not isinstance(kind, str) or not frameworks.NAME.match(kind)):
        raise UsageError.at(("environment", "type"), f"{kind!r} is not an environment name such as DEEPLEARNING_PY310")
    kind = kind.upper() if kind else None  # trainML matches its names in any case
    added, replaced = framework_packages(kind, pip)
    return {"pip": pip, "requirements": requirements, "python": python.strip() if python else None, "type": kind,
            "framework_packages": added, "replaced": replaced}


def check_requirements_file(environment: dict, folder) -> None:
    """Before the upload: a requirements file the job names must be in the local model folder, and every local
    path the requirements install from (`./mylib`, `-r other.txt`) must be in it too, not lead out of it."""
    environment = environment or {}
    named = environment.get("requirements")
    if named and not (Path(folder) / check_requirements_path(named)).is_file():
        raise UsageError.at(("environment", "requirements"), f"{named} is not a file in {folder}")
    file = named or (DEFAULT_REQUIREMENTS_FILE if (Path(folder) / DEFAULT_REQUIREMENTS_FILE).is_file() else None)
    pip = (environment.get("packages") or {}).get("pip") or []
    local_digest(Path(folder), file, split_pip_packages([pip]) if isinstance(pip, str) else pip, hash_contents=False,
                 packed_links=True)
