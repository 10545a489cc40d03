"""A new revision's GPUs (server/resources.py's pool, server/takeover.py): beside the serving revision's when
enough are free, or the serving revision's own once it stops (recreate); the old ones are freed when it has."""

from __future__ import annotations

import asyncio

import pytest

from trainml_cli.server.resources import Gpu, GpuPool
from trainml_cli.server.takeover import describe_gpus

ONE = {"gpu_types": ["rtx3090"], "gpu_count": 1}
TWO = {"gpu_types": ["rtx3090"], "gpu_count": 2}


def pool(count: int) -> GpuPool:
    return GpuPool([Gpu(str(i), "NVIDIA GeForce RTX 3090") for i in range(count)])


def test_blue_green_takes_free_gpus_of_its_own_and_the_old_ones_are_freed_at_the_hand_over():
    gpus = pool(2)
    assert [g["index"] for g in gpus.try_take("job", ONE)] == ["0"]
    new = gpus.try_take("job/r2", ONE)
    assert [g["index"] for g in new] == ["1"]
    assert gpus.holders == {"0": "job", "1": "job/r2"}  # both run during the switch
    asyncio.run(gpus.hand_over("job", new))
    assert gpus.holders == {"1": "job"}


def test_gpus_free_only_once_the_serving_revision_stops_are_counted_only_for_a_recreate():
    gpus = pool(2)
    gpus.try_take("job", ONE)
    assert not gpus.can_take(TWO)  # blue-green: GPU 0 is the serving revision's
    assert gpus.can_take(TWO, mine="job")
    new = gpus.try_take("job/r2", TWO, mine="job")
    assert sorted(g["index"] for g in new) == ["0", "1"]
    assert gpus.holders == {"0": "job", "1": "job/r2"}  # GPU 0 stays the job's until the switch is done
    asyncio.run(gpus.hand_over("job", new))
    assert gpus.holders == {"0": "job", "1": "job"}


def test_a_revision_that_did_not_take_over_gives_back_only_what_it_took():
    gpus = pool(3)
    gpus.try_take("job", ONE)
    gpus.try_take("job/r2", TWO, mine="job")
    asyncio.run(gpus.release("job/r2"))
    assert gpus.holders == {"0": "job"}


def test_other_jobs_gpus_are_never_counted_and_a_waiting_job_gets_those_a_hand_over_frees():
    async def scenario():
        gpus = pool(2)
        gpus.try_take("job", ONE)
        gpus.try_take("other", ONE)
        assert not gpus.can_take(ONE, mine="nobody")
        waiter = asyncio.create_task(gpus.acquire("waiting", ONE))
        await asyncio.sleep(0.01)
        assert not waiter.done()
        new = gpus.try_take("job/r2", {"gpu_types": ["cpu"], "gpu_count": 0})
        assert new == []
        await gpus.hand_over("job", new)  # the job now runs without GPUs: GPU 0 goes to the waiting job
        assert [g["index"] for g in await asyncio.wait_for(waiter, 10)] == ["0"]

    asyncio.run(scenario())


@pytest.mark.parametrize("resources, shown", [(ONE, "1 x rtx3090"), (TWO, "2 x rtx3090"),
                                              ({"gpu_types": ["cpu"], "gpu_count": 0}, "none"),
                                              ({"gpu_types": ["a100", "h100"], "gpu_count": 0.5}, "0.5 x a100|h100")])
def test_job_revisions_shows_each_revisions_gpus(resources, shown):
    assert describe_gpus(resources) == shown
