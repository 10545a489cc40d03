"""What each trainML environment name downloads: its packages resolved by uv, the wheels' sizes summed.

    python bench/framework_sizes.py [--only NAME,...]

For each name of trainml_cli/frameworks.py, a throwaway project asks for the name's packages on the Python it
names; `uv lock` resolves them for x86_64 Linux (metadata only: no wheel is downloaded) and the lock file
records each wheel's size. The sum is over the wheel each package installs on that Python, as an empty uv
cache would download it (the runtime's own few MB are left out). The figures go in frameworks.py's `download`
column and docs/environments.md.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trainml_cli.frameworks import FRAMEWORKS  # noqa: E402
from trainml_cli.server.interpreters import Interpreters  # noqa: E402

PLATFORM = "sys_platform == 'linux' and platform_machine == 'x86_64'"


def _fits(wheel: str, python: str) -> bool:
    """A wheel file name that installs on CPython `python` on x86_64 manylinux."""
    tags = Path(wheel).name[:-len(".whl")].split("-")[-3:]
    pythons, abi, platforms = (t.split(".") for t in tags)
    cp = "cp" + python.replace(".", "")
    if not any(p in ("py3", "py2", cp) or (abi == ["abi3"] and p.startswith("cp3") and int(p[3:]) <= int(cp[3:]))
               for p in pythons):
        return False
    return any(p == "any" or (re.match(r"(many)?linux", p) and p.endswith("x86_64")) for p in platforms)


def size_of(packages: tuple[str, ...], python: str) -> tuple[int, list[tuple[str, int]]]:
    with tempfile.TemporaryDirectory() as folder:
        deps = ", ".join(f'"{p}"' for p in packages)
        (Path(folder) / "pyproject.toml").write_text(
            f'[project]\nname = "sizes"\nversion = "0"\nrequires-python = "=={python}.*"\ndependencies = [{deps}]\n'
            f'[tool.uv]\nenvironments = ["{PLATFORM}"]\n')
        # The lock needs an interpreter of that version; this machine's, never a downloaded one.
        interpreter = Interpreters().resolve(python).path
        subprocess.run(["uv", "lock", "-q", "--python", interpreter], cwd=folder, check=True,
                       env={**os.environ, "UV_PYTHON_DOWNLOADS": "never"})
        lock = tomllib.loads((Path(folder) / "uv.lock").read_text())
    rows = []
    for package in lock["package"]:
        if package["name"] == "sizes":
            continue
        wheels = [w for w in package.get("wheels", []) if _fits(w["url"], python)]
        if wheels:
            rows.append((f"{package['name']}=={package['version']}", wheels[0]["size"]))
        elif package.get("sdist"):
            rows.append((f"{package['name']}=={package['version']} (sdist)", package["sdist"].get("size", 0)))
    return sum(size for _name, size in rows), sorted(rows, key=lambda r: -r[1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--only", default="")
    args = parser.parse_args()
    only = {n.strip().upper() for n in args.only.split(",") if n.strip()}
    for framework in FRAMEWORKS.values():
        if only and framework.id not in only:
            continue
        total, rows = size_of(framework.packages, framework.python)
        largest = ", ".join(f"{name} {size / 1e6:.0f} MB" for name, size in rows[:3])
        print(f"{framework.id:22} {total / 1e6:8.0f} MB  {len(rows):3} packages  (largest: {largest})", flush=True)


if __name__ == "__main__":
    main()
