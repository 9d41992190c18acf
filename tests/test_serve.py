"""`qhopper serve` on Prefect's own schedule: a real server, a real interval, a real stop."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
QHOPPER = str(Path(sys.executable).parent / "qhopper")
REPO = Path(__file__).resolve().parent.parent


def status(home: Path) -> dict[str, int]:
    completed = subprocess.run(
        [QHOPPER, "status", "--json", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(completed.stdout)


def test_serve_runs_on_its_interval_and_stops_cleanly(tmp_path: Path) -> None:
    home = tmp_path / "home"
    sample = REPO / "data" / "samples" / "maxcut_3regular_10.jsonl"
    problems = tmp_path / "p.jsonl"
    problems.write_text("".join(sample.read_text().splitlines(keepends=True)[:3]))
    subprocess.run(
        [QHOPPER, "submit", str(problems), "--home", str(home)],
        check=True,
        timeout=60,
        capture_output=True,
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    log = (tmp_path / "serve.log").open("w")
    server = subprocess.Popen(
        [QHOPPER, "serve", "--interval", "5s", "--home", str(home)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and status(home)["completed"] < 3:
            assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            time.sleep(2)  # polling an external process's progress, bounded by the deadline
        assert status(home)["completed"] == 3, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        server.send_signal(signal.SIGTERM)  # what a service manager sends
        try:
            returncode = server.wait(timeout=90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            pytest.fail("serve did not stop within 90 s of SIGTERM")
        log.close()
    text = (tmp_path / "serve.log").read_text()
    assert "Serving every 5 s" in text
    assert returncode == 0 and "qhopper serve stopped." in text, text[-3000:]
    assert "Traceback" not in text, text[-3000:]
    # Every run logs one line with its counts; the first found the three problems.
    assert re.search(r"run r-\w+: 3 problems, 3 completed, 0 degraded, 0 failed", text), text[
        -3000:
    ]
    runs = subprocess.run(
        [
            QHOPPER,
            *("results", "--json", "--sql", "SELECT run_id, executor FROM runs"),
            *("--home", str(home)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    rows = json.loads(runs.stdout)
    assert len(rows) == 1  # one run did the work; later runs found nothing
    # Runs share the one LocalCluster serve keeps warm rather than starting their own.
    shared = re.search(r"Dask LocalCluster for every run at (tcp://\S+)", text)
    assert shared is not None, text[-3000:]
    assert rows[0]["executor"] == shared.group(1)
