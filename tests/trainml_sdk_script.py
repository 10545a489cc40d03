"""trainML SDK code as trainML's README and examples write it, but for the import lines; tests/test_trainml_compat.py
runs it against a real control plane and reads what it prints (one `key value` line per step).

    python tests/trainml_sdk_script.py MODEL_DIR ROUTE_JSON
"""

import asyncio
import json
import sys

from trainml_cli import TrainML
from trainml_cli.exceptions import ApiError

trainml = TrainML(user="user field from credentials.json", key="key field from credentials.json", project="P1")


async def model_example(model_dir):
    model = await trainml.models.create("trainml-style-model", "local", model_dir)
    await model.connect()
    await model.attach()
    await model.wait_for("ready")
    print("model", model.status)
    return model


async def endpoint_example(model_dir, route):
    job = await trainml.jobs.create(
        "trainml-style-endpoint",
        "endpoint",
        gpu_type="rtx3090",
        gpu_count=1,
        disk_size=10,
        worker_commands=[],
        model=dict(source_type="local", source_uri=model_dir),
        endpoint=dict(routes=[route]),
    )
    print("type", job.type)
    await job.wait_for("waiting for data/model download")
    print("download", "reached")
    await job.connect()
    await job.wait_for("running")
    await job.wait_for("waiting for resources")  # long passed: returns at once
    print("running", job.status)
    print("str", json.loads(str(job))["name"])
    messages = []
    attached = asyncio.create_task(job.attach(msg_handler=messages.append))
    stopped = await job.stop()
    print("stop returns the job", stopped is job, job.status)
    await asyncio.wait_for(attached, 60)
    print("message keys", ",".join(sorted(messages[0])))
    print("message types", ",".join(sorted({type(m["time"]).__name__ for m in messages})))
    started = await job.start()
    print("start returns the job", started is job)
    await job.wait_for("running")
    return job


async def main(model_dir, route):
    model = await model_example(model_dir)
    job = await endpoint_example(model_dir, route)
    environments = await trainml.environments.list()
    print("environments", type(environments).__name__, environments[0].name, environments[0].py_version)
    gpu_types = await trainml.gpu_types.list()
    print("gpu types", ",".join(f"{g.id}:{g.credits_per_hour_max}" for g in gpu_types if g.id == "rtx3090"))
    await trainml.jobs.remove(job.id)  # running: trainML's jobs.remove forces
    await job.wait_for("archived")
    try:
        await trainml.jobs.get(job.id)
    except ApiError as e:
        if e.status == 404:
            print("job", "archived")
        else:
            raise e
    await model.remove(force=True)
    await model.wait_for("archived")
    print("model", "archived")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2])))
