"""An autoscaled endpoint's leader: it holds the listening socket and runs between --min-workers and --workers.

`python -m trainml_cli.runtime --min-workers A --workers B ...` starts this leader instead of a fixed group. It
never imports the model code (a few MiB), so it costs little while the endpoint is scaled to zero, and it is the
endpoint's process: it holds its own copy of the socket and no control plane is needed for it to wake workers,
so an endpoint keeps scaling, and waking, when the control plane dies.

It starts max(A, 1) workers (the job is `running` only once the code has loaded once), then every POLL seconds
reads the group's counts from its own /metrics (a worker answers):

- calls waiting, or more calls in flight per worker than --target-ongoing, for --upscale-delay seconds: one
  worker more (up to B), started with --load-first so it takes calls only once loaded;
- calls in flight that the workers but one could carry, for --idle-timeout seconds: one worker fewer (down to
  max(A, 1)); with A = 0, no call at all for --idle-timeout: the last worker goes too, and from then on the
  leader answers the socket itself (waker.py) until a call wakes a worker.

Each decision is a line on stdout (the job log) and the state is written to --scale-file (contracts.ScaleState)
for `job get`, the dashboard and the workers' /metrics. A worker that dies unasked is replaced; one that cannot
load the code (exit 3) ends the endpoint, as a fixed group does.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import time
from dataclasses import dataclass

from .. import handover
from ..contracts import GPU_GRANT_FILE, ScaleState, take_grant, write_scale
from . import dormant
from .config import EXIT_LOAD_FAILED, EXIT_PLATFORM_FAILED, RuntimeConfig
from .waker import Child, Held, metrics_reply, ping, since

POLL = 0.5  # seconds between two looks at the counts
SHED_LOOKS = 4  # looks after a worker is added at which the others shed: a reconnect may land on the same worker
GRANT_POLL = 0.02  # seconds between two looks for the GPUs the control plane hands back
STARTING, RUNNING, STOPPING = "STARTING", "RUNNING", "STOPPING"


@dataclass
class Worker:
    process: asyncio.subprocess.Process
    state: str = STARTING


def serve_autoscaled(config: RuntimeConfig, sock: socket.socket) -> int:
    return asyncio.run(Autoscaler(config, sock).run())


class Autoscaler:
    def __init__(self, config: RuntimeConfig, sock: socket.socket):
        self.config = config
        self.sock = sock
        self.low = config.min_workers or 0
        self.high = max(config.workers or 1, self.low, 1)
        self.target = config.target_ongoing or max(1, (config.max_concurrency or 1) // 2)
        self.tls = bool(config.tls_certfile)
        host, self.port = sock.getsockname()[:2]
        self.loopback = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
        self.workers: dict[int, Worker] = {}
        self.held = Held(config.max_connections or 1000)
        self.ready = asyncio.Event()  # a worker takes calls: held ones go on
        self.stopping = asyncio.Event()
        self.code = 0
        self.failure = ""
        self.accepting = False
        self.woken_at: float | None = None
        self.cold_start_ms: float | None = None
        self.decision = ""
        self._metrics = None
        self._ready_read, self._ready_write = os.pipe()
        # A job with GPUs gives them back at zero and waits for the control plane to hand them out again on wake.
        self.leased = bool(os.environ.get("CUDA_VISIBLE_DEVICES") and config.scale_file and self.low == 0)
        self.wants_gpus = False
        self.added: tuple[int, int] | None = None  # (pid, looks left to shed at) of a worker added while others serve
        self.woken = dormant.read_wake()  # exec'd back from scaled to zero by a call (dormant.py)
        if self.woken is not None:
            self.cold_start_ms = self.woken["cold_start_ms"]
            if self.woken["ready"]:  # the pipe its worker (started before the exec) tells it is ready on
                os.close(self._ready_read), os.close(self._ready_write)
                self._ready_read, self._ready_write = self.woken["ready"]
                for fd in self.woken["ready"]:
                    os.set_inheritable(fd, False)
            if self.woken["metrics_dir"] and self.woken["metrics_dir"] != config.metrics_dir:
                shutil.rmtree(config.metrics_dir, ignore_errors=True)  # its counts live on in the one it had
                config.metrics_dir = self.woken["metrics_dir"]

    # -- the loop ------------------------------------------------------------------------------------------------

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stopping.set)
        if self.config.hand_over:
            handover.offer(self.sock)
        self.sock.setblocking(False)
        os.set_blocking(self._ready_read, False)
        loop.add_reader(self._ready_read, self._on_ready_pipe)
        if self.woken is not None:
            await self._woken(self.woken)
        else:
            scheme = "https" if self.tls else "http"
            print(f"serving {len(self.config.routes)} route(s) on {scheme}://{self.loopback}:{self.port}, autoscaled "
                  f"between {self.low} and {self.high} workers (pid {os.getpid()})", flush=True)
            first = max(self.low, 1)
            for _ in range(first):
                await self._spawn(load_first=bool(self.config.load_first))
            self.ready.set()  # the first workers accept while loading, as a fixed group's do (/ping says loading)
            self._decide(f"started {first} replica(s) (min {self.low}, max {self.high})")
        ticker = loop.create_task(self._scale())
        await self.stopping.wait()
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)
        await self._shut_down()
        return self.code

    async def _shut_down(self) -> None:
        self._stop_accepting()
        await self.held.cancel()
        for worker in self.workers.values():
            _signal(worker.process, signal.SIGTERM)
        deadline = time.monotonic() + max(5.0, self.config.timeout or 0)
        for worker in list(self.workers.values()):
            try:
                await asyncio.wait_for(worker.process.wait(), max(0.1, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                _signal(worker.process, signal.SIGKILL)
        if self.woken is not None:  # the directory kept across the sleep is ours to remove (server.py made another)
            shutil.rmtree(self.config.metrics_dir, ignore_errors=True)

    async def _scale(self) -> None:
        last_requests = None
        last_call = busy_since = low_since = time.monotonic()
        while True:
            await asyncio.sleep(POLL)
            if self.added is not None:  # a worker added under load, serving: the others shed keep-alive callers
                added, left = self.added  # to it (connections.shed), at a few looks: once could leave it idle
                for pid, other in self.workers.items():
                    if pid != added and other.state == RUNNING:
                        _signal(other.process, signal.SIGUSR1)
                self.added = (added, left - 1) if left > 1 and added in self.workers else None
            if (self.accepting and self.low == 0 and not self.workers and not self.held.now and self.woken_at is None
                    and not self.stopping.is_set()):
                self._sleep()
            if self.accepting or not any(w.state == RUNNING for w in self.workers.values()):
                last_call = busy_since = low_since = time.monotonic()
                continue
            counts = await self._counts()
            if counts is None:
                continue
            now = time.monotonic()
            requests, in_flight, waiting = counts
            if requests != last_requests or in_flight:
                last_call, last_requests = now, requests
            active = [pid for pid, w in self.workers.items() if w.state != STOPPING]
            if waiting or in_flight > self.target * len(active):
                if now - busy_since >= (self.config.upscale_delay or 0) and len(active) < self.high:
                    self._decide(f"scaling to {len(active) + 1} replicas: {waiting} call(s) waiting, {in_flight} in "
                                 f"flight on {len(active)} (target {self.target:g} each)")
                    await self._spawn(load_first=True)
                    busy_since = now
            else:
                busy_since = now
            idle_for = self.config.idle_timeout or 0
            if in_flight > self.target * (len(active) - 1):
                low_since = now
            if len(active) > max(self.low, 1) and now - low_since >= idle_for:
                self._decide(f"scaling to {len(active) - 1} replicas: {in_flight} call(s) in flight for "
                             f"{idle_for:g}s (--idle-timeout), fewer replicas carry them")
                self._retire(active[-1])
                low_since = now
            elif len(active) == 1 and self.low == 0 and not in_flight and now - last_call >= idle_for:
                self._start_accepting()  # before the last worker stops accepting: no call waits unseen
                self._retire(active[0])
                self._decide(f"scaled to 0 replicas: no calls for {idle_for:g}s (--idle-timeout); the next call "
                             "starts one")

    async def _counts(self) -> tuple[int, int, int] | None:
        """(calls answered, in flight, waiting) over the group, from its /metrics (a worker answers)."""
        ssl = None
        if self.tls:
            import ssl as ssl_module

            ssl = ssl_module.create_default_context()
            ssl.check_hostname, ssl.verify_mode = False, ssl_module.CERT_NONE  # our own port on loopback
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(self.loopback, self.port, ssl=ssl), 2.0)
            try:
                writer.write(b"GET /metrics?format=json HTTP/1.1\r\nhost: autoscaler\r\nconnection: close\r\n\r\n")
                raw = await asyncio.wait_for(reader.read(), 2.0)
            finally:
                writer.close()
            totals = json.loads(raw.split(b"\r\n\r\n", 1)[1])
            return int(totals["requests"]), int(totals["in_flight"]), int(totals["waiting"])
        except (OSError, asyncio.TimeoutError, ValueError, KeyError, IndexError, TypeError):
            return None

    # -- workers ---------------------------------------------------------------------------------------------

    def _command(self, load_first: bool) -> list[str]:
        command = [sys.executable, "-m", "trainml_cli.runtime", *self.config.to_args(), "--workers", "1",
                   "--fd", str(self.sock.fileno()), "--ready-fd", str(self._ready_write)]
        if load_first and not self.config.load_first:
            command.append("--load-first")
        for route in self.config.routes:
            command += ["--route", json.dumps(route.to_dict())]
        return command

    async def _spawn(self, load_first: bool) -> None:
        process = await asyncio.create_subprocess_exec(*self._command(load_first),
                                                       pass_fds=(self.sock.fileno(), self._ready_write))
        self._add(process)

    def _add(self, process) -> None:
        self.workers[process.pid] = Worker(process)
        asyncio.get_running_loop().create_task(self._watch(process))
        self._write_state()

    def _retire(self, pid: int) -> None:
        worker = self.workers.get(pid)
        if worker is not None:
            worker.state = STOPPING
            _signal(worker.process, signal.SIGTERM)  # uvicorn stops accepting and finishes its calls
            self._write_state()

    async def _watch(self, process) -> None:
        code = await process.wait()
        worker = self.workers.pop(process.pid, None)
        from .metrics import mark_dead

        mark_dead(process.pid, self.config.metrics_dir)
        if code in (EXIT_LOAD_FAILED, EXIT_PLATFORM_FAILED):  # a new worker would fail the same way
            self.code = code
            self.failure = "the model code could not be loaded" if code == EXIT_LOAD_FAILED else \
                "a worker could not start"
            self.stopping.set()
        elif worker is not None and worker.state != STOPPING:
            await asyncio.sleep(0.2)  # a SIGTERM to the whole group reaches us a moment after our workers
            if not self.stopping.is_set():
                print(f"worker pid {process.pid} exited with status {code}; starting a new one", flush=True)
                await self._spawn(load_first=True)
        if not any(w.state != STOPPING for w in self.workers.values()) and not self.stopping.is_set():
            self._start_accepting()
        self._write_state()

    def _on_ready_pipe(self) -> None:
        try:
            data = os.read(self._ready_read, 4096)
        except BlockingIOError:
            return
        for text in data.split():
            worker = self.workers.get(int(text))
            if worker is not None and worker.state == STARTING:
                worker.state = RUNNING
                self.added = None if self.accepting else (worker.process.pid, SHED_LOOKS)
        if self.accepting and any(w.state == RUNNING for w in self.workers.values()):
            self._stop_accepting()  # from here the workers accept; the calls held meanwhile are passed on
            self.cold_start_ms = since(self.woken_at)
            self.woken_at = None
            running = sum(1 for w in self.workers.values() if w.state == RUNNING)
            self._decide(f"scaled to {running} replica(s) in {self.cold_start_ms:g} ms (cold start)")
            self.ready.set()
        self._write_state()

    # -- scaled to zero (waker.py) ----------------------------------------------------------------------------

    def _start_accepting(self) -> None:
        if not self.accepting:
            self.accepting = True
            self.ready.clear()
            asyncio.get_running_loop().add_reader(self.sock.fileno(), self._accept)

    def _stop_accepting(self) -> None:
        if self.accepting:
            self.accepting = False
            asyncio.get_running_loop().remove_reader(self.sock.fileno())

    def _accept(self) -> None:
        for _ in range(64):  # a burst at once, then back to the loop
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            self.held.start(self, conn)

    async def _woken(self, wake: dict) -> None:
        """Back from dormant.py: hold the connections it read a call from, and start a worker for them."""
        self.woken_at = wake["woken_at"]  # the cold start counts from the call, not from this exec
        self._start_accepting()
        for fd, read in wake["held"]:
            self.held.start(self, socket.socket(fileno=fd), read)
        self._decide("scaling to 1 replica: a call arrived while scaled to zero")
        if wake["worker"]:  # started by dormant.py as it read the call: it loads while this process started
            self._add(Child(wake["worker"]))
        else:
            await self._first_worker()

    async def _first_worker(self) -> None:
        """The worker that ends a scale to zero; with GPUs, once the control plane hands them back (gpulease.py),
        or none if every held call gave up waiting first."""
        if self.leased:
            grant = os.path.join(os.path.dirname(self.config.scale_file), GPU_GRANT_FILE)
            take_grant(grant)  # one the calls gave up on last time
            self.wants_gpus = True
            self._write_state()
            while (devices := take_grant(grant)) is None:
                if self.stopping.is_set() or not self.held.now:
                    self.wants_gpus, self.woken_at = False, None
                    self._decide("back to 0 replicas: no GPU came free before the calls held gave up")
                    return
                await asyncio.sleep(GRANT_POLL)
            os.environ["CUDA_VISIBLE_DEVICES"] = devices  # the worker's GPUs (it inherits this environment)
            self.wants_gpus = False  # written together with the new worker: the control plane never sees neither
        await self._spawn(load_first=True)

    def _sleep(self) -> None:
        """Scaled to zero with no call held: become dormant.py, giving back all this process's memory."""
        metrics_json, _ = metrics_reply(self, True)
        metrics_text, text_type = metrics_reply(self, False)
        state = dormant.write_dormant(
            fd=self.sock.fileno(), argv=[sys.executable, "-m", "trainml_cli.runtime", *sys.argv[1:]], tls=self.tls,
            hand_over=bool(self.config.hand_over), max_connections=self.config.max_connections or 1000,
            ping=json.dumps(ping(self)).encode(), metrics_json=metrics_json, metrics_text=metrics_text,
            text_type=text_type, metrics_dir=self.config.metrics_dir, cold_start_ms=self.cold_start_ms,
            worker=None if self.leased else self._command(load_first=True),  # with GPUs: once they are handed back
            ready=[self._ready_read, self._ready_write])
        self.sock.set_inheritable(True)
        for fd in (self._ready_read, self._ready_write):
            os.set_inheritable(fd, True)
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(sys.executable, [sys.executable, "-I", "-S", dormant.__file__, state])

    def wake(self) -> None:
        if self.stopping.is_set() or self.woken_at is not None or any(w.state != STOPPING
                                                                     for w in self.workers.values()):
            return
        self.woken_at = time.monotonic()
        self._decide("scaling to 1 replica: a call arrived while scaled to zero")
        asyncio.get_running_loop().create_task(self._first_worker())

    async def until_ready(self) -> str | None:
        """Hold a call until a worker takes calls; the reason it will not, past --cold-start-timeout."""
        self.wake()
        timeout = self.config.cold_start_timeout or 120.0
        try:
            await asyncio.wait_for(_first(self.ready.wait(), self.stopping.wait()), timeout)
        except asyncio.TimeoutError:
            if self.wants_gpus:
                return (f"the endpoint was scaled to zero and its GPU(s) went back to the pool; none came free "
                        f"within {timeout:g}s (--cold-start-timeout): other jobs hold them; retry later")
            return (f"the endpoint was scaled to zero and no worker loaded its code within {timeout:g}s "
                    "(--cold-start-timeout); retry later")
        if self.stopping.is_set():
            return f"the endpoint is stopping{': ' + self.failure if self.failure else ''}"
        return None

    # -- state ------------------------------------------------------------------------------------------------

    def state(self) -> ScaleState:
        return ScaleState(workers=[{"pid": pid, "state": w.state} for pid, w in self.workers.items()],
                          min_replicas=self.low, max_replicas=self.high, cold_start_ms=self.cold_start_ms,
                          decision=self.decision, wants_gpus=self.wants_gpus)

    def _decide(self, text: str) -> None:
        self.decision = text
        print(f"autoscaler: {text}", flush=True)
        self._write_state()

    def _write_state(self) -> None:
        if self.config.scale_file:
            try:
                write_scale(self.config.scale_file, self.state())
            except OSError as exc:
                print(f"warning: cannot write {self.config.scale_file}: {exc}", file=sys.stderr, flush=True)


async def _first(*waits) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()


def _signal(process, signum: int) -> None:
    try:
        process.send_signal(signum)
    except ProcessLookupError:
        pass
