"""The trivial function both servers call in bench/throughput.py."""

import time


def predict(text, n):
    return {"text": text, "n": n}


def slow(text):
    time.sleep(0.05)
    return {"text": text}


def spin(n):
    """CPU-bound (bench/coldstart.py's step of load): a second worker doubles what a machine with two cores does."""
    total = 0
    for i in range(n):
        total += i * i
    return {"total": total}
