"""Ray tests: says which process answered, and prints a line per call so log tests can follow it."""

import os

print("replica model loaded", flush=True)


def predict(text):
    print(f"replica {os.getpid()} called with {text}", flush=True)
    return {"pid": os.getpid(), "text": text}
