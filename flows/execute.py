"""A run's work once it has claims, in the order it happens: plan, route, compile, dispatch,
and commit each batch as it finishes, claiming the next wave while the last is out.

Imported by the run core only when there is work, so an empty run never loads Qiskit,
Dask or OR-Tools.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime

from batching import (
    Batch,
    Budgets,
    FinishedBatch,
    PlannedBatch,
    RunEstimate,
    estimate_run,
    plan_claims,
    route_batches,
)
from flows.canary import Canary
from flows.compiler import TemplateCompiler
from flows.compute import Compute, InlineCompute, LocalClusterCompute
from flows.dispatch import Dispatcher
from flows.pilots import PilotBoard
from flows.tally import Run, Stage
from pipeline.backends import Backend
from pipeline.canary.vocabulary import CanaryStatus
from pipeline.config import Settings
from pipeline.intake import ClaimedProblem
from pipeline.qaoa.angle_store import AngleLibrary, record_batch
from pipeline.qaoa.findings import Findings
from pipeline.qaoa.templates import TemplateStore, artifact_key
from pipeline.results import ProblemRow
from pipeline.results.assemble import (
    CLASSICAL_BACKEND,
    RowContext,
    commit_finished,
)
from pipeline.results.exhausted import commit_exhausted
from pipeline.vocabulary import Route, State

log = logging.getLogger("qhopper.run")


def wave_size(settings: Settings, workers: int) -> int:
    """Problems one claim takes: two full batches per worker keep every worker busy while
    the next wave is claimed, and a deep queue never sits in one runner's memory."""
    return max(1, min(settings.intake.claim_limit, 2 * workers * settings.quantum.max_batch_size))


def execute_claims(
    run: Run, backend: Backend, claims: list[ClaimedProblem], backlog: int, waves: bool = True
) -> str:
    """Plan, route, compile, dispatch and commit the claimed problems, claiming the next
    wave (unless ``waves`` is off) whenever less than half a wave is still out; returns the
    executor. ``backlog``: how many problems were claimable when the run began. A run with
    waves off (a synchronous solve, whose caller waits for the run) runs no canary."""
    with run.clock.stage(Stage.PLAN):
        exhausted, planned = plan_claims(claims, backend, run.deps.settings)
    compute = run.deps.compute.open(estimate_run(planned, backend, run.deps.settings).core_seconds)
    work = _Work(run, backend, compute, total=max(backlog, len(claims)), canary=waves)
    try:
        while True:
            routed = work.route(planned)
            work.announce(routed)
            work.settle_exhausted(exhausted)
            work.dispatch(routed)
            claims = work.next_wave() if waves else []
            if not claims:
                break
            with run.clock.stage(Stage.PLAN):
                exhausted, planned = plan_claims(claims, backend, run.deps.settings)
        work.drain()
        work.finish_canary()
    finally:
        work.close()
    return compute.label


class _Work:
    """The run's batches in flight: routing them, sending them out, committing them back."""

    def __init__(
        self, run: Run, backend: Backend, compute: Compute, total: int, canary: bool = True
    ) -> None:
        deps, settings = run.deps, run.deps.settings
        self.run = run
        self.total = total  # the problems the run expects to answer: its progress's total
        self.announced = False
        self.backend = backend
        self.compute = compute
        self.templates: TemplateStore = deps.templates()
        self.context = RowContext(
            run.run_id,
            deps.backend_spec,
            backend.solver_path,
            compute.label,
            run.started_at,
            settings.intake.max_attempts,
            settings.classical,
            settings.prices,
        )
        thread = compute.thread if isinstance(compute, InlineCompute) else None
        self.compiler = TemplateCompiler(self.templates, backend, thread)
        self.library = AngleLibrary(deps.intake.engine)  # shared by every process and host
        self.board = PilotBoard(run.run_id, settings.quantum, Findings(deps.intake.engine))
        self.dispatcher = Dispatcher(
            compute,
            settings,
            backend,
            run.started_at.timestamp(),
            record=lambda moves: deps.intake.advance_many(run.run_id, moves),
            library=self.library,
            board=self.board,
        )
        self.wave = wave_size(settings, compute.workers)
        self.budgets = Budgets.for_run(settings)  # one run budget across all its waves
        self.canary = _canary(run, compute) if canary else None

    def announce(self, routed: Sequence[Batch]) -> None:
        """Once, on the first wave: say the plan and how long it should take before
        computing, and start the progress (its ETA starts from this estimate)."""
        if self.announced:
            return
        self.announced = True
        estimate = estimate_run(routed, self.backend, self.run.deps.settings)
        _announce(self.run, estimate, self.compute.workers, self.total)

    def route(self, planned: Sequence[PlannedBatch]) -> list[Batch]:
        """Each batch's route, decided once; CP-SAT batches first (they need no template)."""
        with self.run.clock.stage(Stage.PLAN):
            routed = route_batches(
                planned,
                self.backend,
                self.run.deps.settings,
                datetime.now(UTC),
                compiled=lambda shape: self.templates.path_for(
                    artifact_key(shape, self.backend)
                ).exists(),
                workers=self.compute.workers,
                budgets=self.budgets,
            )
        routed.sort(key=lambda b: b.route != Route.CLASSICAL)
        self.run.tally.routed(routed)
        return routed

    def dispatch(self, routed: Sequence[Batch]) -> None:
        """Send the batches out, and commit what finishes until half a wave is out."""
        self.compiler.add(routed)
        with self.run.clock.stage(Stage.EXECUTE):
            self.dispatcher.dispatch(routed, self.compiler)
            for finished in self.dispatcher.finished(until_in_flight=self.wave // 2):
                self.commit(finished)

    def next_wave(self) -> list[ClaimedProblem]:
        run = self.run
        settings = run.deps.settings
        more = run.deps.intake.claim(run.run_id, self.wave, settings.intake.lease_seconds)
        if more:
            run.tally.problems += len(more)
            run.deps.progress.note(f"run {run.run_id}: claimed {len(more)} more problems")
        return more

    def drain(self) -> None:
        with self.run.clock.stage(Stage.EXECUTE):
            for finished in self.dispatcher.finished():
                self.commit(finished)

    def commit(self, finished: FinishedBatch) -> None:
        """A finished batch's rows, committed; its counts and timings added to the run's;
        its refined angles written back to the angle library, so the next batch of its
        class starts there."""
        run = self.run
        lease = run.deps.settings.intake.lease_seconds
        written = commit_finished(run.deps.results, finished, self.context, lease)
        run.tally.written(written)
        _log_batch(run.run_id, finished, written, run.deps.backend_spec)
        _learn(self.library, finished, written)
        if self.canary is not None:
            self.canary.consider(finished, written)
        if finished.template is not None:
            run.tally.template(finished.template)
            if finished.template.first:
                run.clock.times.add(Stage.COMPILE, finished.template.compile_s)
        run.deps.progress.advance(finished.batch.size)

    def finish_canary(self) -> None:
        """Once every answer is committed: wait, bounded, for the canary's work still out."""
        if self.canary is not None:
            rows = self.canary.finish()
            failed = sum(r.status == CanaryStatus.FAILED for r in rows)
            if rows:
                self.run.deps.progress.note(
                    f"run {self.run.run_id}: canary on {self.canary.spec}: "
                    f"{len(rows)} answers sampled, {failed} failed; "
                    f"waited {self.canary.waited_s:.1f} s for it"
                )
            elif self.canary.keeps_compute:
                self.run.deps.progress.note(
                    f"run {self.run.run_id}: canary on {self.canary.spec}: sampling after the "
                    "run on the cluster, its rows written when back"
                )

    def settle_exhausted(self, claims: list[ClaimedProblem]) -> None:
        """Problems that kept killing runs: one batch of failed rows that say so."""
        if not claims:
            return
        run = self.run
        run.tally.batches += 1
        lease = run.deps.settings.intake.lease_seconds
        run.tally.written(commit_exhausted(run.deps.results, claims, self.context, lease))

    def close(self) -> None:
        self.board.close()
        self.compiler.close()
        if isinstance(self.compute, LocalClusterCompute):
            self.run.clock.times.cluster_wait = self.compute.waited_s
        if self.canary is None or not self.canary.keeps_compute:
            self.compute.close()  # else the canary's collection closes it when done


def _canary(run: Run, compute: Compute) -> Canary | None:
    """The run's canary, where ``[canary] backend`` names a candidate."""
    settings = run.deps.settings
    if settings.canary.backend is None:
        return None
    ends_at = run.started_at.timestamp() + settings.dask.run_timeout_s
    return Canary(settings, run.run_id, run.deps.backend_spec, compute, ends_at)


def _announce(run: Run, estimate: RunEstimate, workers: int, total: int) -> None:
    said = estimate.describe(workers, total)
    wall = estimate.wall_seconds(workers, total)
    run.deps.progress.note(said)
    fields = {"event": "plan", "run_id": run.run_id, "estimated_s": wall}
    log.info("run %s %s", run.run_id, said, extra={"fields": fields})
    run.deps.progress.stage("execute", total, wall)


def _learn(library: AngleLibrary, finished: FinishedBatch, written: Sequence[ProblemRow]) -> None:
    """Record the angles the batch's quantum answers reached, judged by their references."""
    batch = finished.batch
    if batch.angle_shape is None:
        return
    answers = {a.problem_id: a for r in finished.results for a in r.answers}
    quantum = [
        r
        for r in written
        if r.route == Route.QUANTUM and r.status != State.FAILED and r.problem_id in answers
    ]
    if not quantum:
        return
    record_batch(
        library,
        batch.problems[0].spec.kind,
        batch.angle_shape,
        [answers[r.problem_id] for r in quantum],
        [r.reference_objective for r in quantum],
        finished.angle_plan.source if finished.angle_plan else "grid",
        scales=[r.objective_scale for r in quantum],
    )


def _log_batch(
    run_id: str, finished: FinishedBatch, written: Sequence[ProblemRow], backend: str
) -> None:
    """One structured event per committed batch: ids, route, backend, shape, jobs, timings."""
    batch = finished.batch
    fields = {
        "event": "batch",
        "run_id": run_id,
        "batch_id": batch.batch_id,
        "route": batch.route,
        "backend": backend if finished.quantum else CLASSICAL_BACKEND,
        "shape": batch.shape.label if batch.shape else None,
        "problem_ids": [r.problem_id for r in written],
        "statuses": dict(Counter(r.status for r in written)),
        "provider_job_ids": sorted({j for r in finished.results for j in r.job_ids}),
        "t_compile_s": finished.template.compile_s if finished.template else 0.0,
        "t_execute_s": finished.execute_s,
    }
    log.info("batch %s committed: %d rows", batch.batch_id, len(written), extra={"fields": fields})
