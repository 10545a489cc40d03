"""The trivial function both servers call in bench/throughput.py."""

import time


def predict(text, n):
    return {"text": text, "n": n}


def slow(text):
    time.sleep(0.05)
    return {"text": text}
