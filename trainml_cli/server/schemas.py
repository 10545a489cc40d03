"""The API's request and response shapes, as pydantic models, so /openapi.json documents them.

Requests are checked here for their shape only; the meaning (routes, resources, git URIs) is checked by the
services with the shared modules, which name the route and field in their messages. Routes are therefore typed
loosely here: `routespec.parse_routes` reports on them in its own words.
"""

from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field

from ..contracts import STRATEGIES


class Shape(BaseModel):
    """The API's request and response shapes. (Their validators are built at import: deferring them saved about
    10 ms of the control plane's start, but FastAPI then warns at a request body's first use.)"""


class _Strict(Shape):
    model_config = ConfigDict(extra="forbid")


class _Open(Shape):
    model_config = ConfigDict(extra="allow")


class Resources(_Strict):
    gpu_types: Optional[list[str]] = Field(None,
                                           description='GPU types, e.g. ["rtx3090"]; ["cpu"] (default) needs none')
    gpu_count: Optional[Union[int, float]] = Field(None, description="GPUs wanted (ignored for cpu); a fraction "
                                                   "(0.5: half a GPU) on the Ray backend only")
    cpu_count: Optional[int] = Field(None, description="CPUs; also the endpoint's worker count (default 1)")
    disk_size: Optional[int] = Field(None, description="GB of disk (recorded)")
    max_price: Optional[float] = Field(None, description="most credits per GPU-hour the job may cost")


class ModelSource(_Strict):
    source_type: Literal["local", "git", "trainml"]
    source_uri: str = Field("",
                            description="local: the client's folder (informative); "
                                        "git: the URI; trainml: model id or name")
    git_ref: Optional[str] = Field(None, description="git: branch, tag or commit SHA to check out")
    upload_id: Optional[str] = Field(None, description="local: the id returned by POST /api/uploads")


class EndpointSpec(_Strict):
    routes: list[Any] = Field(..., description="route objects, see the route spec")
    max_concurrency: Optional[int] = None
    max_queue: Optional[int] = None
    timeout: Optional[float] = Field(None, description="seconds a call may take")
    capture: Optional[float] = Field(None, description="share of calls whose request and answer are kept, 0 to 1 "
                                     "(default 0: off); GET /api/jobs/{job}/requests reads them")
    capture_max_bytes: Optional[int] = Field(None, description="longest stored body of a captured call (default "
                                             "65536); longer ones are cut, with a marker")
    capture_size: Optional[int] = Field(None, description="most bytes of captured calls kept (default 100 MiB); "
                                        "the oldest go first")
    auth: bool = Field(False, description="give the endpoint a key: calls without 'Authorization: Bearer KEY' "
                       "get 401 (/ping stays open); GET /api/jobs/{job}/connect shows it")
    replicas: Optional[int] = Field(None, description="copies serving: Ray Serve replicas, or local worker processes")
    min_replicas: Optional[int] = Field(None, description="autoscaling lower bound (0: scaled to zero when idle, "
                                        "on either backend)")
    max_replicas: Optional[int] = Field(None, description="autoscaling upper bound")
    upscale_delay: Optional[float] = Field(None, description="autoscaling: seconds above target_ongoing before a "
                                           "replica is added (default 30)")
    downscale_delay: Optional[float] = Field(None, description="autoscaling: seconds below it before a replica is "
                                             "removed (default 600)")
    target_ongoing: Optional[float] = Field(None, description="autoscaling: calls in flight per replica to aim at "
                                            "(default: half of max_concurrency, at least 1)")
    idle_timeout: Optional[float] = Field(None, description="autoscaling: seconds of low load before a "
                                          "replica stops (local backend), of no calls before the last one does "
                                          "(on Ray too) (default 300)")
    cold_start_timeout: Optional[float] = Field(None, description="local autoscaling: seconds a call is held while "
                                                "a replica starts from zero; then 503 (default 120)")
    ray_actor_options: Optional[dict[str, Any]] = Field(
        None, description="Ray backend: each replica's memory (bytes), resources ({name: amount}), accelerator_type, "
        "label_selector, as Ray Serve's ray_actor_options; CPUs and GPUs come from resources")


class EnvVar(_Strict):
    key: str
    value: str


class Packages(_Strict):
    pip: Optional[list[str]] = Field(None, description="pip requirements, e.g. [\"scikit-learn\", \"numpy==2.1\"]")
    apt: Optional[list[str]] = Field(None, description="refused: system packages are not installed")
    conda: Optional[list[str]] = Field(None, description="refused: environments are built from PyPI")


class Environment(_Strict):
    env: list[EnvVar] = []
    packages: Optional[Packages] = None
    requirements: Optional[str] = Field(None, description="a requirements file inside the model folder "
                                        "(default: requirements.txt at its root, when there is one)")
    python: Optional[str] = Field(None, description="a Python version found on the machine (\"3.12\") or a path")
    type: Optional[str] = Field(None, description="trainML's environment name, e.g. DEEPLEARNING_PY310: "
                                "picks that Python version when the machine has it")
    custom_image: Optional[str] = Field(None, description="refused: no container runtime")
    secrets: Optional[list[str]] = Field(None, description="names stored with `trainml secret create`, each "
                                         "set as an environment variable of the endpoint")


class SecretValue(_Strict):
    value: str = Field(..., description="the secret; never returned by any call")


class Secret(Shape):
    name: str
    updated: str


class ModelRename(_Strict):
    name: str


class JobCreate(_Strict):
    name: str
    type: str = "endpoint"
    resources: Optional[Resources] = None
    model: ModelSource
    endpoint: EndpointSpec
    environment: Optional[Environment] = None


class EndpointUpdate(EndpointSpec):
    routes: Optional[list[Any]] = Field(None, description="route objects (default: the serving revision's)")


class JobUpdate(_Strict):
    """A new revision: what is given replaces the serving revision's; nothing given redeploys the same spec."""

    resources: Optional[Resources] = None
    model: Optional[ModelSource] = None
    endpoint: Optional[EndpointUpdate] = None
    environment: Optional[Environment] = None
    if_changed: Optional[bool] = Field(None, description="deploy only if the code or spec differ from the serving "
                                       "revision's; else answer the serving revision with unchanged: true")
    strategy: Optional[Literal[STRATEGIES]] = Field(
        None, description="blue-green (default): the new revision starts beside the serving one (with GPUs of its "
        "own); recreate: the serving one stops first (its GPUs are free for the new one; calls wait meanwhile)")


class Rollback(_Strict):
    to: Optional[int] = Field(None, description="the revision to serve again (default: the newest retired one "
                              "before the serving one)")
    strategy: Optional[Literal[STRATEGIES]] = Field(None, description="as for an update")


class Revision(_Open):
    revision: int
    status: str = Field(..., description="starting, serving, retired, failed")
    created: str
    updated: str
    source: str = Field(..., description="where its code came from (git: the URI, ref and commit)")
    git_commit: Optional[str] = None
    environment: Optional[str] = Field(None, description="the key of its own environment, if it has one")
    routes: list[str]
    replicas: Optional[int] = None
    reason: Optional[str] = Field(None, description="why it failed")
    code_kept: bool = Field(..., description="its code is kept, so it can be served again")
    gpus: Optional[str] = Field(None, description="its GPUs: 'COUNT x TYPE', or 'none'")
    auth: bool = Field(False, description="whether calls need its endpoint key")
    downtime: Optional[float] = Field(None, description="with strategy recreate: seconds no process accepted calls")


class ModelCreate(_Strict):
    name: str
    source_type: Literal["local", "git"]
    source_uri: str = ""
    git_ref: Optional[str] = None
    upload_id: Optional[str] = None


class Job(_Open):
    id: str
    name: str
    type: str
    status: str = Field(...,
                        description="new, waiting for data/model download, waiting for resources, starting, "
                                    "running, stopping, stopped, failed")
    reason: Optional[str] = Field(None, description="why the job failed")
    url: Optional[str] = Field(None, description="the endpoint's URL while starting or running")
    port: Optional[int] = None
    backend: Optional[str] = Field(None, description="where its endpoint was launched: local or ray")
    resources: dict
    model: dict
    endpoint: dict
    environment: dict
    gpus: list[dict]
    pid: Optional[int] = None
    replicas: Optional[list[dict]] = Field(None, description="Ray backend: the live replicas as Ray Serve reports "
                                           "them, [{replica_id, state, pid, node_ip}]; null elsewhere")
    restarts: int
    run_time: float = Field(..., description="seconds billed")
    hourly_rate: float = Field(..., description="credits per hour")
    credits: float
    created: str
    updated: str


class Model(_Open):
    id: str
    name: str
    source_type: str
    source_uri: str
    git_ref: Optional[str] = None
    git_commit: Optional[str] = None
    size: int
    created: str
    status: str


class LogEntry(Shape):
    id: int = Field(..., description="cursor")
    time: str = Field(..., description="ISO-8601 UTC")
    stream: Literal["stdout", "stderr", "event"]
    message: str
    revision: Optional[int] = Field(None, description="the job revision whose process printed it (null: a "
                                                       "platform event, or a backend that cannot tell)")


class LogPage(Shape):
    logs: list[LogEntry]
    next: Optional[int] = Field(None, description="paging back: pass as `before` for older lines; null at the oldest")
    last: Optional[int] = Field(None, description="following: pass as `after` for newer lines")
    done: bool = Field(False, description="following: the job is stopped or failed and every line was sent")


class Upload(Shape):
    id: str
    size: int
    files: int
    unpacked_size: int


class EnvironmentRecord(_Open):
    key: str
    python: str
    interpreter: str
    pip: list[str]
    requirements_file: Optional[str] = None
    requirements: Optional[list[str]] = Field(None, description="the requirements file's lines, comments left out")
    size: Optional[int] = Field(None, description="bytes on disk; null while building")
    building: bool = False
    created: Optional[str] = None
    last_used: Optional[str] = None
    jobs: list[str] = Field(..., description="jobs built with it")
    in_use: list[str] = Field(..., description="jobs that hold it: not stopped or failed")


class Interpreter(Shape):
    path: str
    version: str
    implementation: str
    default: bool


class TrainMLEnvironment(Shape):
    """One of trainML's environment names (trainml_cli/frameworks.py) and what it adds here."""

    id: str
    name: str
    py_version: str
    framework: str
    version: Optional[str] = None
    cuda_version: Optional[str] = Field(None, description="null: no image here; CUDA comes with the pip wheels")
    packages: list[str] = Field(..., description="pip requirements the name adds to a job's environment")
    download: str = Field(..., description="what a build downloads with an empty cache (x86_64 Linux)")


class EnvironmentList(Shape):
    environments: list[EnvironmentRecord]
    interpreters: list[Interpreter]
    trainml: list[TrainMLEnvironment] = Field(..., description="trainML's --environment names")


class Pruned(Shape):
    removed: list[str]


class Removed(Shape):
    id: str
    removed: bool = True


class Connection(Shape):
    id: str
    name: str
    status: str
    url: Optional[str] = Field(None, description="the endpoint's URL while starting or running")
    routes: list[dict]
    auth: bool = Field(..., description="whether calls need 'Authorization: Bearer KEY'")
    key: Optional[str] = Field(None, description="the endpoint's key; null for an endpoint without one")


class Metrics(Shape):
    id: str
    status: str
    time: str
    metrics: Optional[dict] = Field(None, description="the endpoint's /metrics counters; null unless running")


class Health(_Open):
    status: str
    version: str
    pid: int
    home: str
    url: Optional[str] = None
