"""Dispatch: a run's routed batches as tasks, and each batch back once all its tasks are in.

Quantum batches are cut into chunks (one per worker, at least four problems each), each a
:class:`~pipeline.tasks.QuantumChunkTask` carrying its template packed once per run and a
call policy (its share of the batch's budget, a deadline that leaves CP-SAT time to answer
if the backend gives up). Classical problems are one task each, so they spread over every
worker, except small ones (``classical.enumerate_max_variables``), which are enumerated in
a fraction of a millisecond and travel together, one task per batch. When a quantum chunk
comes back without answers (the backend gave up, the task raised) or with an answer no
shot of which was feasible, its problems are sent to the classical solver as ordinary
tasks: nothing waits on them, other batches keep finishing. The chunks of an angle class
whose pilots are still out wait for them (:mod:`flows.pilots`) and then follow them.
A batch is handed back (:class:`FinishedBatch`) the moment its last task is in.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import queue
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from batching.batches import Batch, FinishedBatch, PlannedProblem, TemplateUse
from batching.sizing import classical_groups, split_chunks
from flows.compiler import TemplateCompiler
from flows.compute import Compute, TaskFuture
from flows.pilots import Admitted, Chunk, PilotBoard
from pipeline.backends import Backend, CallPolicy
from pipeline.config import Settings
from pipeline.errors import RunTimeout
from pipeline.fallback import Fallback, FallbackCode
from pipeline.intake import COMPILED, RUNNING, SUBMITTED, Move
from pipeline.qaoa.angle_store import AngleLibrary, plan_for
from pipeline.qaoa.angles import AnglePlan, ClassAngles, TransferCheck
from pipeline.qaoa.device import device_run
from pipeline.qaoa.templates import PackedTemplate
from pipeline.tasks import Answer, ChunkResult, ClassicalTask, QuantumChunkTask, WorkItem
from pipeline.vocabulary import Route, TaskRole
from pipeline.workers.classical import run_classical_chunk
from pipeline.workers.quantum import run_quantum_chunk

log = logging.getLogger("qhopper.dispatch")
RESULT_FETCH_TIMEOUT_S = 120.0
T = TypeVar("T")


@dataclass
class _Tracker:
    batch: Batch
    template: TemplateUse | None
    chunks: int = 0
    pending: int = 0
    results: list[ChunkResult] = field(default_factory=list)
    fallback_results: list[ChunkResult] = field(default_factory=list)
    fallbacks: dict[str, Fallback] = field(default_factory=dict)
    errors: dict[str, Fallback] = field(default_factory=dict)
    references: dict[str, Answer] = field(default_factory=dict)
    angle_plan: AnglePlan | None = None
    pilots: tuple[str, ...] = ()  # the problems of its chunk that pilots its class, if any
    started: float = field(default_factory=time.perf_counter)

    def finished(self) -> FinishedBatch:
        return FinishedBatch(
            self.batch,
            self.template,
            self.chunks,
            tuple(self.results),
            tuple(self.fallback_results),
            dict(self.batch.fallbacks) | self.fallbacks,
            self.errors,
            time.perf_counter() - self.started,
            self.references,
            self.angle_plan,
        )


class Dispatcher:
    """Sends batches to ``compute`` and yields each one finished."""

    def __init__(
        self,
        compute: Compute,
        settings: Settings,
        backend: Backend,
        run_started_at: float,
        record: Callable[[list[Move]], object],
        library: AngleLibrary | None = None,
        board: PilotBoard | None = None,
    ) -> None:
        self.compute = compute
        self.library = library
        self.board = board
        self._held: dict[str, list[tuple[_Tracker, Chunk, PackedTemplate]]] = defaultdict(list)
        self.settings = settings
        self.backend = backend
        self.run_started_at = run_started_at  # epoch seconds
        self.record = record
        self._done: queue.Queue[tuple[str, TaskRole, tuple[str, ...], TaskFuture]] = queue.Queue()
        self._trackers: dict[str, _Tracker] = {}
        self._submitted = 0
        self._deadline = time.monotonic() + settings.dask.run_timeout_s
        self.device = device_run(backend, settings.quantum)

    @property
    def in_flight(self) -> int:
        """Problems dispatched and not handed back yet."""
        return sum(t.batch.size for t in self._trackers.values())

    def dispatch(self, batches: Sequence[Batch], templates: TemplateCompiler) -> None:
        """Send ``batches`` out, recording their states one transaction per wave of them."""
        moves: list[Move] = []
        for batch in batches:
            if moves and not templates.ready(batch):
                self.record(moves)  # before waiting on a compile
                moves = []
            moves.append(self._dispatch(batch, templates))
        if moves:
            self.record(moves)

    def finished(self, until_in_flight: int = 0) -> Iterator[FinishedBatch]:
        """Batches as they finish, until no more than ``until_in_flight`` problems are out."""
        while self._trackers and self.in_flight > until_in_flight:
            left = self._deadline - time.monotonic()
            try:
                batch_id, role, problem_ids, future = self._done.get(timeout=max(0.0, left))
            except queue.Empty as exc:
                raise RunTimeout(
                    f"{len(self._trackers)} batches still running after "
                    f"{self.settings.dask.run_timeout_s:g} s (dask.run_timeout_s)"
                ) from exc
            tracker = self._trackers[batch_id]
            tracker.pending -= 1
            self._take(tracker, role, problem_ids, future)
            if tracker.pending == 0:
                del self._trackers[batch_id]
                yield tracker.finished()

    def _dispatch(self, batch: Batch, templates: TemplateCompiler) -> Move:
        ids = [p.problem_id for p in batch.problems]
        detail = f"batch={batch.batch_id}"
        if batch.route == Route.CLASSICAL:
            tracker = self._trackers[batch.batch_id] = _Tracker(batch, None)
            small = self.settings.classical.enumerate_max_variables
            for group in classical_groups(batch.problems, small):
                self._classical(tracker, group, TaskRole.CLASSICAL)
            tracker.chunks = tracker.pending
            return Move(ids, (SUBMITTED, RUNNING), detail)
        packed, use = templates.take(batch, self.settings.dask.run_timeout_s)
        tracker = self._trackers[batch.batch_id] = _Tracker(batch, use)
        plan = tracker.angle_plan = self._angle_plan(batch)
        chunks = [tuple(c) for c in split_chunks(batch.problems, batch.chunks)]
        admitted = Admitted([(c, plan) for c in chunks], [])
        if self.board is not None and self.device is None:  # a device run has no pilots
            assert batch.shape is not None
            admitted = self.board.admit(plan, batch.shape.digest, chunks)
            if admitted.piloting:
                tracker.pilots = tuple(p.problem_id for p in admitted.now[0][0])
        tracker.chunks = len(admitted.now) + len(admitted.held)
        for chunk, chunk_plan in admitted.now:
            self._quantum(tracker, chunk, packed, chunk_plan)
        for chunk in admitted.held:
            tracker.pending += 1  # promised: it goes once the class's pilots are back
            self._held[plan.class_key].append((tracker, chunk, packed))
        self._references(tracker)
        return Move(
            ids, (COMPILED, SUBMITTED, RUNNING), f"{detail} template={use.artifact_key[:16]}"
        )

    def _quantum(
        self, tracker: _Tracker, chunk: Chunk, packed: PackedTemplate, plan: AnglePlan
    ) -> None:
        task = self._quantum_task(tracker.batch, chunk, packed, plan)
        self._submit(tracker, TaskRole.QUANTUM, chunk, run_quantum_chunk, task)

    def _pilots_back(
        self, tracker: _Tracker, problem_ids: tuple[str, ...], learned: ClassAngles | None
    ) -> None:
        """The class's pilots are in (``learned`` None: they failed): its waiting chunks go."""
        if self.board is None or not tracker.pilots or problem_ids != tracker.pilots:
            return
        plan, shape = tracker.angle_plan, tracker.batch.shape
        assert plan is not None and shape is not None
        self.board.found(plan, shape.digest, learned, len(problem_ids))
        for waiting, chunk, packed in self._held.pop(plan.class_key, []):
            waiting.pending -= 1  # the promise is kept: _submit counts it again
            own, own_shape = waiting.angle_plan, waiting.batch.shape
            assert own is not None and own_shape is not None
            self._quantum(waiting, chunk, packed, self.board.follow(own, own_shape.digest))

    def _angle_plan(self, batch: Batch) -> AnglePlan:
        """Where the batch's angles start: its class's library entry or published angles;
        and how much a chunk that follows the class's pilots refines."""
        assert batch.angle_shape is not None
        quantum = self.settings.quantum
        plan = plan_for(
            self.library,
            batch.problems[0].spec.kind,
            batch.angle_shape,  # a pool's own class, or the one class all its problems share
            min_depth_gain=quantum.min_depth_gain,
        )
        return dataclasses.replace(plan, refine=quantum.refine, free_loss=quantum.free_loss)

    def _quantum_task(
        self,
        batch: Batch,
        chunk: Sequence[PlannedProblem],
        packed: PackedTemplate,
        plan: AnglePlan,
    ) -> QuantumChunkTask:
        quantum = self.settings.quantum
        return QuantumChunkTask(
            template=packed,
            problems=tuple(WorkItem(p.problem_id, p.formulation, p.shots) for p in chunk),
            backend_spec=self.backend.name,
            max_qubits=quantum.max_qubits,
            max_iterations=quantum.max_iterations,
            seed=quantum.seed,
            policy=self._policy(batch, len(chunk)),
            angle_plan=plan,
            device=self.device,
        )

    def _references(self, tracker: _Tracker) -> None:
        """A CP-SAT answer beside each quantum problem too large to judge exhaustively and
        small enough to be worth it: the classical reference its row is judged by."""
        classical = self.settings.classical
        low, high = classical.reference_exhaustive_max_variables, classical.reference_max_variables
        for problem in tracker.batch.problems:
            if low < problem.formulation.ising.n <= high:
                limit = classical.reference_time_limit_s
                self._classical(tracker, [problem], TaskRole.REFERENCE, limit)

    def _classical(
        self,
        tracker: _Tracker,
        problems: Sequence[PlannedProblem],
        role: TaskRole,
        time_limit_s: float | None = None,
    ) -> None:
        classical = self.settings.classical
        tasks = tuple(
            ClassicalTask(
                problem.problem_id,
                problem.formulation,
                time_limit_s or classical.time_limit_s,
                classical.workers,
                self.settings.quantum.seed,
                classical.enumerate_max_variables,
            )
            for problem in problems
        )
        self._submit(tracker, role, problems, run_classical_chunk, tasks)

    def _submit(
        self,
        tracker: _Tracker,
        role: TaskRole,
        problems: Sequence[PlannedProblem],
        fn: Callable[[Any], ChunkResult],
        task: Any,
    ) -> None:
        self._submitted += 1
        key = f"{role}-{tracker.batch.batch_id}-{self._submitted}"
        future = self.compute.submit(fn, task, key=key)
        ids = tuple(p.problem_id for p in problems)
        tracker.pending += 1
        batch_id = tracker.batch.batch_id
        future.add_done_callback(lambda done: self._done.put((batch_id, role, ids, done)))

    def _take(
        self, tracker: _Tracker, role: TaskRole, problem_ids: tuple[str, ...], future: TaskFuture
    ) -> None:
        try:
            # Done already; a Dask result still has to be fetched from its worker.
            result: ChunkResult = future.result(timeout=RESULT_FETCH_TIMEOUT_S)
        except Exception as exc:  # a task that raised must not stop the rest of the run
            self._failed(tracker, role, problem_ids, exc)
            return
        self._handlers[role](tracker, problem_ids, result)

    @property
    def _handlers(self) -> dict[TaskRole, Callable[[_Tracker, tuple[str, ...], ChunkResult], None]]:
        """What each role's result does to its batch."""
        return {
            TaskRole.QUANTUM: self._took_quantum,
            TaskRole.CLASSICAL: lambda tracker, _, result: tracker.results.append(result),
            TaskRole.REFERENCE: lambda tracker, _, result: tracker.references.update(
                (a.problem_id, a) for a in result.answers
            ),
            TaskRole.FALLBACK: lambda tracker, _, result: tracker.fallback_results.append(result),
        }

    def _failed(
        self, tracker: _Tracker, role: TaskRole, problem_ids: tuple[str, ...], exc: Exception
    ) -> None:
        """A task that raised: a quantum chunk falls back to CP-SAT; a missing reference
        costs its rows their judge, no more; any other leaves its problems unanswered."""
        fields: dict[str, object] = {"event": "task_failed", "role": role}
        fields["batch_id"] = tracker.batch.batch_id
        fields |= {"problem_ids": list(problem_ids), "error": type(exc).__name__}
        log.warning(
            "batch %s: %s task failed: %s",
            tracker.batch.batch_id,
            role,
            exc,
            extra={"fields": fields},
        )
        error = Fallback(
            FallbackCode.EXECUTION_ERROR,
            f"{role} execution failed: {type(exc).__name__}: {exc}"[:500],
        )
        if role == TaskRole.QUANTUM:
            self._pilots_back(tracker, problem_ids, None)
            self._fall_back(tracker, problem_ids, error)
        elif role != TaskRole.REFERENCE:
            tracker.errors.update(dict.fromkeys(problem_ids, error))

    def _took_quantum(
        self, tracker: _Tracker, problem_ids: tuple[str, ...], result: ChunkResult
    ) -> None:
        """A quantum chunk's answers; where the backend gave up, or an answer has no feasible
        shot, its problems go on to CP-SAT as fallbacks."""
        tracker.results.append(result)
        learned = result.learned
        if not isinstance(learned, TransferCheck):
            self._pilots_back(tracker, problem_ids, learned)
        elif self.board is not None:
            assert tracker.angle_plan is not None
            self.board.checked(tracker.angle_plan.class_key, learned)
        if result.fallback is not None:
            fields: dict[str, object] = {"event": "fallback", "batch_id": tracker.batch.batch_id}
            fields |= {"problem_ids": list(problem_ids), "code": result.fallback.code}
            fields |= {"attempts": result.attempts, "provider_job_ids": list(result.job_ids)}
            log.warning(
                "batch %s: %d problems fall back to CP-SAT after %d attempts: %s",
                tracker.batch.batch_id,
                len(problem_ids),
                result.attempts,
                result.fallback.message,
                extra={"fields": fields},
            )
            self._fall_back(tracker, problem_ids, result.fallback)
            return
        shots = {p.problem_id: p.shots for p in tracker.batch.problems}
        for answer in result.answers:
            if not answer.feasible:
                why = f"no feasible sample in {shots[answer.problem_id]} shots"
                reason = Fallback(FallbackCode.NO_FEASIBLE_SAMPLE, why)
                self._fall_back(tracker, (answer.problem_id,), reason)

    def _fall_back(self, tracker: _Tracker, problem_ids: tuple[str, ...], why: Fallback) -> None:
        by_id = {p.problem_id: p for p in tracker.batch.problems}
        for pid in problem_ids:
            tracker.fallbacks[pid] = why
            self._classical(tracker, [by_id[pid]], TaskRole.FALLBACK)

    def _policy(self, batch: Batch, chunk_size: int) -> CallPolicy:
        """A chunk's limits: its share of the batch's budget, and a deadline early enough that
        CP-SAT can still answer the batch in time if the backend gives up."""
        routing = batch.routing
        reserve = 1.0 + batch.classical_s
        ends = [self.run_started_at + self.settings.dask.run_timeout_s]
        if routing is not None and routing.deadline is not None:
            ends.append(routing.deadline.timestamp())
        budget = math.inf
        if routing is not None and routing.decision == Route.QUANTUM:
            budget = routing.budget_allotted_usd * chunk_size / batch.size
        return CallPolicy.from_settings(
            self.settings, min(ends) - reserve, budget, backend=self.backend.name
        )
