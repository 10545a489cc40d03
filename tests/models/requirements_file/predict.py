"""Imports tabulate, which its requirements.txt names (the platform's own Python does not have it)."""

import tabulate


def version():
    return {"tabulate": tabulate.__version__}
