"""The commit protocol when writers and recoveries meet: every finished problem, one row.

Recoveries run as real processes started at the same moment (a line on their stdin is the
start gun) over a batch set a dead writer left staged, on SQLite and PostgreSQL; a writer
frozen past its lease (SIGSTOP, as a paused VM) resumes while a recovery is frozen between
deciding its batch and touching its files, on a local folder and on an object store (moto's
S3 stand-in on loopback). Each test checks the invariants in ``pipeline.results.store``:
one decision per batch, files of a written batch never deleted, publishing idempotent,
every problem final with exactly one visible row whose objective its solution gives.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from commit_actors import ALARM_S, LEASE_S, batch_row, ring, rows_for, submit_rings
from s3_stand_in import S3

from pipeline.intake import (
    COMPLETED,
    BatchState,
    IntakeStore,
    ProblemOutcome,
    problems,
    result_batches,
)
from pipeline.results import BatchRow, ProblemRow, ResultStore, query, to_table

ACTORS = Path(__file__).with_name("commit_actors.py")
DEAD_BATCHES = 200


def actor(
    role: str, results: str, database: str, *args: str, pause: str = "", env: dict[str, str]
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ACTORS), role, results, database, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env | {"QHOPPER_PAUSE_AT": pause},
    )


def start_together(recoveries: list[subprocess.Popen[str]]) -> None:
    """Wait until every recovery has its stores open, then fire the start gun at once."""
    for process in recoveries:
        assert process.stdout is not None and process.stdin is not None
        assert process.stdout.readline().strip() == "ready", finish(process)
    for process in recoveries:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()


def finish(process: subprocess.Popen[str]) -> dict[str, object]:
    """The actor's answer once it exits 0 (each actor's own alarm bounds the wait)."""
    out, err = process.communicate(timeout=ALARM_S + 30)
    assert process.returncode == 0, f"actor exited {process.returncode}: {err[-3000:]}"
    answer: dict[str, object] = json.loads(out.splitlines()[-1])
    return answer


def wait_until_frozen(process: subprocess.Popen[str]) -> None:
    """Block until the actor stops itself at its pause point (no polling: waitpid reports
    the stop; an actor that exits or hangs instead ends by its alarm and fails here)."""
    _, status = os.waitpid(process.pid, os.WUNTRACED)
    assert os.WIFSTOPPED(status), f"the actor ended (status {status}) before its pause point"


def expire_leases(intake: IntakeStore) -> None:
    """Time passes for frozen holders: every lease lapses on the database's clock."""
    with intake.engine.begin() as connection:
        connection.execute(
            sa.update(problems).values(
                lease_expires_at=problems.c.lease_expires_at - timedelta(seconds=2 * LEASE_S)
            )
        )


def stage_like_a_dead_writer(intake: IntakeStore, store: ResultStore, per_batch: int) -> None:
    """Claim everything and leave it as a writer killed at its commit point would: every
    batch journalled and both of its files staged, whole, and nothing committed."""
    claimed = intake.claim("dead-writer", 100_000, LEASE_S)
    for start in range(0, len(claimed), per_batch):
        batch_id = f"b-dead-{start // per_batch}"
        rows = rows_for(claimed[start : start + per_batch], "dead-writer", batch_id)
        key = store.files.key("problems", rows[0].completed_at.date(), batch_id)  # type: ignore[union-attr]
        ids = [r.problem_id for r in rows]
        assert store.journal.begin_batch("dead-writer", batch_id, ids, key, LEASE_S) == ids
        store.files.stage(key, to_table(rows, ProblemRow))
        store.files.stage(
            store.files.sibling(key, "batches"), to_table([batch_row(rows)], BatchRow)
        )


def assert_one_row_each(results: str, intake: IntakeStore, ids: list[str]) -> None:
    """Every problem completed with exactly one visible row, whose objective its solution
    gives; every batch written once, with its one batches/ row; nothing left staged."""
    assert intake.counts()[COMPLETED] == len(ids), intake.counts()
    rows = query(results, "SELECT * FROM problems").to_pylist()
    seen = Counter(r["problem_id"] for r in rows)
    lost = sorted(set(ids) - set(seen))
    assert not lost, f"{len(lost)} of {len(ids)} finished problems have no visible row"
    assert set(seen.values()) == {1} and len(seen) == len(ids), seen.most_common(3)
    for row in rows:
        edges = ring(row["n_variables"], "")["edges"]
        cut = sum(row["solution"][u] != row["solution"][v] for u, v in edges)  # type: ignore[union-attr]
        assert row["objective"] == cut, row
    with intake.engine.connect() as connection:
        states = Counter(connection.execute(sa.select(result_batches.c.state)).scalars())
    assert set(states) == {"written"}, states
    sizes = {b["batch_id"]: b["size"] for b in query(results, "SELECT * FROM batches").to_pylist()}
    assert sizes == dict(Counter(r["batch_id"] for r in rows))
    assert states["written"] == len(sizes)
    files = ResultStore(results, intake.journal).files
    assert files.staged("problems") == files.staged("batches") == [], "staged files left"


# --- invariant 1: one decision per batch, and every later decision learns it --------------
def test_recoveries_that_meet_leave_every_problem_exactly_one_row(
    intake_url: str, tmp_path: Path
) -> None:
    """A dead writer left 200 batches staged; four recoveries start at the same moment (every
    pair of them meets). Before the protocol's repair two lost 116 of 400 problems on SQLite,
    20 on PostgreSQL."""
    recoveries = 4
    results = str(tmp_path / "results")
    intake = IntakeStore.open(intake_url)
    try:
        ids = submit_rings(intake, 2 * DEAD_BATCHES, "dead")
        stage_like_a_dead_writer(intake, ResultStore(results, intake.journal), per_batch=2)
        expire_leases(intake)
        started = [
            actor("recover", results, intake_url, env=dict(os.environ)) for _ in range(recoveries)
        ]
        start_together(started)
        settled = [finish(process)["settled"] for process in started]
        assert sum(settled) >= DEAD_BATCHES, settled  # type: ignore[arg-type]
        assert_one_row_each(results, intake, ids)
    finally:
        intake.close()


# --- invariants 2 and 3: a resumed writer never deletes what another committed -------------
FROZEN = [
    # A staged its batch and froze; the recovery committed it and froze before publishing.
    pytest.param("local", "write-before-rename:1", "recover-publish:1", id="commit-then-publish"),
    pytest.param("s3", "write-before-rename:1", "recover-publish:1", id="commit-then-publish-s3"),
    # A froze before staging; the recovery found nothing whole and froze before abandoning.
    pytest.param("local", "journal:1", "recover-decide:1", id="decide-after-writer-commits"),
]


@pytest.mark.parametrize(("where", "writer_pause", "recovery_pause"), FROZEN)
def test_a_writer_that_resumes_inside_a_recovery_leaves_one_row_each(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    where: str,
    writer_pause: str,
    recovery_pause: str,
) -> None:
    """Writer A freezes past its lease; a recovery freezes inside its settling of A's batch;
    A resumes and finishes; then the recovery does. Every problem has one visible row."""
    env = dict(os.environ)
    results = str(tmp_path / "results")
    if where == "s3":
        s3: S3 = request.getfixturevalue("s3")
        env, results = s3.env, s3.url(f"frozen-{tmp_path.name}")
    database = f"sqlite:///{tmp_path / 'intake.db'}"
    intake = IntakeStore.open(database)
    writer = recovery = None
    try:
        ids = submit_rings(intake, 6, "frozen")
        writer = actor("write", results, database, "writer-a", pause=writer_pause, env=env)
        wait_until_frozen(writer)
        expire_leases(intake)
        recovery = actor("recover", results, database, pause=recovery_pause, env=env)
        start_together([recovery])
        wait_until_frozen(recovery)
        os.kill(writer.pid, signal.SIGCONT)
        written = finish(writer)["written"]
        os.kill(recovery.pid, signal.SIGCONT)
        finish(recovery)
        assert_one_row_each(results, intake, ids)
        assert sorted(written) == sorted(ids)  # type: ignore[call-overload]  # A's rows are in
    finally:
        for process in (writer, recovery):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)
        intake.close()


# --- invariants 3, 4 and 5: decisions carried out, whoever died carrying them out ----------
def test_recovery_carries_out_every_decided_batch_whose_files_are_left(tmp_path: Path) -> None:
    """Batches whose decider died before touching all the files: written but unpublished,
    written and half-published (the batch row out, the problems not), abandoned with a late
    writer's files. Recovery publishes the first two and deletes the third's; a batch whose
    live writer is still at work is left alone, hidden."""
    results = str(tmp_path / "results")
    intake = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        ids = submit_rings(intake, 8, "left")
        store = ResultStore(results, intake.journal)
        stage_like_a_dead_writer(intake, store, per_batch=2)
        keys = {f"b-dead-{i}": _problems_key(store, f"b-dead-{i}") for i in range(4)}
        outcomes = {b: _outcomes_of(store, key) for b, key in keys.items()}
        journal = store.journal
        assert journal.finish_batch("b-dead-0", outcomes["b-dead-0"]) is BatchState.WRITTEN
        assert journal.finish_batch("b-dead-1", outcomes["b-dead-1"]) is BatchState.WRITTEN
        assert store.files.publish(store.files.sibling(keys["b-dead-1"], "batches"))
        assert journal.abandon_batch("b-dead-2") is BatchState.ABANDONED
        # b-dead-3: its writer's lease is live, so it is still writing: hands off.
        assert store.recover() == 3
        rows = query(results, "SELECT problem_id, batch_id FROM problems").to_pylist()
        assert Counter(r["batch_id"] for r in rows) == {"b-dead-0": 2, "b-dead-1": 2}
        batches = query(results, "SELECT batch_id FROM batches").to_pylist()
        assert sorted(b["batch_id"] for b in batches) == ["b-dead-0", "b-dead-1"]
        assert sorted(store.files.staged("problems")) == [keys["b-dead-3"]]
        assert intake.counts()[COMPLETED] == 4 and len(ids) == 8
    finally:
        intake.close()


@pytest.mark.parametrize("where", ["local", "memory"])
def test_publishing_twice_leaves_one_whole_file(tmp_path: Path, where: str) -> None:
    """Invariant 3: a second publisher of the same batch finds nothing left to publish."""
    root = str(tmp_path / "results") if where == "local" else f"memory://{tmp_path.name}/r"
    intake = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        submit_rings(intake, 2, "twice")
        store = ResultStore(root, intake.journal)
        stage_like_a_dead_writer(intake, store, per_batch=2)
        key = _problems_key(store, "b-dead-0")
        assert store.files.publish(key) and not store.files.publish(key)
        assert store.files.read(key).num_rows == 2 and not store.files.has_staged(key)
    finally:
        intake.close()


def _problems_key(store: ResultStore, batch_id: str) -> str:
    (key,) = [k for k in store.files.staged("problems") if k.endswith(f"/{batch_id}.parquet")]
    return key


def _outcomes_of(store: ResultStore, key: str) -> list[ProblemOutcome]:
    staged = store.files.read_staged(key)
    assert staged is not None
    return [
        ProblemOutcome(r["problem_id"], r["status"], r["route"], r["solver_path"])
        for r in staged.to_pylist()
    ]
