"""What an endpoint's Python needs to run the runtime (not the CLI or control plane); environments install exactly
these.

A leaf with no imports, since the control plane, which never imports the runtime, reads it to build an endpoint's
environment; setup.cfg's install_requires holds the same lines (tests/test_environments.py checks they agree).
"""

RUNTIME_REQUIREMENTS = (
    "uvicorn>=0.23",
    "uvloop>=0.17; sys_platform != 'win32'",  # uvicorn picks uvloop and httptools up when present: the fast path
    "httptools>=0.5",
    "pydantic>=2.4",
    "jsonschema>=4",  # the route spec checks the route file at start, as every other part does
    "prometheus_client>=0.17",  # /metrics, summed over worker processes
)
