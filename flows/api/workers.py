"""Warm worker processes for the service's synchronous solves, killed when a solve overruns.

Why processes: a run is CPU-bound Python and C++ (building a CP-SAT model of 150,000 edges
took 5 s on its own) that no thread can interrupt, so a solve that had answered 202 kept its
worker busy long after, and every solve behind it waited. A process can be killed at the
budget, and its claims are re-taken by the next run at once (its pid is gone from this host:
:mod:`pipeline.intake.leases`).

Each worker is forked from a forkserver that imported the engine, OR-Tools and Qiskit once
(``PRELOAD``), loads the compiled kernels and solves two small problems in a scratch home
(``[api] warm_up``), then runs one solve at a time on its own intake connection and sends
back the run's summary. The pool keeps ``solve_workers`` of them and one spare: a worker
whose solve overran is killed and the spare takes its place at once, while a new spare warms
up in the background.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import signal
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from enum import StrEnum
from functools import partial
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext
from pathlib import Path

from flows.api.solve import solve_deps
from flows.deps import open_deps
from flows.logs import JsonFormatter, configure_logging
from flows.run import run_once
from pipeline.config import Settings
from pipeline.results import RunSummary

log = logging.getLogger("qhopper.api")
PRELOAD = ("flows.api.workers", "flows.execute", "pipeline.classical", "pipeline.workers.quantum")
READY = "ready"
START_S = 120.0  # the longest a worker may take to warm up before the service says ready
JOIN_S = 5.0  # the longest a killed worker takes to be reaped
Outcome = RunSummary | str  # the run's summary, or why there is none


class WorkerState(StrEnum):
    WARM = "warm"
    WARMING = "warming"


class SolveWorker:
    """One warm solve process, seen from the service: it runs one solve at a time."""

    def __init__(self, context: ForkServerContext, settings: Settings, backend_spec: str) -> None:
        self._conn, child = context.Pipe()
        logs = _log_setup()
        self._process = context.Process(
            target=_serve,
            args=(child, settings, backend_spec, *logs),
            name="qhopper-solve",
            daemon=True,
        )
        self._process.start()
        child.close()
        self._warm = False
        self._lock = threading.Lock()  # the ready handshake may be awaited from two threads

    def wait_ready(self, timeout_s: float) -> bool:
        """Whether the worker is warm (waiting for it at most ``timeout_s``)."""
        with self._lock:
            return self._ready(timeout_s)

    def state(self) -> WorkerState:
        """Warm or not yet, without waiting (nor waiting behind a thread that is)."""
        if self._lock.acquire(blocking=False):
            try:
                self._ready(0)
            finally:
                self._lock.release()
        return WorkerState.WARM if self._warm else WorkerState.WARMING

    def _ready(self, timeout_s: float) -> bool:
        if not self._warm and not self._conn.closed and self._conn.poll(timeout_s):
            try:
                self._warm = self._conn.recv() == READY
            except EOFError:
                self.kill()  # died warming up
        return self._warm

    def run(self, ids: Sequence[str], deadline: float) -> Outcome:
        """Run ``ids`` by ``deadline`` (``time.monotonic``); past it the worker is killed."""
        if not self.wait_ready(max(0.0, deadline - time.monotonic())):
            return "no solve worker was ready within the time budget"
        try:
            self._conn.send((list(ids), max(0.0, deadline - time.monotonic())))
            if self._conn.poll(max(0.0, deadline - time.monotonic())):
                outcome: Outcome = self._conn.recv()
                return outcome
        except (EOFError, OSError):
            self.kill()
            return "the solve worker died"
        self.kill()
        return "not answered within the time budget"

    @property
    def alive(self) -> bool:
        return self._process.is_alive()

    def kill(self) -> None:
        self._conn.close()
        self._process.kill()
        self._process.join(JOIN_S)


class WorkerPool:
    """``size`` warm solve workers, each running one solve at a time, and one spare."""

    def __init__(self, settings: Settings, backend_spec: str, size: int) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(PRELOAD))
        self._fork = partial(SolveWorker, context, settings, backend_spec)
        self._live: set[SolveWorker] = set()
        self._idle: queue.SimpleQueue[SolveWorker] = queue.SimpleQueue()
        self._spare: SolveWorker | None = None
        self._closed = False
        self._lock = threading.RLock()  # a worker may be started while it is held
        self._summaries: list[RunSummary] = []
        self.warm = threading.Event()  # set once the first workers and the spare are warm
        threading.Thread(target=self._start_all, args=(size,), daemon=True).start()

    def _start_all(self, size: int) -> None:
        """Start the workers and the spare, then wait for them to be warm: off the service's
        start-up path, since the first fork waits for the forkserver's imports (seconds)."""
        first = [self._start() for _ in range(size)]
        for worker in first:
            self._idle.put(worker)
        with self._lock:
            self._spare = spare = self._spare or self._start()
        for worker in [*first, spare]:
            worker.wait_ready(START_S)
        self.warm.set()

    def run(self, ids: Sequence[str], deadline: float) -> str | None:
        """Run ``ids`` on an idle worker by ``deadline``; None when the run finished, else why
        not. Callers hold one of ``size`` slots (:class:`flows.api.lane.SolveLane`), so an
        idle worker is there once started; one killed for overrunning is replaced by the
        spare at once."""
        try:
            worker = self._idle.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            return "no solve worker was free within the time budget"
        try:
            outcome = worker.run(ids, deadline)
        finally:
            self._give_back(worker)
        if isinstance(outcome, RunSummary):
            with self._lock:
                self._summaries.append(outcome)
            return None
        return outcome

    def _start(self) -> SolveWorker:
        worker = self._fork()
        with self._lock:
            self._live.add(worker)
        return worker

    def states(self) -> dict[str, int]:
        """How many workers (the spare included) are warm, and how many still warming."""
        with self._lock:
            live = list(self._live)
        found = Counter(worker.state() for worker in live if worker.alive)
        return {state.value: found[state] for state in WorkerState}

    def _give_back(self, worker: SolveWorker) -> None:
        """Back to the idle ones; a dead one's place goes to the spare, and a new spare
        starts warming."""
        with self._lock:
            if self._closed:
                worker.kill()
                return
            if not worker.alive:
                self._live.discard(worker)
                worker, self._spare = self._spare or self._start(), self._start()
        self._idle.put(worker)

    def take_summaries(self) -> list[RunSummary]:
        """The summaries of the runs finished since the last call (for metrics)."""
        with self._lock:
            taken, self._summaries = self._summaries, []
        return taken

    def close(self) -> None:
        """Kill every worker: a solve still going is left to the queue."""
        with self._lock:
            self._closed = True
            doomed = list(self._live)
        for worker in doomed:
            worker.kill()


def _log_setup() -> tuple[str, int]:
    """How this process logs, for a worker to log the same way."""
    handlers = logging.getLogger().handlers
    json_lines = any(isinstance(h.formatter, JsonFormatter) for h in handlers)
    return "json" if json_lines else "text", logging.getLogger("qhopper").getEffectiveLevel()


def _serve(
    conn: Connection, settings: Settings, backend_spec: str, log_format: str, level: int
) -> None:
    """A worker's life: warm up, say so, then run each solve it is sent until its pipe
    closes (the service is gone) or it is killed (its solve overran)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the group: the service stops us
    configure_logging(log_format)
    logging.getLogger("qhopper").setLevel(level)
    if settings.api.warm_up:
        _warm_up(settings, backend_spec)
    with open_deps(settings, backend_spec=backend_spec) as deps:
        conn.send(READY)
        while True:
            try:
                ids, timeout_s = conn.recv()
            except EOFError:
                return
            try:
                outcome: Outcome = run_once(solve_deps(deps, timeout_s), only=ids)
            except Exception as exc:  # reported to the caller; the queue keeps the problem
                log.error(
                    "synchronous run of %s failed: %s: %s", ",".join(ids), type(exc).__name__, exc
                )
                outcome = f"the run failed: {type(exc).__name__}: {exc}"
            conn.send(outcome)


def _warm_up(settings: Settings, backend_spec: str) -> None:
    """Load the kernels and solve throwaway problems in a scratch home, so the first caller's
    solve costs what every later one does. Never on a paid QPU."""
    from pipeline.classical import warm_up as load_classical_kernels
    from pipeline.model import spec_from_record
    from pipeline.qaoa.fast_sim import warm_up as load_simulator_kernels

    try:
        load_simulator_kernels()
        load_classical_kernels()
        with tempfile.TemporaryDirectory(prefix="qhopper-warm-") as scratch:
            warm = settings.model_copy(
                update={
                    "home": Path(scratch),
                    "intake": settings.intake.model_copy(update={"database_url": None}),
                }
            )
            with open_deps(warm, backend_spec=backend_spec) as deps:
                if deps.backend().solver_path == "qpu":
                    return
                for n in (10, 12):
                    edges = [[i, (i + 1) % n] for i in range(n)] + [[0, n // 2]]
                    spec = spec_from_record({"kind": "maxcut", "n": n, "edges": edges})
                    outcome = deps.intake.submit([(spec, "warm-up")])[0]
                    run_once(solve_deps(deps, 30.0), only=[outcome.id])
    except Exception as exc:  # a failed warm-up costs the first caller time, nothing else
        log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)
