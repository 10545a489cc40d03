"""A job scaled to zero holds no GPU (server/backends/gpulease.py): its leader's scale file says where it stands, the
control plane's pool follows; in process, with the scale file written as the leader writes it."""

from __future__ import annotations

import asyncio

import pytest

from trainml_cli.contracts import GPU_GRANT_FILE, ScaleState, take_grant, write_scale
from trainml_cli.launchspec import LaunchSpec
from trainml_cli.server.backends import gpulease
from trainml_cli.server.backends.base import Launch
from trainml_cli.server.resources import Gpu, GpuPool

pytestmark = pytest.mark.anyio

ONE = {"gpu_types": ["rtx3090"], "gpu_count": 1}
WORKER = [{"pid": 1, "state": "RUNNING"}]


class Job:
    """What the control plane keeps of the job: its log and the GPUs its record shows."""

    def __init__(self):
        self.events: list[str] = []
        self.shown: list | None = None

    def event(self, message: str) -> None:
        self.events.append(message)

    def gpus(self, gpus: list) -> None:
        self.shown = gpus


def one_gpu_job(tmp_path):
    """A machine with one GPU, and a job on it that may scale to zero: (the pool, its scale file, its launch)."""
    scale = tmp_path / "scale.json"
    launch = Launch("job", LaunchSpec(model_dir=str(tmp_path), scale_file=str(scale), min_workers=0), env={},
                    resources=ONE)
    return GpuPool([Gpu("0", "NVIDIA GeForce RTX 3090")]), scale, launch


async def until(check, what: str):
    for _ in range(400):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


async def test_a_job_at_zero_gives_its_gpu_back_and_gets_one_when_a_call_wakes_it(tmp_path):
    pool, scale, launch = one_gpu_job(tmp_path)
    assert gpulease.needs_lease(launch)
    pool.try_take("job", ONE)  # placed at launch, as any job
    job = Job()
    follow = asyncio.create_task(gpulease.follow(pool, launch, job, adopted=False))
    try:
        write_scale(scale, ScaleState(workers=WORKER))
        await asyncio.sleep(0.2)
        assert pool.holders == {"0": "job"}  # a worker runs: it keeps its GPU

        write_scale(scale, ScaleState(workers=[]))
        await until(lambda: not pool.holders, "the GPU back in the pool at zero")
        assert job.shown == [] and "back to the pool" in job.events[-1]

        assert pool.try_take("other", ONE) is not None  # another job takes it
        write_scale(scale, ScaleState(workers=[], wants_gpus=True))  # a call wakes the first one
        await until(lambda: any("waiting for 1 free GPU" in e for e in job.events), "the wake to wait")
        assert not (tmp_path / GPU_GRANT_FILE).exists()

        await pool.release("other")
        await until(lambda: (tmp_path / GPU_GRANT_FILE).exists(), "the GPU handed back once free")
        assert take_grant(tmp_path / GPU_GRANT_FILE) == "0" and pool.holders == {"0": "job"}
        assert [g["index"] for g in job.shown] == ["0"]
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)


async def test_a_wake_whose_calls_gave_up_takes_no_gpu(tmp_path):
    pool, scale, launch = one_gpu_job(tmp_path)
    pool.try_take("other", ONE)
    job = Job()
    follow = asyncio.create_task(gpulease.follow(pool, launch, job, adopted=True))
    try:
        write_scale(scale, ScaleState(workers=[], wants_gpus=True))
        await until(lambda: any("waiting" in e for e in job.events), "the wake to wait")
        write_scale(scale, ScaleState(workers=[]))  # past --cold-start-timeout: back to zero
        await asyncio.sleep(0.3)
        await pool.release("other")
        await asyncio.sleep(0.3)
        assert not pool.holders and not (tmp_path / GPU_GRANT_FILE).exists()
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)


async def test_a_grant_thrown_away_as_stale_by_the_next_wake_is_handed_again(tmp_path):
    # The GPU came free just as the held calls gave up, and a new call woke the leader before the control plane
    # looked again: the leader threw the grant away (written for calls that had gone) and waits for one, while the
    # pool counts the GPU as the job's. The wake must still get it, not wait out --cold-start-timeout.
    pool, scale, launch = one_gpu_job(tmp_path)
    pool.try_take("other", ONE)
    job = Job()
    follow = asyncio.create_task(gpulease.follow(pool, launch, job, adopted=True))
    grant = tmp_path / GPU_GRANT_FILE
    try:
        write_scale(scale, ScaleState(workers=[], wants_gpus=True))
        await until(lambda: any("waiting" in e for e in job.events), "the wake to wait")
        await pool.release("other")
        await until(grant.exists, "the GPU handed over once free")
        assert take_grant(grant) == "0"  # the next wake throws it away as stale ...
        write_scale(scale, ScaleState(workers=[], wants_gpus=True))  # ... and waits for a grant
        await until(grant.exists, "the same GPU handed again")
        assert take_grant(grant) == "0" and pool.holders == {"0": "job"}
    finally:
        follow.cancel()
        await asyncio.gather(follow, return_exceptions=True)


def test_only_autoscaled_jobs_that_may_sleep_on_gpus_lease_them(tmp_path):
    def launch(min_workers, resources):
        spec = LaunchSpec(model_dir=str(tmp_path), scale_file=str(tmp_path / "s"), min_workers=min_workers)
        return Launch("job", spec, env={}, resources=resources)

    assert not gpulease.needs_lease(launch(1, ONE))
    assert not gpulease.needs_lease(launch(0, {"gpu_types": ["cpu"], "gpu_count": 1}))
