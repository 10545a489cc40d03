"""CLI tests: a model with a body route and a query route; prints one line at import so logs have content."""

print("cli_echo model loaded", flush=True)


def echo(text, times=1):
    return {"echo": text * times}


def add(a, b):
    return {"sum": a + b}
