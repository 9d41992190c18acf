"""Durability: no problem lost and no answer duplicated under crashes, concurrency and time.

Real `qhopper run` processes are SIGKILLed at every commit point of a run (claim, compile,
execute, Parquet write before and after the rename, completion), a Dask worker dies in
the middle of a batch, eight submitters race two runs over overlapping keys, and
`qhopper serve` meets a crashed run. After each: every accepted problem has exactly one
result row, nothing stays queued or claimed, and the Parquet datasets read cleanly.

Cost control, so that all of it fits in CI: one Prefect server and one Dask cluster serve
the whole module, and every run is a real `qhopper run` process that dies by SIGKILL.
Kill points are deterministic (``QHOPPER_CRASH_AT``, a test-only hook in pipeline/crash.py);
claims of a dead process on this host are taken over at once, so nothing waits for a lease.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
import truth
from distributed import Client, LocalCluster
from factories import Seed, problem, rng_of
from faults import kill_a_worker_once
from test_hostile_input import HOSTILE_KEYS
from typer.testing import CliRunner

from flows.cli import app
from pipeline.crash import CRASH_STAGES
from pipeline.intake import (
    ACTIVE_STATES,
    CLAIMED,
    COMPLETED,
    DEGRADED,
    FAILED,
    QUEUED,
    IntakeStore,
    problem_events,
    problems,
    result_batches,
)
from pipeline.results import query

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
QHOPPER = str(Path(sys.executable).parent / "qhopper")
KILLED = -signal.SIGKILL
PREFECT_SERVER = [sys.executable, "-m", "prefect", "server", "start"]
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Rig:
    root: Path
    api_url: str
    dask_address: str
    env: dict[str, str]  # for real subprocesses: the shared Prefect server
    logs: list[Path] = field(default_factory=list)

    def start(
        self,
        home: Path,
        config: Path | None,
        crash: str | None = None,
        lease: float = 20,
        extra: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a real `qhopper run --json` process for ``home`` on the shared cluster.

        Without PREFECT_API_URL it calls the run core directly, as a one-off run does.
        """
        args = [QHOPPER, "run", "--json", "--home", str(home), "--dask-address", self.dask_address]
        if config is not None:
            args += ["--config", str(config)]
        env = {k: v for k, v in self.env.items() if k != "PREFECT_API_URL"}
        env |= {"QHOPPER_LEASE_SECONDS": str(lease), "QHOPPER_CRASH_AT": crash or ""}
        env |= extra or {}
        log = home.parent / f"{home.name}-runs.log"
        self.logs.append(log)
        with log.open("a") as handle:
            handle.write(f"\n=== qhopper run (crash at {crash or 'nothing'})\n")
            handle.flush()
            return subprocess.Popen(
                args, stdout=handle, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait(self, process: subprocess.Popen[bytes], timeout: float = 240) -> int:
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            pytest.fail(f"qhopper run (pid {process.pid}) did not finish within {timeout:.0f} s")

    def run(self, home: Path, config: Path | None, crash: str | None = None) -> int:
        return self.wait(self.start(home, config, crash))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """One Prefect server (for serve) and one Dask cluster for the whole module."""
    from flows.compute import SINGLE_THREAD_ENV

    root = tmp_path_factory.mktemp("durability")
    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_API_URL": api_url,
        "PREFECT_LOGGING_LEVEL": "WARNING",
        **SINGLE_THREAD_ENV,
    }
    server_env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}
    with (root / "prefect-server.log").open("wb") as log:
        server = subprocess.Popen(
            [*PREFECT_SERVER, "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env,
            start_new_session=True,
        )
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
        silence_logs=50,
        env=SINGLE_THREAD_ENV,
    )
    rig = Rig(root, api_url, cluster.scheduler_address, env)
    try:
        deadline = time.monotonic() + 180
        while True:  # a subprocess we started: poll its health, bounded
            assert server.poll() is None, (root / "prefect-server.log").read_text()[-3000:]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the Prefect server did not become healthy"
            time.sleep(0.25)
        yield rig
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        cluster.close(timeout=30)


# --- problems and checks -----------------------------------------------------------------
def tiny_problem(seed: Seed, quantum: bool, key: str | None = None) -> dict[str, Any]:
    """A 4-6 node MaxCut (tests/factories.py): quantum ones are rings weighted 1 to 5 (two
    shapes), classical ones any graph (each pair an edge with probability 0.6, weights -2
    to 6). ``seed`` may be a generator, to draw many in turn.

    Give a ``key`` where problems must stay distinct: tiny graphs repeat, and the same
    content under the default key is one problem.
    """
    rng = rng_of(seed)
    if quantum:
        n = 4 + int(rng.integers(2))
        return problem("maxcut", n, seed=rng, graph="ring", span=(1, 5), route="quantum", key=key)
    n = 4 + int(rng.integers(3))
    options = {"density": 0.6, "nonempty": True, "span": (-2, 6)}
    return problem("maxcut", n, seed=rng, route="classical", key=key, **options)


def submit(home: Path, records: list[dict[str, Any]], name: str) -> list[str]:
    path = home.parent / f"{name}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = runner.invoke(app, ["submit", str(path), "--json", "--home", str(home)])
    assert result.exit_code == 0, result.output
    return [item["id"] for item in json.loads(result.stdout)]


def write_config(path: Path, **sections: dict[str, Any]) -> Path:
    lines = []
    for section, values in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def result_rows(home: Path) -> list[dict[str, Any]]:
    """Every visible problem row, read two ways: DuckDB's glob and a pyarrow dataset."""
    results = home / "results"
    for visible in results.glob("*/date=*/*.parquet"):
        pq.read_table(visible)  # every visible file is whole
    rows: list[dict[str, Any]] = query(results, "SELECT * FROM problems").to_pylist()
    if (results / "problems").exists():
        dataset = ds.dataset(results / "problems", format="parquet", partitioning="hive")
        assert dataset.count_rows() == len(rows)
    return rows


def assert_no_duplicates(home: Path) -> None:
    twice = [pid for pid, n in Counter(r["problem_id"] for r in result_rows(home)).items() if n > 1]
    assert not twice, f"problems with more than one result row: {twice[:5]}"


def assert_exactly_once(home: Path, ids: list[str], url: str | None = None) -> list[dict[str, Any]]:
    """Every accepted problem final with one row; no orphans, temporaries or open journal."""
    store = IntakeStore.open(url or f"sqlite:///{home / 'intake.db'}")
    try:
        counts = store.counts()
        with store.engine.connect() as connection:
            open_batches = connection.execute(
                sa.select(sa.func.count()).where(result_batches.c.state == "writing")
            ).scalar_one()
    finally:
        store.close()
    assert all(counts[s] == 0 for s in (QUEUED, *ACTIVE_STATES)), counts
    assert counts[COMPLETED] + counts[DEGRADED] + counts[FAILED] == len(ids), counts
    assert open_batches == 0
    rows = result_rows(home)
    per_problem = Counter(r["problem_id"] for r in rows)
    assert sorted(per_problem) == sorted(ids)
    assert set(per_problem.values()) == {1}, "a problem has more than one result row"
    results = home / "results"
    assert not list(results.glob("*/date=*/.*")), "temporaries left behind"
    batches = query(results, "SELECT batch_id, size FROM batches").to_pylist()
    sizes = {b["batch_id"]: b["size"] for b in batches}
    assert len(sizes) == len(batches), "a batch has two rows in batches/"
    assert sizes == dict(Counter(r["batch_id"] for r in rows)), (
        "batches/ and problems/ disagree (an orphaned file)"
    )
    return rows


def assert_answers_correct(rows: list[dict[str, Any]], records: dict[str, dict[str, Any]]) -> None:
    for row in rows:
        record = records[row["problem_id"]]
        assert row["status"] == COMPLETED, row  # no fault here touches a backend
        assert row["objective"] == pytest.approx(truth.objective(record, row["solution"]))
        if row["route"] == "classical":
            assert row["objective"] == pytest.approx(truth.brute_force(record)), row


def claims_per_problem(home: Path) -> Counter[str]:
    engine = sa.create_engine(f"sqlite:///{home / 'intake.db'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(problem_events.c.problem_id).where(problem_events.c.state == CLAIMED)
            ).all()
    finally:
        engine.dispose()
    return Counter(r.problem_id for r in rows)


def last_claimants(home: Path) -> dict[str, str]:
    """Each problem's last claimant, from the intake's history ("owner=<run> attempt=<n>")."""
    engine = sa.create_engine(f"sqlite:///{home / 'intake.db'}")
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sa.select(problem_events.c.problem_id, problem_events.c.detail)
                .where(problem_events.c.state == CLAIMED)
                .order_by(problem_events.c.id)
            ).all()
    finally:
        engine.dispose()
    return {r.problem_id: r.detail.split()[0].removeprefix("owner=") for r in rows}


def drain(rig: Rig, home: Path, config: Path | None, runs: int = 3) -> int:
    """Normal runs until nothing is queued or held; returns how many it took."""
    for done in range(1, runs + 1):
        assert rig.run(home, config) == 0, rig.logs[-1].read_text()[-4000:]
        store = IntakeStore.open(f"sqlite:///{home / 'intake.db'}")
        counts = store.counts()
        store.close()
        if all(counts[s] == 0 for s in (QUEUED, *ACTIVE_STATES)):
            return done
    pytest.fail(f"the queue did not drain in {runs} runs: {counts}")


# --- 1. crash safety ---------------------------------------------------------------------
PROBLEMS = 200
KILLS = 2 * len(CRASH_STAGES)


def kill_plan() -> list[str]:
    """Fourteen kill points, every stage twice, in an order seeded per kill.

    Stages passed once per run (claim) or once per batch by code that may batch its
    bookkeeping differently (compile, execute) die at their first pass; the write stages
    at the 1st or 2nd batch written, drawn from ``random.Random(seed)``.
    """
    stages = list(CRASH_STAGES) * 2
    random.Random(20261125).shuffle(stages)
    plan = []
    for seed, stage in enumerate(stages):
        count = 1 if stage in ("claim", "compile", "execute") else random.Random(seed).randint(1, 2)
        plan.append(f"{stage}:{count}")
    return plan


def test_sigkill_at_every_commit_point_loses_nothing_and_duplicates_nothing(
    rig: Rig, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    rng = rng_of(7)
    records = [tiny_problem(rng, i % 2 == 0, f"crash-{i}") for i in range(PROBLEMS)]
    ids = submit(home, records, "problems")
    assert len(set(ids)) == PROBLEMS
    # Batches of 4: 50 of them (25 quantum); fourteen kills finish at most one batch each, so
    # every kill point is still ahead of each run. Attempts stay under the limit: none ends failed.
    config = write_config(
        tmp_path / "qhopper.toml",
        intake={"max_attempts": KILLS + 5},
        quantum={"max_batch_size": 4, "max_iterations": 5, "default_shots": 64},
    )
    plan = kill_plan()
    assert Counter(p.split(":")[0] for p in plan).keys() == set(CRASH_STAGES)
    for crash in plan:
        returncode = rig.run(home, config, crash)
        assert returncode == KILLED, (crash, returncode, rig.logs[-1].read_text()[-4000:])
        assert_no_duplicates(home)  # and every visible file reads whole
    assert drain(rig, home, config) == 1
    rows = assert_exactly_once(home, ids)
    assert_answers_correct(rows, dict(zip(ids, records, strict=True)))
    assert {r["route"] for r in rows} == {"quantum", "classical"}
    # Every kill cost each problem it held one attempt, and no problem ran out of them; the
    # run that wrote each row is the one that claimed the problem last.
    claims = claims_per_problem(home)
    assert max(claims.values()) <= KILLS + 1
    assert {r["problem_id"]: r["run_id"] for r in rows} == last_claimants(home)


def test_a_problem_that_keeps_killing_runs_ends_failed_with_its_reason(
    rig: Rig, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    [pid] = submit(home, [{"kind": "maxcut", "n": 4, "edges": [[0, 1], [1, 2], [2, 3]]}], "p")
    limit = 3  # the default max_attempts
    codes = [rig.run(home, None, "execute:1") for _ in range(limit + 1)]
    assert codes == [KILLED] * limit + [0], rig.logs[-1].read_text()[-4000:]
    [row] = assert_exactly_once(home, [pid])
    assert row["status"] == FAILED and row["solution"] is None
    assert row["fallback_reason"].startswith(f"attempt limit reached: claimed {limit} times")
    store = IntakeStore.open(f"sqlite:///{home / 'intake.db'}")
    found = store.get(pid)
    store.close()
    assert found is not None and found["state"] == FAILED and found["attempts"] == limit + 1
    assert "attempt limit" in found["last_error"]
    assert claims_per_problem(home)[pid] == limit + 1
    assert drain(rig, home, None) == 1  # nothing more to do
    assert len(result_rows(home)) == 1


@pytest.mark.parametrize("stage", ["journal", "write-before-rename"])
def test_a_frozen_writer_never_publishes_a_second_row(
    rig: Rig, tmp_path: Path, intake_url: str, stage: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run A journals a batch and freezes (SIGSTOP, its whole process group) past its lease;
    run B takes its problems over and finishes; A resumes. Readers see one row per problem:
    A's batch is committed by B's recovery from its staged files (frozen after staging) or
    abandoned and redone (frozen before), and A's commit finds its batch stale."""
    monkeypatch.setenv("QHOPPER_DATABASE_URL", intake_url)
    database = {"QHOPPER_DATABASE_URL": intake_url}
    home = tmp_path / "home"
    home.mkdir()
    rng = rng_of(3)
    records = [tiny_problem(rng, i % 2 == 0, f"frozen-{i}") for i in range(12)]
    ids = submit(home, records, "problems")
    config = write_config(
        tmp_path / "qhopper.toml",
        quantum={"max_batch_size": 4, "max_iterations": 5, "default_shots": 64},
    )
    frozen = rig.start(home, config, lease=3, extra={**database, "QHOPPER_PAUSE_AT": f"{stage}:1"})
    try:
        deadline = time.monotonic() + 180
        while psutil.Process(frozen.pid).status() != psutil.STATUS_STOPPED:
            assert frozen.poll() is None, rig.logs[-1].read_text()[-4000:]
            assert time.monotonic() < deadline, "run A never reached its pause point"
            time.sleep(0.05)  # polling another process's state, bounded by the deadline
        os.killpg(frozen.pid, signal.SIGSTOP)  # the whole group, as a paused VM would be
        store = IntakeStore.open(intake_url)
        try:
            while store.pending() == 0:  # A's leases run out on the database's clock
                assert time.monotonic() < deadline, "A's leases never lapsed"
                time.sleep(0.1)
        finally:
            store.close()
        assert rig.wait(rig.start(home, config, extra=database)) == 0, rig.logs[-1].read_text()[
            -4000:
        ]
        taken_over = assert_exactly_once(home, ids, intake_url)
    finally:
        os.killpg(frozen.pid, signal.SIGCONT)
    assert rig.wait(frozen) == 0, rig.logs[-2].read_text()[-4000:]
    rows = assert_exactly_once(home, ids, intake_url)
    assert sorted(r["problem_id"] for r in rows) == sorted(r["problem_id"] for r in taken_over)
    assert_answers_correct(rows, dict(zip(ids, records, strict=True)))


# --- 2. worker loss ----------------------------------------------------------------------
@pytest.mark.parametrize("victim", ["classical-", "quantum-"])
def test_a_dask_worker_killed_mid_batch_costs_no_answer(
    rig: Rig, tmp_path: Path, victim: str
) -> None:
    """The worker dies as it starts a chunk: a classical one (while templates are still on
    their way to the workers), or a quantum one (taking its copy of the template)."""
    home = tmp_path / "home"
    home.mkdir()
    rng = rng_of(11)
    records = [tiny_problem(rng, i % 3 == 0, f"worker-{i}") for i in range(36)]
    ids = submit(home, records, "problems")
    config = write_config(
        tmp_path / "qhopper.toml",
        quantum={"max_batch_size": 6, "max_iterations": 5, "default_shots": 64},
    )
    marker = tmp_path / "worker-killed"
    with Client(rig.dask_address, set_as_default=False, timeout="30s") as client:
        with kill_a_worker_once(client, str(marker), victim):
            assert rig.run(home, config) == 0, rig.logs[-1].read_text()[-4000:]
        client.wait_for_workers(2, timeout=60)  # the nanny brought it back
    assert marker.exists(), "no worker was killed"
    rows = assert_exactly_once(home, ids)
    assert_answers_correct(rows, dict(zip(ids, records, strict=True)))
    assert all(r["status"] == COMPLETED for r in rows), "the lost chunk was not re-run"


# --- 3. concurrency ----------------------------------------------------------------------
SUBMITTERS = 8
PER_SUBMITTER = 1000
KEY_POOL = 1200


def keyed_problem(k: int) -> dict[str, Any]:
    record = tiny_problem(k, quantum=False)
    return record | {"key": f"job/{k:04d}"}  # a key with a path separator, on purpose


def test_eight_submitters_and_two_runs_at_once_answer_each_key_once(
    rig: Rig, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    # Something for the first runs to claim, including keys that look like paths or SQL:
    # kept verbatim, answered like any other, and never used to name a file.
    hostile = {key: tiny_problem(i, False, key) for i, key in enumerate(HOSTILE_KEYS)}
    submit(home, [keyed_problem(k) for k in range(50)] + list(hostile.values()), "first")
    chosen = [random.Random(i).sample(range(KEY_POOL), PER_SUBMITTER) for i in range(SUBMITTERS)]
    files = []
    for i, keys in enumerate(chosen):
        path = tmp_path / f"submitter-{i}.jsonl"
        path.write_text("".join(json.dumps(keyed_problem(k)) + "\n" for k in keys))
        files.append(path)
    env = {k: v for k, v in rig.env.items() if not k.startswith("PREFECT_")}
    submitters = [
        subprocess.Popen(
            [QHOPPER, "submit", str(path), "--json", "--home", str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        for path in files
    ]
    runs = [rig.start(home, None, lease=600), rig.start(home, None, lease=600)]
    outputs = []
    for process in submitters:
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr.decode()[-3000:]
        outputs.append(json.loads(stdout))
    assert [rig.wait(process) for process in runs] == [0, 0], rig.logs[-1].read_text()[-4000:]
    drain(rig, home, None)

    distinct = set(range(50)).union(*chosen)
    ids_by_key: dict[str, set[str]] = {}
    created = Counter[str]()
    for output in outputs:
        assert len(output) == PER_SUBMITTER
        for item in output:
            ids_by_key.setdefault(item["key"], set()).add(item["id"])
            created[item["key"]] += item["created"]
    assert all(len(found) == 1 for found in ids_by_key.values()), "one key, two ids"
    assert all(n <= 1 for n in created.values()), "one key enqueued twice"
    rows = result_rows(home)
    assert len(rows) == len(distinct) + len(hostile)
    assert {r["key"] for r in rows} == {f"job/{k:04d}" for k in distinct} | set(hostile)
    ids = [r["problem_id"] for r in rows]
    for key, found in ids_by_key.items():
        assert found <= set(ids), key
    assert_exactly_once(home, ids)
    claims = claims_per_problem(home)
    assert set(claims.values()) == {1}, "a problem was claimed by two runs"
    records = {
        r["problem_id"]: hostile.get(r["key"]) or keyed_problem(int(r["key"][4:])) for r in rows
    }
    assert_answers_correct(rows, records)
    files = {p.name for p in (home / "results").glob("*/date=*/*")}
    assert all(name.startswith(("b-", "r-")) for name in files), files


def test_claims_of_a_dead_local_process_are_taken_over_at_once(intake_url: str) -> None:
    """The store half of the above: a live holder keeps its problems, a dead one does not."""
    from test_intake import ring

    store = IntakeStore.open(intake_url)
    try:
        store.submit([(ring(4, f"k{i}"), "s") for i in range(6)])
        mine = store.claim("alive-run", 3, lease_seconds=600)
        dead = store.claim("dead-run", 3, lease_seconds=600)
        with store.engine.begin() as connection:  # dead-run's process is gone
            connection.execute(
                problems.update()
                .where(problems.c.lease_owner == "dead-run")
                .values(lease_pid=_dead_pid())
            )
            connection.execute(  # and one of mine is held on another machine
                problems.update()
                .where(problems.c.id == mine[0].id)
                .values(lease_host="elsewhere", lease_pid=_dead_pid())
            )
        assert store.dead_local_owners() == ["dead-run"]
        taken = store.claim("next-run", 10, lease_seconds=600)
        assert sorted(c.id for c in taken) == sorted(c.id for c in dead)
        assert all(c.attempts == 2 for c in taken)
        # A journalled batch is left to recovery, however dead its holder.
        held = store.journal.begin_batch("next-run", "b-1", [taken[0].id], "/nowhere.parquet")
        assert held == [taken[0].id]
        assert (
            store.journal.begin_batch("intruder", "b-2", [c.id for c in mine], "/x.parquet") == []
        )
        with store.engine.begin() as connection:
            connection.execute(
                problems.update()
                .where(problems.c.lease_owner == "next-run")
                .values(lease_pid=_dead_pid())
            )
        assert [c.id for c in store.claim("late-run", 10, 600)] == sorted(c.id for c in taken[1:])
        assert store.journal.unfinished_batches() == [("b-1", "/nowhere.parquet")]
        assert store.release("alive-run") == 3
        assert store.counts()[QUEUED] == 3
    finally:
        store.close()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    return process.pid


# --- 5. schedule resilience --------------------------------------------------------------
def test_serve_keeps_its_interval_after_a_crashed_run_and_never_overlaps(
    rig: Rig, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    rng = rng_of(5)
    ids = submit(home, [tiny_problem(rng, False, f"a{i}") for i in range(3)], "first")
    marker = tmp_path / "crashed-once"
    env = {**rig.env, "QHOPPER_CRASH_AT": f"claim:1@{marker}", "QHOPPER_LEASE_SECONDS": "600"}
    log_path = tmp_path / "serve.log"
    interval = 2.0
    dask = ["--dask-address", rig.dask_address]
    with log_path.open("w") as log:
        serve = subprocess.Popen(
            [QHOPPER, "serve", "--interval", f"{interval:g}s", "--home", str(home), *dask],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        wait_for_completed(home, 3, serve, log_path)
        # The run after the crash took longer than the interval: the next starts after it.
        flow_runs = wait_for_flow_runs(rig, started=3, serve=serve, log_path=log_path)
    finally:
        stopped_at = time.time()
        serve.send_signal(signal.SIGINT)
        try:
            serve.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            pytest.fail("serve did not stop within 60 s of SIGINT")
    assert marker.exists(), "the first run did not crash"
    assert_exactly_once(home, ids)
    assert claims_per_problem(home)[ids[0]] == 2  # the crashed run's claim, then the next

    flow_runs = wait_for_flow_runs(rig, started=3)  # their states after the stop
    spans = sorted(
        (seconds(r["start_time"]), seconds(r["end_time"]), r["state"]["type"])
        for r in flow_runs
        if r["start_time"]
    )
    for (_, end, _), (start, _, _) in itertools.pairwise(spans):
        assert end <= start, f"runs overlap: {spans}"
    finished = [state for _, end, state in spans if end < stopped_at]  # not cut short by ^C
    assert finished[0] == "CRASHED", finished
    assert finished.count("CRASHED") == 1 and finished.count("COMPLETED") >= 1, finished
    # The schedule went on at its interval after the crash: every run on the grid.
    expected = sorted(seconds(r["expected_start_time"]) for r in flow_runs)
    assert len(expected) >= 3
    for a, b in itertools.pairwise(expected):
        assert (b - a) / interval == pytest.approx(round((b - a) / interval), abs=0.05)


def seconds(text: str | None) -> float:
    """An API timestamp as epoch seconds; none yet (still running) is the far future."""
    if text is None:
        return float("inf")
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def wait_for_flow_runs(
    rig: Rig,
    started: int,
    serve: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> list[dict[str, Any]]:
    """The served deployment's flow runs, once at least ``started`` of them have started."""
    deadline = time.monotonic() + 120
    while True:  # polling a separate service's progress, bounded by the deadline
        if serve is not None and log_path is not None:
            assert serve.poll() is None, log_path.read_text()[-3000:]
        found = httpx.get(
            f"{rig.api_url}/deployments/name/qhopper-run/qhopper-interval", timeout=30
        )
        flow_runs: list[dict[str, Any]] = []
        if found.status_code == 200:
            flow_runs = httpx.post(
                f"{rig.api_url}/flow_runs/filter",
                json={
                    "deployments": {"id": {"any_": [found.json()["id"]]}},
                    "sort": "EXPECTED_START_TIME_ASC",
                },
                timeout=30,
            ).json()
        if sum(bool(r["start_time"]) for r in flow_runs) >= started:
            return flow_runs
        assert time.monotonic() < deadline, f"fewer than {started} runs started: {flow_runs}"
        time.sleep(0.5)


def wait_for_completed(
    home: Path, count: int, serve: subprocess.Popen[bytes], log_path: Path
) -> None:
    deadline = time.monotonic() + 120
    while True:  # polling a separate service's progress, bounded by the deadline
        assert serve.poll() is None, log_path.read_text()[-3000:]
        store = IntakeStore.open(f"sqlite:///{home / 'intake.db'}")
        done = store.counts()[COMPLETED]
        store.close()
        if done >= count:
            return
        assert time.monotonic() < deadline, log_path.read_text()[-3000:]
        time.sleep(0.5)


def test_a_run_shows_in_the_prefect_ui_when_a_server_is_configured(
    rig: Rig, tmp_path: Path
) -> None:
    """With PREFECT_API_URL set, a one-off `qhopper run` goes through the Prefect flow: the
    server records it, with the run's summary as the flow run's artifact."""
    home = tmp_path / "home"
    home.mkdir()
    ids = submit(home, [tiny_problem(2, False, "ui-0")], "p")
    env = {**rig.env, "QHOPPER_HOME": str(home)}
    done = subprocess.run(
        [QHOPPER, "run", "--json", "--dask-address", rig.dask_address],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run_id = json.loads(done.stdout)["run_id"]
    assert_exactly_once(home, ids)
    deadline = time.monotonic() + 60
    while True:  # the server records the final state as it can under load: poll, bounded
        flows = httpx.post(
            f"{rig.api_url}/flow_runs/filter",
            json={  # completed ones only: serve's scheduled runs (no start time) sort first
                "flows": {"name": {"any_": ["qhopper-run"]}},
                "flow_runs": {"state": {"type": {"any_": ["COMPLETED"]}}},
                "sort": "START_TIME_DESC",
                "limit": 20,
            },
            timeout=30,
        ).json()
        completed = [f for f in flows if f["state"]["type"] == "COMPLETED"]
        if completed or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert completed, [(f["name"], f["state"]["type"], f["state"].get("message")) for f in flows]
    artifacts = httpx.post(
        f"{rig.api_url}/artifacts/filter",
        json={"artifacts": {"flow_run_id": {"any_": [f["id"] for f in completed]}}},
        timeout=30,
    ).json()
    assert any(run_id in (a["description"] or "") for a in artifacts), artifacts
