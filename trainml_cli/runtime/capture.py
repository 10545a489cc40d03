"""Request capture: a sampled share of calls kept with their request and answer, written off the hot path.

With `--capture RATE` the endpoint keeps, for that share of the calls to its routes, one JSON line (`Entry`):
its id (the answer's X-Request-Id), time, route, status, latency, queue wait, batch size, request, answer, error
and client address. Never a header: the Authorization value cannot be kept because nothing reads it here. A JSON
body is kept as JSON when it is whole, else cut at --capture-max-bytes with a marker; a multipart body as its
form fields and each file's name, size and sha256, never its bytes; a stream as its items up to the cap and
their count. The values of the job's secrets (the variables named by --secret-env) and the endpoint's key are
replaced by REDACTED wherever they appear in what is kept.

The call's own work is to keep references to what it read and sent (sample.py); everything else (checking the
bodies are JSON, hashing uploaded files, redaction, the write) happens on one writer thread behind a bounded queue,
a batch at a time. When the writer falls behind, entries are dropped, never waited for, and the next segment says
how many (`{"dropped": N}`). Entries go to JSONL segments (mode 0600, capturefiles.py) in --capture-dir, named so
that name order is age order, each batch in one write; once the folder would pass --capture-size, the oldest
segments are removed (by every worker process of the endpoint, each writing segments of its own). A Ray replica
writes them in its node's log folder, sealed at least every second, and the control plane drains them from there
(server/backends/raycaptures.py).
"""

from __future__ import annotations

import collections
import json
import os
import random
import threading
import time

from ..capturefiles import Segments
from ..launchspec import CAPTURE_FOLDER
from .sample import Sample, Stamps

QUEUE = 4096  # entries waiting for the writer; past it they are dropped (and counted)
WRITE_EVERY = 0.1  # seconds between the writer's turns
SLICE = 64  # entries the writer makes between two hand-overs of the GIL (about 0.3 ms)
REDACTED = "REDACTED"
MIN_SECRET = 4  # shorter values would redact ordinary text (a secret "1" would take every digit 1)


class Recorder:
    """One endpoint process's capture: sampling, the queue and its writer thread."""

    def __init__(self, rate: float, max_bytes: int, size: int, folder: str, secrets=(), log=None):
        self.rate = rate
        self.max_bytes = max_bytes
        self.size = size
        self.folder = folder
        self.redactor = Redactor(secrets)
        self.seal_after = None  # seconds: segments sealed for a drain (a Ray replica's, runtime/serve_entry.py)
        self.dropped = 0
        self.written = 0
        # A deque the writer drains every WRITE_EVERY seconds: an append is the call's whole cost (a queue.Queue's
        # put would take a lock and wake the writer, whose GIL hand-over cost more than the rest at 2,000 calls/s).
        self._queue: collections.deque = collections.deque()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = log or (lambda line: None)
        self._random = random.random
        self._batches: dict[str, list] = {}  # route label -> samples whose batch has not been counted yet

    @classmethod
    def of(cls, config, keys=None, log=None) -> Recorder | None:
        """The recorder a RuntimeConfig asks for; None when capture is off."""
        if not config.capture:
            return None
        folder = config.capture_dir or os.path.abspath(CAPTURE_FOLDER)
        recorder = cls(config.capture, config.capture_max_bytes, config.capture_size, folder,
                       [os.environ.get(name, "") for name in config.secret_env or ()], log)
        recorder.redactor.keys = keys
        return recorder

    def sample(self, scope, request_id: bytes, label: str, start: float) -> Sample | None:
        """A Sample for this call (started at perf_counter `start`) when it is one of those kept, else None."""
        if self.rate < 1.0 and self._random() >= self.rate:
            return None
        return Sample(self, scope, request_id, label, start)

    # -- the event loop's side -----------------------------------------------------------------------------

    def put(self, sample: Sample) -> None:
        if len(self._queue) < QUEUE:
            self._queue.append(sample)
        else:
            self.dropped += 1

    def batched(self, sample: Sample) -> None:
        self._batches.setdefault(sample.route, []).append(sample)

    def observe_batch(self, observe):
        """metrics' batch observer, also telling each sampled call of the batch its size: a Batcher answers a
        batch's calls (their `after`) and then observes its size, in one step on the loop."""

        def observed(label: str, size: int) -> None:
            for sample in self._batches.pop(label, ()):
                sample.batch_size = size
            observe(label, size)

        return observed

    def start(self) -> None:
        os.makedirs(self.folder, mode=0o700, exist_ok=True)
        self._thread = threading.Thread(target=self._write, name="capture", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued, then end the writer."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(timeout)

    # -- the writer thread ---------------------------------------------------------------------------------

    def _write(self) -> None:
        segment = Segments(self.folder, self.size, self.seal_after)
        stamp = Stamps()
        redactor = self.redactor
        try:
            while True:
                done = self._stopping.wait(WRITE_EVERY)
                lines = []
                dropped, self.dropped = self.dropped, 0  # a racy read costs at most a miscount of one
                if dropped:
                    lines.append(f'{{"dropped":{dropped},"time":"{stamp(time.time())}"}}\n'.encode())
                forms = redactor.forms()
                queue = self._queue
                while queue:
                    if len(lines) % SLICE == SLICE - 1:
                        time.sleep(0)  # hand the GIL back: the event loop waits for it no longer than a slice
                    sample = queue.popleft()
                    try:
                        line = sample.line(stamp)
                        if forms and any(form in line for form in forms):  # redacted as json.dumps writes it
                            line = redactor.redact(sample.line(stamp, canonical=True), forms)
                    except Exception as exc:  # a capture must never take the endpoint down
                        self._log(f"capture: an entry could not be kept: {type(exc).__name__}: {exc}")
                        continue
                    lines.append((line + "\n").encode())
                if lines:
                    segment.write(lines)
                    self.written += len(lines)
                segment.seal_if_due()
                if done:
                    return
        except OSError as exc:
            self._log(f"capture: stopped writing to {self.folder}: {exc}")
        finally:
            segment.close()


class Redactor:
    """The values never kept: the job's secrets and the endpoint's current key, in each form JSON writes them."""

    def __init__(self, secrets=()):
        self.secrets = [s for s in secrets if s and len(s) >= MIN_SECRET]
        self.keys = None  # the endpoint's KeyFile, whose current key is redacted too (it may be rotated)
        self._key = None
        self._forms: list[str] = []

    def forms(self) -> list[str]:
        """Each value as it is, as json.dumps writes it inside a string, and the same with non-ASCII escaped."""
        key = self.keys.key if self.keys is not None else b""
        if key != self._key:
            self._key = key
            values = self.secrets + ([key.decode("latin-1")] if key else [])
            forms = []
            for value in values:
                for form in (value, json.dumps(value, ensure_ascii=False)[1:-1], json.dumps(value)[1:-1]):
                    if form not in forms:
                        forms.append(form)
            self._forms = forms
        return self._forms

    def redact(self, text: str, forms=None) -> str:
        for form in self.forms() if forms is None else forms:
            if form in text:
                text = text.replace(form, REDACTED)
        return text

