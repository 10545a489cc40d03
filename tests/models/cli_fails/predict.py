"""CLI tests: model code that prints a line and then fails at import, so the job fails with a reason and logs."""

print("cli_fails: about to fail", flush=True)
raise RuntimeError("cli_fails refuses to load")


def predict(text):
    return text
