"""Control plane tests: echoes its input, and prints a line per call so log tests can follow it."""

print("echo model loaded", flush=True)


def predict(text):
    print(f"predict called with {text}", flush=True)
    return {"echo": text}
