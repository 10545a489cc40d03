"""A PEP 517 backend that takes ten minutes: the installer is still running when the test removes the job."""

import time


def get_requires_for_build_wheel(config_settings=None):
    time.sleep(600)
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    time.sleep(600)
    raise RuntimeError("never built")
