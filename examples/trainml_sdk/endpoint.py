"""trainML's endpoint SDK example, unchanged but for the import line (`from trainml.trainml import TrainML`).

It asks for an RTX 3090 as trainML's example does: run it on a machine with one, or declare one for a try-out
(`trainml server run --gpus 0:rtx3090`). On a machine without it the control plane refuses the job and says
what it found. The model is examples/sentiment, uploaded from this checkout (trainML's `source_type: local`).

    python examples/trainml_sdk/endpoint.py
"""

import asyncio
import json
import os
import urllib.request

from trainml_cli import TrainML

trainml_client = TrainML()

MODEL_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sentiment")


async def create_endpoint():
    job = await trainml_client.jobs.create(
        name="Endpoint Example",
        type="endpoint",
        gpu_type="RTX 3090",
        gpu_count=1,
        disk_size=10,
        model=dict(source_type="local", source_uri=MODEL_DIR),
        endpoint=dict(
            routes=[
                dict(
                    path="/predict",
                    verb="POST",
                    function="predict",
                    file="predict",
                    positional=True,
                    body=[dict(name="text", type="str")],
                )
            ],
        ),
    )
    print(job.id, job.name, job.status)
    await job.wait_for("running")
    url = await job.connect()
    print("Endpoint is running at:", url)
    request = urllib.request.Request(
        url + "/predict",
        data=json.dumps(dict(text="what a great movie")).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request) as response:
        print(json.loads(response.read()))
    await job.refresh()
    print(job.dict["status"])
    await job.stop()
    await job.remove()
    return job


if __name__ == "__main__":
    asyncio.run(create_endpoint())
