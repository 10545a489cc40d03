"""Control plane tests: answers an environment variable, to check job env vars and CUDA_VISIBLE_DEVICES."""

import os


def getenv(name):
    return {"name": name, "value": os.environ.get(name)}
