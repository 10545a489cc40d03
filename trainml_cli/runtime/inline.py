"""Short sync calls run on the event loop: a route's function that has proved short skips the thread handoff.

Handing a call to a pool thread and its result back costs more than a trivial function does: a queue put, a thread
woken, a wake-up of the loop, context switches on a busy core (about 5 us of CPU per request, a tenth of a trivial
route's, and the loop sat idle while it waited: a third of the time at 8 connections). So a plain sync route (not
batched, not streaming, no file params) is watched as it runs on the threads, and once PROOF calls in a row have
each run under SHORT, its calls run inline, on the loop, as a hand-written ASGI app calls them.

Every inline call is timed. One that runs past STALL sends the route's calls back to the threads, and they must
prove themselves again: over twice as many calls as the last proof, unless they had since run inline twice as many
calls as that proof (then over half as many, not below PROOF; never more than MAX_PROOF). One that runs past LONG
sends them back for good, and says so in the log. A stall short of LONG is let pass once if the calls had run
inline without one for QUIET times its length (a 4 ms stall after 200 ms): most likely the kernel taking the core
away in the middle of a call where its run-queue wait cannot be read (below), which on a busy machine happens
every few hundred calls and would otherwise keep the calls on the threads, at a handoff per call, for good (a Ray
replica shares its core with Serve's proxy and Ray's own processes: there the handoff costs more than the rest of
our request). A second stall before another
quiet stretch sends them back. So a function that blocks holds the loop for one call each time it was trusted (two
after a long quiet stretch), past LONG only once; if it blocks often those times grow exponentially rarer.

The numbers: a call under SHORT (0.5 ms, a hundred times the handoff's CPU) gains little from a thread (pure Python
holds the GIL either way), and holding the loop that long delays other requests less than a round trip does at 64
connections. STALL (2 ms) leaves room for jitter: the timer is wall time (a thread's CPU clock costs a system call,
0.6 us here, per call). Two things are taken out of a call past STALL, since neither is the function's: the garbage
collector's pauses, which happen inside whatever call allocates, and the time the loop's thread waited for a CPU
while the kernel ran another process (preemption on a busy core, every few milliseconds beside another busy
server). That wait is the kernel's count in /proc/thread-self/schedstat, read (about 1 us) at a call's start only
when the last reading is older than REFRESH, and again only past STALL: a wait between that reading and the call's
start is not taken out, so a call that sleeps or blocks counts whole, as before. Without that file (some kernels)
a preempted call looks long; such a false alarm costs a few hundred calls on the threads, then the calls run
inline again.

A call on the loop cannot be answered 504 while it runs: the first call that blocks past --timeout after its
route was trusted answers late instead (and sends the calls back to the threads for good); an endpoint whose
timeout is under LONG keeps its calls on the threads.

While a call runs inline the thread shows no running event loop, as a pool thread does: a sync function that calls
asyncio.run() works the same on either.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from typing import Callable

from .gate import UserExit, log_failure

SHORT = 0.0005  # seconds: calls this short, PROOF of them in a row on the threads, go inline
STALL = 0.002  # seconds: an inline call this long sends the calls back to the threads
LONG = 0.05  # seconds: an inline call this long sends them back for good
QUIET = 50  # a stall short of LONG passes once after QUIET times its length inline without one
REFRESH = 0.001  # seconds: the loop thread's run-queue wait is read at a call's start at most this often
PROOF = 256
MAX_PROOF = 1 << 20

_set_running_loop = asyncio.events._set_running_loop
_clock = time.perf_counter


class _Collections:
    """Seconds the garbage collector has run in this process, so far (its callbacks, twice per collection)."""

    total = 0.0
    _started = 0.0

    @classmethod
    def observe(cls, phase: str, _info) -> None:
        if phase == "start":
            cls._started = _clock()
        else:
            cls.total += _clock() - cls._started


class _RunQueue:
    """Seconds this thread has waited for a CPU, so far, from the kernel's schedstat; None where there is none."""

    _local = threading.local()

    @classmethod
    def waited(cls) -> float | None:
        file = getattr(cls._local, "file", False)
        if file is False:
            try:  # a file object, so the descriptor closes with the thread's locals
                file = open("/proc/thread-self/schedstat", "rb", buffering=0)  # noqa: SIM115
            except OSError:
                file = None
            cls._local.file = file
        if file is None:
            return None
        try:
            return int(os.pread(file.fileno(), 64, 0).split()[1]) / 1e9
        except (OSError, ValueError, IndexError):
            cls._local.file = None
            return None


class Inline:
    """One route's record: whether its calls run on the loop, and the proof that decides it (loop side only)."""

    __slots__ = ("label", "on", "streak", "proof", "inline_calls", "log", "loop", "quiet_since", "read_at",
                 "waited")

    def __init__(self, label: str, log: Callable[[str], None], loop: asyncio.AbstractEventLoop):
        self.label = label
        self.loop = loop
        self.log = log
        self.on = False
        self.streak = 0  # calls in a row under SHORT on the threads
        self.proof: int | None = PROOF  # the streak that puts the calls on the loop; None: never again
        self.inline_calls = 0  # since they last went there
        self.quiet_since = 0.0  # when the calls went inline, or the last stall let pass
        self.read_at = -REFRESH  # when self.waited was read, at most REFRESH before any inline call's start
        self.waited: float | None = None  # the loop thread's run-queue wait then, seconds
        if _Collections.observe not in gc.callbacks:
            gc.callbacks.append(_Collections.observe)

    def ran_on_thread(self, seconds: float) -> None:
        if seconds > SHORT or self.proof is None:
            self.streak = 0
            return
        self.streak += 1
        if self.streak >= self.proof:
            self.on = True
            self.streak = 0
            self.inline_calls = 0
            self.quiet_since = _clock()

    def run(self, function, args, kwargs, encode):
        """Call the function here, on the loop; (payload, content type), or raise as a pool call's future would."""
        self.inline_calls += 1
        _set_running_loop(None)
        collected = _Collections.total
        started = _clock()
        if started - self.read_at > REFRESH:
            self.read_at = started
            self.waited = _RunQueue.waited()
        try:
            return encode(function(*args, **kwargs))
        except BaseException as exc:  # user code may raise anything, SystemExit included
            log_failure(self.log, self.label, exc)
            if isinstance(exc, Exception):
                raise
            raise UserExit(exc) from None
        finally:
            seconds = _clock() - started
            _set_running_loop(self.loop)
            if seconds > STALL:
                seconds -= _Collections.total - collected + self._preempted(started)
                if seconds > STALL:
                    if seconds < LONG and started - self.quiet_since > QUIET * seconds:
                        self.quiet_since = _clock()  # preempted, most likely: once, and the next must wait
                    else:
                        self._demote(seconds)

    def _preempted(self, started: float) -> float:
        """Seconds, at least, the loop's thread waited for a CPU during the call that started then (read once)."""
        before, read_at = self.waited, self.read_at
        now = _RunQueue.waited()
        if before is None or now is None:
            return 0.0
        self.read_at, self.waited = _clock(), now
        # The wait since the reading before the call may all have come before the call: count only the rest.
        return max(0.0, now - before - (started - read_at))

    def _demote(self, seconds: float) -> None:
        self.on = False
        self.streak = 0
        if seconds >= LONG:
            self.proof = None
            self.log(f"route {self.label}: a call took {seconds * 1000:.0f} ms on the event loop, where its calls "
                     "ran while they were short; they run on the call threads from now on")
        elif self.inline_calls >= 2 * self.proof:
            self.proof = max(PROOF, self.proof // 2)
        else:
            self.proof = min(MAX_PROOF, self.proof * 2)
