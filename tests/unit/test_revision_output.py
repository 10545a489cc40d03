"""Which revision printed a line: a local endpoint's revisions print to files of their own (backends/
revisionoutput.py), read into the job's log (logs.py, store.py) with the revision; in process, with the files
written as the endpoint's processes write them."""

from __future__ import annotations

import sqlite3

import pytest

from trainml_cli.launchspec import LaunchSpec
from trainml_cli.server.backends.base import Launch
from trainml_cli.server.backends.revisionoutput import RevisionOutput

pytestmark = pytest.mark.anyio


class Job:
    """What the control plane's listener keeps of one job: its log lines and its recorded read offsets."""

    def __init__(self, offsets=None):
        self.lines: list[tuple[str, str, int | None]] = []
        self.offsets = offsets or {}

    def output(self, stream, line, revision=None):
        self.lines.append((stream, line, revision))

    def log_offsets(self):
        return self.offsets

    def save_log_offsets(self, offsets):
        self.offsets = offsets


def launch(job_dir, number):
    folder = job_dir if number == 1 else job_dir / "revisions" / str(number)
    folder.mkdir(parents=True, exist_ok=True)
    runtime = LaunchSpec(model_dir=str(folder / "model"), route_file=str(folder / "routes.json"))
    return Launch(job_id="j", runtime=runtime, env={}, workdir=str(job_dir), revision=number)


def prints(tail, stream, text):
    with tail.open_for_child()[stream] as file:
        file.write(text.encode())


def test_two_revisions_printing_at_once_are_told_apart_and_the_old_ones_last_line_is_kept(tmp_path):
    job = Job()
    output = RevisionOutput(launch(tmp_path, 1), job)
    first = output.current
    prints(first, "stdout", "serving 1\n")
    beside = output.beside(launch(tmp_path, 2))
    prints(beside, "stderr", "loading 2\n")
    prints(first, "stdout", "still answering 1\n")
    output.catch_up()
    assert sorted(job.lines) == [("stderr", "loading 2", 2), ("stdout", "serving 1", 1),
                                 ("stdout", "still answering 1", 1)]
    old = output.serve(beside)
    assert job.offsets["revision"] == 2  # the job remembers the serving revision's place
    prints(old, "stdout", "draining 1, no newline")
    output.let_go(old)  # its process ended: its unfinished last line too
    assert job.lines[-1] == ("stdout", "draining 1, no newline", 1)
    assert job.offsets["revision"] == 2
    output.finish()


def test_a_control_plane_started_again_goes_on_where_the_last_stopped_and_a_rollback_reads_only_new_lines(tmp_path):
    job = Job()
    output = RevisionOutput(launch(tmp_path, 1), job)
    output.serve(output.beside(launch(tmp_path, 2)))
    prints(output.current, "stdout", "read once\n")
    output.finish()
    prints(output.current, "stdout", "printed while no control plane ran\n")
    assert [line for _, line, _ in job.lines] == ["read once"]

    again = RevisionOutput(launch(tmp_path, 2), job)  # adopts revision 2's endpoint
    again.catch_up()
    assert job.lines[-1] == ("stdout", "printed while no control plane ran", 2)
    # A rollback to revision 1: its files hold what it printed when it served before; only new lines are read.
    back = again.beside(launch(tmp_path, 1))
    prints(back, "stdout", "serving 1 again\n")
    again.catch_up()
    assert job.lines[-1] == ("stdout", "serving 1 again", 1)
    assert len(job.lines) == 3
    again.finish()


def test_offsets_recorded_before_revisions_had_their_own_files_are_revision_ones(tmp_path):
    prints(RevisionOutput(launch(tmp_path, 1), Job()).current, "stdout", "old line\nnew line\n")
    job = Job({"stdout": len("old line\n"), "stderr": 0})
    output = RevisionOutput(launch(tmp_path, 1), job)
    output.catch_up()
    assert job.lines == [("stdout", "new line", 1)]
    output.finish()


async def test_log_entries_carry_their_revision_and_events_none(tmp_path):
    from trainml_cli.server.logs import LogBook
    from trainml_cli.server.migrations import MIGRATIONS
    from trainml_cli.server.store import Store

    # A database from before: its lines come back with no revision.
    db = sqlite3.connect(tmp_path / "trainml.db")
    db.executescript(f"{MIGRATIONS[1]}; {MIGRATIONS[2]}; PRAGMA user_version = 2;")
    db.execute("INSERT INTO logs (job_id, time, stream, message) VALUES ('j', 1.0, 'stdout', 'before')")
    db.commit()
    db.close()
    store = Store(tmp_path / "trainml.db")
    book = LogBook(store)
    book.write("j", "stdout", "from two", 2)
    book.event("j", "revision 2 is serving")
    entries = book.since("j", 0, 10)
    await book.close()
    store.close()
    assert [(e["message"], e["revision"]) for e in entries] == [
        ("before", None), ("from two", 2), ("revision 2 is serving", None)]


def test_lines_of_stdout_and_stderr_are_handed_on_in_the_order_they_were_printed(tmp_path):
    from trainml_cli.runtime.stamps import StampedStream

    job = Job()
    output = RevisionOutput(launch(tmp_path, 1), job)
    files = output.current.open_for_child()
    # As a local endpoint's process prints (python -u, its streams stamped): a summary on stdout, then a traceback
    # on stderr, then the next call's lines, all within one read of the files.
    out, err = (StampedStream(open(files[s].fileno(), "w", buffering=1, closefd=False)) for s in ("stdout", "stderr"))
    out.write("summary for x:\n  first: 1\n")
    err.write("Traceback (most recent call last):\nValueError: bad value 'x'\n")
    out.write("call 2")
    out.write(" done\n")
    err.write("warning from call 2\n")
    for file in files.values():
        file.close()
    output.catch_up()
    assert job.lines == [("stdout", "summary for x:", 1), ("stdout", "  first: 1", 1),
                         ("stderr", "Traceback (most recent call last):", 1),
                         ("stderr", "ValueError: bad value 'x'", 1), ("stdout", "call 2 done", 1),
                         ("stderr", "warning from call 2", 1)]
