"""Answers the modules its process has imported so far: what the runtime's start left out until it was needed."""

import sys


def loaded(text):
    return sorted(sys.modules)
