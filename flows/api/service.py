"""What the HTTP routes do, without HTTP: parse and validate, scope to a tenant, submit,
look up, page through results. Errors are :class:`ApiError` with the status and body the
route answers with, so bad input can only ever become a 4xx.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import logging
from datetime import UTC, datetime
from typing import Any

from flows.api.errors import ApiError, error, invalid
from flows.api.lane import SolveLane
from flows.api.solve import Budget, SolveAnswer, jsonable, read_answers, result_row, with_deadline
from flows.api.workers import WorkerPool
from flows.deps import RunDeps
from pipeline.errors import KeyConflict
from pipeline.intake import RequeueSelection, SubmitOutcome
from pipeline.kinds.base import KEY_MAX_LENGTH
from pipeline.model import ProblemSpec, idempotency_key
from pipeline.readers import read_bytes
from pipeline.results import query
from pipeline.timebounds import utc_issue

log = logging.getLogger("qhopper.api")
MAX_PAGE = 1000


def parse_problems(raw: bytes, deps: RunDeps, json_lines: bool = False) -> list[ProblemSpec]:
    """The body's problems, validated exactly as ``qhopper submit`` validates a file.

    400 when the body is not JSON at all; 422 otherwise, naming the record and field of the
    first issues (``readers.MAX_ISSUES``) and counting the rest (``more_errors``).
    """
    name = "body.jsonl" if json_lines else "body.json"
    if not json_lines:
        try:
            json.loads(raw.decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise error(400, f"the body is not UTF-8 (byte {exc.start})") from None
        except json.JSONDecodeError as exc:
            raise error(
                400, f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
            ) from None
        except (RecursionError, ValueError) as exc:
            why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise error(400, f"malformed JSON: {why}") from None
    records = read_bytes(name, raw, deps.settings.limits)
    issues = [issue for record in records for issue in record.issues]
    if issues:
        errors = [{"record": i.record, "field": i.field, "message": i.message} for i in issues]
        more = sum(record.more_issues for record in records)
        raise ApiError(422, {"errors": errors, **({"more_errors": more} if more else {})})
    return [record.spec for record in records if record.spec is not None]


def scoped(spec: ProblemSpec, tenant: str, idempotency: str | None = None) -> ProblemSpec:
    """``spec`` as ``tenant``'s: its tenant is the token's, never the body's, and its key
    lives in the tenant's namespace (``<tenant>/<key>``), so two tenants never share a
    problem however alike their keys or contents."""
    if idempotency is not None:
        if spec.key is not None and spec.key != idempotency:
            raise invalid("record 1", "key", "differs from the Idempotency-Key header")
        spec = spec.model_copy(update={"key": idempotency})
    own = idempotency_key(spec)
    key = f"{tenant}/{own}"
    if len(key) > KEY_MAX_LENGTH:  # still one key per (tenant, key), within the spec's limit
        key = f"{tenant}/sha256-key:{hashlib.sha256(own.encode()).hexdigest()}"
    return spec.model_copy(update={"tenant": tenant, "key": key})


def conflict(tenant: str, exc: KeyConflict) -> ApiError:
    """409 naming each key (as the tenant knows it) that already names another problem;
    never that problem's id, which may not be the caller's to know."""
    errors = [
        {
            "record": f"record {c.index + 1}",
            "field": "key",
            "message": f"key {public_key(tenant, c.key)!r} already names another problem: "
            "a new problem needs a new key",
        }
        for c in exc.conflicts
    ]
    return ApiError(409, {"errors": errors})


def public_key(tenant: str, key: str) -> str:
    """The key as the tenant knows it: without the namespace."""
    prefix = f"{tenant}/"
    return key[len(prefix) :] if key.startswith(prefix) else key


def check_idempotency_key(value: str | None) -> str | None:
    if value is None:
        return None
    if not 1 <= len(value) <= KEY_MAX_LENGTH - 70 or not value.isprintable():
        raise invalid("header", "Idempotency-Key", "1-130 printable characters")
    return value


class Service:
    """The operations behind the routes, on one warm set of run dependencies."""

    def __init__(self, deps: RunDeps, lane: SolveLane, workers: WorkerPool) -> None:
        self.deps = deps
        self.lane = lane
        self.workers = workers

    def submit(self, tenant: str, specs: list[ProblemSpec], trace_id: str) -> list[dict[str, Any]]:
        outcomes = self.deps.intake.submit([(spec, "api", trace_id) for spec in specs])
        for outcome in outcomes:
            log.info(
                "submitted %s tenant=%s trace=%s created=%s",
                outcome.id,
                tenant,
                trace_id,
                outcome.created,
            )
        return [
            {"id": o.id, "key": public_key(tenant, o.key), "created": o.created} for o in outcomes
        ]

    def problem(self, tenant: str, problem_id: str) -> dict[str, Any]:
        row = self.deps.intake.get(problem_id)
        if row is None or row["tenant"] != tenant:
            raise error(404, "no such problem")
        history = [
            {"state": e["state"], "at": jsonable({"at": e["at"]})["at"], "detail": e["detail"]}
            for e in row["events"]
        ]
        return {
            "id": row["id"],
            "key": public_key(tenant, row["key"]),
            "state": row["state"],
            "trace_id": row.get("trace_id"),
            "history": history,
            "result": _public(tenant, result_row(self.deps.settings, problem_id, row)),
        }

    def requeue(self, tenant: str, problem_id: str) -> dict[str, Any]:
        """Put the tenant's failed problem back in the queue with a fresh attempt budget:
        404 when it is not the tenant's, 409 when it is not failed."""
        selection = RequeueSelection([problem_id], tenant=tenant)
        outcome = self.deps.intake.requeue(selection, f"api tenant {tenant}")
        why = outcome.refused.get(problem_id)
        if why is not None and why.startswith("no such problem"):
            raise error(404, "no such problem")
        if why is not None:
            raise error(409, f"not requeued: {why}")
        log.info("requeued %s tenant=%s", problem_id, tenant)
        return {"id": problem_id, "state": "queued"}

    async def solve(
        self, tenant: str, spec: ProblemSpec, budget: Budget, trace_id: str
    ) -> SolveAnswer:
        """Submit ``spec`` and answer it within ``budget``: run on a solve worker as soon as
        one is free, else (or if the run overruns) its state and why not."""
        outcome = await self.lane.call(self._submit_solve, spec, budget, trace_id)
        log.info(
            "solve %s tenant=%s trace=%s budget=%.2fs left=%.2fs",
            outcome.id,
            tenant,
            trace_id,
            budget.timeout_s,
            budget.left(),
        )
        why = await self._run([outcome.id], budget)
        [answer] = await self.lane.call(
            read_answers, self.deps, [outcome.id], [outcome.key], budget, why
        )
        log.info(
            "solved %s trace=%s state=%s with %.3fs left%s",
            outcome.id,
            trace_id,
            answer.state,
            budget.left(),
            f" ({answer.error})" if answer.error else "",
        )
        return dataclasses.replace(answer, result=_public(tenant, answer.result))

    def _submit_solve(self, spec: ProblemSpec, budget: Budget, trace_id: str) -> SubmitOutcome:
        spec = with_deadline(spec, budget.left())
        return self.deps.intake.submit([(spec, "api solve", trace_id)])[0]

    async def _run(self, ids: list[str], budget: Budget) -> str | None:
        """Run ``ids`` on a worker within the budget; None once run, else why not."""
        if budget.left() <= 0:
            return "the time budget was spent reading, checking and queueing the problem"
        if not await self.lane.take_worker(budget.deadline):
            return "every solve worker stayed busy for the whole time budget"
        try:
            return await self.lane.call(self.workers.run, ids, budget.deadline)
        finally:
            self.lane.give_worker()

    def results(
        self, tenant: str, since: datetime | None, cursor: str | None, limit: int
    ) -> dict[str, Any]:
        """The tenant's rows in (completed_at, problem_id) order, ``limit`` at a time; pass
        ``next_cursor`` back as ``cursor`` for the next page (null: no more rows now)."""
        where = ["tenant = ?", "completed_at IS NOT NULL"]
        params: list[object] = [tenant]
        if since is not None:
            where.append("completed_at >= ?")
            params.append(since)
        if cursor is not None:
            at, after = decode_cursor(cursor)
            where.append("(completed_at > ? OR (completed_at = ? AND problem_id > ?))")
            params += [at, at, after]
        sql = (
            f"SELECT * FROM problems WHERE {' AND '.join(where)} "
            f"ORDER BY completed_at, problem_id LIMIT {int(limit) + 1}"
        )
        rows = query(self.deps.settings.results_location, sql, params).to_pylist()
        more = len(rows) > limit
        rows = rows[:limit]
        for row in rows:
            row["key"] = public_key(tenant, row["key"])
        last = rows[-1] if rows else None
        next_cursor = (
            encode_cursor(last["completed_at"], last["problem_id"]) if more and last else None
        )
        return {"results": [jsonable(r) for r in rows], "next_cursor": next_cursor}


def _public(tenant: str, row: dict[str, Any] | None) -> dict[str, Any] | None:
    if row is not None and isinstance(row.get("key"), str):
        row["key"] = public_key(tenant, row["key"])
    return row


def encode_cursor(at: datetime, problem_id: str) -> str:
    text = json.dumps([at.astimezone(UTC).isoformat(), problem_id])
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at, problem_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        when = datetime.fromisoformat(at)
    except (ValueError, TypeError, binascii.Error, UnicodeError):
        raise invalid("query", "cursor", "not a cursor this service handed out") from None
    if utc_issue(when) is not None:  # a forged one: every cursor handed out is in range
        raise invalid("query", "cursor", "not a cursor this service handed out")
    return when, str(problem_id)


def parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise invalid(
            "query", "since", "expected an ISO-8601 time, e.g. 2026-01-31T12:00:00Z"
        ) from None
    when = when if when.tzinfo else when.replace(tzinfo=UTC)
    issue = utc_issue(when)
    if issue is not None:
        raise invalid("query", "since", issue)
    return when
