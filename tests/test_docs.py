"""Completions, man pages and the manual's CLI reference are generated from the click app; these tests fail when the
checked-in copies drift. The manual itself (mkdocs.yml, docs/) is built with `mkdocs build --strict`."""

import importlib.util
import os
import re
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


def test_there_is_a_reference_page_per_command_group_with_every_command():
    files, _ = manpages.generate()
    pages = {path: text for path, text in files.items() if path.startswith("docs/cli/")}
    assert set(pages) == {f"docs/cli/{name}.md" for name in ("index", "job", "model", "server", "secret", "gpu",
                                                               "environment", "endpoint", "configure")}
    import click

    from trainml_cli.cli.main import cli

    root = click.Context(cli, info_name="trainml")
    for ctx, _command in manpages.walk(cli, root, []):
        words = ctx.command_path.split()
        if len(words) > 1:  # every command has its section, under its group's page
            assert re.search(rf"^#+ {re.escape(ctx.command_path)}$", pages[f"docs/cli/{words[1]}.md"], re.M), words
    assert "- `--model-dir DIRECTORY`: Model code in this local folder." in pages["docs/cli/job.md"]


def test_check_mode_reports_a_stale_file(tmp_path):
    assert manpages.main(["--out", str(tmp_path)]) == 0
    assert manpages.main(["--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "man" / "trainml-job-list.1").write_text("old\n")
    (tmp_path / "man" / "trainml-job-gone.1").write_text("a command that was removed\n")
    assert manpages.main(["--out", str(tmp_path), "--check"]) == 1
    problems = manpages.stale(tmp_path, manpages.generate()[0])
    assert problems == ["man/trainml-job-list.1", "man/trainml-job-gone.1 (no such command any more)"]
    (tmp_path / "docs" / "cli" / "job.md").write_text("old\n")
    assert "docs/cli/job.md" in manpages.stale(tmp_path, manpages.generate()[0])


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


# -- the manual ----------------------------------------------------------------------------------------------------


def mkdocs_build(root: Path, site: Path) -> subprocess.CompletedProcess:
    if importlib.util.find_spec("mkdocs") is None or importlib.util.find_spec("material") is None:
        if os.environ.get("CI"):
            pytest.fail("the manual must be built in CI: pip install -e '.[test,ray,docs]'")
        pytest.skip("MkDocs Material is not installed (pip install -e '.[docs]')")
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=root,
                          capture_output=True, text=True, timeout=300, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})


def test_the_manual_builds_strict_every_page_in_the_nav_and_every_link_whole(tmp_path):
    result = mkdocs_build(REPO, tmp_path / "site")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "cli" / "job" / "index.html").is_file()
    assert "Aborted" not in result.stderr and "WARNING" not in result.stderr, result.stderr


def test_a_broken_anchor_or_a_page_left_out_of_the_nav_fails_the_build(tmp_path):
    for name in ("mkdocs.yml", "CHANGELOG.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "docs", tmp_path / "docs")
    page = tmp_path / "docs" / "streaming-files.md"
    text = page.read_text()
    page.write_text(text.replace("(model-code.md#batched-routes)", "(model-code.md#no-such-section)"))
    result = mkdocs_build(tmp_path, tmp_path / "site")
    assert result.returncode != 0 and "no-such-section" in result.stdout + result.stderr
    page.write_text(text)
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    result = mkdocs_build(tmp_path, tmp_path / "site")
    assert result.returncode != 0 and "orphan.md" in result.stdout + result.stderr


def test_the_readme_keeps_its_two_commands_and_links_into_the_manual():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    assert "pip install -e . && trainml job create endpoint --model-dir examples/sentiment" in readme
    assert "pip install -e '.[test,ray,docs]' && python3 -m pytest -q" in readme
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if "://" not in link]
    assert {"docs/model-code.md", "docs/ray.md", "docs/cli/index.md", "CHANGELOG.md"} <= set(local)
    for link in local:
        assert (REPO / link).is_file(), f"README links to {link}, which does not exist"
