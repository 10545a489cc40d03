"""Model code whose import fails 30 calls deep: its traceback is longer than the last lines a failure reason quotes."""


def descend(depth):
    if depth == 0:
        raise ValueError("deep_import_error: the weights file is missing")
    descend(depth - 1)


descend(30)


def predict(text):
    return text
