"""Scaling to zero on the Ray backend, its pure parts: the job's settings as Serve's autoscaling_config, and the
scale `job get` shows from the replicas Serve reports. Serve holding a call while a replica starts is in
tests/test_ray.py, on the two-node cluster."""

from __future__ import annotations

from pathlib import Path

from trainml_cli.launchspec import LaunchSpec
from trainml_cli.replicaspec import check_scaling, serve_autoscaling
from trainml_cli.server.backends.base import Launch, Scaling
from trainml_cli.server.backends.ray import RayBackend
from trainml_cli.server.backends.rayapps import scale_summary
from trainml_cli.server.backends.rayhead import RayOptions


def test_min_zero_is_serve_min_zero_started_with_one_and_the_idle_timeout_is_the_delay_to_zero():
    spec = check_scaling({"min_replicas": 0, "max_replicas": 3, "idle_timeout": 7})
    config = serve_autoscaling(spec)
    assert {k: config[k] for k in ("min_replicas", "initial_replicas", "max_replicas", "downscale_to_zero_delay_s",
                                   "downscale_delay_s")} == {
        "min_replicas": 0, "initial_replicas": 1, "max_replicas": 3, "downscale_to_zero_delay_s": 7,
        "downscale_delay_s": 600.0}
    # Without --idle-timeout, the local backend's default; and no delay to zero for a job that keeps one.
    assert serve_autoscaling(check_scaling({"min_replicas": 0}))["downscale_to_zero_delay_s"] == 300.0
    assert serve_autoscaling(check_scaling({"min_replicas": 0}))["max_replicas"] == 1
    assert "downscale_to_zero_delay_s" not in serve_autoscaling(check_scaling({"min_replicas": 1, "idle_timeout": 7}))


def test_the_ray_backend_takes_min_replicas_zero():
    backend = RayBackend(RayOptions("http://127.0.0.1:9"))  # nothing is asked of the head for this check
    backend.check_features({"min_replicas": 0, "max_replicas": 2}, False, {})


def _launch(**endpoint) -> Launch:
    return Launch("j1", LaunchSpec(model_dir=Path("m"), route_file=Path("r")), {},
                  scaling=Scaling.of(check_scaling(endpoint)))


def test_job_get_shows_the_replicas_serve_runs_now_and_the_bounds_down_to_zero():
    launch = _launch(min_replicas=0, max_replicas=2)
    assert scale_summary(launch, []) == {"replicas": 0, "min_replicas": 0, "max_replicas": 2, "scaled_to_zero": True,
                                         "cold_start_ms": None, "decision": None}
    starting = [{"replica_id": "a", "state": "RUNNING"}, {"replica_id": "b", "state": "STARTING"}]
    assert scale_summary(launch, starting)["replicas"] == 1 and not scale_summary(launch, starting)["scaled_to_zero"]
    assert scale_summary(launch, None) is None  # Serve has not reported yet
    assert scale_summary(_launch(replicas=2), []) is None  # a fixed number is not scaled
