"""Writers and recoveries of result batches, as real processes, for the commit-protocol tests.

    python tests/commit_actors.py recover RESULTS DATABASE
        opens the stores, prints "ready", waits for one line on stdin (the start gun, so
        several recoveries begin at the same moment), recovers, prints {"settled": N}
    python tests/commit_actors.py write RESULTS DATABASE OWNER
        claims every queued problem as OWNER and commits them as one batch, as a run's
        writer does; prints {"written": [ids]}

Both pass the store's fault points, so ``QHOPPER_PAUSE_AT`` freezes them where a test
wants them frozen. Every actor arms an alarm: a hung one dies instead of hanging the test.
The rows are plain MaxCut answers whose objective is recomputed from the solution.
"""

from __future__ import annotations

import json
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime

import factories

from pipeline.intake import ClaimedProblem, IntakeStore
from pipeline.model import spec_from_record
from pipeline.results import BatchRow, ProblemRow, ResultStore

ALARM_S = 120
LEASE_S = 600.0


def ring(n: int, key: str) -> dict[str, object]:
    """The unweighted ``n``-ring (tests/factories.py)."""
    return factories.problem("maxcut", n, graph="ring", weights="unit", key=key)


def submit_rings(store: IntakeStore, count: int, prefix: str) -> list[str]:
    specs = [(spec_from_record(ring(4 + i % 3, f"{prefix}-{i}")), "actors") for i in range(count)]
    return [outcome.id for outcome in store.submit(specs)]


def rows_for(claimed: Sequence[ClaimedProblem], run_id: str, batch_id: str) -> list[ProblemRow]:
    """An alternating cut of each ring: its objective is the number of edges it cuts."""
    rows = []
    for problem in claimed:
        record = json.loads(problem.spec_json)
        n = record["n"]
        solution = "".join("01"[i % 2] for i in range(n))
        cut = sum(solution[u] != solution[v] for u, v, *_ in record["edges"])
        rows.append(
            ProblemRow(
                problem_id=problem.id,
                key=problem.key,
                run_id=run_id,
                batch_id=batch_id,
                kind="maxcut",
                n_variables=n,
                route="classical",
                solver_path="classical",
                status="completed",
                solution=solution,
                objective=float(cut),
                feasible=True,
                completed_at=datetime.now(UTC),
            )
        )
    return rows


def batch_row(rows: list[ProblemRow]) -> BatchRow:
    first = rows[0]
    return BatchRow(
        batch_id=first.batch_id,
        run_id=first.run_id,
        route="classical",
        route_reason="commit-protocol test",
        shape_key=None,
        kind="maxcut",
        size=len(rows),
    )


def _stores(results: str, database: str) -> tuple[IntakeStore, ResultStore]:
    intake = IntakeStore.open(database)
    return intake, ResultStore(results, intake.journal)


def recover(results: str, database: str) -> dict[str, int]:
    intake, store = _stores(results, database)
    print("ready", flush=True)
    sys.stdin.readline()
    try:
        return {"settled": store.recover()}
    finally:
        intake.close()


def write(results: str, database: str, owner: str) -> dict[str, list[str]]:
    intake, store = _stores(results, database)
    try:
        claimed = intake.claim(owner, 10_000, LEASE_S)
        rows = rows_for(claimed, owner, f"b-{owner}")
        kept = store.commit_batch(owner, f"b-{owner}", rows, batch_row, LEASE_S)
        return {"written": [row.problem_id for row in kept]}
    finally:
        intake.close()


def main(argv: list[str]) -> None:
    signal.alarm(ALARM_S)
    role, results, database, *rest = argv
    done = recover(results, database) if role == "recover" else write(results, database, *rest)
    print(json.dumps(done), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
