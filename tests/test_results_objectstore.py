"""Results on an object store: several hosts, one dataset on s3://, exactly once, crashes.

Real ``qhopper submit``/``run``/``results``/``report`` processes write to and read from an
S3 endpoint through s3fs, as hosts sharing a bucket would. The endpoint is moto's server on
loopback: S3 itself is out of reach from where the tests run.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import truth
from s3_stand_in import S3

from pipeline.config_sources import flatten, load_settings
from pipeline.errors import ConfigError
from pipeline.intake import ACTIVE_STATES, QUEUED, IntakeStore
from pipeline.results import RunSummary, open_files, query, to_table

QHOPPER = str(Path(sys.executable).parent / "qhopper")
TIMEOUT_S = 300
CONFIG = """\
[quantum]
max_iterations = 5
default_shots = 64
[dask]
inline_below_s = 1e9
"""


def qhopper(s3: S3, home: Path, intake: str, url: str, *args: str, crash: str = "") -> str:
    """Run one `qhopper` command for ``home`` against the shared intake and results URL."""
    env = s3.env | {
        "QHOPPER_HOME": str(home),
        "QHOPPER_DATABASE_URL": intake,
        "QHOPPER_RESULTS_URL": url,
        "QHOPPER_CRASH_AT": crash,
    }
    env.pop("PREFECT_API_URL", None)
    done = subprocess.run(
        [QHOPPER, *args], check=False, env=env, capture_output=True, text=True, timeout=TIMEOUT_S
    )
    if crash:
        assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]
    else:
        assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def records(prefix: str, count: int) -> list[dict[str, Any]]:
    """Small MaxCut problems: even ones on the quantum route, odd ones classical."""
    return [
        {
            "kind": "maxcut",
            "n": 4 + i % 2,
            "edges": [[j, (j + 1) % (4 + i % 2), 1 + (i + j) % 4] for j in range(4 + i % 2)],
            "key": f"{prefix}-{i}",
            "route": "classical" if i % 2 else "quantum",
        }
        for i in range(count)
    ]


def submit(s3: S3, home: Path, intake: str, url: str, batch: list[dict[str, Any]]) -> list[str]:
    source = home.parent / f"{home.name}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in batch))
    out = qhopper(s3, home, intake, url, "submit", str(source), "--json")
    return [item["id"] for item in json.loads(out)]


def objects(url: str) -> list[str]:
    """Every object under ``url``, hidden (staged) ones included."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(url, use_listings_cache=False)
    return sorted(fs.find(root))


def assert_exactly_once(url: str, ids: list[str], by_id: dict[str, dict[str, Any]]) -> None:
    """One row per problem, objectives recomputed from the bits, batches/ agreeing, nothing
    staged left behind."""
    rows = query(url, "SELECT * FROM problems").to_pylist()
    per_problem = Counter(r["problem_id"] for r in rows)
    assert sorted(per_problem) == sorted(ids) and set(per_problem.values()) == {1}, per_problem
    for row in rows:
        assert row["status"] == "completed", row
        assert row["objective"] == pytest.approx(
            truth.objective(by_id[row["problem_id"]], row["solution"])
        )
    sizes = {b["batch_id"]: b["size"] for b in query(url, "SELECT * FROM batches").to_pylist()}
    assert sizes == dict(Counter(r["batch_id"] for r in rows))
    left = [key for key in objects(url) if not key.endswith(".parquet")]
    assert not left, f"staged objects left behind: {left}"


def drained(intake: str) -> bool:
    store = IntakeStore.open(intake)
    try:
        counts = store.counts()
    finally:
        store.close()
    return all(counts[s] == 0 for s in (QUEUED, *ACTIVE_STATES))


def test_two_hosts_write_one_dataset_on_s3_that_results_and_report_read(
    s3: S3, tmp_path: Path
) -> None:
    url = s3.url("two-hosts")
    intake = f"sqlite:///{tmp_path / 'intake.db'}"
    (tmp_path / "qhopper.toml").write_text(CONFIG)
    homes = [tmp_path / "host-a" / "home", tmp_path / "host-b" / "home"]
    by_id: dict[str, dict[str, Any]] = {}
    for home, prefix in zip(homes, ("a", "b"), strict=True):
        home.parent.mkdir(parents=True)
        batch = records(prefix, 4)
        by_id |= dict(zip(submit(s3, home, intake, url, batch), batch, strict=True))
    env = {"QHOPPER_DATABASE_URL": intake, "QHOPPER_RESULTS_URL": url}
    runs = [
        subprocess.Popen(
            [
                QHOPPER,
                "run",
                "--json",
                "--home",
                str(home),
                "--config",
                str(tmp_path / "qhopper.toml"),
            ],
            env=s3.env | env | {"QHOPPER_HOME": str(home)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for home in homes
    ]
    for run in runs:
        try:
            _, stderr = run.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            run.kill()
            run.communicate(timeout=30)
            pytest.fail(f"qhopper run did not finish within {TIMEOUT_S} s")
        assert run.returncode == 0, stderr[-3000:]
    assert drained(intake)
    assert_exactly_once(url, list(by_id), by_id)
    assert not any((home / "results").exists() for home in homes)  # nothing under a home
    shown = json.loads(qhopper(s3, homes[1], intake, url, "results", "--json"))
    assert sorted(r["problem_id"] for r in shown) == sorted(by_id)
    page = tmp_path / "report.html"
    qhopper(s3, homes[0], intake, url, "report", "--out", str(page))
    html = page.read_text()
    assert f"Results in <code>{url}</code>" in html
    assert '<span id="total-problems">8</span> problems' in html


@pytest.mark.parametrize("crash", ["write-before-rename:1", "finish:1"])
def test_a_run_killed_between_stage_and_publish_is_recovered_by_the_next(
    s3: S3, tmp_path: Path, crash: str
) -> None:
    """Killed with its batch staged (before the commit point, or after it and before the
    publish): the next run commits or publishes the staged objects, exactly once."""
    url = s3.url(f"crash-{crash.split(':', maxsplit=1)[0]}")
    intake = f"sqlite:///{tmp_path / 'intake.db'}"
    home = tmp_path / "home"
    batch = records("c", 2)
    by_id = dict(zip(submit(s3, home, intake, url, batch), batch, strict=True))
    config = tmp_path / "qhopper.toml"
    config.write_text(CONFIG)
    qhopper(s3, home, intake, url, "run", "--config", str(config), crash=crash)
    left = objects(url)
    assert any(key.endswith(".staged.tmp") for key in left), left
    assert query(url, "SELECT * FROM problems").num_rows == 0  # nothing visible yet
    qhopper(s3, home, intake, url, "run", "--config", str(config))
    assert drained(intake)
    assert_exactly_once(url, list(by_id), by_id)


def test_the_results_url_takes_fsspec_urls_and_names_what_it_refuses(tmp_path: Path) -> None:
    for url in ("s3://bucket/results", "memory://qhopper/results", f"file://{tmp_path}"):
        location = load_settings(tmp_path, overrides={"results.url": url}).results_location
        assert location.is_local == url.startswith("file://")
    shown = {"secret": "s", "anon": 1, "client_kwargs": {"aws_secret_access_key": "s"}}
    options = {"results.url": "s3://b/r", "results.storage_options": shown}
    flat = flatten(load_settings(tmp_path, overrides=options))
    assert flat["results.storage_options"] == {  # credentials are never shown
        "secret": "***",
        "anon": 1,
        "client_kwargs": {"aws_secret_access_key": "***"},
    }
    refused = {
        "nosuchscheme://bucket/results": "fsspec knows no scheme 'nosuchscheme'",
        "s3://": "names no bucket",
    }
    for url, words in refused.items():
        with pytest.raises(ConfigError, match=r"results\.url") as caught:
            load_settings(tmp_path, overrides={"results.url": url})
        assert words in str(caught.value)
    with pytest.raises(ConfigError, match=r"results\.storage_options: .*fsspec URL"):
        load_settings(tmp_path, overrides={"results.storage_options": {"anon": True}})


def test_memory_url_commits_and_reads_through_the_same_seam() -> None:
    """memory:// (one process): a run row written and read back; publish is idempotent."""
    from datetime import UTC, date, datetime

    url = "memory://qhopper-test/results"
    files = open_files(url)
    row = RunSummary(
        run_id="r-1",
        backend="aer",
        executor="inline",
        problems=1,
        completed=1,
        t_total_s=1.0,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        completed_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    key = files.key("runs", date(2026, 1, 1), "r-1")
    files.stage(key, to_table([row], RunSummary))
    assert query(url, "SELECT * FROM runs").num_rows == 0  # staged: not visible
    assert files.publish(key) and not files.publish(key)  # the second finds nothing staged
    assert query(url, "SELECT run_id FROM runs").to_pylist() == [{"run_id": "r-1"}]
    assert files.staged("runs") == [] and not files.has_staged(key)


def test_a_notebook_reads_the_dataset_from_s3(
    s3: S3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The analysts' notebooks read ``QHOPPER_RESULTS_URL`` when it is an s3:// URL."""
    import fsspec
    from test_notebooks import MISSING, NOTEBOOKS, execute
    from test_report import write_rich_results

    if MISSING:
        pytest.skip(f"Jupyter is not installed here (missing: {', '.join(MISSING)})")
    url = s3.url("notebook")
    write_rich_results(tmp_path / "results")
    fs, root = fsspec.core.url_to_fs(url, use_listings_cache=False)
    fs.put(f"{tmp_path / 'results'}/", root, recursive=True)
    assert (
        query(url, "SELECT count(*) AS n FROM problems").to_pylist()
        == query(tmp_path / "results", "SELECT count(*) AS n FROM problems").to_pylist()
    )
    monkeypatch.setenv("QHOPPER_RESULTS_URL", url)
    [notebook] = [p for p in NOTEBOOKS if p.stem == "fallbacks_drift"]
    execute(notebook, tmp_path / "empty-home", monkeypatch)  # the home holds no results
