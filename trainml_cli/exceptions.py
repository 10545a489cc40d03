"""trainML's exception names, so `from trainml.exceptions import ApiError` becomes `from trainml_cli.exceptions
import ApiError` and its `except` clauses hold. Each is one of errors.py's classes (one root, TrainMLError):

    try:
        job = await client.jobs.get(name)
    except ApiError as e:
        if e.status == 404: ...          # every error carries its HTTP status

`ApiError` and `TrainMLException` are the root, so they catch every failure the SDK raises; `JobError` is a
failed job (status "failed"), `SpecificationError` a usage error (`attribute`: the field), `ConnectionError`
a control plane or endpoint that cannot be reached. `ModelError` keeps this package's meaning (the model's
function raised during a call): a stored model here never fails after create. trainML's names for features
that do not exist here (datasets, checkpoints, volumes, CloudBender) are classes nothing raises.
"""

from __future__ import annotations

from .errors import JobFailed, ModelError, TrainMLError, Unavailable, UsageError

TrainMLException = TrainMLError
ApiError = TrainMLError
SpecificationError = UsageError
JobError = JobFailed
ConnectionError = Unavailable  # noqa: A001 (trainML's name)


class DatasetError(TrainMLError):
    """trainML's; datasets are not a feature here, so nothing raises it."""


class CheckpointError(TrainMLError):
    """trainML's; checkpoints are not a feature here, so nothing raises it."""


class VolumeError(TrainMLError):
    """trainML's; volumes are not a feature here, so nothing raises it."""


class NodeError(TrainMLError):
    """trainML's (CloudBender); nothing raises it here."""


class ProviderError(TrainMLError):
    """trainML's (CloudBender); nothing raises it here."""


class RegionError(TrainMLError):
    """trainML's (CloudBender); nothing raises it here."""


__all__ = ["TrainMLException", "ApiError", "SpecificationError", "JobError", "ModelError", "ConnectionError",
           "DatasetError", "CheckpointError", "VolumeError", "NodeError", "ProviderError", "RegionError"]
