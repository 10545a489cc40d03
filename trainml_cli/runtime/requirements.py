"""What an endpoint's Python needs to run the runtime (not the CLI or control plane); environments install exactly these."""

RUNTIME_REQUIREMENTS = ("uvicorn[standard]>=0.23", "pydantic>=2.4", "prometheus_client>=0.17")
