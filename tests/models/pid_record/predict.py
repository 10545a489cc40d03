"""Autoscaling tests: records each process that imports it (one file per pid in $PID_RECORD_DIR), and calls
take a moment, so that they pile up under load."""

import os
import time
from pathlib import Path

_record = os.environ.get("PID_RECORD_DIR")
if _record:
    Path(_record, str(os.getpid())).write_text(str(time.time()))


def predict(text, seconds=0.0):
    time.sleep(float(seconds))
    return {"pid": os.getpid(), "text": text}
