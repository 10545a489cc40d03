"""The import graph is a rule, held here: the CLI starts without the server stack, the SDK's HTTP, or rich.

Each check runs in a fresh interpreter, since this test process has long since imported everything.
"""

import ast
import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

HEAVY = ("fastapi", "uvicorn", "pydantic", "jsonschema", "requests", "rich")
SERVER_STACK = ("fastapi", "uvicorn", "pydantic")
# The CLI talks to the control plane through the SDK only; it never imports the server or the runtime.
OUR_OTHER_LAYERS = ("trainml_cli.server", "trainml_cli.runtime")


def loaded_modules(code: str) -> set[str]:
    """Run `code` in a new interpreter and return every module it left in sys.modules."""
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def top_level(modules: set[str], names) -> list[str]:
    return sorted(name for name in names if any(m == name or m.startswith(name + ".") for m in modules))


def help_code(*argv: str) -> str:
    # main() as the console script runs it, with stdout parked so only the probe's JSON line is printed.
    return (
        "import contextlib, io\n"
        "from trainml_cli.cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main({list(argv)!r}) == 0\n"
    )


def test_importing_the_cli_loads_no_heavy_module():
    modules = loaded_modules("import trainml_cli.cli.main")
    assert top_level(modules, HEAVY) == []
    assert top_level(modules, OUR_OTHER_LAYERS) == []


def test_root_help_loads_no_heavy_module():
    modules = loaded_modules(help_code("--help"))
    assert top_level(modules, HEAVY) == []
    assert top_level(modules, OUR_OTHER_LAYERS) == []


@pytest.mark.parametrize(
    "argv",
    [
        ("job", "create", "endpoint", "--help"),
        ("job", "--help"),
        ("job", "list", "--help"),
        ("job", "call", "--help"),
        ("model", "--help"),
        ("model", "create", "--help"),
    ],
    ids=lambda argv: " ".join(argv),
)
def test_command_help_loads_no_server_stack(argv):
    modules = loaded_modules(help_code(*argv))
    assert top_level(modules, SERVER_STACK) == []
    # Stronger than the issue asks, and true by construction: rich, jsonschema and requests load inside commands.
    assert top_level(modules, HEAVY) == []
    assert top_level(modules, OUR_OTHER_LAYERS) == []


def test_tracing_off_loads_no_opentelemetry_sdk_and_on_it_does():
    # FastAPI (0.12x's fastapi.telemetry) imports the opentelemetry API itself when it is installed: what tracing
    # adds is the SDK, its exporter and protobuf. The runtime imports none of it, on or off (runtime/tracing.py).
    added = ("opentelemetry.sdk", "opentelemetry.exporter", "google.protobuf")
    runtime = loaded_modules("import os\nos.environ['OTEL_EXPORTER_OTLP_ENDPOINT'] = 'http://127.0.0.1:9'\n"
                             "import trainml_cli.runtime.app, trainml_cli.runtime.tracing")
    assert top_level(runtime, ("opentelemetry", *added)) == []
    code = ("import os, pathlib, tempfile\n"
            "os.environ.pop('OTEL_EXPORTER_OTLP_ENDPOINT', None)\n"
            "from trainml_cli.server.app import ServerOptions, create_app\n"
            "from trainml_cli.settings import Settings\n"
            "create_app(Settings(home=pathlib.Path(tempfile.mkdtemp()), autostart=False), "
            "ServerOptions(gpus='none', otlp_endpoint={url!r}))\n")
    assert top_level(loaded_modules(code.format(url=None)), added) == []
    assert top_level(loaded_modules(code.format(url="http://127.0.0.1:9")), added) == sorted(added)


def test_the_runtime_starts_without_jsonschema_and_a_bad_route_still_gets_its_message():
    """jsonschema costs the runtime's start more than its server libraries (schemafit.py): sound routes skip it."""
    sound = ('{"verb": "post", "path": "/predict", "file": "predict", "function": "predict", "body": '
             '[{"name": "x", "type": "list", "items": "float"}], "batch": {"max_size": 32, "max_wait_ms": 2}}')
    modules = loaded_modules("from trainml_cli.runtime.config import config_from_args\n"
                             f"config_from_args(['--model-dir', '.', '--route', {sound!r}])")
    assert top_level(modules, ("jsonschema",)) == []
    bad = sound.replace('"max_size": 32', '"max_size": 32.5')
    modules = loaded_modules("from trainml_cli.runtime.config import config_from_args\n"
                             "from trainml_cli.errors import RouteSpecError\n"
                             f"try:\n    config_from_args(['--model-dir', '.', '--route', {bad!r}])\n"
                             "except RouteSpecError as exc:\n    assert 'batch.max_size' in str(exc), exc\n"
                             "else:\n    raise AssertionError('accepted')")
    assert top_level(modules, ("jsonschema",)) == ["jsonschema"]


# What a worker's start leaves out until a call needs it (issue 26: a cold start waits for the model's import plus
# at most 0.5 s of ours). Each is asked for in turn below and must then load.
DEFERRED = {
    "/docs": ("trainml_cli.runtime.docs", "pydantic"),
    "/metrics": ("prometheus_client",),
}
NOT_ASKED_FOR = ("trainml_cli.runtime.capture", "trainml_cli.runtime.sample", "trainml_cli.runtime.streaming",
                 "trainml_cli.runtime.uploads", "websockets")


def test_a_workers_start_loads_nothing_its_first_call_does_not_need(tmp_path):
    from endpoint_process import param, route, start

    endpoint = start("modules", [route("/loaded", "loaded", [param("text", "str")])], tmp_path=tmp_path)
    try:
        endpoint.wait_ready()

        def loaded() -> set[str]:
            answer = endpoint.post("/loaded", {"text": "x"})
            assert answer.status_code == 200, answer.text
            return set(answer.json())

        first = loaded()
        deferred = [name for names in DEFERRED.values() for name in names]
        assert top_level(first, deferred + list(NOT_ASKED_FOR)) == []
        for path, names in DEFERRED.items():
            assert endpoint.get(path).status_code == 200
            assert top_level(loaded(), names) == sorted(names)
        assert top_level(loaded(), NOT_ASKED_FOR) == []
    finally:
        endpoint.stop()


# What the control plane's start leaves out until a request needs it: the first `trainml` call starts one and waits
# for it, and the suite starts hundreds. jinja2 loads at the first dashboard page; no route is a websocket.
NOT_AT_CONTROL_PLANE_START = ("jinja2", "markupsafe", "websockets")


def test_a_control_planes_start_loads_nothing_its_first_answer_does_not_need(tmp_path):
    import requests

    from conftest import wait_until
    from trainml_cli.contracts import EXIT_RESTART, RESTART_SIGNAL

    home, out = tmp_path / "home", tmp_path / "modules.json"
    # The modules are written as it exits, after it has answered and served nothing else: stopped by the restart
    # signal, main() returns (uvicorn raises SIGTERM again once it has shut down, which would skip atexit).
    code = ("import atexit, json, sys\n"
            f"atexit.register(lambda: open({str(out)!r}, 'w').write(json.dumps(sorted(sys.modules))))\n"
            "from trainml_cli.server.__main__ import main\n"
            f"sys.exit(main(['--home', {str(home)!r}, '--port', '0']))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINML_")}
    process = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, start_new_session=True)
    try:
        def answered():
            assert process.poll() is None, process.stderr.read().decode()
            try:
                info = json.loads((home / "server.json").read_text())
                return requests.get(info["url"] + "/api/health", timeout=5).ok
            except (OSError, ValueError, KeyError, requests.RequestException):
                return False

        wait_until(answered, timeout=60, message="the control plane to answer")
    finally:
        process.send_signal(RESTART_SIGNAL)
        process.wait(timeout=30)
    assert process.returncode == EXIT_RESTART, process.stderr.read().decode()
    modules = set(json.loads(out.read_text()))
    assert "trainml_cli.server.app" in modules
    assert top_level(modules, NOT_AT_CONTROL_PLANE_START) == []


def test_importing_the_package_does_not_load_the_sdk():
    modules = loaded_modules("import trainml_cli")
    assert top_level(modules, ("trainml_cli.sdk", *OUR_OTHER_LAYERS, *HEAVY)) == []


# -- the layers (setup.cfg's [importlinter] contracts) ---------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]
LAYERS = {"cli", "sdk", "server", "runtime"}
ENTRY_POINTS = {"__init__", "__main__"}  # the public surface, and `python -m trainml_cli` (the CLI)


def importlinter_config() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    return config


def test_the_layers_hold():
    """The CLI over the SDK over the leaves; the control plane and the runtime over the leaves, never each other."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                             "lint_imports_command()", "--no-cache"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_top_level_module_is_a_layer_or_a_declared_leaf():
    """A new module at the top is a leaf only once the leaves' contract names it (so it is checked as one)."""
    declared = set(importlinter_config()["importlinter:contract:leaves"]["source_modules"].split())
    found = {f"trainml_cli.{path.stem}" for path in (ROOT / "trainml_cli").glob("*.py")
             if path.stem not in ENTRY_POINTS}
    packages = {path.parent.name for path in (ROOT / "trainml_cli").glob("*/__init__.py")}
    assert packages == LAYERS, "a new package is a layer: give it a contract in setup.cfg"
    assert found == declared


# -- the package maps: each package's docstring (and the manual's layout, docs/architecture.md) names its modules -

MAPPED = ("cli", "sdk", "server", "server/backends", "server/dashboard", "runtime")
_NAMED = re.compile(r"(?<![\w/.])(\w+\.py)\b")


def _modules(folder: Path) -> set[str]:
    names = {path.name for path in folder.glob("*.py") if path.name != "__init__.py"}
    return names | {path.parent.name + "/" for path in folder.glob("*/__init__.py")}


@pytest.mark.parametrize("package", MAPPED)
def test_a_packages_map_names_every_module_it_holds_and_no_other(package):
    folder = ROOT / "trainml_cli" / package
    text = ast.get_docstring(ast.parse((folder / "__init__.py").read_text())) or ""
    modules = _modules(folder)
    missing = sorted(name for name in modules if name not in text)
    assert not missing, f"trainml_cli/{package}/__init__.py's docstring does not name {missing}"
    named = {name for name in _NAMED.findall(text) if name != "__init__.py"}
    assert named <= modules, f"trainml_cli/{package}/__init__.py names modules it lacks: {sorted(named - modules)}"


def test_the_manuals_layout_names_every_top_level_module():
    readme = (ROOT / "docs" / "architecture.md").read_text()
    layout = readme[readme.index("## Layout"):]
    layout = layout[:layout.index("```", layout.index("```") + 3)]
    missing = sorted(name for name in _modules(ROOT / "trainml_cli") if name not in layout and name != "__main__.py")
    assert not missing, f"docs/architecture.md's Layout does not name {missing}"


def test_no_module_imports_anothers_private_name():
    """What two modules share is public in the one that owns it (backends/probes.py's first and http_get)."""
    found = []
    for path in sorted((ROOT / "trainml_cli").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.level or (node.module or "").startswith("trainml_cli")):
                found += [f"{path.relative_to(ROOT)}: {alias.name}" for alias in node.names
                          if alias.name.startswith("_") and not alias.name.startswith("__")]
    assert found == []
