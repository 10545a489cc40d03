"""Imports MXNet, as model code written for trainML's MXNET_PY39_19 image does: it loads only when the
environment name brought the framework."""

import platform

import mxnet as mx
import numpy


def total(values: list):
    return {"sum": float(mx.nd.array(values).sum().asscalar()), "mxnet": mx.__version__,
            "numpy": numpy.__version__, "python": platform.python_version()}
