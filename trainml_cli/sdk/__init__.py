"""The async SDK: `TrainML` (client.py) with `jobs` (jobs.py), `models` (models.py), `environments`
(environments.py), `secrets` (secrets.py) and `gpus` (gpus.py), over HTTP (http.py) to a control plane it finds
or starts (autostart.py); calls with files send multipart bodies from disk (forms.py). Imports only the shared
leaves and requests."""

from ..states import JobStatus
from .client import TrainML

__all__ = ["TrainML", "JobStatus"]
