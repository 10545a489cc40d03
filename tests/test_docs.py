"""Completions and man pages are generated from the click app; these tests fail when the checked-in copies drift."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from trainml_cli.cli import manpages

REPO = Path(__file__).resolve().parents[1]


def test_completions_and_man_pages_are_up_to_date():
    files, _skipped = manpages.generate()
    problems = manpages.stale(REPO, files)
    assert not problems, (
        "generated files are stale: " + ", ".join(problems) + "\nregenerate with: python -m trainml_cli.cli.manpages"
    )


def test_there_is_a_man_page_per_command():
    files, _ = manpages.generate()
    pages = {path for path in files if path.startswith("man/")}
    for page in ("trainml", "trainml-job", "trainml-job-create-endpoint", "trainml-job-list", "trainml-job-call",
                 "trainml-job-logs", "trainml-model-create", "trainml-model-remove"):
        assert f"man/{page}.1" in pages


def test_check_mode_reports_a_stale_file(tmp_path):
    assert manpages.main(["--out", str(tmp_path)]) == 0
    assert manpages.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "man" / "trainml-job-list.1").write_text("old\n")
    (tmp_path / "man" / "trainml-job-gone.1").write_text("a command that was removed\n")
    assert manpages.main(["--out", str(tmp_path), "--check"]) == 1
    problems = manpages.stale(tmp_path, manpages.generate()[0])
    assert problems == ["man/trainml-job-list.1", "man/trainml-job-gone.1 (no such command any more)"]


def test_install_puts_files_where_shells_and_man_look(tmp_path):
    assert manpages.main(["--install", "--prefix", str(tmp_path)]) == 0
    assert (tmp_path / "share/bash-completion/completions/trainml").is_file()
    assert (tmp_path / "share/zsh/site-functions/_trainml").read_text().startswith("#compdef trainml")
    assert (tmp_path / "share/fish/vendor_completions.d/trainml.fish").is_file()
    assert (tmp_path / "share/man/man1/trainml-job-create-endpoint.1").is_file()


@pytest.mark.skipif(not shutil.which("groff"), reason="groff not installed")
def test_man_pages_render_without_warnings(tmp_path):
    for name, text in manpages.man_pages()[0].items():
        result = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z"], input=text, capture_output=True, text=True)
        assert result.returncode == 0 and not result.stderr.strip(), f"{name}: {result.stderr}"


def complete(shell: str, words: str, cword: str, **env) -> list[str]:
    """Ask the CLI for completions exactly as the generated shell scripts do."""
    environ = {**os.environ, "_TRAINML_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": cword, **env}
    result = subprocess.run([sys.executable, "-m", "trainml_cli"], env=environ, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return [line for line in result.stdout.splitlines() if line]


def test_bash_completes_subcommands_and_options():
    assert "plain,create" in complete("bash", "trainml job ", "2")
    assert "plain,--model-dir" in complete("bash", "trainml job create endpoint --mod", "4")


def test_fish_answers_one_line_per_item_with_its_help():
    # click 8.4.0's own fish format splits items over lines that fish cannot reassemble (pallets/click#3502).
    lines = complete("fish", "trainml job ", "")
    assert "plain,create\tCreate a job." in lines
    assert all(line.startswith("plain,") for line in lines)


def test_job_names_complete_to_nothing_when_no_server_answers(tmp_path):
    lines = complete("bash", "trainml job get ", "3", TRAINML_API_URL="http://127.0.0.1:9", TRAINML_HOME=str(tmp_path))
    assert lines == []


@pytest.fixture
def trainml_on_path(tmp_path):
    """A `trainml` on PATH that runs this checkout with this interpreter, as the scripts call it by name."""
    wrapper = tmp_path / "bin" / "trainml"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m trainml_cli "$@"\n')
    wrapper.chmod(0o755)
    return {**os.environ, "PATH": f"{wrapper.parent}:{os.environ['PATH']}", "TRAINML_API_URL": "http://127.0.0.1:9",
            "TRAINML_HOME": str(tmp_path / "home")}


def test_the_bash_script_completes_in_bash(trainml_on_path):
    script = REPO / "completions" / "trainml.bash"
    result = subprocess.run(
        ["bash", "-c", f'source "{script}"; COMP_WORDS=(trainml job cr); COMP_CWORD=2; _trainml_completion trainml;'
                       ' echo "${COMPREPLY[@]}"'],
        capture_output=True, text=True, env=trainml_on_path, timeout=30,
    )
    assert result.stdout.strip() == "create", result.stderr


@pytest.mark.skipif(not shutil.which("fish"), reason="fish not installed")
def test_the_fish_script_completes_in_fish(trainml_on_path):
    script = REPO / "completions" / "trainml.fish"
    result = subprocess.run(["fish", "-c", f"source {script}; complete -C 'trainml job cr'"], capture_output=True,
                            text=True, env=trainml_on_path, timeout=30)
    assert result.stdout.splitlines() == ["create\tCreate a job."], result.stderr
