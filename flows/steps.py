"""The steps of one flow run, as plain functions over a RunContext.

recover -> collect -> plan -> compile -> execute (Dask fan-out, one atomic Parquet file
per batch as each completes) -> finalise. The Prefect flow in :mod:`flows.batch_flow`
wraps each step in one task; nothing per problem touches Prefect.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import defaultdict
from concurrent.futures import Future as LocalFuture
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed

from batching.economics import classical_seconds, route_batches
from batching.planner import Batch, PlannedProblem, plan_batches
from pipeline.engine.shapes import shape_of
from flows.progress import sink
from pipeline.backends import CallPolicy, QuantumBackend, get_backend
from pipeline.config import Settings
from pipeline.execution import ChunkOutcome, run_classical_chunk, run_quantum_chunk
from pipeline.formulation import formulate
from pipeline.intake import (
    COMPILED,
    COMPLETED,
    DEGRADED,
    FAILED,
    RUNNING,
    SUBMITTED,
    ClaimedProblem,
    IntakeStore,
    LeaseKeeper,
    Move,
    fault_point,
    new_id,
    rename_fault_point,
    utcnow,
)
from pipeline.model import spec_from_record
from pipeline.results import (
    BATCH_SCHEMA,
    PROBLEM_SCHEMA,
    RUN_SCHEMA,
    dataset_path,
    read_file,
    write_rows,
)
from pipeline.engine.templates import (
    CompiledTemplate,
    PackedTemplate,
    TemplateLookup,
    TemplateStore,
    artifact_key,
)

log = logging.getLogger("qhopper.run")


@dataclass
class RunContext:
    run_id: str
    settings: Settings
    store: IntakeStore
    templates: TemplateStore
    backend_spec: str
    backend: QuantumBackend
    dask_address: str | None
    started_at: datetime = field(default_factory=utcnow)
    timings: dict[str, float] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    lease_keeper: LeaseKeeper | None = None

    @classmethod
    def open(
        cls, settings: Settings, backend_spec: str | None, dask_address: str | None
    ) -> RunContext:
        spec = backend_spec or settings.quantum.backend
        return cls(
            run_id=new_id("r"),
            settings=settings,
            store=IntakeStore.open(settings.database_url),
            templates=TemplateStore(settings.artifacts_dir),
            backend_spec=spec,
            backend=get_backend(spec, settings.quantum.max_qubits),
            dask_address=dask_address or settings.dask.address,
        )

    def close(self) -> None:
        """Stop renewing; give back at once whatever this run claimed and did not finish."""
        if self.lease_keeper is not None:
            self.lease_keeper.stop()
            self.lease_keeper = None
        try:
            released = self.store.release(self.run_id)
            if released:
                log.warning("run %s released %d unfinished problems", self.run_id, released)
        except Exception as exc:  # never hide the error that ended the run; leases expire
            log.error("run %s could not release its claims: %s", self.run_id, exc)
        finally:
            self.store.close()


@dataclass
class CompiledBatch:
    batch: Batch
    template: CompiledTemplate | None
    reused: bool
    compile_s: float


# --- recover ------------------------------------------------------------------------------
def recover(ctx: RunContext) -> int:
    """Settle batches a dead run left half-written: roll forward if the file landed."""
    started = time.perf_counter()
    settled = 0
    for batch_id, path_text in ctx.store.unfinished_batches():
        path = Path(path_text)
        if path.exists():
            table = read_file(path).to_pylist()
            ctx.store.finish_batch(
                batch_id,
                [
                    {
                        k: row[k]
                        for k in ("problem_id", "status", "route", "solver_path", "fallback_reason")
                    }
                    for row in table
                ],
            )
            log.warning("run %s rolled forward batch %s (file present)", ctx.run_id, batch_id)
        else:
            _remove_batch_row(ctx, path)
            ctx.store.abandon_batch(batch_id)
            log.warning("run %s released batch %s (file missing)", ctx.run_id, batch_id)
        # Temporaries the dead writer left (hidden names, never read): its batch is settled.
        batches_dir = ctx.settings.results_dir / "batches" / path.parent.name
        for directory in (path.parent, batches_dir):
            for orphan in directory.glob(f".{batch_id}.*.tmp"):
                orphan.unlink(missing_ok=True)
        settled += 1
    # Any other temporary (a run summary cut short) is an orphan once it is an hour old:
    # a live writer holds one for milliseconds.
    cutoff = time.time() - 3600
    for orphan in ctx.settings.results_dir.glob("*/date=*/.*.tmp"):
        try:
            if orphan.stat().st_mtime < cutoff:
                orphan.unlink()
        except FileNotFoundError:
            pass
    ctx.timings["recover"] = time.perf_counter() - started
    return settled


def _remove_batch_row(ctx: RunContext, problems_path: Path) -> None:
    batch_file = (
        ctx.settings.results_dir / "batches" / problems_path.parent.name / problems_path.name
    )
    batch_file.unlink(missing_ok=True)


# --- collect and plan ---------------------------------------------------------------------
def collect(ctx: RunContext) -> list[ClaimedProblem]:
    started = time.perf_counter()
    lease_seconds = ctx.settings.intake.lease_seconds
    claimed = ctx.store.claim(ctx.run_id, ctx.settings.intake.claim_limit, lease_seconds)
    fault_point("claim")
    if claimed and ctx.lease_keeper is None:
        ctx.lease_keeper = LeaseKeeper(ctx.store, ctx.run_id, lease_seconds).start()
    ctx.timings["collect"] = time.perf_counter() - started
    ctx.counters["problems"] = len(claimed)
    log.info("run %s claimed %d problems", ctx.run_id, len(claimed))
    return claimed


def plan(
    ctx: RunContext, claimed: list[ClaimedProblem]
) -> tuple[list[Batch], list[ClaimedProblem]]:
    """Turn claims into batches; problems past their attempt limit are set aside to fail."""
    started = time.perf_counter()
    quantum = ctx.settings.quantum
    planned: list[PlannedProblem] = []
    exhausted: list[ClaimedProblem] = []
    for claim in claimed:
        if claim.attempts > ctx.settings.intake.max_attempts:
            exhausted.append(claim)
            continue
        spec = spec_from_record(json.loads(claim.spec_json))
        planned.append(
            PlannedProblem(
                problem_id=claim.id,
                key=claim.key,
                spec=spec,
                formulation=formulate(spec),
                input_hash=claim.input_hash,
                attempts=claim.attempts,
                submitted_at=claim.submitted_at,
                claimed_at=claim.claimed_at,
                reps=spec.reps or quantum.default_reps,
                shots=spec.shots or quantum.default_shots,
            )
        )
    batches = plan_batches(
        planned, ctx.backend_spec, ctx.backend.max_qubits, quantum.max_batch_size
    )
    ctx.timings["plan"] = time.perf_counter() - started
    ctx.counters["batches"] = len(batches)
    ctx.counters["quantum_batches"] = sum(b.route == "quantum" for b in batches)
    ctx.counters["classical_batches"] = sum(b.route == "classical" for b in batches)
    return batches, exhausted


# --- compile ------------------------------------------------------------------------------
@dataclass
class RoutedBatches:
    """Batches after routing (CP-SAT ones first), their templates compiling in the background.

    One thread compiles (or loads) each distinct shape's template in dispatch order, so
    compiling overlaps the cluster's start and the first batches' execution; ``execute``
    takes each batch's template when it dispatches that batch.
    """

    batches: list[Batch]
    lookups: dict[str, LocalFuture[TemplateLookup]]
    compiler: ThreadPoolExecutor

    def ready(self, batch: Batch) -> bool:
        """Whether dispatching ``batch`` needs no wait: no template, or its template landed."""
        return batch.shape is None or self.lookups[batch.shape.digest].done()

    def close(self) -> None:
        self.compiler.shutdown(wait=True, cancel_futures=True)


def compile_templates(ctx: RunContext, batches: list[Batch]) -> RoutedBatches:
    """Route each batch on its economics, then start compiling one template per shape.

    Routing comes first so no template is compiled for a batch that goes to CP-SAT; a
    template is compiled at most once, then reused.
    """
    started = time.perf_counter()
    routed = sorted(_route(ctx, batches), key=lambda batch: batch.route != "classical")
    compiler = ThreadPoolExecutor(1, thread_name_prefix="qhopper-compile")
    lookups: dict[str, LocalFuture[TemplateLookup]] = {}
    for batch in routed:
        if batch.shape is not None and batch.shape.digest not in lookups:
            lookups[batch.shape.digest] = compiler.submit(
                ctx.templates.get, batch.shape, ctx.backend
            )
    ctx.timings["compile"] = time.perf_counter() - started  # template seconds join as they land
    return RoutedBatches(routed, lookups, compiler)


def _compiled(
    ctx: RunContext, batch: Batch, routed: RoutedBatches, sent: dict[str, PackedTemplate]
) -> tuple[CompiledBatch, PackedTemplate | None]:
    """The batch with its template, packed for the workers once per shape."""
    if batch.shape is None:
        return CompiledBatch(batch, None, False, 0.0), None
    digest = batch.shape.digest
    lookup = routed.lookups[digest].result(timeout=ctx.settings.dask.run_timeout_s)
    first = digest not in sent
    if first:
        sent[digest] = PackedTemplate.pack(lookup.template)
        ctx.counters["templates_reused" if lookup.reused else "templates_compiled"] += 1
        ctx.timings["compile"] += lookup.seconds
    item = CompiledBatch(
        batch, lookup.template, lookup.reused or not first, lookup.seconds if first else 0.0
    )
    return item, sent[digest]


def _route(ctx: RunContext, batches: list[Batch]) -> list[Batch]:
    """Quantum or classical per batch, on cost, latency, feasibility, deadlines and budgets."""
    routed = route_batches(
        batches,
        ctx.backend,
        ctx.settings,
        datetime.now(UTC),
        compiled=lambda shape: ctx.templates.path_for(artifact_key(shape, ctx.backend)).exists(),
        workers=ctx.settings.dask.n_workers,
    )
    ctx.counters["quantum_batches"] = sum(b.route == "quantum" for b in routed)
    ctx.counters["classical_batches"] = sum(b.route == "classical" for b in routed)
    for before, after in zip(batches, routed, strict=True):
        if before.route != after.route:
            log.info(
                "run %s batch %s routed classical: %s",
                ctx.run_id,
                after.batch_id,
                after.route_reason,
            )
    return routed


# --- execute and write --------------------------------------------------------------------
@dataclass
class _Pending:
    compiled: CompiledBatch
    chunks: int
    outcomes: list[ChunkOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dispatched_at: float = field(default_factory=time.perf_counter)


def execute(
    ctx: RunContext, routed: RoutedBatches, exhausted: list[ClaimedProblem], client: Client
) -> None:
    """Fan every batch out over Dask in chunks as its template lands; write each batch the
    moment it is whole."""
    started = time.perf_counter()
    try:
        _execute(ctx, routed, exhausted, client)
    finally:
        routed.close()
    ctx.timings["execute"] = time.perf_counter() - started


def _execute(
    ctx: RunContext, routed: RoutedBatches, exhausted: list[ClaimedProblem], client: Client
) -> None:
    if exhausted:
        _write_exhausted(ctx, exhausted)
    progress = sink()
    progress.stage("execute", sum(b.size for b in routed.batches))
    from flows.dask_client import worker_count

    workers = worker_count(client)
    futures: dict[Future, str] = {}
    pending: dict[str, _Pending] = {}
    sent: dict[str, PackedTemplate] = {}
    dispatched: list[Move] = []  # recorded together: one transaction per wave of batches
    for batch in routed.batches:
        if dispatched and not routed.ready(batch):
            ctx.store.advance_many(ctx.run_id, dispatched)  # before waiting on a compile
            dispatched = []
        item, template = _compiled(ctx, batch, routed, sent)
        chunks = _chunk(batch, workers, ctx.settings.classical.chunk_size)
        pending[batch.batch_id] = _Pending(item, len(chunks))
        for chunk in chunks:
            futures[_submit(ctx, client, item, template, chunk)] = batch.batch_id
        dispatched.append(_dispatch_move(item))
    if dispatched:
        ctx.store.advance_many(ctx.run_id, dispatched)
    timeout = ctx.settings.dask.run_timeout_s
    for future in as_completed(list(futures), loop=client.loop, timeout=timeout):
        state = pending[futures[future]]
        try:
            state.outcomes.append(future.result())
        except Exception as exc:  # a failed chunk must not stop the rest of the run
            state.errors.append(f"{type(exc).__name__}: {exc}")
            log.warning("run %s batch %s chunk failed: %s", ctx.run_id, futures[future], exc)
        if len(state.outcomes) + len(state.errors) == state.chunks:
            _finish_batch(ctx, client, state)  # the LeaseKeeper renews the leases of the rest
            progress.advance(state.compiled.batch.size)


def _dispatch_move(item: CompiledBatch) -> Move:
    """A dispatched batch's states: Dask starts work as soon as it is submitted, so for a
    simulator submitted is running."""
    ids = [p.problem_id for p in item.batch.problems]
    detail = f"batch={item.batch.batch_id}"
    if item.template is None:
        return Move(ids, (SUBMITTED, RUNNING), detail)
    detail += f" template={item.template.artifact_key[:16]}"
    return Move(ids, (COMPILED, SUBMITTED, RUNNING), detail)


def _chunk(batch: Batch, workers: int, classical_chunk: int) -> list[list[PlannedProblem]]:
    problems = list(batch.problems)
    if batch.route == "quantum":
        count = max(1, min(workers, len(problems) // 4))
        size = math.ceil(len(problems) / count)
    else:
        size = classical_chunk
    return [problems[i : i + size] for i in range(0, len(problems), size)]


def _submit(
    ctx: RunContext,
    client: Client,
    item: CompiledBatch,
    template: PackedTemplate | None,
    chunk: list[PlannedProblem],
) -> Future:
    """A chunk's task; ``template`` is the batch's template, packed once per run."""
    settings = ctx.settings
    if template is not None:
        items_q = [(p.problem_id, _spec_text(p), p.shots) for p in chunk]
        return client.submit(
            run_quantum_chunk,
            template,
            items_q,
            ctx.backend_spec,
            settings.quantum.max_qubits,
            settings.quantum.max_iterations,
            settings.quantum.seed,
            policy=_policy(ctx, item.batch, chunk),
            pure=False,
        )
    items_c = [(p.problem_id, _spec_text(p)) for p in chunk]
    return client.submit(
        run_classical_chunk,
        items_c,
        settings.classical.time_limit_s,
        settings.classical.workers,
        settings.quantum.seed,
        pure=False,
    )


def _policy(ctx: RunContext, batch: Batch, chunk: list[PlannedProblem]) -> CallPolicy:
    """A quantum chunk's limits: its share of the batch's budget, and a deadline early
    enough that CP-SAT can still answer the batch in time if the backend gives up."""
    routing = batch.routing
    time_limit = ctx.settings.classical.time_limit_s
    reserve = 1.0 + sum(classical_seconds(p, time_limit) for p in batch.problems)
    ends = [ctx.started_at.replace(tzinfo=UTC).timestamp() + ctx.settings.dask.run_timeout_s]
    if routing is not None and routing.deadline is not None:
        ends.append(routing.deadline.timestamp())
    budget = math.inf
    if routing is not None and routing.decision == "quantum":
        budget = routing.budget_allotted_usd * len(chunk) / batch.size
    return CallPolicy.from_settings(
        ctx.settings, deadline_at=min(ends) - reserve, budget_usd=budget
    )


def _spec_text(problem: PlannedProblem) -> str:
    return problem.spec.model_dump_json(exclude_none=True)


def _finish_batch(ctx: RunContext, client: Client, state: _Pending) -> None:
    """Fall back where needed, then journal, write and mark the batch's problems final.

    A quantum chunk whose backend gave up (retries exhausted, a permanent error, an
    outage, its budget or its deadline) says why in ``outcome.error``: its problems go to
    CP-SAT labelled with that reason, and what its attempts cost is charged to them.
    """
    item = state.compiled
    batch = item.batch
    answers: dict[str, dict[str, Any]] = {}
    chunk_seconds: dict[str, float] = {}
    attempt_cost: dict[str, float] = {}
    fallbacks: dict[str, str] = dict(batch.fallback_reasons)
    for outcome in state.outcomes:
        for pid, answer in outcome.answers.items():
            answers[pid] = answer
            chunk_seconds[pid] = outcome.seconds / max(1, len(outcome.answers))
        for pid in outcome.problem_ids:
            attempt_cost[pid] = outcome.cost_usd / len(outcome.problem_ids)
            if outcome.error:
                fallbacks.setdefault(pid, outcome.error[:500])
        if outcome.error:
            log.warning(
                "run %s batch %s: %d problems fall back to CP-SAT after %d attempts: %s",
                ctx.run_id,
                batch.batch_id,
                len(outcome.problem_ids),
                outcome.attempts,
                outcome.error,
            )
    execute_s = max((o.seconds for o in state.outcomes), default=0.0)
    error = "; ".join(state.errors)
    for problem in batch.problems:
        pid = problem.problem_id
        if pid not in answers:
            fallbacks.setdefault(pid, f"{batch.route} execution failed: {error}"[:500])
        elif batch.route == "quantum" and not answers[pid]["feasible"]:
            fallbacks[pid] = f"no feasible sample in {problem.shots} shots"
    redo = [
        p
        for p in batch.problems
        if p.problem_id in fallbacks and (batch.route == "quantum" or p.problem_id not in answers)
    ]
    classical_ids: set[str] = (
        set() if batch.route == "quantum" else {p.problem_id for p in batch.problems}
    )
    if redo and batch.route == "quantum":
        items = [(p.problem_id, _spec_text(p)) for p in redo]
        settings = ctx.settings
        try:
            outcome = client.submit(
                run_classical_chunk,
                items,
                settings.classical.time_limit_s,
                settings.classical.workers,
                settings.quantum.seed,
                pure=False,
            ).result(timeout=settings.dask.run_timeout_s)
            for pid, answer in outcome.answers.items():
                answers[pid] = answer
                chunk_seconds[pid] = answer["seconds"]
                classical_ids.add(pid)
        except Exception as exc:
            log.error(
                "run %s batch %s classical fallback failed: %s", ctx.run_id, batch.batch_id, exc
            )
    post_started = time.perf_counter()
    rows = [
        _problem_row(
            ctx,
            item,
            p,
            answers.get(p.problem_id),
            p.problem_id in classical_ids,
            fallbacks.get(p.problem_id),
            chunk_seconds.get(p.problem_id, 0.0),
            execute_s,
            attempt_cost.get(p.problem_id, 0.0),
        )
        for p in batch.problems
    ]
    _write_batch(ctx, batch, item, rows, state, execute_s, post_started)


def _batch_columns(batch: Batch, state: _Pending) -> dict[str, Any]:
    """The routing numbers and the quantum attempts of a batch, for its ``batches/`` row."""
    outcomes = state.outcomes
    errors = [o.error for o in outcomes if o.error] + state.errors
    columns: dict[str, Any] = batch.routing.columns() if batch.routing else {}
    return columns | {
        "backend_attempts": sum(o.attempts for o in outcomes),
        "backend_failures": sum(o.failures for o in outcomes),
        "max_attempts_per_call": max((o.max_attempts_per_call for o in outcomes), default=0),
        "quantum_cost_usd": sum(o.cost_usd for o in outcomes),
        "provider_job_ids": ",".join(j for o in outcomes for j in o.job_ids) or None,
        "fallback_reason": "; ".join(dict.fromkeys(errors))[:1000] or None,
    }


def _problem_row(
    ctx: RunContext,
    item: CompiledBatch,
    problem: PlannedProblem,
    answer: dict[str, Any] | None,
    classical: bool,
    fallback: str | None,
    seconds: float,
    batch_execute_s: float,
    attempt_cost: float = 0.0,
) -> dict[str, Any]:
    """One problem's row; ``attempt_cost`` is its share of every quantum attempt's bill."""
    prices = ctx.settings.prices
    spec = problem.spec
    quantum = not classical and answer is not None
    if answer is None:
        status = FAILED
    else:
        status = DEGRADED if fallback else COMPLETED
    shape = item.batch.shape or shape_of(problem.formulation.ising, 0, "cpsat")
    cost = attempt_cost if quantum else attempt_cost + seconds * prices.cpu_usd_per_core_second
    return {
        "problem_id": problem.problem_id,
        "key": problem.key,
        "run_id": ctx.run_id,
        "batch_id": item.batch.batch_id,
        "kind": spec.kind,
        "n_variables": problem.formulation.ising.n,
        "shape_key": shape.label,
        "route": "quantum" if quantum else "classical",
        "solver_path": (ctx.backend.solver_path if quantum else "classical") if answer else None,
        "backend": ctx.backend_spec if quantum else "ortools-cpsat",
        "status": status,
        "fallback_reason": fallback if status != COMPLETED else None,
        "solution": answer["solution"] if answer else None,
        "objective": answer["objective"] if answer else None,
        "feasible": bool(answer["feasible"]) if answer else False,
        "proven_optimal": bool(answer["proven_optimal"]) if answer else False,
        "expected_objective": answer.get("expected_objective") if quantum and answer else None,
        "reps": problem.reps if quantum else None,
        "shots": problem.shots if quantum else None,
        "evaluations": int(answer.get("evaluations", 0)) if answer else 0,
        "cost_usd": cost,
        "t_queue_s": (problem.claimed_at - problem.submitted_at).total_seconds(),
        "t_compile_s": item.compile_s,
        "t_execute_s": batch_execute_s if quantum else seconds,
        "provider_job_id": answer.get("provider_job_id") if quantum and answer else None,
        "circuit_hash": item.template.artifact_key if quantum and item.template else None,
        "input_hash": problem.input_hash,
        "submitted_at": problem.submitted_at.replace(tzinfo=UTC),
    }


def _write_batch(
    ctx: RunContext,
    batch: Batch,
    item: CompiledBatch,
    rows: list[dict[str, Any]],
    state: _Pending,
    execute_s: float,
    post_started: float,
) -> None:
    completed_at = datetime.now(UTC)
    for row in rows:
        row["t_post_s"] = time.perf_counter() - post_started
        row["completed_at"] = completed_at
        row["t_total_s"] = (completed_at - row["submitted_at"]).total_seconds()
    day = completed_at.date()
    results = ctx.settings.results_dir
    problems_path = dataset_path(results, "problems", day, batch.batch_id)
    rows = _journal(ctx, batch.batch_id, rows, problems_path)
    if not rows:
        return
    batch_row = {
        "batch_id": batch.batch_id,
        "run_id": ctx.run_id,
        "route": batch.route,
        "route_reason": batch.route_reason,
        "shape_key": batch.shape.label if batch.shape else None,
        "kind": ",".join(sorted({p.spec.kind for p in batch.problems})),
        "size": len(rows),
        "n_qubits": batch.shape.n_qubits if batch.shape else None,
        "reps": batch.shape.reps if batch.shape else None,
        "backend": ctx.backend_spec if batch.route == "quantum" else "ortools-cpsat",
        "solver_path": ctx.backend.solver_path if batch.route == "quantum" else "classical",
        "attempts": max(p.attempts for p in batch.problems),
        "templates_compiled": int(item.template is not None and not item.reused),
        "templates_reused": int(item.template is not None and item.reused),
        "artifact_key": item.template.artifact_key if item.template else None,
        "chunks": state.chunks,
        "evaluations": sum(r["evaluations"] for r in rows),
        "t_compile_s": item.compile_s,
        "t_execute_s": execute_s,
        "t_post_s": time.perf_counter() - post_started,
        "cost_usd": sum(r["cost_usd"] for r in rows),
        "started_at": ctx.started_at.replace(tzinfo=UTC),
        "completed_at": completed_at,
    }
    batch_row |= _batch_columns(batch, state)
    write_rows(dataset_path(results, "batches", day, batch.batch_id), BATCH_SCHEMA, [batch_row])
    _commit(ctx, batch.batch_id, problems_path, rows)
    for row in rows:
        ctx.counters[row["status"]] += 1
    ctx.counters["cost_micro_usd"] += round(batch_row["cost_usd"] * 1e6)
    log.info(
        "run %s wrote batch %s (%s, %d problems, shape %s)",
        ctx.run_id,
        batch.batch_id,
        batch.route,
        len(rows),
        batch_row["shape_key"],
    )


def _journal(
    ctx: RunContext, batch_id: str, rows: list[dict[str, Any]], problems_path: Path
) -> list[dict[str, Any]]:
    """Journal the batch for the rows whose problems this run still holds; those rows only.

    A problem this run no longer holds (its lease ran out and another run took it) must
    not get a second row: the run that holds it now writes the one row.
    """
    held = set(
        ctx.store.begin_batch(
            ctx.run_id,
            batch_id,
            [r["problem_id"] for r in rows],
            str(problems_path),
            ctx.settings.intake.lease_seconds,
        )
    )
    if len(held) < len(rows):
        log.warning(
            "run %s batch %s: %d of %d problems are no longer held by this run; not written",
            ctx.run_id,
            batch_id,
            len(rows) - len(held),
            len(rows),
        )
    return [r for r in rows if r["problem_id"] in held]


def _commit(
    ctx: RunContext, batch_id: str, problems_path: Path, rows: list[dict[str, Any]]
) -> None:
    """Write the problems file (the batch's commit point), then mark its problems final."""
    with rename_fault_point("write-before-rename"):
        write_rows(problems_path, PROBLEM_SCHEMA, rows)
    fault_point("write-after-rename")
    ctx.store.finish_batch(
        batch_id,
        [
            {k: r[k] for k in ("problem_id", "status", "route", "solver_path", "fallback_reason")}
            for r in rows
        ],
    )
    fault_point("finish")


def _write_exhausted(ctx: RunContext, exhausted: list[ClaimedProblem]) -> None:
    """Problems that kept killing runs end failed, with a row that says so."""
    limit = ctx.settings.intake.max_attempts
    from batching.planner import new_batch_id

    batch_id = new_batch_id()
    completed_at = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    for claim in exhausted:
        spec = spec_from_record(json.loads(claim.spec_json))
        formulation = formulate(spec)
        rows.append(
            {
                "problem_id": claim.id,
                "key": claim.key,
                "run_id": ctx.run_id,
                "batch_id": batch_id,
                "kind": spec.kind,
                "n_variables": formulation.ising.n,
                "shape_key": shape_of(formulation.ising, 0, "none").label,
                "route": None,
                "solver_path": None,
                "backend": None,
                "status": FAILED,
                "fallback_reason": f"attempt limit reached: claimed {claim.attempts - 1} times (limit {limit}) without finishing",
                "solution": None,
                "objective": None,
                "feasible": False,
                "proven_optimal": False,
                "expected_objective": None,
                "reps": None,
                "shots": None,
                "evaluations": 0,
                "cost_usd": 0.0,
                "t_queue_s": (claim.claimed_at - claim.submitted_at).total_seconds(),
                "t_compile_s": 0.0,
                "t_execute_s": 0.0,
                "t_post_s": 0.0,
                "t_total_s": (
                    completed_at - claim.submitted_at.replace(tzinfo=UTC)
                ).total_seconds(),
                "submitted_at": claim.submitted_at.replace(tzinfo=UTC),
                "completed_at": completed_at,
                "provider_job_id": None,
                "circuit_hash": None,
                "input_hash": claim.input_hash,
            }
        )
    path = dataset_path(ctx.settings.results_dir, "problems", completed_at.date(), batch_id)
    rows = _journal(ctx, batch_id, rows, path)
    if not rows:
        return
    batch_row = {
        "batch_id": batch_id,
        "run_id": ctx.run_id,
        "route": None,
        "route_reason": f"attempt limit reached (limit {limit}): not run again",
        "shape_key": None,
        "kind": ",".join(sorted({r["kind"] for r in rows})),
        "size": len(rows),
        "n_qubits": None,
        "reps": None,
        "backend": None,
        "solver_path": None,
        "attempts": max(c.attempts for c in exhausted),
        "templates_compiled": 0,
        "templates_reused": 0,
        "artifact_key": None,
        "chunks": 0,
        "evaluations": 0,
        "t_compile_s": 0.0,
        "t_execute_s": 0.0,
        "t_post_s": 0.0,
        "cost_usd": 0.0,
        "started_at": ctx.started_at.replace(tzinfo=UTC),
        "completed_at": completed_at,
    }
    day = completed_at.date()
    write_rows(
        dataset_path(ctx.settings.results_dir, "batches", day, batch_id), BATCH_SCHEMA, [batch_row]
    )
    _commit(ctx, batch_id, path, rows)
    ctx.counters[FAILED] += len(rows)


# --- finalise -----------------------------------------------------------------------------
def finalise(ctx: RunContext, recovered: int, total_s: float) -> dict[str, Any]:
    completed_at = datetime.now(UTC)
    c = ctx.counters
    row = {
        "run_id": ctx.run_id,
        "backend": ctx.backend_spec,
        "dask_address": ctx.dask_address or "local",
        "problems": c["problems"],
        "completed": c[COMPLETED],
        "degraded": c[DEGRADED],
        "failed": c[FAILED],
        "batches": c["batches"],
        "quantum_batches": c["quantum_batches"],
        "classical_batches": c["classical_batches"],
        "templates_compiled": c["templates_compiled"],
        "templates_reused": c["templates_reused"],
        "recovered_batches": recovered,
        "t_recover_s": ctx.timings.get("recover", 0.0),
        "t_collect_s": ctx.timings.get("collect", 0.0),
        "t_plan_s": ctx.timings.get("plan", 0.0),
        "t_compile_s": ctx.timings.get("compile", 0.0),
        "t_cluster_wait_s": ctx.timings.get("cluster_wait", 0.0),
        "t_execute_s": ctx.timings.get("execute", 0.0),
        "t_total_s": total_s,
        "cost_usd": c["cost_micro_usd"] / 1e6,
        "started_at": ctx.started_at.replace(tzinfo=UTC),
        "completed_at": completed_at,
    }
    if c["problems"]:
        write_rows(
            dataset_path(ctx.settings.results_dir, "runs", completed_at.date(), ctx.run_id),
            RUN_SCHEMA,
            [row],
        )
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}
