"""The async SDK: `TrainML` (client.py) with `jobs` (jobs.py; a job's payload in jobpayload.py, its log in
joblogs.py, its revisions in revisions.py, its captured calls in captures.py, trainML's waits in waits.py),
`models` (models.py), `environments`
(environments.py), `secrets` (secrets.py) and `gpus` / `gpu_types` (gpus.py), over HTTP (http.py) to a control
plane it finds or starts (autostart.py); calls with files send multipart bodies from disk (forms.py). Imports only
the shared leaves and requests."""

from ..states import JobStatus
from .client import TrainML

__all__ = ["TrainML", "JobStatus"]
