"""Rows for problems out of attempts: a problem that kept killing runs (claimed, never
finished, past ``intake.max_attempts``) is not run again; it ends failed, in a batch of its
own whose rows say why.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from batching.planner import new_batch_id
from pipeline.fallback import Fallback, FallbackCode
from pipeline.intake import FAILED, ClaimedProblem
from pipeline.model import n_variables, spec_from_json
from pipeline.results.assemble import RowContext
from pipeline.results.rows import BatchRow, ProblemRow
from pipeline.results.store import ResultStore


def exhausted_rows(
    claims: Sequence[ClaimedProblem], batch_id: str, context: RowContext
) -> list[ProblemRow]:
    """Problems that kept killing runs end failed, with a row that says so."""
    limit = context.max_attempts
    completed_at = datetime.now(UTC)
    rows = []
    for claim in claims:
        spec = spec_from_json(claim.spec_json)
        why = Fallback(
            FallbackCode.ATTEMPT_LIMIT,
            f"attempt limit reached: claimed {claim.attempts - 1} times (limit {limit}) "
            "without finishing",
        )
        submitted = claim.submitted_at.replace(tzinfo=UTC)
        rows.append(
            ProblemRow(
                problem_id=claim.id,
                key=claim.key,
                run_id=context.run_id,
                batch_id=batch_id,
                kind=spec.kind,
                n_variables=n_variables(spec),
                tenant=spec.tenant,
                attempts=claim.attempts,
                status=FAILED,
                fallback_code=why.code,
                fallback_reason=why.message,
                t_queue_s=(claim.claimed_at - claim.submitted_at).total_seconds(),
                t_total_s=(completed_at - submitted).total_seconds(),
                submitted_at=submitted,
                completed_at=completed_at,
                input_hash=claim.input_hash,
                trace_id=claim.trace_id,
                supersedes=claim.supersedes,
            )
        )
    return rows


def exhausted_batch_row(
    batch_id: str, context: RowContext, rows: Sequence[ProblemRow], attempts: int
) -> BatchRow:
    limit = context.max_attempts
    return BatchRow(
        batch_id=batch_id,
        run_id=context.run_id,
        route=None,
        route_reason=f"attempt limit reached (limit {limit}): not run again",
        shape_key=None,
        kind=",".join(sorted({r.kind for r in rows})),
        size=len(rows),
        executor=context.executor,
        attempts=attempts,
        started_at=context.started_at,
        completed_at=rows[0].completed_at if rows else None,
    )


def commit_exhausted(
    store: ResultStore,
    claims: Sequence[ClaimedProblem],
    context: RowContext,
    lease_seconds: float,
) -> list[ProblemRow]:
    """Problems that kept killing runs: one batch of failed rows that say so, committed."""
    batch_id = new_batch_id()
    rows = exhausted_rows(claims, batch_id, context)
    attempts = max(c.attempts for c in claims)
    return store.commit_batch(
        context.run_id,
        batch_id,
        rows,
        lambda kept: exhausted_batch_row(batch_id, context, kept, attempts),
        lease_seconds,
    )
