"""Scale-out on real distributed parts: a `dask scheduler` and `dask worker` processes
started from their own command lines, a PostgreSQL intake, two `qhopper run` processes
started together as two hosts would (each with a home that does not exist yet, one shared
result folder), and a worker SIGKILLed mid-run. Every problem is answered exactly once,
and the two runs share the work.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from distributed import Client
from factories import problem
from faults import kill_a_worker_once

from flows.compute import SINGLE_THREAD_ENV
from pipeline.intake import CLAIMED, COMPLETED, IntakeStore, problem_events
from pipeline.results import query

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent
PROBLEMS = 240
WORKERS = 3


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[str]:
    """A scheduler and three single-threaded workers, each its own process, on loopback."""
    scheduler_file = tmp_path / "scheduler.json"
    env = {**os.environ, **SINGLE_THREAD_ENV}
    logs = (tmp_path / "dask.log").open("w")
    processes = [
        subprocess.Popen(
            [
                str(BIN / "dask"),
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(scheduler_file),
            ],
            stdout=logs,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    ]
    try:
        deadline = time.monotonic() + 120
        while not scheduler_file.exists():  # a process we started: poll it, bounded
            assert processes[0].poll() is None, (tmp_path / "dask.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the scheduler did not start"
            time.sleep(0.1)
        for _ in range(WORKERS):
            processes.append(
                subprocess.Popen(
                    [
                        str(BIN / "dask"),
                        "worker",
                        "--scheduler-file",
                        str(scheduler_file),
                        "--nthreads",
                        "1",
                        "--no-dashboard",
                        "--preload",
                        "flows.worker_setup",
                    ],
                    stdout=logs,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
        with Client(scheduler_file=str(scheduler_file), timeout="60s") as client:
            client.wait_for_workers(WORKERS, timeout=180)
            yield str(client.scheduler.address)
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)
                process.wait(timeout=30)
        logs.close()


def test_two_runners_on_a_real_cluster_share_the_queue_and_lose_a_worker_cleanly(
    tmp_path: Path, cluster: str, postgres_url: str
) -> None:
    shared = tmp_path / "shared-results"
    env = {
        **os.environ,
        "QHOPPER_DATABASE_URL": postgres_url,
        "QHOPPER_RESULTS_URL": str(shared),
        "QHOPPER_DASK_ADDRESS": cluster,
    }
    env.pop("PREFECT_API_URL", None)
    records = [  # 4- to 6-node rings weighted 1 to 5, every other one on the classical route
        problem(
            "maxcut",
            4 + i % 3,
            seed=i,
            graph="ring",
            span=(1, 5),
            route="classical" if i % 2 else None,
            key=f"scale-{i}",
        )
        for i in range(PROBLEMS)
    ]
    source = tmp_path / "problems.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    config = tmp_path / "qhopper.toml"
    config.write_text("[quantum]\nmax_batch_size = 8\nmax_iterations = 5\ndefault_shots = 64\n")
    first_home = tmp_path / "host-a" / "home"  # neither exists yet, as on a new host
    subprocess.run(
        [str(BIN / "qhopper"), "submit", str(source), "--home", str(first_home)],
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    marker = tmp_path / "worker-killed"
    with (
        Client(cluster, timeout="60s") as client,
        kill_a_worker_once(client, str(marker), "classical-"),
    ):
        runs = [
            subprocess.Popen(
                [
                    str(BIN / "qhopper"),
                    "run",
                    "--json",
                    "--config",
                    str(config),
                    "--home",
                    str(tmp_path / host / "home"),
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for host in ("host-a", "host-b")
        ]
        outputs = [run.communicate(timeout=600) for run in runs]
        client.wait_for_workers(WORKERS, timeout=120)  # the nanny brought it back
    for run, (_stdout, stderr) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, stderr[-3000:]
    assert marker.exists(), "no worker was killed"
    summaries = [json.loads(stdout) for stdout, _ in outputs]
    assert sum(s["problems"] for s in summaries) >= PROBLEMS
    rows = query(shared, "SELECT problem_id, run_id, status FROM problems").to_pylist()
    per_problem = Counter(r["problem_id"] for r in rows)
    assert len(per_problem) == PROBLEMS and set(per_problem.values()) == {1}
    assert {r["status"] for r in rows} == {COMPLETED}
    # Both runners answered some of the queue. How much each got depends on which process
    # starts claiming first on a loaded machine, so no share is asserted beyond that.
    shares = Counter(r["run_id"] for r in rows)
    assert len(shares) == 2, shares
    store = IntakeStore.open(postgres_url)
    try:
        assert store.counts()[COMPLETED] == PROBLEMS
        with store.engine.connect() as connection:
            claims = connection.execute(
                sa.select(problem_events.c.problem_id).where(problem_events.c.state == CLAIMED)
            ).all()
    finally:
        store.close()
    assert max(Counter(c.problem_id for c in claims).values()) <= 2  # at most a lost chunk's


@contextlib.contextmanager
def prefect_server_on_postgresql(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A Prefect server of our own on a fresh PostgreSQL database, healthy: its API URL and
    the environment its clients get; stopped and the database dropped afterwards."""
    admin = sa.create_engine(
        "postgresql+psycopg://root@127.0.0.1:5432/test", isolation_level="AUTOCOMMIT"
    )
    database = f"qh_prefect_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {database}"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    api_url = f"http://127.0.0.1:{port}/api"
    base = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    base |= {"PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    server_env = base | {
        "PREFECT_API_DATABASE_CONNECTION_URL": f"postgresql+asyncpg://root@127.0.0.1:5432/{database}"
    }
    command = [sys.executable, "-m", "prefect", "server", "start"]
    log = (tmp_path / "prefect.log").open("w")
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=server_env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:  # a process we started: poll its health, bounded
            assert server.poll() is None, (tmp_path / "prefect.log").read_text()[-3000:]
            try:
                if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the Prefect server did not become healthy"
            time.sleep(0.5)
        yield api_url, base
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, 9)
        log.close()
        with admin.connect() as connection:
            connection.execute(sa.text(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
        admin.dispose()


@contextlib.contextmanager
def serving(tmp_path: Path, env: dict[str, str], hosts: list[str]) -> Iterator[list[Any]]:
    """`qhopper serve --interval 3s` once per host; SIGTERM and waited for afterwards."""
    serves: list[subprocess.Popen[bytes]] = []
    try:
        for host in hosts:
            command = [str(BIN / "qhopper"), "serve", "--interval", "3s"]
            serves.append(
                subprocess.Popen(
                    [*command, "--home", str(tmp_path / host)],
                    stdout=(tmp_path / f"serve-{host}.log").open("w"),
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            )
        yield serves
    finally:
        for process in serves:
            process.send_signal(signal.SIGTERM)
        for process in serves:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, 9)


def wait_until_completed(postgres_url: str, serves: list[Any], count: int) -> None:
    """Poll the intake until ``count`` problems are completed, the services alive, bounded."""
    store = IntakeStore.open(postgres_url)
    try:
        deadline = time.monotonic() + 300
        while store.counts()[COMPLETED] < count:  # polling two services' progress, bounded
            assert all(s.poll() is None for s in serves), "a serve process died"
            assert time.monotonic() < deadline, store.counts()
            time.sleep(1)
    finally:
        store.close()


def test_two_serve_processes_on_a_prefect_server_backed_by_postgresql(
    tmp_path: Path, cluster: str, postgres_url: str
) -> None:
    """Prefect at scale: its server on PostgreSQL, two `qhopper serve` processes on one
    schedule, one PostgreSQL intake: every problem answered once, runs never overlap."""
    with prefect_server_on_postgresql(tmp_path) as (api_url, base):
        env = base | {
            "PREFECT_API_URL": api_url,
            "QHOPPER_DATABASE_URL": postgres_url,
            "QHOPPER_RESULTS_URL": str(tmp_path / "results"),
            "QHOPPER_DASK_ADDRESS": cluster,
        }
        source = tmp_path / "p.jsonl"
        options = {"graph": "path", "span": (1, 3), "route": "classical"}
        records = [problem("maxcut", 5, seed=i, key=f"serve-{i}", **options) for i in range(30)]
        source.write_text("".join(json.dumps(r) + "\n" for r in records))
        subprocess.run(
            [str(BIN / "qhopper"), "submit", str(source), "--home", str(tmp_path / "a")],
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        with serving(tmp_path, env, ["a", "b"]) as serves:
            wait_until_completed(postgres_url, serves, 30)
            runs = httpx.post(
                f"{api_url}/flow_runs/filter",
                json={"flows": {"name": {"any_": ["qhopper-run"]}}, "sort": "START_TIME_ASC"},
                timeout=30,
            ).json()
    rows = query(tmp_path / "results", "SELECT problem_id FROM problems").to_pylist()
    assert len(rows) == 30 and len({r["problem_id"] for r in rows}) == 30
    spans = sorted(
        (
            datetime.fromisoformat(r["start_time"]).timestamp(),
            datetime.fromisoformat(r["end_time"]).timestamp() if r["end_time"] else float("inf"),
        )
        for r in runs
        if r["start_time"]
    )
    assert spans, runs
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start + 1e-3, f"runs overlap: {spans}"
