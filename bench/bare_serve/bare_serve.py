"""bench/ray.py's baseline: a plain Ray Serve deployment answering the bench route's JSON, no trainml code.

Shipped alone in a package of its own (its folder is the application's working_dir), deployed next to our
endpoint on the same cluster with the same replicas and limits, so that `bench/ray.py` measures what our runtime
costs on Ray apart from what Serve itself costs.
"""

from starlette.requests import Request

from ray import serve


@serve.deployment(name="bare")
class Bare:
    async def __call__(self, request: Request):
        body = await request.json()
        return {"text": body["text"], "n": body["n"]}  # Serve answers a dict as JSON


def build(args: dict):
    return Bare.options(**args.get("deployment", {})).bind()
