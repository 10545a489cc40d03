"""Fails at import, as a model whose weights file is missing would."""

import helper_that_does_not_exist  # noqa: F401


def predict(text):
    return text
