"""trainml_cli: turn a folder of Python model code into a production REST endpoint.

Public surface: `TrainML` (the async SDK client), `JobStatus`, the error classes, and `__version__`.
The SDK is imported on first use so that `import trainml_cli` stays cheap for the CLI.
"""

from .errors import (
    Ambiguous,
    Conflict,
    JobFailed,
    ModelCodeError,
    NotFound,
    RouteSpecError,
    ServerError,
    TrainMLError,
    Unauthorized,
    Unavailable,
    UsageError,
    WaitTimeout,
)
from .states import JobStatus

__version__ = "0.1.0"

__all__ = [
    "TrainML",
    "JobStatus",
    "TrainMLError",
    "UsageError",
    "RouteSpecError",
    "NotFound",
    "Conflict",
    "Ambiguous",
    "Unauthorized",
    "ServerError",
    "Unavailable",
    "JobFailed",
    "WaitTimeout",
    "ModelCodeError",
    "__version__",
]


def __getattr__(name):
    if name == "TrainML":
        from .sdk.client import TrainML

        return TrainML
    raise AttributeError(f"module 'trainml_cli' has no attribute {name!r}")
