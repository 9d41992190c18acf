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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from distributed import Client, Future, as_completed

from batching.planner import Batch, PlannedProblem, plan_batches
from batching.shapes import shape_of
from flows.progress import sink
from pipeline.backends import QuantumBackend, get_backend
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
    new_id,
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
from pipeline.templates import CompiledTemplate, TemplateStore

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
        settled += 1
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
    claimed = ctx.store.claim(
        ctx.run_id, ctx.settings.intake.claim_limit, ctx.settings.intake.lease_seconds
    )
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
def compile_templates(ctx: RunContext, batches: list[Batch]) -> list[CompiledBatch]:
    """One template lookup per distinct shape: compiled at most once, then reused."""
    started = time.perf_counter()
    progress = sink()
    progress.stage("compile", len(batches))
    by_shape: dict[str, tuple[CompiledTemplate, bool, float]] = {}
    compiled: list[CompiledBatch] = []
    for batch in batches:
        if batch.shape is None:
            compiled.append(CompiledBatch(batch, None, False, 0.0))
        else:
            if batch.shape.digest not in by_shape:
                lookup = ctx.templates.get(batch.shape, ctx.backend)
                by_shape[batch.shape.digest] = (lookup.template, lookup.reused, lookup.seconds)
                ctx.counters["templates_reused" if lookup.reused else "templates_compiled"] += 1
                first = True
            else:
                first = False
            template, reused, seconds = by_shape[batch.shape.digest]
            compiled.append(
                CompiledBatch(batch, template, reused or not first, seconds if first else 0.0)
            )
            ctx.store.advance(
                ctx.run_id,
                [p.problem_id for p in batch.problems],
                COMPILED,
                f"template={template.artifact_key[:16]}",
            )
        progress.advance(1)
    ctx.timings["compile"] = time.perf_counter() - started
    return compiled


# --- execute and write --------------------------------------------------------------------
@dataclass
class _Pending:
    compiled: CompiledBatch
    chunks: int
    outcomes: list[ChunkOutcome] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dispatched_at: float = field(default_factory=time.perf_counter)


def execute(
    ctx: RunContext, compiled: list[CompiledBatch], exhausted: list[ClaimedProblem], client: Client
) -> None:
    """Fan every batch out over Dask in chunks; write each batch the moment it is whole."""
    started = time.perf_counter()
    if exhausted:
        _write_exhausted(ctx, exhausted)
    total = sum(c.batch.size for c in compiled)
    progress = sink()
    progress.stage("execute", total)
    from flows.dask_client import worker_count

    workers = worker_count(client)
    futures: dict[Future, str] = {}
    pending: dict[str, _Pending] = {}
    for item in compiled:
        batch = item.batch
        chunks = _chunk(batch, workers, ctx.settings.classical.chunk_size)
        pending[batch.batch_id] = _Pending(item, len(chunks))
        for chunk in chunks:
            futures[_submit(ctx, client, item, chunk)] = batch.batch_id
        ids = [p.problem_id for p in batch.problems]
        ctx.store.advance(ctx.run_id, ids, SUBMITTED, f"batch={batch.batch_id}")
        # Dask starts work as soon as it is submitted: for a simulator, submitted is running.
        ctx.store.advance(ctx.run_id, ids, RUNNING, f"batch={batch.batch_id}")
    timeout = ctx.settings.dask.run_timeout_s
    for future in as_completed(list(futures), loop=client.loop, timeout=timeout):
        state = pending[futures[future]]
        try:
            state.outcomes.append(future.result())
        except Exception as exc:  # a failed chunk must not stop the rest of the run
            state.errors.append(f"{type(exc).__name__}: {exc}")
            log.warning("run %s batch %s chunk failed: %s", ctx.run_id, futures[future], exc)
        if len(state.outcomes) + len(state.errors) == state.chunks:
            _finish_batch(ctx, client, state)
            progress.advance(state.compiled.batch.size)
            ctx.store.renew(ctx.run_id, ctx.settings.intake.lease_seconds)
    ctx.timings["execute"] = time.perf_counter() - started


def _chunk(batch: Batch, workers: int, classical_chunk: int) -> list[list[PlannedProblem]]:
    problems = list(batch.problems)
    if batch.route == "quantum":
        count = max(1, min(workers, len(problems) // 4))
        size = math.ceil(len(problems) / count)
    else:
        size = classical_chunk
    return [problems[i : i + size] for i in range(0, len(problems), size)]


def _submit(
    ctx: RunContext, client: Client, item: CompiledBatch, chunk: list[PlannedProblem]
) -> Future:
    settings = ctx.settings
    if item.template is not None:
        items_q = [(p.problem_id, _spec_text(p), p.shots) for p in chunk]
        return client.submit(
            run_quantum_chunk,
            item.template,
            items_q,
            ctx.backend_spec,
            settings.quantum.max_qubits,
            settings.quantum.max_iterations,
            settings.quantum.seed,
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


def _spec_text(problem: PlannedProblem) -> str:
    return problem.spec.model_dump_json(exclude_none=True)


def _finish_batch(ctx: RunContext, client: Client, state: _Pending) -> None:
    """Fall back where needed, then journal, write and mark the batch's problems final."""
    item = state.compiled
    batch = item.batch
    answers: dict[str, dict[str, Any]] = {}
    chunk_seconds: dict[str, float] = {}
    for outcome in state.outcomes:
        for pid, answer in outcome.answers.items():
            answers[pid] = answer
            chunk_seconds[pid] = outcome.seconds / max(1, len(outcome.answers))
    execute_s = max((o.seconds for o in state.outcomes), default=0.0)
    fallbacks: dict[str, str] = dict(batch.fallback_reasons)
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
        )
        for p in batch.problems
    ]
    _write_batch(ctx, batch, item, rows, state, execute_s, post_started)


def _problem_row(
    ctx: RunContext,
    item: CompiledBatch,
    problem: PlannedProblem,
    answer: dict[str, Any] | None,
    classical: bool,
    fallback: str | None,
    seconds: float,
    batch_execute_s: float,
) -> dict[str, Any]:
    prices = ctx.settings.prices
    spec = problem.spec
    quantum = not classical and answer is not None
    if answer is None:
        status = FAILED
    else:
        status = DEGRADED if fallback else COMPLETED
    shape = item.batch.shape or shape_of(problem.formulation.ising, 0, "cpsat")
    cost = seconds * prices.cpu_usd_per_core_second
    if quantum:
        cost += problem.shots * prices.simulator_usd_per_shot
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
        "provider_job_id": None,
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
    batch_row = {
        "batch_id": batch.batch_id,
        "run_id": ctx.run_id,
        "route": batch.route,
        "route_reason": batch.route_reason,
        "shape_key": batch.shape.label if batch.shape else None,
        "kind": ",".join(sorted({p.spec.kind for p in batch.problems})),
        "size": batch.size,
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
    ctx.store.begin_batch(
        ctx.run_id, batch.batch_id, [r["problem_id"] for r in rows], str(problems_path)
    )
    write_rows(dataset_path(results, "batches", day, batch.batch_id), BATCH_SCHEMA, [batch_row])
    write_rows(problems_path, PROBLEM_SCHEMA, rows)  # the commit point of this batch
    ctx.store.finish_batch(
        batch.batch_id,
        [
            {k: r[k] for k in ("problem_id", "status", "route", "solver_path", "fallback_reason")}
            for r in rows
        ],
    )
    for row in rows:
        ctx.counters[row["status"]] += 1
    ctx.counters["cost_micro_usd"] += round(batch_row["cost_usd"] * 1e6)
    log.info(
        "run %s wrote batch %s (%s, %d problems, shape %s)",
        ctx.run_id,
        batch.batch_id,
        batch.route,
        batch.size,
        batch_row["shape_key"],
    )


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
    ctx.store.begin_batch(ctx.run_id, batch_id, [r["problem_id"] for r in rows], str(path))
    write_rows(path, PROBLEM_SCHEMA, rows)
    ctx.store.finish_batch(
        batch_id,
        [
            {
                "problem_id": r["problem_id"],
                "status": FAILED,
                "route": None,
                "solver_path": None,
                "fallback_reason": r["fallback_reason"],
            }
            for r in rows
        ],
    )
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
