"""The job payload's checks as plain functions: replicas and autoscaling (scaling.py), Ray's replica options
(actoroptions.py), resources, and check_job (server/payload.py) filling in what a job record keeps. Each refusal
names the field, as the API (422) and the CLI (exit 2) show it."""

from __future__ import annotations

import pytest

from trainml_cli.actoroptions import check_actor_options, parse_actor_options
from trainml_cli.errors import UsageError
from trainml_cli.replicaspec import check_scaling, describe, serve_autoscaling

ROUTE = {"verb": "POST", "path": "/predict", "file": "predict", "function": "predict",
         "body": [{"name": "text", "type": "str"}]}


def refusal(check, *args, **kwargs) -> UsageError:
    with pytest.raises(UsageError) as info:
        check(*args, **kwargs)
    return info.value


def option(key: str) -> str:
    return "--" + key.replace("_", "-")


@pytest.mark.parametrize("endpoint, message", [
    ({"replicas": 0}, "endpoint.replicas: 0 must be a whole number of at least 1"),
    ({"replicas": True}, "endpoint.replicas: True must be a whole number of at least 1"),
    ({"min_replicas": 1.5}, "endpoint.min_replicas: 1.5 must be a whole number of at least 0"),
    ({"min_replicas": -1}, "endpoint.min_replicas: -1 must be a whole number of at least 0"),
    ({"max_replicas": 0}, "endpoint.max_replicas: 0 must be a whole number of at least 1"),
    ({"min_replicas": 0, "cold_start_timeout": 0}, "endpoint.cold_start_timeout: 0 must be above 0 seconds"),
    ({"idle_timeout": 3}, "endpoint.idle_timeout: an autoscaling setting: give min_replicas and/or max_replicas too "
                          "(a fixed number of replicas is never scaled)"),
    ({"replicas": 2, "min_replicas": 1}, "endpoint.replicas: give either replicas (a fixed number) or "
                                         "min_replicas/max_replicas (autoscaling), not both"),
    ({"min_replicas": 3, "max_replicas": 2}, "endpoint.min_replicas: 3 is more than max_replicas (2)"),
    ({"upscale_delay": 5}, "endpoint.upscale_delay: an autoscaling setting: give min_replicas and/or max_replicas too "
                           "(a fixed number of replicas is never scaled)"),
    ({"max_replicas": 2, "upscale_delay": "soon"}, "endpoint.upscale_delay: 'soon' must be a number"),
    ({"max_replicas": 2, "downscale_delay": float("inf")}, "endpoint.downscale_delay: inf must be a number"),
    ({"max_replicas": 2, "downscale_delay": -1}, "endpoint.downscale_delay: -1 must be between 0 and 86400 seconds"),
    ({"max_replicas": 2, "target_ongoing": 0},
     "endpoint.target_ongoing: 0 must be above 0 (calls in flight per replica)"),
    ({"max_replicas": 2, "max_concurrency": 4, "target_ongoing": 5},
     "endpoint.target_ongoing: 5 is more than max_concurrency (4), the calls a replica takes at once: it would never "
     "be reached"),
], ids=["zero", "bool", "fraction", "negative-min", "zero-max", "zero-cold-start", "idle-without-autoscaling",
        "both", "min-over-max", "setting-without-autoscaling", "not-a-number",
        "infinite", "negative-delay", "zero-target", "target-over-concurrency"])
def test_each_scaling_problem_names_the_field(endpoint, message):
    error = refusal(check_scaling, endpoint)
    assert str(error) == message
    assert error.fields[0].loc[0] == "endpoint"


def test_the_cli_sees_its_own_option_names_in_the_same_messages():
    error = refusal(check_scaling, {"replicas": 2, "max_replicas": 3}, option)
    assert str(error) == ("--replicas: give either --replicas (a fixed number) or --min-replicas/--max-replicas "
                          "(autoscaling), not both")


def test_an_autoscaled_job_gets_the_default_settings_and_a_fixed_one_none():
    assert check_scaling({"min_replicas": 1, "max_replicas": 4, "max_concurrency": 8}) == {
        "replicas": None, "min_replicas": 1, "max_replicas": 4, "upscale_delay": 30.0, "downscale_delay": 600.0,
        "target_ongoing": 4, "idle_timeout": 300.0, "cold_start_timeout": 120.0}
    assert check_scaling({"replicas": 3}) == {"replicas": 3, "min_replicas": None, "max_replicas": None,
                                              "upscale_delay": None, "downscale_delay": None, "target_ongoing": None,
                                              "idle_timeout": None, "cold_start_timeout": None}
    assert check_scaling({"min_replicas": 0, "max_replicas": 1})["min_replicas"] == 0  # scale to zero


def test_serve_gets_its_own_autoscaling_keys_and_job_get_says_them():
    spec = check_scaling({"min_replicas": 2, "max_replicas": 5, "upscale_delay": 10, "target_ongoing": 3})
    assert serve_autoscaling(spec) == {"min_replicas": 2, "initial_replicas": 2, "max_replicas": 5,
                                       "upscale_delay_s": 10, "downscale_delay_s": 600.0, "target_ongoing_requests": 3}
    assert describe(spec) == ("2-5 autoscaled: aiming at 3 call(s) in flight per replica, adding one after 10s above "
                              "it, removing one after 600s below (Ray) or 300s (here)")
    assert describe(check_scaling({"min_replicas": 0, "max_replicas": 1})).endswith(
        "scaled to zero after 300s without calls, calls held while one starts")
    assert describe({"replicas": 3}) == "3" and describe({}) is None


@pytest.mark.parametrize("options, message", [
    ([1], "endpoint.ray_actor_options: must be a JSON object of Ray's replica options (memory, resources, "
          "accelerator_type, label_selector), not list"),
    ({"num_cpus": 2}, "endpoint.ray_actor_options.num_cpus: give --cpu-count (resources.cpu_count): CPUs per replica"),
    ({"num_gpus": 1}, "endpoint.ray_actor_options.num_gpus: give --gpu-count (resources.gpu_count): GPUs per replica"),
    ({"runtime_env": {}}, "endpoint.ray_actor_options.runtime_env: set by the control plane"),
    ({"memroy": 1}, "endpoint.ray_actor_options.memroy: not one of Ray Serve's replica options taken here: memory, "
                    "resources, accelerator_type, label_selector"),
    ({"memory": 0}, "endpoint.ray_actor_options.memory: 0 must be a number of bytes above 0"),
    ({"memory": "2G"}, "endpoint.ray_actor_options.memory: '2G' must be a number of bytes above 0"),
    ({"accelerator_type": " "}, "endpoint.ray_actor_options.accelerator_type: ' ' must be an accelerator type"),
    ({"resources": 3}, "endpoint.ray_actor_options.resources: must be an object of custom resource names and amounts"),
    ({"resources": {"GPU": 1}}, "endpoint.ray_actor_options.resources: 'GPU' is not a custom resource"),
    ({"resources": {"tpu": -1}}, "endpoint.ray_actor_options.resources: 'tpu': -1 must be a number of at least 0"),
    ({"label_selector": {"zone": 1}}, "endpoint.ray_actor_options.label_selector: must be an object of label names "
                                      "and values (strings)"),
], ids=["not-object", "num-cpus", "num-gpus", "runtime-env", "typo", "zero-memory", "memory-text", "blank-accelerator",
        "resources-not-object", "builtin-resource", "negative-amount", "label-not-string"])
def test_each_replica_option_problem_names_the_key(options, message):
    assert str(refusal(check_actor_options, options)).startswith(message)


def test_good_replica_options_pass_as_ray_takes_them():
    options = {"memory": 2 << 30, "resources": {"tpu": 0.5}, "accelerator_type": "A100",
               "label_selector": {"zone": "a"}}
    assert check_actor_options(options) == options
    assert check_actor_options(None) == {}
    assert parse_actor_options('{"memory": 1024}') == {"memory": 1024}
    assert str(refusal(parse_actor_options, "{memory: 1}")).startswith("endpoint.ray_actor_options: not JSON: ")


@pytest.mark.parametrize("resources, message", [
    ({"gpu_types": "   "}, "resources.gpu_types: '   ' must be a list of GPU type names, e.g. [\"cpu\"]"),
    ({"cpu_count": 0}, "resources.cpu_count: 0 is too small; CPU count must be a whole number, 1 or more"),
    ({"disk_size": "big"},
     "resources.disk_size: 'big' is not a whole number; disk size must be a whole number, 1 or more"),
    ({"max_price": -1}, "resources.max_price: -1 is too small; max price must be 0 or more (credits per hour)"),
    ({"gpu_types": ["rtx4090"], "gpu_count": 1, "max_price": 0.1},
     "resources.max_price: 0.1 credits/hour is below the price of rtx4090 (0.5 credits/hour per GPU)"),
], ids=["blank-gpu-type", "no-cpu", "disk-size", "negative-price", "below-gpu-price"])
def test_each_resource_problem_names_the_field(resources, message):
    from trainml_cli.server.resources import normalize

    assert str(refusal(normalize, resources)) == message


def test_resources_get_their_defaults_and_a_cpu_job_holds_no_gpu():
    from trainml_cli.server.resources import normalize

    assert normalize({"cpu_count": 2}) == {"gpu_types": ["cpu"], "gpu_count": 0, "cpu_count": 2, "disk_size": 10,
                                           "max_price": 10.0}
    assert normalize({"gpu_types": "RTX3090", "gpu_count": 2})["gpu_types"] == ["rtx3090"]


@pytest.fixture
def check(tmp_path):
    """check_job(payload) with this machine's real services on a temporary home: no GPUs, the local backend."""
    from trainml_cli.server import resources as res
    from trainml_cli.server.archives import Uploads
    from trainml_cli.server.backends.local import LocalBackend
    from trainml_cli.server.interpreters import Interpreters
    from trainml_cli.server.models import Models
    from trainml_cli.server.payload import check_job
    from trainml_cli.server.store import Store

    store = Store(tmp_path / "db")
    uploads = Uploads(tmp_path / "uploads")
    models = Models(store, tmp_path / "models", uploads)
    backend = LocalBackend(pool=res.GpuPool([]))
    yield lambda payload: check_job(payload, backend, uploads, models, Interpreters(None))
    store.close()


def payload(**endpoint) -> dict:
    return {"name": "j", "model": {"source_type": "git", "source_uri": "https://example.invalid/repo.git"},
            "endpoint": {"routes": [ROUTE], **endpoint}}


def test_a_good_payload_comes_back_as_the_spec_a_job_keeps(check):
    spec = check(payload(max_concurrency=4, timeout=30))
    assert spec["model"] == {"source_type": "git", "source_uri": "https://example.invalid/repo.git", "git_ref": None}
    assert spec["endpoint"]["routes"] == [{**ROUTE, "positional": False}]
    endpoint = spec["endpoint"]
    assert (endpoint["max_concurrency"], endpoint["timeout"], endpoint["auth"]) == (4, 30, False)
    assert spec["resources"]["gpu_types"] == ["cpu"] and spec["environment"]["env"] == []


@pytest.mark.parametrize("fields, message", [
    ({"min_replicas": 0, "max_replicas": 10_000}, "endpoint.max_replicas: 10000 is more than this machine's"),
    ({"ray_actor_options": {"memory": 1024}}, "endpoint.ray_actor_options: Ray's replica options need the Ray backend"),
    ({"replicas": 10_000}, "endpoint.replicas: 10000 is more than this machine's"),
    ({"max_queue": 10**9}, "endpoint.max_queue: 1000000000 is more than"),
    ({"auth": "yes"}, "endpoint.auth: 'yes' must be true or false"),
], ids=["autoscaling-over-cpus", "actor-options", "replicas-over-cpus", "queue-over-limit", "auth-not-bool"])
def test_the_local_backend_refuses_what_it_cannot_honour(check, fields, message):
    assert str(refusal(check, payload(**fields))).startswith(message)


def test_the_local_backend_autoscales_down_to_zero(check):
    spec = check(payload(min_replicas=0, max_replicas=1, idle_timeout=3))
    assert (spec["endpoint"]["min_replicas"], spec["endpoint"]["idle_timeout"]) == (0, 3)


def test_gpus_this_machine_lacks_are_refused_naming_what_it_has(check):
    job = {**payload(), "resources": {"gpu_types": ["rtx3090"], "gpu_count": 1}}
    assert str(refusal(check, job)) == ("resources: asks for 1 GPU(s) of type rtx3090 but this machine has 0 "
                                        "(GPUs found: none; use gpu_types [\"cpu\"] to run without one)")
