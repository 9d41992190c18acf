"""The intake store on SQLite and PostgreSQL: idempotency, atomic claims, leases, journal."""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from factories import problem

import pipeline.intake
from pipeline.errors import ConfigError, ConflictReason, KeyConflict, ServiceUnavailable
from pipeline.intake import (
    CLAIMED,
    COMPILED,
    COMPLETED,
    QUEUED,
    RUNNING,
    SUBMITTED,
    BatchState,
    IntakeStore,
    LeaseKeeper,
    Move,
    ProblemOutcome,
    RequeueSelection,
    problems,
    utcnow,
)
from pipeline.model import MaxCutSpec, content_hash, idempotency_key


def ring(n: int, key: str | None = None, weight: float = 1.0) -> MaxCutSpec:
    """The ``n``-ring, every edge ``weight`` (tests/factories.py)."""
    return MaxCutSpec.model_validate(problem("maxcut", n, graph="ring", weights=weight, key=key))


@pytest.fixture
def store(intake_url: str):
    opened = IntakeStore.open(intake_url)
    yield opened
    opened.close()


def test_a_resubmission_larger_than_a_slice_keeps_every_id(store: IntakeStore) -> None:
    """Keys are looked up in slices of 500: a resubmission spanning three finds every one."""
    first = store.submit([(ring(3, f"k{i}"), "s") for i in range(1_200)])
    again = store.submit([(ring(3, f"k{i}"), "t") for i in range(1_200)])
    assert len(first) == 1_200 == sum(o.created for o in first)
    assert [o.id for o in again] == [o.id for o in first] and not any(o.created for o in again)


def test_submit_is_idempotent_by_key(store: IntakeStore) -> None:
    first = store.submit([(ring(4, "a"), "f:1"), (ring(5, "b"), "f:2")])
    again = store.submit([(ring(4, "a"), "g:1"), (ring(6, "c"), "g:2"), (ring(6, "c"), "g:3")])
    assert [o.created for o in first] == [True, True]
    assert again[0].id == first[0].id and not again[0].created
    assert again[1].created and again[2].id == again[1].id and not again[2].created
    assert store.counts()[QUEUED] == 3


def test_default_key_dedupes_the_same_content(store: IntakeStore) -> None:
    a = store.submit([(ring(5), "x")])[0]
    b = store.submit([(ring(5, weight=1.0), "y")])[0]
    c = store.submit([(ring(5, weight=2.0), "z")])[0]
    assert a.id == b.id and a.key == idempotency_key(ring(5))
    assert c.id != a.id


def test_a_key_reused_for_other_content_is_a_conflict_and_enqueues_nothing(
    store: IntakeStore,
) -> None:
    """DESIGN: the same key with different content is refused (HTTP 409), never answered
    with the first problem's id; the content compared is canonical (input_hash)."""
    [first] = store.submit([(ring(4, "k"), "f:1")])
    reordered = MaxCutSpec.model_validate(
        {"kind": "maxcut", "n": 4, "edges": [[1, 0], [3, 0, 1.0], [2, 1], [3, 2]], "key": "k"}
    )
    [again] = store.submit([(reordered, "g:1")])  # the same problem written another way
    assert (again.id, again.created) == (first.id, False)
    with pytest.raises(KeyConflict) as caught:
        store.submit([(ring(5, "new"), "h:1"), (ring(4, "k", weight=2.0), "h:2")])
    [conflict] = caught.value.conflicts
    assert (conflict.index, conflict.key, conflict.problem_id) == (1, "k", first.id)
    assert conflict.reason is ConflictReason.CONTENT and "'k'" in str(caught.value)
    assert store.counts()[QUEUED] == 1  # "new" was not enqueued either
    other_tenant = ring(4, "k").model_copy(update={"tenant": "research"})
    with pytest.raises(KeyConflict) as caught:
        store.submit([(other_tenant, "i:1")])
    assert caught.value.conflicts[0].reason is ConflictReason.TENANT


def test_one_key_twice_with_different_content_in_one_submission_is_a_conflict(
    store: IntakeStore,
) -> None:
    specs = [(ring(4, "a"), "f:1"), (ring(4, "k"), "f:2"), (ring(6, "k"), "f:3")]
    with pytest.raises(KeyConflict) as caught:
        store.submit(specs)
    [conflict] = caught.value.conflicts
    assert (conflict.index, conflict.first_index, conflict.problem_id) == (2, 1, None)
    assert store.counts().get(QUEUED, 0) == 0
    same = store.submit([(ring(4, "k"), "f:1"), (ring(4, "k"), "f:2")])  # same content twice
    assert same[0].id == same[1].id and [o.created for o in same] == [True, False]


def test_two_submitters_racing_one_key_with_different_content_one_wins(intake_url: str) -> None:
    """Both transactions insert the key at once: one commits, the other finds its row."""
    stores = [IntakeStore.open(intake_url) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=30)
    outcomes: list[object] = [None, None]

    def submit(index: int) -> None:
        specs = [(ring(4 + index, f"race-{k}"), f"s{index}") for k in range(200)]
        barrier.wait()
        try:
            outcomes[index] = stores[index].submit(specs)
        except KeyConflict as exc:
            outcomes[index] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        conflicts = [o for o in outcomes if isinstance(o, KeyConflict)]
        [winner] = [i for i, o in enumerate(outcomes) if isinstance(o, list)]
        assert len(conflicts) == 1 and len(conflicts[0].conflicts) == 200
        with stores[0].engine.connect() as connection:
            hashes = set(connection.execute(sa.select(problems.c.input_hash)).scalars())
        assert hashes == {content_hash(ring(4 + winner))}
    finally:
        for opened in stores:
            opened.close()


def test_claims_are_exclusive_and_leased(store: IntakeStore) -> None:
    store.submit([(ring(4, f"k{i}"), "s") for i in range(10)])
    first = store.claim("run-1", 6, lease_seconds=60)
    second = store.claim("run-2", 100, lease_seconds=60)
    assert len(first) == 6 and len(second) == 4
    assert not {c.id for c in first} & {c.id for c in second}
    assert store.claim("run-3", 100, lease_seconds=60) == []
    assert store.counts()[CLAIMED] == 10
    assert all(c.attempts == 1 for c in first + second)


def test_a_claim_limited_to_some_ids_takes_only_those(store: IntakeStore) -> None:
    outcomes = store.submit([(ring(4, f"only-{i}"), "s") for i in range(5)])
    wanted = [outcomes[3].id, outcomes[1].id]
    taken = store.claim("solver", 10, lease_seconds=60, only=wanted)
    assert sorted(c.id for c in taken) == sorted(wanted)
    assert store.claim("solver", 10, lease_seconds=60, only=wanted) == []  # held already
    assert len(store.claim("run", 10, lease_seconds=60)) == 3


def test_claim_order_follows_priority(store: IntakeStore) -> None:
    specs = [ring(4, f"p{p}").model_copy(update={"priority": p}) for p in (1, 5, 3)]
    store.submit([(s, "s") for s in specs])
    claimed = store.claim("run", 1, 60)
    assert claimed[0].key == "p5"


def test_expired_lease_is_reclaimed_with_another_attempt(store: IntakeStore) -> None:
    store.submit([(ring(4, "a"), "s")])
    (held,) = store.claim("dead-run", 10, lease_seconds=60)
    assert store.claim("other", 10, lease_seconds=60) == []
    _expire_leases(store)
    (again,) = store.claim("other", 10, lease_seconds=60)
    assert again.id == held.id and again.attempts == 2


def test_renew_keeps_a_live_lease(store: IntakeStore) -> None:
    store.submit([(ring(4, "a"), "s")])
    store.claim("run", 10, lease_seconds=60)
    assert store.renew("run", 60) == 1
    assert store.renew("someone-else", 60) == 0


def test_lifecycle_history_is_recorded(store: IntakeStore) -> None:
    (outcome,) = store.submit([(ring(4, "a"), "file.json:record 1")])
    store.claim("run", 10, 60)
    store.advance("run", [outcome.id], RUNNING, "batch=b-1")
    store.journal.begin_batch("run", "b-1", [outcome.id], "/tmp/b-1.parquet")
    store.journal.finish_batch(
        "b-1", [ProblemOutcome(outcome.id, COMPLETED, "quantum", "simulator")]
    )
    found = store.get(outcome.id)
    assert found is not None
    assert found["state"] == COMPLETED and found["result_path"] == "/tmp/b-1.parquet"
    assert [e["state"] for e in found["events"]] == [QUEUED, CLAIMED, RUNNING, COMPLETED]
    times = [e["at"] for e in found["events"]]
    assert times == sorted(times)


def test_advance_refuses_problems_held_by_another_run(store: IntakeStore) -> None:
    (outcome,) = store.submit([(ring(4, "a"), "s")])
    store.claim("owner", 10, 60)
    assert store.advance("intruder", [outcome.id], RUNNING) == 0
    assert store.get(outcome.id)["state"] == CLAIMED  # type: ignore[index]


def test_advance_many_moves_several_batches_and_records_every_state(store: IntakeStore) -> None:
    outcomes = store.submit([(ring(4, f"k{i}"), "s") for i in range(3)])
    held = [c.id for c in store.claim("run", 2, 60)]
    ids = [*held, *({o.id for o in outcomes} - set(held))]  # the third stays queued: not ours
    moved = store.advance_many(
        "run",
        [
            Move([ids[0]], (COMPILED, SUBMITTED, RUNNING), "batch=b-1"),
            Move([ids[1], ids[2]], (SUBMITTED, RUNNING), "batch=b-2"),
        ],
    )
    assert moved == 2
    first, second, third = (store.get(i) for i in ids)
    assert first is not None and second is not None and third is not None
    assert [e["state"] for e in first["events"]] == [QUEUED, CLAIMED, COMPILED, SUBMITTED, RUNNING]
    assert [e["state"] for e in second["events"]] == [QUEUED, CLAIMED, SUBMITTED, RUNNING]
    assert first["state"] == second["state"] == RUNNING and third["state"] == QUEUED
    assert [e["state"] for e in third["events"]] == [QUEUED]


def test_advance_rejects_states_that_are_not_active(store: IntakeStore) -> None:
    with pytest.raises(ValueError, match="active states"):
        store.advance_many("run", [Move(["p-1"], (RUNNING, COMPLETED))])


def test_unfinished_batches_wait_for_the_lease_then_can_be_abandoned(store: IntakeStore) -> None:
    (outcome,) = store.submit([(ring(4, "a"), "s")])
    store.claim("run", 10, 60)
    store.journal.begin_batch("run", "b-1", [outcome.id], "/nowhere/b-1.parquet")
    assert store.journal.unfinished_batches() == []  # its run may still be writing
    _expire_leases(store)
    assert store.journal.unfinished_batches() == [("b-1", "/nowhere/b-1.parquet")]
    store.journal.abandon_batch("b-1")
    assert store.journal.unfinished_batches() == []
    assert [c.id for c in store.claim("next", 10, 60)] == [outcome.id]


def _claim_worker(
    url: str,
    owner: str,
    queue: multiprocessing.Queue,  # type: ignore[type-arg]
    everyone_done: Any,
) -> None:
    store = IntakeStore.open(url)
    taken: list[str] = []
    while batch := store.claim(owner, 7, 60):
        taken += [c.id for c in batch]
    queue.put(taken)
    # Stay alive until every claimer is done: the claims of a process that has exited
    # are free to take at once (its holder is provably dead), which is not sharing.
    everyone_done.wait(timeout=120)
    store.close()


def test_concurrent_claimers_never_share_a_problem(store: IntakeStore, intake_url: str) -> None:
    store.submit([(ring(4, f"k{i}"), "s") for i in range(300)])
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    everyone_done = context.Event()
    workers = [
        context.Process(target=_claim_worker, args=(intake_url, f"w{i}", queue, everyone_done))
        for i in range(4)
    ]
    for worker in workers:
        worker.start()
    results = [queue.get(timeout=120) for _ in workers]
    everyone_done.set()
    for worker in workers:
        worker.join(timeout=60)
    taken = [pid for result in results for pid in result]
    assert len(taken) == 300 and len(set(taken)) == 300


def test_a_claim_larger_than_postgres_parameter_limit_takes_every_problem_once(
    postgres_url: str,
) -> None:
    """PostgreSQL refuses a statement with more than 65,535 parameters."""
    store = IntakeStore.open(postgres_url)
    try:
        _claim_every_one_of(store, 70_000)
    finally:
        store.close()


def test_a_claim_after_a_bulk_submit_reads_the_claim_order_index(postgres_url: str) -> None:
    """With no statistics PostgreSQL sorted every queued row on each claim; a bulk submit
    analyses the table, so a claim reads its rows off the index in order, no sort."""
    store = IntakeStore.open(postgres_url)
    statements: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FOR UPDATE SKIP LOCKED" in statement and "state =" in statement:
            statements.append((statement, parameters))

    try:
        store.submit([(ring(3, f"k{i}"), "s") for i in range(20_000)])
        sa.event.listen(store.engine, "before_cursor_execute", capture)
        store.claim("run", 300, lease_seconds=600)
        sa.event.remove(store.engine, "before_cursor_execute", capture)
        statement, parameters = statements[0]
        with store.engine.begin() as connection:
            plan = "\n".join(
                row[0] for row in connection.exec_driver_sql(f"EXPLAIN {statement}", parameters)
            )
        assert "Index Scan using ix_problems_claim_order" in plan, plan
        assert "Sort" not in plan, plan
    finally:
        store.close()


def test_the_old_state_index_is_dropped_on_open(intake_url: str) -> None:
    store = IntakeStore.open(intake_url)
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "CREATE INDEX ix_problems_state_priority ON problems (state, priority, submitted_at)"
        )
    store.close()
    store = IntakeStore.open(intake_url)
    try:
        names = {i["name"] for i in sa.inspect(store.engine).get_indexes("problems")}
        assert "ix_problems_state_priority" not in names
        assert "ix_problems_claim_order" in names
    finally:
        store.close()


def _claim_every_one_of(store: IntakeStore, count: int) -> None:
    submitted = store.submit([(ring(3, f"k{i}"), "s") for i in range(count)])
    assert sum(o.created for o in submitted) == count
    claimed = store.claim("run", count + 10, lease_seconds=600)
    assert len(claimed) == count and len({c.id for c in claimed}) == count
    assert {c.id for c in claimed} == {o.id for o in submitted}
    assert store.counts().get(QUEUED, 0) == 0 and store.pending() == 0
    # Submitting them again looks their keys up in the same slices as the insert: the
    # resubmission test does that on 1,200 keys (70,000 more would take another 25 s).


def _expire_leases(store: IntakeStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(problems).values(
                lease_expires_at=problems.c.lease_expires_at - timedelta(hours=1)
            )
        )


# --- pending ------------------------------------------------------------------------------
def test_pending_counts_what_a_claim_could_take(store: IntakeStore) -> None:
    assert store.pending() == 0
    outcomes = store.submit([(ring(4, f"k{i}"), "s") for i in range(4)])
    assert store.pending() == 4
    first, second = store.claim("run", 2, 60)
    assert store.pending() == 2  # live leases are not claimable
    store.journal.begin_batch("run", "b-1", [first.id], "/nowhere/b-1.parquet")
    _expire_leases(store)
    assert store.pending() == 3  # the lapsed lease; the journalled one waits for recovery
    assert len(store.claim("next", 100, 60)) == 3
    assert store.pending() == 0
    assert {o.id for o in outcomes} >= {first.id, second.id}


def test_pending_counts_the_problems_of_a_dead_local_holder(store: IntakeStore) -> None:
    store.submit([(ring(4, f"k{i}"), "s") for i in range(3)])
    store.claim("run", 2, 60)
    assert store.pending() == 1
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    with store.engine.begin() as connection:  # the holder is a process that has exited
        connection.execute(sa.update(problems).values(lease_pid=int(gone.stdout)))
    assert store.pending() == 3
    assert len(store.claim("next", 100, 60)) == 3


# --- opening a database -------------------------------------------------------------------
@pytest.mark.parametrize(
    "url", ["mysql://u@localhost/db", "postgress://u@localhost/db", "postgresql+asyncpg://h/db"]
)
def test_an_unsupported_scheme_is_a_config_error_naming_it(url: str) -> None:
    scheme = url.partition("://")[0]
    with pytest.raises(ConfigError) as caught:
        IntakeStore.open(url)
    message = str(caught.value)
    assert scheme in message and "sqlite" in message and "postgresql" in message
    assert "\n" not in message


def test_not_a_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="supported schemes: sqlite, postgresql"):
        IntakeStore.open("intake.db")


def test_a_refused_connection_is_service_unavailable_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ServiceUnavailable) as caught:
        IntakeStore.open("postgresql://nobody@127.0.0.1:1/nowhere")
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "127.0.0.1:1/nowhere" in message and "refused" in message.lower()
    assert "\n" not in message


def test_a_silent_server_is_service_unavailable_within_seconds() -> None:
    with socket.socket() as silent:  # accepts the connection, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(ServiceUnavailable) as caught:
            IntakeStore.open(f"postgresql://nobody@127.0.0.1:{port}/db")
        waited = time.monotonic() - started
    assert waited < 10
    message = str(caught.value)
    assert f"127.0.0.1:{port}/db" in message and "timeout" in message.lower()
    assert "\n" not in message


def test_a_misspelt_database_is_service_unavailable(postgres_url: str) -> None:
    url = sa.make_url(postgres_url).set(database="no_such_database_qh")
    with pytest.raises(ServiceUnavailable, match=r"/no_such_database_qh.*does not exist"):
        IntakeStore.open(url.render_as_string(hide_password=False))


def test_a_missing_sqlite_folder_is_a_config_error_naming_it_and_is_not_made(
    tmp_path: Path,
) -> None:
    """A misspelt URL must not make folders (it made /nonexistent/dir)."""
    path = tmp_path / "not" / "yet" / "intake.db"
    with pytest.raises(ConfigError, match=f"folder {tmp_path / 'not' / 'yet'} does not exist"):
        IntakeStore.open(f"sqlite:///{path}")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_sqlite_file_is_made_only_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "intake.db"
    with pytest.raises(ConfigError, match=f"no intake database at {path}"):
        IntakeStore.open(f"sqlite:///{path}", create=False)
    assert not path.exists()
    IntakeStore.open(f"sqlite:///{path}").close()
    IntakeStore.open(f"sqlite:///{path}", create=False).close()


def test_postgres_is_read_as_postgresql_on_the_installed_driver() -> None:
    """``postgres://`` is the alias many hosts hand out (Heroku, Render, libpq itself)."""
    from pipeline.intake.database import parse_url

    url = parse_url("postgres://user:pw@db.example:5433/q")
    assert url.drivername == "postgresql+psycopg"
    assert (url.host, url.port, url.database) == ("db.example", 5433, "q")


@pytest.mark.postgres
def test_a_postgres_url_opens_the_database(postgres_url: str) -> None:
    alias = "postgres://" + postgres_url.split("://", 1)[1]
    store = IntakeStore.open(alias)
    try:
        assert store.submit([(ring(4, "a"), "s")])[0].created
    finally:
        store.close()


def test_an_unopenable_sqlite_file_is_service_unavailable(tmp_path: Path) -> None:
    (tmp_path / "intake.db").mkdir()  # a folder where the file should be
    with pytest.raises(ServiceUnavailable, match=r"intake\.db"):
        IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")


# --- crash hooks --------------------------------------------------------------------------
CRASHING = (
    "from pipeline.crash import fault_point\n"
    "for i in (1, 2, 3):\n"
    "    fault_point('claim')\n"
    "    print('passed', i, flush=True)\n"
)


def _crashing(crash_at: str | None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "QHOPPER_CRASH_AT"}
    if crash_at is not None:
        env["QHOPPER_CRASH_AT"] = crash_at
    return subprocess.run(
        [sys.executable, "-c", CRASHING],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_fault_point_kills_at_the_counted_pass() -> None:
    killed = _crashing("claim:2")
    assert killed.returncode == -9
    assert killed.stdout.splitlines() == ["passed 1"]


def test_fault_point_does_nothing_unarmed_or_armed_elsewhere() -> None:
    for crash_at in (None, "finish:1"):
        survived = _crashing(crash_at)
        assert survived.returncode == 0, survived.stderr
        assert survived.stdout.splitlines() == ["passed 1", "passed 2", "passed 3"]


def test_fault_point_with_a_marker_kills_only_once(tmp_path: Path) -> None:
    marker = tmp_path / "crashed"
    assert _crashing(f"claim:1@{marker}").returncode == -9
    assert marker.exists()
    assert _crashing(f"claim:1@{marker}").returncode == 0


def test_a_malformed_crash_setting_is_refused() -> None:
    failed = _crashing("nowhere:1")
    assert failed.returncode == 1 and "QHOPPER_CRASH_AT" in failed.stderr


# --- leases: truthful renewals, the keeper, the database's clock -----------------------------
def _lease(store: IntakeStore, problem_id: str) -> datetime | None:
    with store.engine.connect() as connection:
        value = connection.execute(
            sa.select(problems.c.lease_expires_at).where(problems.c.id == problem_id)
        ).scalar_one()
    assert value is None or isinstance(value, datetime)
    return value


def _set_lease(store: IntakeStore, problem_id: str, value: Any) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(problems).where(problems.c.id == problem_id).values(lease_expires_at=value)
        )


def _skew_client_clock(monkeypatch: pytest.MonkeyPatch, by: timedelta) -> None:
    """Every intake module's view of the client's clock runs ``by`` off the truth."""
    skewed: Callable[[], datetime] = lambda: utcnow() + by  # noqa: E731
    for name in ("schema", "queue", "journal", "leases", "database"):
        module = getattr(pipeline.intake, name)
        if hasattr(module, "utcnow"):
            monkeypatch.setattr(module, "utcnow", skewed)


def test_renew_moves_a_lease_that_runs_short(store: IntakeStore) -> None:
    store.submit([(ring(4, "a"), "s")])
    (held,) = store.claim("run", 10, lease_seconds=60)
    claimed_until = _lease(store, held.id)
    assert claimed_until is not None
    _set_lease(store, held.id, claimed_until - timedelta(seconds=58))  # 2 s left
    assert store.renew("run", 60) == 1
    renewed_until = _lease(store, held.id)
    assert renewed_until is not None and renewed_until > claimed_until - timedelta(seconds=3)
    assert store.renew("someone-else", 60) == 0


def test_renew_counts_only_leases_it_could_extend(store: IntakeStore) -> None:
    store.submit([(ring(4, "a"), "s")])
    (held,) = store.claim("run", 10, lease_seconds=60)
    _set_lease(store, held.id, None)  # a lease renew cannot compare must still be renewed
    assert store.renew("run", 60) == 1
    assert _lease(store, held.id) is not None


def test_a_renewer_with_a_slow_clock_still_moves_the_lease(
    store: IntakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.submit([(ring(4, "a"), "s")])
    (held,) = store.claim("run", 10, lease_seconds=60)
    claimed_until = _lease(store, held.id)
    assert claimed_until is not None
    _set_lease(store, held.id, claimed_until - timedelta(seconds=58))  # 2 s left
    _skew_client_clock(monkeypatch, -timedelta(seconds=120))
    assert store.renew("run", 60) == 1
    renewed_until = _lease(store, held.id)
    assert renewed_until is not None and renewed_until > claimed_until - timedelta(seconds=3)


def test_a_fast_client_clock_cannot_steal_a_live_claim(
    store: IntakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    (outcome,) = store.submit([(ring(4, "a"), "s")])
    store.claim("run-on-a-good-clock", 10, lease_seconds=60)
    store.journal.begin_batch("run-on-a-good-clock", "b-1", [outcome.id], "/nowhere/b-1.parquet")
    store.submit([(ring(5, "b"), "s")])
    (other,) = store.claim("run-on-a-good-clock", 10, lease_seconds=60)
    _skew_client_clock(monkeypatch, timedelta(seconds=120))  # two leases ahead
    assert store.pending() == 0
    assert store.claim("run-on-a-fast-clock", 10, lease_seconds=60) == []
    assert store.journal.unfinished_batches() == []  # its writer's lease is live
    assert store.get(other.id)["lease_owner"] == "run-on-a-good-clock"  # type: ignore[index]


def _poll(condition: Callable[[], bool], deadline_s: float = 20) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_lease_keeper_renews_until_stopped(store: IntakeStore) -> None:
    store.submit([(ring(4, "a"), "s")])
    (held,) = store.claim("run", 10, lease_seconds=1.5)
    claimed_until = _lease(store, held.id)
    assert claimed_until is not None
    keeper = LeaseKeeper(store, "run", lease_seconds=1.5).start()
    try:
        assert keeper.running
        assert _poll(lambda: (_lease(store, held.id) or claimed_until) > claimed_until)
    finally:
        started = time.monotonic()
        keeper.stop(timeout=10)
    assert time.monotonic() - started < 5  # stop() wakes the keeper, it does not wait a beat
    assert not keeper.running  # no thread left to renew anything


def test_lease_keeper_survives_a_failing_renewal() -> None:
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        def renew(self, owner: str, lease_seconds: float) -> int:
            self.calls += 1
            if self.calls == 1:
                raise sa.exc.OperationalError("UPDATE", {}, Exception("database is locked"))
            return 1

    flaky = Flaky()
    keeper = LeaseKeeper(flaky, "run", lease_seconds=0.3).start()
    try:
        assert _poll(lambda: flaky.calls >= 3)
    finally:
        keeper.stop(timeout=10)
    assert not keeper.running


# --- durability ---------------------------------------------------------------------------
def test_sqlite_commits_are_synced(store: IntakeStore) -> None:
    if store.engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL syncs its commits by default")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"


# --- fencing ------------------------------------------------------------------------------
def _outcome(problem_id: str) -> ProblemOutcome:
    return ProblemOutcome(problem_id, COMPLETED, "classical", "cpsat")


def test_every_claim_bumps_the_epoch(store: IntakeStore) -> None:
    store.submit([(ring(4, "a"), "s")])
    (first,) = store.claim("run-1", 10, 60)
    _expire_leases(store)
    (second,) = store.claim("run-2", 10, 60)
    assert first.id == second.id and second.epoch == first.epoch + 1 >= 2


def test_finish_batch_finalises_the_batch_and_nothing_else(store: IntakeStore) -> None:
    ids = [o.id for o in store.submit([(ring(4, f"k{i}"), "s") for i in range(3)])]
    store.claim("run", 10, 60)
    assert store.journal.begin_batch("run", "b-1", ids[:2], "/r/b-1.parquet") == ids[:2]
    # A problem that is not in the batch is not finalised by it.
    assert store.journal.finish_batch("b-1", [_outcome(i) for i in ids]) is BatchState.WRITTEN
    assert [store.get(i)["state"] for i in ids] == [COMPLETED, COMPLETED, CLAIMED]  # type: ignore[index]


def _completions(store: IntakeStore, problem_id: str) -> int:
    found = store.get(problem_id)
    assert found is not None
    return [e["state"] for e in found["events"]].count(COMPLETED)


def test_a_batch_is_decided_once_and_later_deciders_learn_the_decision(
    store: IntakeStore,
) -> None:
    """Invariant 1: the first finish or abandon decides; every later one returns it."""
    first, second = (o.id for o in store.submit([(ring(4, f"k{i}"), "s") for i in range(2)]))
    store.claim("run", 10, 60)
    store.journal.begin_batch("run", "b-done", [first], "/r/b-done.parquet")
    store.journal.begin_batch("run", "b-gone", [second], "/r/b-gone.parquet")
    journal = store.journal
    assert journal.finish_batch("b-done", [_outcome(first)]) is BatchState.WRITTEN
    assert journal.finish_batch("b-done", [_outcome(first)]) is BatchState.WRITTEN
    assert journal.abandon_batch("b-done") is BatchState.WRITTEN  # too late: it committed
    assert _completions(store, first) == 1  # the second finish finalised nothing again
    assert journal.abandon_batch("b-gone") is BatchState.ABANDONED
    assert journal.finish_batch("b-gone", [_outcome(second)]) is BatchState.ABANDONED
    assert journal.abandon_batch("b-gone") is BatchState.ABANDONED
    assert store.get(second)["state"] == CLAIMED  # type: ignore[index]
    assert journal.batch_states(["b-done", "b-gone", "b-none"]) == {
        "b-done": BatchState.WRITTEN,
        "b-gone": BatchState.ABANDONED,  # a tombstone: a late writer learns it was abandoned
    }
    assert journal.abandon_batch("b-none") is BatchState.ABANDONED  # never journalled


def test_a_frozen_writer_cannot_finish_after_its_batch_was_taken_over(
    store: IntakeStore,
) -> None:
    (outcome,) = store.submit([(ring(4, "a"), "s")])
    store.claim("frozen", 10, 60)
    assert store.journal.begin_batch("frozen", "b-old", [outcome.id], "/r/b-old.parquet")
    _expire_leases(store)  # the writer froze past its lease; recovery finds no file
    assert store.journal.unfinished_batches() == [("b-old", "/r/b-old.parquet")]
    assert store.journal.abandon_batch("b-old") is BatchState.ABANDONED
    (again,) = store.claim("next", 10, 60)
    assert store.journal.begin_batch("next", "b-new", [again.id], "/r/b-new.parquet")
    assert store.journal.finish_batch("b-new", [_outcome(again.id)]) is BatchState.WRITTEN
    # The writer wakes up and learns its batch was abandoned: it must delete its files.
    assert store.journal.finish_batch("b-old", [_outcome(outcome.id)]) is BatchState.ABANDONED
    found = store.get(outcome.id)
    assert found is not None and found["result_path"] == "/r/b-new.parquet"
    assert _completions(store, outcome.id) == 1


def test_a_batch_with_a_problem_claimed_behind_its_back_commits_nothing(
    store: IntakeStore,
) -> None:
    """Its files answer for a problem another run now holds: all or nothing, so nothing,
    and the batch is abandoned (its other problem claimable again, not lost)."""
    ids = sorted(o.id for o in store.submit([(ring(4, f"k{i}"), "s") for i in range(2)]))
    store.claim("run", 10, 60)
    store.journal.begin_batch("run", "b-1", ids, "/r/b-1.parquet")
    _bump_epoch(store, ids[0])  # claimed again behind the batch's back
    assert store.journal.finish_batch("b-1", [_outcome(i) for i in ids]) is BatchState.ABANDONED
    assert [store.get(i)["state"] for i in ids] == [CLAIMED, CLAIMED]  # type: ignore[index]
    assert all(store.get(i)["batch_id"] is None for i in ids)  # type: ignore[index]
    assert store.journal.unfinished_batches() == []


def test_concurrent_deciders_make_one_decision(intake_url: str) -> None:
    """Eight threads, each with its own connection, finish or abandon one batch at once:
    one decision, the problem finalised once, and every thread told the same thing."""
    store = IntakeStore.open(intake_url)
    try:
        (outcome,) = store.submit([(ring(4, "a"), "s")])
        store.claim("run", 10, 60)
        store.journal.begin_batch("run", "b-1", [outcome.id], "/r/b-1.parquet")
        barrier = threading.Barrier(8, timeout=60)

        def decide(i: int) -> BatchState:
            barrier.wait()
            if i % 2:
                return store.journal.abandon_batch("b-1")
            return store.journal.finish_batch("b-1", [_outcome(outcome.id)])

        with ThreadPoolExecutor(8) as pool:
            decided = list(pool.map(decide, range(8), timeout=120))
        assert len(set(decided)) == 1, decided
        assert _completions(store, outcome.id) == (decided[0] is BatchState.WRITTEN)
    finally:
        store.close()


def test_a_database_from_before_epochs_is_upgraded(intake_url: str) -> None:
    store = IntakeStore.open(intake_url)
    with store.engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE problems DROP COLUMN claim_epoch")
    store.close()
    store = IntakeStore.open(intake_url)
    try:
        store.submit([(ring(4, "a"), "s")])
        assert store.claim("run", 10, 60)[0].epoch == 1
    finally:
        store.close()


def _bump_epoch(store: IntakeStore, problem_id: str) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            sa.update(problems)
            .where(problems.c.id == problem_id)
            .values(claim_epoch=problems.c.claim_epoch + 1)
        )


# --- hand-backs and requeue -----------------------------------------------------------------
def test_a_clean_hand_back_gives_the_attempt_back_and_a_failed_run_keeps_it(
    store: IntakeStore,
) -> None:
    store.submit([(ring(4, f"k{i}"), "s") for i in range(2)])
    (first,) = store.claim("stopped", 1, 60)
    assert store.release("stopped") == 1  # Ctrl-C: nothing failed
    ids = [c.id for c in store.claim("crashed", 2, 60)]
    assert store.release("crashed", count_attempt=True) == 2  # the run raised
    attempts = sorted(store.get(i)["attempts"] for i in ids)  # type: ignore[index]
    assert attempts == [1, 1]  # the first: claimed twice, counted once
    found = store.get(first.id)
    assert found is not None
    assert any("attempt not counted" in (e["detail"] or "") for e in found["events"])


def _fail(store: IntakeStore, ids: list[str], batch_id: str) -> None:
    store.claim("run", 100, 60, only=ids)
    store.journal.begin_batch("run", batch_id, ids, f"/r/{batch_id}.parquet")
    outcomes = [ProblemOutcome(i, "failed", None, None, "no answer") for i in ids]
    assert store.journal.finish_batch(batch_id, outcomes) is BatchState.WRITTEN


def test_requeue_takes_failed_problems_back_with_a_fresh_budget(store: IntakeStore) -> None:
    specs = [(ring(4, f"k{i}"), "s") for i in range(3)]
    specs.append((MaxCutSpec.model_validate({**ring(5).model_dump(), "tenant": "t2"}), "s"))
    ids = [o.id for o in store.submit(specs)]
    _fail(store, ids[:2] + ids[3:], "b-failed")
    assert store.requeue(RequeueSelection(ids[:1]), "ops", dry_run=True).requeued == ids[:1]
    assert store.get(ids[0])["state"] == "failed"  # type: ignore[index]
    refused = store.requeue(RequeueSelection([ids[0], ids[2], "p-none"]), "ops")
    assert refused.requeued == [] and set(refused.refused) == {ids[2], "p-none"}
    assert "it is queued" in refused.refused[ids[2]]
    assert store.get(ids[0])["state"] == "failed"  # type: ignore[index]  # all or nothing
    mine = store.requeue(RequeueSelection(tenant="t2"), "t2")
    assert mine.requeued == [ids[3]]
    rest = store.requeue(RequeueSelection(), "ops")
    assert rest.requeued == sorted(ids[:2])
    found = store.get(ids[0])
    assert found is not None
    assert (found["state"], found["attempts"], found["supersedes"]) == ("queued", 0, "b-failed")
    assert found["events"][-1]["detail"] == "requeued by ops (was failed: no answer)"
    (claimed,) = store.claim("next", 1, 60, only=[ids[0]])
    assert claimed.supersedes == "b-failed" and claimed.attempts == 1
