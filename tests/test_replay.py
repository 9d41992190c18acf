"""Replay and drift through the real CLI: stored answers executed again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from flows.cli import app
from pipeline.results import query

pytestmark = pytest.mark.e2e
runner = CliRunner()


def wheel(weights: list[int], **options: Any) -> dict[str, Any]:
    spokes = [[0, i] for i in range(1, 5)] + [[i, i % 4 + 1] for i in range(1, 5)]
    return {
        "kind": "maxcut",
        "n": 5,
        "edges": [[u, v, w] for (u, v), w in zip(spokes, weights, strict=True)],
        **options,
    }


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("replay")
    records = [wheel([1 + (i + j) % 5 for j in range(8)]) for i in range(6)]
    records += [
        {
            "kind": "qubo",
            "n": 4,
            "linear": [[0, -2], [3, 1]],
            "quadratic": [[0, 1, 3], [1, 2, -2], [2, 3, 1]],
        },
        wheel([2, 3, 1, 4, 2, 3, 1, 4], route="classical"),
        wheel([5, 1, 2, 3, 4, 1, 2, 2], route="classical"),
    ]
    source = root / "p.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    path = root / "home"
    assert runner.invoke(app, ["submit", str(source), "--home", str(path)]).exit_code == 0
    result = runner.invoke(app, ["run", "--home", str(path)])
    assert result.exit_code == 0, result.output
    return path


def batches(home: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = query(
        home / "results", "SELECT batch_id, route FROM batches ORDER BY route, batch_id"
    ).to_pylist()
    return rows


def test_every_stored_batch_replays_exactly(home: Path) -> None:
    found = batches(home)
    assert {b["route"] for b in found} == {"quantum", "classical"}
    for batch in found:
        result = runner.invoke(app, ["replay", batch["batch_id"], "--json", "--home", str(home)])
        assert result.exit_code == 0, result.output
        replayed = json.loads(result.stdout)
        assert replayed and all(r["reproduced"] for r in replayed)
        for r in replayed:
            assert r["replayed_objective"] == r["stored_objective"]
            if r["route"] == "quantum":
                assert r["replayed_expected"] == pytest.approx(r["stored_expected"], abs=1e-9)


def test_a_stored_answer_that_differs_exits_1_naming_it(home: Path, tmp_path: Path) -> None:
    """Tamper with a copy of the home's answers: replay must notice and name the row."""
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    [batch] = [b for b in batches(copy) if b["route"] == "quantum"][:1]
    [path] = list((copy / "results" / "problems").glob(f"date=*/{batch['batch_id']}.parquet"))
    table = pq.read_table(path)
    objectives = table.column("objective").to_pylist()
    objectives[0] += 1.0
    index = table.schema.get_field_index("objective")
    pq.write_table(table.set_column(index, "objective", pa.array(objectives)), path)
    result = runner.invoke(app, ["replay", batch["batch_id"], "--json", "--home", str(copy)])
    assert result.exit_code == 1
    differing = [r for r in json.loads(result.stdout) if not r["reproduced"]]
    assert [r["problem_id"] for r in differing] == [table.column("problem_id")[0].as_py()]
    assert "1 answer(s) not reproduced" in result.stderr


def test_drift_on_a_noisy_device_writes_rows_the_report_reads(home: Path) -> None:
    result = runner.invoke(
        app,
        [
            "drift",
            "--backend",
            "aer-noisy:fake_manila",
            "--sample",
            "4",
            "--json",
            "--home",
            str(home),
        ],
    )
    assert result.exit_code == 0, result.output
    rows = query(home / "results", "SELECT * FROM drift").to_pylist()
    assert len(rows) == 4 and {r["replay_backend"] for r in rows} == {"aer-noisy:fake_manila"}
    stored = {
        r["problem_id"]: r for r in query(home / "results", "SELECT * FROM problems").to_pylist()
    }
    for row in rows:
        original = stored[row["problem_id"]]
        assert row["stored_expected"] == original["expected_objective"]
        assert row["difference"] == pytest.approx(row["replay_expected"] - row["stored_expected"])
        assert row["replay_objective"] <= original["reference_objective"] + 1e-9
    # The noise model's decoherence pulls expectations towards the uniform average.
    assert sum(r["difference"] for r in rows) < 0
    unknown = runner.invoke(app, ["drift", "--backend", "nope", "--home", str(home)])
    assert unknown.exit_code == 2


def test_a_drift_sample_smaller_than_asked_says_why(home: Path) -> None:
    quantum = query(
        home / "results", "SELECT count(*) AS n FROM problems WHERE route = 'quantum'"
    ).to_pylist()[0]["n"]
    args = ["drift", "--backend", "aer-noisy:fake_manila", "--sample", "100", "--json"]
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == quantum < 100
    assert result.stderr.strip() == (
        f"sampled {quantum} of the 100 asked: only {quantum} stored quantum answers are "
        "eligible (answered on a backend other than aer-noisy:fake_manila, with their angles)"
    )
