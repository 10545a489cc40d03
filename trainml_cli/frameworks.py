"""trainML's environment names, one table: the Python each names and the framework packages it adds here.

trainML ran a job in a prebuilt image (`--environment PYTORCH_PY39_113`: PyTorch 1.13 on Python 3.9, CUDA
included). Here there are no images: the name picks the Python it names (when this machine has it) and adds
the image's framework as pip requirements of the job's own environment, built once with uv and shared. The
CLI (`--environment`, `trainml environment list`), the SDK (`client.environments.list()`), the API
(`GET /api/environments`: `trainml`) and the manual (docs/environments.md, its table of sizes checked by a
test) all read this table. Stdlib only: the CLI imports it on start.

`download` is what a build downloads on x86_64 Linux with an empty uv cache (every wheel of the resolved
set, measured with `python3 bench/framework_sizes.py`); the CUDA wheels of PyTorch are most of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Common libraries of trainML's Deep Learning images. numpy stays below 2: the frameworks of these releases were
# built against numpy 1.
_DEEPLEARNING_COMMON = ("numpy<2", "scipy", "pandas", "scikit-learn", "pillow")


@dataclass(frozen=True)
class Framework:
    """One trainML environment name and what it means here."""

    id: str                     # trainML's name, upper case (names are matched in any case)
    framework: str              # trainML's framework field: "PyTorch", "Tensorflow", "MXNet", "Deep Learning"
    version: str | None         # the framework's version, as trainML lists it (None: several frameworks)
    python: str                 # the Python version the name asks for
    packages: tuple[str, ...]   # the pip requirements it adds to the job's environment
    download: str               # what a build downloads (see the module's docstring)

    @property
    def name(self) -> str:
        """trainML's display name: 'PyTorch 1.13 - Python 3.9'."""
        what = f"{self.framework} {self.version}" if self.version else self.framework
        return f"{what} - Python {self.python}"

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "py_version": self.python, "framework": self.framework,
                "version": self.version, "cuda_version": None, "packages": list(self.packages),
                "download": self.download}


FRAMEWORKS: dict[str, Framework] = {f.id: f for f in (
    Framework("DEEPLEARNING_PY39", "Deep Learning", None, "3.9",
              ("torch==1.13.*", "tensorflow==2.11.*", *_DEEPLEARNING_COMMON), "2.5 GB"),
    Framework("DEEPLEARNING_PY310", "Deep Learning", None, "3.10",
              ("torch==2.3.*", "tensorflow==2.15.*", *_DEEPLEARNING_COMMON), "3.5 GB"),
    Framework("PYTORCH_PY39_20", "PyTorch", "2.0", "3.9", ("torch==2.0.*",), "2.3 GB"),
    Framework("PYTORCH_PY39_113", "PyTorch", "1.13", "3.9", ("torch==1.13.*",), "1.8 GB"),
    Framework("PYTORCH_PY39_112", "PyTorch", "1.12", "3.9", ("torch==1.12.*",), "0.8 GB"),
    Framework("TENSORFLOW_PY39_212", "Tensorflow", "2.12", "3.9", ("tensorflow==2.12.*",), "0.8 GB"),
    Framework("TENSORFLOW_PY39_211", "Tensorflow", "2.11", "3.9", ("tensorflow==2.11.*", "numpy<2"), "0.7 GB"),
    Framework("TENSORFLOW_PY39_210", "Tensorflow", "2.10", "3.9", ("tensorflow==2.10.*", "numpy<2"), "0.7 GB"),
    # TensorFlow before 2.12 leaves numpy unbounded but was built against numpy 1: it fails to import beside 2.
    # MXNet 1.9 still uses numpy's removed aliases (np.bool): it imports only beside numpy before 1.24.
    Framework("MXNET_PY39_19", "MXNet", "1.9", "3.9", ("mxnet==1.9.*", "numpy<1.24"), "67 MB"),
)}

# An environment name as trainML spells them (any case here): DEEPLEARNING_PY310, PYTORCH_PY39_113 ...
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*$")
_PYTHON = re.compile(r"_PY(\d)(\d{1,2})(?:_|$)")


def find(name: str) -> Framework | None:
    """The table's entry for a name in any case, or None for a name trainML does not list."""
    return FRAMEWORKS.get(name.upper())


def python_of(name: str) -> str | None:
    """The Python version a name asks for ('DEEPLEARNING_PY310' -> '3.10'), also for names not in the table."""
    known = find(name)
    if known is not None:
        return known.python
    match = _PYTHON.search(name.upper())
    return f"{match[1]}.{match[2]}" if match else None
