"""A run's canary: a seeded share of its quantum batches sampled again, whole, on a candidate
backend (``[canary] backend``), beside the run and never in its way.

Once a quantum batch's answers are committed, the seeded draw (:func:`drawn`: the run and
batch ids, so the same run draws the same batches) takes it with probability
``canary.fraction``; its answered problems of the configured kinds and sizes go to the
candidate as one task at the angles the main backend reached (:mod:`pipeline.workers.canary`,
which leaves out those the candidate's target cannot take). On Dask the task goes out at
once, at a lower priority than every task of the run's own; in-process (one thread, first
come first served) it is held until the run's own work is done, so it never delays an
answer. On a cluster the run does not own (``dask.address``: a warm cluster, as ``serve`` keeps
one) the canary's tasks go out as the run ends, after its own work, and a background thread
collects them (at most ``canary.wait_s``) and closes the run's client once the run has ended
(:func:`release`): the run returns as soon as it is done, and the canary takes the cluster's
idle time after it (on two
busy cores, any canary work during the run would slow it by what it costs). On a cluster the
run owns (its LocalCluster, closed with it), the run waits at most ``canary.wait_s`` at its
very end, after every answer is committed. Either way the rows go to
``<results>/canary/date=<day>/<run_id>.parquet``. Nothing the candidate does (raise, time
out, lose its worker) reaches the run or its answers: it is a canary row with status
``failed`` and the error.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from batching.batches import FinishedBatch
from flows.compute import Compute, DaskCompute, InlineCompute, TaskFuture
from pipeline.backends import CallPolicy
from pipeline.canary.vocabulary import CanaryStatus
from pipeline.config import CanarySettings, Settings
from pipeline.quality import relative_to
from pipeline.results import CanaryRow, ProblemRow, open_files, to_table
from pipeline.tasks import Answer, WorkItem
from pipeline.vocabulary import Route, State
from pipeline.workers.canary import CanaryResult, CanaryTask, run_canary

log = logging.getLogger("qhopper.canary")
# Dask runs higher priorities first: every task of the run's own (priority 0) before a canary.
CANARY_PRIORITY = -10
# Deferred canaries by run id: the thread that sends and collects one, and the event that
# tells it its run has ended.
_OUTSTANDING: dict[str, tuple[threading.Thread, threading.Event]] = {}


def release(run_id: str) -> None:
    """The run has ended: its deferred canary (if any) may use the cluster now."""
    if run_id in _OUTSTANDING:
        _OUTSTANDING[run_id][1].set()


def settle(timeout_s: float | None = None) -> None:
    """Wait for the deferred canaries (each bounded by its wait_s, twice): at a process's
    exit, so their rows are written, and wherever rows are read right after a run."""
    while _OUTSTANDING:
        _, (thread, ended) = _OUTSTANDING.popitem()
        ended.set()
        thread.join(timeout_s)


atexit.register(settle)


def drawn(run_id: str, batch_id: str, fraction: float) -> bool:
    """Whether the seeded draw takes the batch: the first 8 bytes of the SHA-256 of
    ``"<run_id>/<batch_id>"``, as a share of 2**64, below ``fraction``. The same run draws the
    same batches, in any process, and the draw touches no random state of the run's."""
    digest = hashlib.sha256(f"{run_id}/{batch_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


@dataclass(frozen=True)
class MainSide:
    """One committed main answer a canary sample is compared with: its row and its answer."""

    row: ProblemRow
    answer: Answer


@dataclass
class _Sent:
    """A canary task out (or, in-process, held until the run's work is done)."""

    batch_id: str
    sides: tuple[MainSide, ...]
    task: CanaryTask
    future: TaskFuture | None = None


class Canary:
    """One run's canary: :meth:`consider` each committed batch, :meth:`finish` once at the end.
    Neither raises: whatever fails becomes a failed canary row."""

    def __init__(
        self, settings: Settings, run_id: str, main_backend: str, compute: Compute, ends_at: float
    ) -> None:
        assert settings.canary.backend is not None
        self.settings = settings
        self.config: CanarySettings = settings.canary
        self.spec: str = settings.canary.backend
        self.run_id = run_id
        self.main_backend = main_backend
        self.compute = compute
        self.ends_at = ends_at  # epoch seconds: no candidate call starts that cannot end by then
        self.hold = isinstance(compute, InlineCompute)  # one thread: wait for the run's work
        # A cluster the run does not own outlives it: the canary follows the run there.
        self.defer = isinstance(compute, DaskCompute)
        self.keeps_compute = False  # a background collection closes the run's client itself
        self.released = threading.Event()  # set by release(run_id) once the run has ended
        self.sent: list[_Sent] = []
        self.rows: list[CanaryRow] = []
        self.waited_s = 0.0  # how long the run waited for its canary at its end

    def consider(self, finished: FinishedBatch, written: Sequence[ProblemRow]) -> None:
        """Send the committed batch to the candidate if the draw takes it."""
        batch_id = finished.batch.batch_id
        if not finished.quantum or not drawn(self.run_id, batch_id, self.config.fraction):
            return
        sides = self._sides(finished, written)
        if not sides:
            return
        try:
            sent = _Sent(batch_id, sides, self._task(finished, sides))
            if not (self.hold or self.defer):
                sent.future = self._submit(sent)
        except Exception as exc:
            self.rows += [self._failed(side, "sending", exc) for side in sides]
            return
        self.sent.append(sent)

    def finish(self, wait_s: float | None = None) -> list[CanaryRow]:
        """Send what was held, wait at most ``wait_s`` (``canary.wait_s``) for what is out,
        and write the run's canary rows; returns them. Deferred (a cluster the run does not
        own), a background thread does all that once the run has ended (:func:`release`),
        and this returns no rows: :func:`settle` waits for them."""
        limit = self.config.wait_s if wait_s is None else wait_s
        if self.defer and self.sent:
            self.keeps_compute = True
            thread = threading.Thread(target=self._after_run, args=(limit,), name=self.run_id)
            _OUTSTANDING[self.run_id] = (thread, self.released)
            thread.start()
            return []
        self._send_held()
        self._collect_all(limit)
        return self.rows

    def _after_run(self, limit: float) -> None:
        """The deferred canary: sent once the run has ended (or ``limit`` passed), collected."""
        try:
            self.released.wait(limit)
            self._send_held()
            self._collect_all(limit)
        finally:
            self.compute.close()

    def _send_held(self) -> None:
        for sent in self.sent:
            if sent.future is None:
                try:
                    sent.future = self._submit(sent)
                except Exception as exc:
                    self.rows += [self._failed(side, "sending", exc) for side in sent.sides]

    def _collect_all(self, limit: float) -> None:
        started = time.monotonic()
        for sent in self.sent:
            if sent.future is not None:
                self.rows += self._collect(sent, started + limit, limit)
        self.sent = []
        self.waited_s = time.monotonic() - started
        self._write()

    def _sides(
        self, finished: FinishedBatch, written: Sequence[ProblemRow]
    ) -> tuple[MainSide, ...]:
        """The batch's quantum answers the canary compares: answered on the main backend at
        angles it reached, of the configured kinds and sizes."""
        answers = {a.problem_id: a for r in finished.results for a in r.answers}
        kinds, largest = self.config.kinds, self.config.max_qubits
        return tuple(
            MainSide(row, answers[row.problem_id])
            for row in written
            if row.route == Route.QUANTUM
            and row.status == State.COMPLETED
            and row.problem_id in answers
            and row.angles
            and row.expected_objective is not None
            and (kinds is None or row.kind in kinds)
            and (largest is None or row.n_variables <= largest)
        )

    def _task(self, finished: FinishedBatch, sides: Sequence[MainSide]) -> CanaryTask:
        formulations = {p.problem_id: p.formulation for p in finished.batch.problems}
        rows = [side.row for side in sides]
        budget = self.settings.budget.per_problem_usd * len(rows)  # as a main answer's
        return CanaryTask(
            problems=tuple(
                WorkItem(r.problem_id, formulations[r.problem_id], int(r.shots or 1)) for r in rows
            ),
            angles=tuple(tuple(r.angles or ()) for r in rows),
            reps=tuple(int(r.reps or len(r.angles or ()) // 2) for r in rows),
            shape_keys=tuple(r.shape_key for r in rows),
            backend_spec=self.spec,
            max_qubits=self.settings.quantum.max_qubits,
            seed=self.settings.quantum.seed,
            policy=CallPolicy.from_settings(self.settings, self.ends_at, budget, backend=self.spec),
            artifacts=self.settings.artifacts_dir,
        )

    def _submit(self, sent: _Sent) -> TaskFuture:
        key = f"canary-{sent.batch_id}"
        return self.compute.submit(run_canary, sent.task, key=key, priority=CANARY_PRIORITY)

    def _collect(self, sent: _Sent, ends: float, limit: float) -> list[CanaryRow]:
        """The rows of one task: its answers, or its failure for every problem; none for a
        problem the candidate cannot take (``target.why_not``), which is no sample of it."""
        assert sent.future is not None
        try:
            result: CanaryResult = sent.future.result(timeout=max(0.0, ends - time.monotonic()))
        except TimeoutError:
            sent.future.cancel()
            late = TimeoutError(f"no answer within canary.wait_s ({limit:g} s) after the run")
            return [self._failed(side, "waiting", late) for side in sent.sides]
        except Exception as exc:  # the candidate raised in its task, or its worker died
            return [self._failed(side, "candidate", exc) for side in sent.sides]
        answers = {a.problem_id: a for a in result.answers}
        rows = []
        for side in sent.sides:
            pid = side.row.problem_id
            if pid in answers:
                rows.append(self._answered(side, answers[pid]))
            elif pid not in result.skipped:  # too large for the candidate: not sampled at all
                missing = LookupError("the candidate returned no answer for it")
                rows.append(self._failed(side, "candidate", missing))
        return rows

    def _answered(self, side: MainSide, answer: Answer) -> CanaryRow:
        return self._row(side, CanaryStatus.OK, answer=answer)

    def _failed(self, side: MainSide, where: str, exc: BaseException) -> CanaryRow:
        error = f"{where}: {type(exc).__name__}: {exc}"[:500]
        return self._row(side, CanaryStatus.FAILED, error=error)

    def _row(
        self,
        side: MainSide,
        status: CanaryStatus,
        answer: Answer | None = None,
        error: str | None = None,
    ) -> CanaryRow:
        """Both sides of one problem; the candidate's columns empty where it gave no answer."""
        row, main = side.row, side.answer
        expected = answer.expected_objective if answer else None
        difference = None
        if expected is not None and main.expected_objective is not None:
            difference = expected - main.expected_objective
        return CanaryRow(
            run_id=self.run_id,
            batch_id=row.batch_id,
            problem_id=row.problem_id,
            kind=row.kind,
            n_variables=row.n_variables,
            reps=row.reps,
            shots=row.shots,
            main_backend=self.main_backend,
            canary_backend=self.spec,
            status=status,
            error=error,
            main_expected=main.expected_objective,
            canary_expected=expected,
            expected_difference=difference,
            relative_difference=relative_to(
                difference, row.reference_objective, row.objective_scale
            ),
            main_objective=main.objective,
            canary_objective=answer.objective if answer else None,
            main_solution=main.solution,
            canary_solution=answer.solution if answer else None,
            reference_objective=row.reference_objective,
            objective_scale=row.objective_scale,
            main_seconds=main.seconds,
            canary_seconds=answer.seconds if answer else None,
            main_cost_usd=main.cost_usd,
            canary_cost_usd=answer.cost_usd if answer else None,
            created_at=datetime.now(UTC),
        )

    def _write(self) -> None:
        """The run's canary rows, one file; a file that cannot be written is logged, never
        raised: the run's answers are committed already."""
        if not self.rows:
            return
        failed = sum(r.status == CanaryStatus.FAILED for r in self.rows)
        fields: dict[str, object] = {"event": "canary", "run_id": self.run_id}
        fields["backend"] = self.spec
        fields |= {"rows": len(self.rows), "failed": failed, "waited_s": self.waited_s}
        try:
            files = open_files(self.settings.results_location)
            day = datetime.now(UTC).date()
            files.write(files.key("canary", day, self.run_id), to_table(self.rows, CanaryRow))
        except Exception as exc:
            log.error("run %s: its canary rows could not be written: %s", self.run_id, exc)
            return
        log.info(
            "run %s canary on %s: %d rows, %d failed; waited %.2f s for it at the end",
            self.run_id,
            self.spec,
            len(self.rows),
            failed,
            self.waited_s,
            extra={"fields": fields},
        )
