"""Control plane tests: answers an environment variable (job env vars, CUDA_VISIBLE_DEVICES) or the whole
environment."""

import os


def getenv(name):
    return {"name": name, "value": os.environ.get(name)}


def environ():
    return dict(os.environ)
