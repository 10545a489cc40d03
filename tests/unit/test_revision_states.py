"""A revision's statuses move only through the transition table, and what tells two deployments apart."""

from __future__ import annotations

import pytest

from trainml_cli.errors import Conflict
from trainml_cli.server.revisions import ALLOWED, RevisionStatus, code_digest, comparable, describe_source, transition

R = RevisionStatus


@pytest.mark.parametrize("current", list(R))
@pytest.mark.parametrize("target", list(R))
def test_only_the_tables_moves_are_allowed(current, target):
    if target in ALLOWED[current]:
        assert transition(current, target, what="revision 2") is target
    else:
        with pytest.raises(Conflict, match=f"revision 2 is {current.value}; it cannot become {target.value}"):
            transition(current, target, what="revision 2")


def test_a_serving_revision_is_retired_before_it_serves_again_and_a_failed_one_never_serves_directly():
    assert R.SERVING not in ALLOWED[R.RETIRED] and R.STARTING in ALLOWED[R.RETIRED]
    assert R.SERVING not in ALLOWED[R.FAILED]


def test_the_source_line_redacts_a_git_password_and_names_the_ref_and_commit():
    spec = {"model": {"source_type": "git", "source_uri": "https://me:hunter2@example.com/m.git", "git_ref": "main"}}
    line = describe_source(spec, {"git_commit": "0123456789abcdef0123"})
    assert "hunter2" not in line and line.endswith("@main (0123456789ab)")


def test_the_same_code_and_spec_compare_equal_whatever_upload_carried_them(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    for folder in (one, two):
        (folder / "__pycache__").mkdir(parents=True)
        (folder / "predict.py").write_text("def predict(): return 1\n")
    (two / "__pycache__" / "predict.cpython-311.pyc").write_bytes(b"compiled")
    assert code_digest(one) == code_digest(two)
    (two / "predict.py").write_text("def predict(): return 2\n")
    assert code_digest(one) != code_digest(two)
    spec = {"model": {"source_type": "local", "source_uri": "/m", "upload_id": "a"}, "endpoint": {}}
    assert comparable(spec) == comparable({**spec, "model": {**spec["model"], "upload_id": "b"}})
