"""Dashboard tests: every call prints a line (so the logs view has something new to show) and echoes its input."""


def echo(text, times=1):
    print(f"echo called with {text!r}", flush=True)
    return {"echo": text * times}
