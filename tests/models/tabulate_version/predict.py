"""Answers with the version of tabulate it imported: a package the platform's own Python does not have."""

import tabulate


def version():
    return {"tabulate": tabulate.__version__}
