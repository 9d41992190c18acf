"""Day-two operation through the real CLI: interrupted runs, requeue, and every run's row.

Real ``qhopper`` processes on a temporary home. An interruption is deterministic: the run
freezes itself after committing its first batch (``QHOPPER_PAUSE_AT``), the test queues a
SIGINT or SIGTERM and lets it go on, so the signal lands mid-run whatever the machine's load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import truth
from factories import problem, rng_of

from pipeline.intake import COMPLETED, FAILED, IntakeStore
from pipeline.results import query

pytestmark = pytest.mark.e2e
QHOPPER = str(Path(sys.executable).parent / "qhopper")
TIMEOUT_S = 240
CONFIG = """\
[quantum]
max_batch_size = 4
max_iterations = 5
default_shots = 64
[dask]
inline_below_s = 1e9
"""


def rings(count: int, prefix: str) -> list[dict[str, Any]]:
    """Weighted 4- and 5-node rings on the quantum route (small: batches of 4 run fast)."""
    rng = rng_of(prefix)
    return [
        problem("maxcut", 4 + i % 2, seed=rng, graph="ring", span=(1, 5), key=f"{prefix}-{i}")
        for i in range(count)
    ]


class Home:
    """One temporary home and its configuration, driven through real processes."""

    def __init__(self, root: Path, extra_config: str = "") -> None:
        self.path = root / "home"
        self.config = root / "qhopper.toml"
        self.config.write_text(CONFIG + extra_config)
        self.env = {**os.environ, "QHOPPER_HOME": str(self.path)}
        self.env.pop("PREFECT_API_URL", None)

    def args(self, *words: str) -> list[str]:
        return [QHOPPER, *words, "--config", str(self.config)]

    def qhopper(self, *words: str, code: int = 0, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.args(*words),
            env=self.env | env,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
        assert done.returncode == code, (words, done.returncode, done.stderr[-3000:])
        return done

    def submit(self, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        source = self.path.parent / "problems.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records))
        ids = [
            item["id"] for item in json.loads(self.qhopper("submit", str(source), "--json").stdout)
        ]
        return dict(zip(ids, records, strict=True))

    def interrupted_run(self, signum: int) -> str:
        """A run stopped by ``signum`` right after its first batch committed."""
        run = subprocess.Popen(
            self.args("run"),
            env=self.env | {"QHOPPER_PAUSE_AT": "write-after-rename:1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            _, status = os.waitpid(run.pid, os.WUNTRACED)  # it stops itself: no polling
            assert os.WIFSTOPPED(status), f"the run ended (status {status}) before its pause"
            os.kill(run.pid, signum)  # pending while it is stopped
            os.kill(run.pid, signal.SIGCONT)
            out, err = run.communicate(timeout=TIMEOUT_S)
        finally:
            if run.poll() is None:
                run.kill()
                run.wait(timeout=30)
        assert run.returncode == 130, (run.returncode, err[-3000:])
        return out + err

    def store(self) -> IntakeStore:
        return IntakeStore.open(f"sqlite:///{self.path / 'intake.db'}")

    def rows(self, view: str = "problems") -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = query(
            self.path / "results", f"SELECT * FROM {view}"
        ).to_pylist()
        return rows


def assert_answered_once(home: Home, records: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = home.rows()
    assert Counter(r["problem_id"] for r in rows) == dict.fromkeys(records, 1)
    for row in rows:
        assert row["status"] == COMPLETED, row
        assert row["objective"] == pytest.approx(
            truth.objective(records[row["problem_id"]], row["solution"])
        )
    return rows


def classical(count: int, prefix: str) -> list[dict[str, Any]]:
    """16-node weighted rings with chords on the classical route: CP-SAT solves them (too
    large to enumerate), in the run's own process when it runs inline."""
    rng = rng_of(prefix)
    graph = [(j, (j + 1) % 16) for j in range(16)] + [(j, j + 8) for j in range(0, 8, 3)]
    return [
        problem("maxcut", 16, seed=rng, graph=graph, span=(1, 5), route="classical", key=key)
        for key in (f"{prefix}-c{i}" for i in range(count))
    ]


def test_interrupted_runs_spend_no_attempts_and_every_run_leaves_its_row(tmp_path: Path) -> None:
    """Four runs stopped mid-way (two Ctrl-Cs, two SIGTERMs), then one clean run, with the
    default limit of 3 attempts: every problem completed, five runs/ rows. Before, each
    hand-back counted as an attempt and the problems claimed by all five runs ended failed;
    and once CP-SAT had solved in the run's process, SIGINT killed it outright (CP-SAT left
    the default action in place of Python's handler)."""
    home = Home(tmp_path)
    records = home.submit(classical(2, "stop") + rings(24, "stop"))
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGINT, signal.SIGTERM):
        said = home.interrupted_run(signum)
        assert "run interrupted" in said and "Traceback" not in said, said[-2000:]
    said = home.qhopper("run").stderr  # off a terminal: plain lines, the plan and an ETA
    assert "plan: " in said and " quantum problems in " in said and "estimated ~" in said
    assert "execute: " in said and "ETA " in said, said[-2000:]
    rows = assert_answered_once(home, records)
    runs = query(home.path / "results", "SELECT run_id, status, error, problems FROM runs")
    statuses = Counter(runs.column("status").to_pylist())
    assert statuses == {"interrupted": 4, "completed": 1}, runs.to_pylist()
    assert {r["run_id"] for r in rows} <= set(runs.column("run_id").to_pylist())
    store = home.store()
    try:
        assert store.counts()[COMPLETED] == len(records)
        # Claimed by up to five runs, yet no attempt spent on an interruption.
        assert max(store.get(pid)["attempts"] for pid in records) == 1  # type: ignore[index]
    finally:
        store.close()


def test_requeue_answers_what_a_crash_left_failed(tmp_path: Path) -> None:
    """With one attempt allowed, a run killed mid-way leaves its problems to fail on the next
    run; `qhopper requeue --failed` puts them back and the next run answers them. The
    problems view shows each problem's newest answer once; problems_all keeps the history."""
    home = Home(tmp_path, "[intake]\nmax_attempts = 1\n")
    records = home.submit(rings(6, "crash"))
    home.qhopper("run", code=-signal.SIGKILL, QHOPPER_CRASH_AT="execute:1")
    home.qhopper("run")
    failed = home.rows()
    assert {r["status"] for r in failed} == {FAILED} and len(failed) == len(records)
    said = home.qhopper("requeue", "--failed", "--dry-run", "--json").stdout
    assert sorted(json.loads(said)["requeued"]) == sorted(records)
    assert home.store().counts()[FAILED] == len(records)  # a dry run changes nothing
    said = home.qhopper("requeue", "--failed", "--kind", "qubo").stdout
    assert "requeued 0 failed problems" in said
    home.qhopper("requeue", "--failed")
    home.qhopper("run")
    rows = assert_answered_once(home, records)
    history = home.rows("problems_all")
    assert len(history) == 2 * len(records)
    old_batches = {r["problem_id"]: r["batch_id"] for r in failed}
    assert {r["problem_id"]: r["supersedes"] for r in rows} == old_batches
    completed_id = rows[0]["problem_id"]
    refused = home.qhopper("requeue", completed_id, code=2).stderr
    assert f"{completed_id}: not requeued: it is completed" in refused
    store = home.store()
    try:
        events = [e["detail"] or "" for e in store.get(completed_id)["events"]]  # type: ignore[index]
    finally:
        store.close()
    assert any(detail.startswith("requeued by qhopper requeue") for detail in events), events
