"""Blocks until the test creates the gate file named in the request, so saturation is deterministic."""

import os
import time


def wait(gate, seconds=0.0, started=None):
    if started:  # tells the test this call is running (its request read and admitted)
        open(started, "w").close()
    while not os.path.exists(gate):
        time.sleep(0.01)
    time.sleep(seconds)
    return {"released": gate}


def sleep(seconds):
    time.sleep(seconds)
    return {"slept": seconds}
