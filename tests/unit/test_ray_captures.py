"""A Ray job's captured calls drained from its nodes into its folder (server/backends/raycaptures.py).

Each "node" here is a folder standing for a Ray node's log folder, written by the replicas' own segment writer
(capturefiles.Segments, sealed as a replica seals them); `NodesHead` answers the head's two log calls from those
folders, as Ray's log API answers them from each node. The job's folder is then read by the same reader as a local
job's (server/captures.py). The whole path through a real two-node cluster is in tests/test_ray.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trainml_cli.capturefiles import RAY_CAPTURE_FOLDER, Segments
from trainml_cli.server import captures
from trainml_cli.server.backends.raycaptures import CaptureDrain, pending

pytestmark = pytest.mark.anyio
APP = "ep-job1"


class NodesHead:
    """The head's log API over one folder per node."""

    def __init__(self, nodes: dict[str, Path]):
        self.nodes = nodes
        self.reads = 0

    async def node_ids(self):
        return list(self.nodes)

    async def log_files(self, node, glob):
        return [p.relative_to(self.nodes[node]).as_posix() for p in self.nodes[node].glob(glob)]

    async def log_file(self, node, filename):
        self.reads += 1
        path = self.nodes[node] / filename
        return path.read_bytes() if path.is_file() else None


def replica(node: Path) -> Segments:
    folder = node / RAY_CAPTURE_FOLDER / APP
    folder.mkdir(parents=True, exist_ok=True)
    return Segments(str(folder), 1 << 20, seal_after=0.0)


def entry(rid: str) -> bytes:
    return (json.dumps({"id": rid, "time": f"2026-01-01T00:00:0{rid[-1]}.000Z", "route": "POST /predict",
                        "status": 200, "request": {"text": rid}, "response": {"ok": True}}) + "\n").encode()


@pytest.fixture
def nodes(tmp_path):
    found = {name: tmp_path / name for name in ("head", "worker")}
    for folder in found.values():
        folder.mkdir()
    return found


async def test_every_nodes_sealed_segments_reach_the_jobs_folder_once(nodes, tmp_path):
    workdir = tmp_path / "job"
    head = NodesHead(nodes)
    on_head, on_worker = replica(nodes["head"]), replica(nodes["worker"])
    on_head.write([entry("r1")])
    on_worker.write([entry("r2")])
    drain = CaptureDrain(head, APP, captures.folder(workdir), 1 << 20)
    assert await drain.drain() == 0  # still being written (.part): not read
    on_head.close()
    on_worker.close()
    assert await drain.drain() == 2
    on_worker.write([entry("r3")])
    on_worker.close()
    assert await drain.drain() == 1 and await drain.drain() == 0  # each segment read once
    drain.close()
    got = captures.read(workdir)
    assert [e["id"] for e in got["requests"]] == ["r1", "r2", "r3"]
    for file in captures.folder(workdir).iterdir():
        assert file.stat().st_mode & 0o777 == 0o600, file

    # A control plane that restarts (and adopts the application) drains on from where the last one stopped.
    reads = head.reads
    again = CaptureDrain(head, APP, captures.folder(workdir), 1 << 20)
    assert await again.drain() == 0 and head.reads == reads
    on_head.write([entry("r4")])
    on_head.close()
    assert await again.drain() == 1
    again.close()
    assert [e["id"] for e in captures.read(workdir)["requests"]] == ["r1", "r2", "r3", "r4"]


async def test_the_jobs_folder_stays_within_capture_size(nodes, tmp_path):
    workdir = tmp_path / "job"
    on_head = replica(nodes["head"])
    drain = CaptureDrain(NodesHead(nodes), APP, captures.folder(workdir), 10_000)
    for i in range(60):
        on_head.write([entry(f"r{i}") * 5])
        on_head.close()
        await drain.drain()
    drain.close()
    kept = sum(f.stat().st_size for f in captures.folder(workdir).glob("*.jsonl"))
    assert 0 < kept <= 10_000
    assert captures.read(workdir, tail=0)["requests"][-1]["id"] == "r59"  # the newest kept, the oldest gone


def test_only_segments_newer_than_the_last_drained_of_their_writer_are_pending():
    folder = f"{RAY_CAPTURE_FOLDER}/{APP}"
    files = [f"{folder}/00000000000000000003-11.jsonl", f"{folder}/00000000000000000001-11.jsonl",
             f"{folder}/00000000000000000002-12.jsonl", f"{folder}/00000000000000000004-12.jsonl.part"]
    drained = {"n1:11": "00000000000000000001-11.jsonl"}
    assert pending("n1", files, drained) == [files[2], files[0]]
    assert pending("n2", files, drained) == [files[1], files[2], files[0]]  # another node's writer 11
