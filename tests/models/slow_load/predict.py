"""A slow model load: import blocks until the gate file (next to this file's dir, in the cwd) exists."""

import os
import time

GATE = os.environ["TEST_LOAD_GATE"]
while not os.path.exists(GATE):
    time.sleep(0.02)


def predict(text):
    return {"loaded": text}
