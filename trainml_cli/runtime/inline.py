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
inline without one for QUIET times its length (a 4 ms stall after 200 ms): that is the kernel taking the core
away in the middle of a call, which on a busy machine happens every few hundred calls and would otherwise keep
the calls on the threads, at a handoff per call, for good (a Ray replica shares its core with Serve's proxy and
Ray's own processes: there the handoff costs more than the rest of our request). A second stall before another
quiet stretch sends them back. So a function that blocks holds the loop for one call each time it was trusted (two
after a long quiet stretch), past LONG only once; if it blocks often those times grow exponentially rarer.

The numbers: a call under SHORT (0.5 ms, a hundred times the handoff's CPU) gains little from a thread (pure Python
holds the GIL either way), and holding the loop that long delays other requests less than a round trip does at 64
connections. STALL (2 ms) leaves room for jitter: the timer is wall time (a thread's CPU clock costs a system call,
2 us here), so a call preempted by the kernel on a busy machine looks long; the garbage collector's pauses, which
happen inside whatever call allocates, are taken out. Such a false alarm costs a few hundred calls on the threads,
then the calls run inline again.

A call on the loop cannot be answered 504 while it runs: the first call that blocks past --timeout after its
route was trusted answers late instead (and sends the calls back to the threads for good); an endpoint whose
timeout is under LONG keeps its calls on the threads.

While a call runs inline the thread shows no running event loop, as a pool thread does: a sync function that calls
asyncio.run() works the same on either.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Callable

from .gate import UserExit, log_failure

SHORT = 0.0005  # seconds: calls this short, PROOF of them in a row on the threads, go inline
STALL = 0.002  # seconds: an inline call this long sends the calls back to the threads
LONG = 0.05  # seconds: an inline call this long sends them back for good
QUIET = 50  # a stall short of LONG passes once after QUIET times its length inline without one
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


class Inline:
    """One route's record: whether its calls run on the loop, and the proof that decides it (loop side only)."""

    __slots__ = ("label", "on", "streak", "proof", "inline_calls", "log", "loop", "quiet_since")

    def __init__(self, label: str, log: Callable[[str], None], loop: asyncio.AbstractEventLoop):
        self.label = label
        self.loop = loop
        self.log = log
        self.on = False
        self.streak = 0  # calls in a row under SHORT on the threads
        self.proof: int | None = PROOF  # the streak that puts the calls on the loop; None: never again
        self.inline_calls = 0  # since they last went there
        self.quiet_since = 0.0  # when the calls went inline, or the last stall let pass
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
                seconds -= _Collections.total - collected
                if seconds > STALL:
                    if seconds < LONG and started - self.quiet_since > QUIET * seconds:
                        self.quiet_since = _clock()  # preempted, most likely: once, and the next must wait
                    else:
                        self._demote(seconds)

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
