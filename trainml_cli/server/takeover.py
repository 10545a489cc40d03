"""What a new revision takes over from the serving one besides its code: its GPUs and the endpoint key.

GPUs (the local backend's pool). With the default strategy, `blue-green`, the new revision starts beside the
serving one, so it needs GPUs of its own: they are taken under the revision's own holder name
(`JOB/rN`) before it starts, become the job's when it serves, and the serving revision's are freed once its
process has exited. When they are free only once the serving revision stops, the update is refused (409)
saying which GPUs are missing, unless the strategy is `recreate`: the serving revision stops first, its GPUs
count as free for the new one, and calls wait in the job's socket backlog while the new one loads (the
downtime, measured and reported). A revision that does not take over gives back what it took; the serving
revision keeps its own throughout.

The endpoint key. Turning `auth` on makes a key, written to the job's key file (which the serving revision,
started without `--key-file`, never reads) and handed to the new revision only; it goes into the job's record
once the revision serves, so `job update` shows it as `job create` does. Turning it off starts the new revision
without the key file, and drops the key (record and file) once the old process, which still checked it, has
exited. So a caller that sends the key gets an answer from either revision during the switch. A key that was
dropped never comes back: a rollback to a revision with auth makes a new one.

On Ray, Ray places GPUs (no pool here): a change of GPUs is the new revision's deployment options, and Serve's
rolling update starts its replicas with them (backends/rayrollout.py); the key is written and dropped as above, and
travels in the revision's package. `recreate` is refused there (409): an update on Ray is Serve's rolling update.
"""

from __future__ import annotations

from ..contracts import STRATEGIES
from ..errors import Conflict
from . import endpointkeys
from .resources import CPU_TYPE, gpus_needed

DEFAULT_STRATEGY = STRATEGIES[0]


def describe_gpus(resources: dict) -> str:
    """`1 x rtx3090`, `2 x rtx3090|a100`, or `none`, for `job revisions`."""
    need = gpus_needed(resources)
    if not need:
        return "none"
    types = [t for t in resources["gpu_types"] if t != CPU_TYPE]
    return f"{need:g} x {'|'.join(types)}"


def gpu_spec(resources: dict) -> tuple:
    return gpus_needed(resources), sorted(t for t in resources["gpu_types"] if t != CPU_TYPE)


class Takeover:
    """One revision's GPUs and key across a switch: `check` (before anything is created), `prepare` (before it
    starts), then `commit` once it serves or `undo` when it did not."""

    def __init__(self, jobs, job, number: int, spec: dict, serving_spec: dict, strategy: str | None):
        self.jobs, self.job, self.number = jobs, job, number
        self.strategy = strategy or DEFAULT_STRATEGY
        if self.strategy not in STRATEGIES:
            raise Conflict(f"strategy {self.strategy!r} is not one of {', '.join(STRATEGIES)}")
        self.resources = spec["resources"]
        self.auth = bool(spec["endpoint"].get("auth"))
        self.was_auth = bool(job.secrets.get(endpointkeys.SECRET))
        self.gpus_change = gpu_spec(self.resources) != gpu_spec(serving_spec["resources"])
        self.pool = getattr(jobs.backend, "pool", None)  # the local backend's; Ray places GPUs itself
        self.holder = f"{job.id}/r{number}"
        self.gpus: list[dict] | None = None
        self.key: str | None = None

    # -- before --------------------------------------------------------------------------------------------------

    def check(self) -> None:
        """Refuse (409) what cannot be done, before anything is created."""
        if self.pool is None:
            self._refuse_on_ray()
            return
        if self.pool.can_take(self.resources):
            return
        need, types = gpu_spec(self.resources)
        kind = " or ".join(types)
        free = sum(1 for g in self.pool.gpus if g.index not in self.pool.holders)
        held = ", ".join(f"GPU {index}" for index in sorted(self.pool.held_by(self.job.id))) or "no GPU"
        if self.pool.can_take(self.resources, mine=self.job.id):
            if self.strategy == "recreate":
                return
            raise Conflict(f"revision {self.number} needs {need:g} GPU(s) of type {kind} beside the serving "
                           f"revision, which holds {held}; {free} GPU(s) of this machine are free, so the GPUs it "
                           "needs are free only once the serving revision stops: give --strategy recreate to stop "
                           "it first (calls wait until the new revision has loaded)")
        raise Conflict(f"revision {self.number} needs {need:g} GPU(s) of type {kind}, and other jobs hold them "
                       f"({free} of this machine's GPUs are free; the job holds {held}); stop one, or see "
                       "trainml gpu list")

    def _refuse_on_ray(self) -> None:
        backend = self.jobs.backend.name
        if self.strategy == "recreate":
            raise Conflict(f"--strategy recreate is not built on the {backend} backend yet; an update there is "
                           "Serve's rolling update")

    def prepare(self) -> list[dict]:
        """Take the revision's GPUs (raising Conflict as `check` does if they went meanwhile) and write a new key
        when auth turns on; returns the GPUs it runs on."""
        self.check()
        if self.pool is None:
            self.gpus = self.job.gpus
        else:
            mine = self.job.id if self.strategy == "recreate" else None
            self.gpus = self.pool.try_take(self.holder, self.resources, mine=mine)
            if self.gpus is None:
                self.check()  # taken between the two looks: say why
                raise Conflict(f"the GPUs revision {self.number} needs are taken")
        if self.auth and not self.was_auth:
            self.key = endpointkeys.new_key()
            endpointkeys.write_key(self.jobs.workdir(self.job.id), self.key)
        return self.gpus

    def fit(self, launch) -> None:
        """The revision's launch reads the key file only when it has auth (the job's record may say otherwise
        until it serves)."""
        if self.auth:
            launch.runtime.key_file = str(self.jobs.workdir(self.job.id) / endpointkeys.KEY_FILE)
        else:
            launch.runtime.key_file = None

    # -- after ---------------------------------------------------------------------------------------------------

    async def commit(self) -> None:
        """The revision serves and the old process has exited: the GPUs and the key are the job's as it says."""
        jobs, job_id = self.jobs, self.job.id
        if self.pool is not None:
            await self.pool.hand_over(job_id, self.gpus)
        fields: dict = {"gpus": self.gpus}
        secrets = dict(jobs.store.job(job_id).secrets)
        if self.key is not None:
            secrets[endpointkeys.SECRET] = self.key
            fields["secrets"] = secrets
            jobs.logs.event(job_id, f"revision {self.number} requires an endpoint key (trainml job connect shows it)")
        elif not self.auth and self.was_auth:
            secrets.pop(endpointkeys.SECRET, None)
            fields["secrets"] = secrets
            (jobs.workdir(job_id) / endpointkeys.KEY_FILE).unlink(missing_ok=True)
            jobs.logs.event(job_id, f"revision {self.number} needs no endpoint key; the key was dropped")
        if self.gpus_change:
            jobs.bill(job_id, False)  # the run so far at the old rate; from now at the new one
            jobs.store.update_job(job_id, **fields)
            jobs.bill(job_id, True)
        else:
            jobs.store.update_job(job_id, **fields)

    async def undo(self) -> None:
        """The revision did not take over: give back what it took; the serving revision keeps its own."""
        if self.pool is not None:
            await self.pool.release(self.holder)
        if self.key is not None:
            (self.jobs.workdir(self.job.id) / endpointkeys.KEY_FILE).unlink(missing_ok=True)
