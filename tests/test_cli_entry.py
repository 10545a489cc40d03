"""The CLI against what is not there: a control plane that does not answer (retried, then one line), and the real
entry point as a script sees it, `python -m trainml_cli` in a process of its own. The in-process checks of bad
input are in unit/test_cli_input.py and unit/test_cli_usage.py."""

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from trainml_cli.cli.main import main

ECHO = str(Path(__file__).parent / "models" / "cli_echo")
NOWHERE = "http://127.0.0.1:9"  # discard port: nothing listens


def run_cli(home, *argv):
    env = {"TRAINML_API_URL": NOWHERE, "TRAINML_HOME": str(home), "NO_COLOR": "1"}
    with CliRunner().isolation(env=env) as (out, err, _):
        code = main(list(argv))
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_an_unreachable_server_is_one_line_and_exit_1(tmp_path):
    code, out, err = run_cli(tmp_path / "home", "job", "list")
    assert code == 1
    assert out == ""
    assert err.startswith("Error: ") and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_subprocess_exit_codes_and_no_traceback():
    """The real entry point, as a script sees it."""
    env = {"TRAINML_API_URL": NOWHERE, "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-m", "trainml_cli", "job", "create", "endpoint", "x", "--model-dir", ECHO,
            "--route", '{"verb": "POST"']
    result = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=30)
    assert result.returncode == 2
    assert "route 1: not valid JSON" in result.stderr
    assert "Traceback" not in result.stderr
    debug = subprocess.run([argv[0], "-m", "trainml_cli", "--debug", "job", "list"], capture_output=True, text=True,
                           env=env, timeout=30)
    assert debug.returncode == 1
    assert "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("Error: ")
