"""End to end through the CLI: submit -> Prefect flow -> Dask -> Aer / CP-SAT -> Parquet.

Problems are generated fresh here (never seen by the code), answered by `qhopper run`,
and checked against independent truth: objectives recomputed from the returned
bitstrings, brute-force optima for small problems, published optima for benchmark
instances.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import truth
from factories import problem, rng_of
from typer.testing import CliRunner

from flows.cli import app

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO / "data" / "benchmarks"
INSTANCES = {
    "ciquab-karloff-maxcut": "Karloff/Karloff_6_3_1.txt",
    "biqmac-qubo": "gka/gka1b.sparse",
}
runner = CliRunner()


def cli(*args: str) -> Any:
    return runner.invoke(app, list(args), catch_exceptions=False)


def published_optimum(collection: str, instance: str) -> float:
    with (BENCHMARKS / collection / "optima.csv").open() as handle:
        for row in csv.DictReader(handle):
            if row["instance"] == instance:
                return float(row["optimal_value"])
    raise KeyError(instance)


def unseen_problems(seed: int) -> list[dict[str, Any]]:
    """Random problems of several shapes, kinds, senses and routes (tests/factories.py)."""
    rng = rng_of(seed)
    problems: list[dict[str, Any]] = []
    for n in (5, 7):
        graph = [edge[:2] for edge in problem("maxcut", n, seed=rng, nonempty=True)["edges"]]
        for _ in range(3):  # same structure, new weights: one shape, one batch
            problems.append(problem("maxcut", n, seed=rng, graph=graph, span=(-3, 9)))
    for sense in ("min", "max"):
        options = {"graph": "ring", "linear_density": 1.0, "weights": "decimal", "span": (-3, 3)}
        problems.append(problem("qubo", 6, seed=rng, sense=sense, **options))
    problems.append(problem("portfolio", 5, seed=rng, budget=2, risk=0.7))
    problems.append(
        {
            "kind": "maxcut",
            "n": 6,
            "edges": [[0, 1, 2], [1, 2], [2, 3, 4], [3, 4], [4, 5, 3], [5, 0]],
            "route": "classical",
        }
    )
    # too big for 16 qubits: labelled fallback
    problems.append(problem("maxcut", 18, seed=rng, graph="ring", span=(1, 5), route="quantum"))
    return problems


def submit_twice(home: Path, files: list[Path], count: int) -> list[dict[str, Any]]:
    """``qhopper submit`` the files: ``count`` problems created; the same again: none created,
    the same ids. The first answer's items (id, created)."""
    submitted = cli("submit", *map(str, files), "--json", "--home", str(home))
    assert submitted.exit_code == 0, submitted.output
    ids: list[dict[str, Any]] = json.loads(submitted.stdout)
    assert len(ids) == count and all(i["created"] for i in ids)

    again = cli("submit", *map(str, files), "--json", "--home", str(home))
    assert again.exit_code == 0
    assert [i["id"] for i in json.loads(again.stdout)] == [i["id"] for i in ids]
    assert not any(i["created"] for i in json.loads(again.stdout))
    return ids


def rows_by_problem(home: Path, ids: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each submitted problem's one result row (``qhopper results --json``)."""
    rows = json.loads(
        cli("results", "--json", "--sql", "SELECT * FROM problems", "--home", str(home)).stdout
    )
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["problem_id"], []).append(row)
    assert sorted(by_id) == sorted(i["id"] for i in ids)
    assert all(len(found) == 1 for found in by_id.values()), (
        "a problem has more than one result row"
    )
    return {problem_id: found[0] for problem_id, found in by_id.items()}


def assert_routes(rows: list[dict[str, Any]]) -> None:
    """The unseen problems' rows, in submission order: the first answered on the quantum
    path, the one forced classical completed there, the one too big for 16 qubits degraded."""
    first_quantum = rows[0]
    assert (first_quantum["route"], first_quantum["solver_path"], first_quantum["status"]) == (
        "quantum",
        "simulator",
        "completed",
    )
    assert first_quantum["expected_objective"] is not None and first_quantum["evaluations"] > 0
    forced = rows[-2]
    assert (forced["route"], forced["status"]) == ("classical", "completed")
    too_big = rows[-1]
    assert (too_big["route"], too_big["solver_path"], too_big["status"]) == (
        "classical",
        "classical",
        "degraded",
    )
    assert "qubits" in too_big["fallback_reason"]


def assert_batches_and_states(home: Path, rows: list[dict[str, Any]]) -> None:
    """The three 5-node problems ran in one batch; batches/ counts every row; nothing is
    left queued or claimed."""
    # One shape, one batch, one template: the three 5-node problems ran together.
    shapes = {row["batch_id"] for row in rows[:3]}
    assert len(shapes) == 1
    batches = json.loads(
        cli("results", "--json", "--sql", "SELECT * FROM batches", "--home", str(home)).stdout
    )
    assert sum(b["size"] for b in batches) == len(rows)
    status = json.loads(cli("status", "--json", "--home", str(home)).stdout)
    assert status["queued"] == 0 and status["claimed"] == 0
    assert status["completed"] + status["degraded"] == len(rows)


def assert_a_known_shape_reuses_its_template(
    tmp_path: Path, home: Path, record: dict[str, Any], answered: int
) -> None:
    """New problems of a shape seen before: the stored template is reused, nothing compiled;
    a further run finds nothing to do and writes nothing new."""
    same_shape = tmp_path / "again.jsonl"
    reweighted = [{**record, "edges": [[u, v, w + 1] for u, v, w in record["edges"]]}]
    same_shape.write_text(json.dumps(reweighted[0]) + "\n")
    assert cli("submit", str(same_shape), "--home", str(home)).exit_code == 0
    warm = json.loads(cli("run", "--json", "--home", str(home)).stdout)
    assert (warm["problems"], warm["templates_compiled"], warm["templates_reused"]) == (1, 0, 1)

    # A further run finds nothing to do and writes nothing new.
    assert "Nothing queued" in cli("run", "--home", str(home)).stdout
    sql = "SELECT problem_id FROM problems"
    written = json.loads(cli("results", "--json", "--sql", sql, "--home", str(home)).stdout)
    assert len(written) == answered + 1


def test_submit_run_results_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    # 16 qubits, below the default: the 18-node problem is then too big for the quantum
    # path and the 20-variable benchmark instances go to CP-SAT (proven optimal).
    home.mkdir()
    (home / "qhopper.toml").write_text("[quantum]\nmax_qubits = 16\n")
    problems_file = tmp_path / "problems.jsonl"
    problems = unseen_problems(seed=20261125)
    problems_file.write_text("\n".join(json.dumps(p) for p in problems) + "\n")
    benchmark_files = [BENCHMARKS / c / i for c, i in INSTANCES.items()]
    files = [problems_file, *benchmark_files]
    ids = submit_twice(home, files, len(problems) + len(benchmark_files))

    ran = cli("run", "--home", str(home))
    assert ran.exit_code == 0, ran.output
    assert "Time per stage" in ran.stdout

    by_id = rows_by_problem(home, ids)
    rows = [by_id[item["id"]] for item in ids]
    for record, row in zip(problems, rows, strict=False):
        assert row["objective"] == pytest.approx(truth.objective(record, row["solution"]), abs=1e-9)
        assert row["feasible"] == truth.feasible(record, row["solution"])
        assert row["objective"] == pytest.approx(truth.brute_force(record), abs=1e-9), row
    assert_routes(rows[: len(problems)])
    for (collection, instance), row in zip(INSTANCES.items(), rows[len(problems) :], strict=True):
        assert row["route"] == "classical" and row["proven_optimal"]
        assert row["objective"] == pytest.approx(published_optimum(collection, instance), abs=1e-6)
    assert_batches_and_states(home, rows)
    assert_a_known_shape_reuses_its_template(tmp_path, home, problems[0], len(ids))


def test_a_file_with_bad_records_is_rejected_whole(tmp_path: Path) -> None:
    home = tmp_path / "home"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        "\n".join(
            [
                json.dumps({"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2]]}),
                json.dumps({"kind": "maxcut", "n": 3, "edges": [[0, 3]]}),
                json.dumps({"kind": "qubo", "n": 2, "linear": [[0, 1]], "colour": "red"}),
                "{not json",
            ]
        )
        + "\n"
    )
    result = cli("submit", str(bad), "--home", str(home))
    assert result.exit_code == 2
    for line, field in (("line 2", "edges.0.1"), ("line 3", "colour"), ("line 4", "")):
        assert f"{bad}: {line}" in result.stderr and field in result.stderr
    assert "line 1" not in result.stderr
    status = json.loads(cli("status", "--json", "--home", str(home)).stdout)
    assert sum(status.values()) == 0

    skipped = cli("submit", str(bad), "--skip-invalid", "--json", "--home", str(home))
    assert skipped.exit_code == 0 and len(json.loads(skipped.stdout)) == 1
    assert "skipped" in skipped.stderr


def test_demo_runs_from_a_fresh_home_as_a_user_would(tmp_path: Path) -> None:
    """The README's first command ends in `qhopper demo`: run the real console script."""
    env = {**os.environ, "QHOPPER_HOME": str(tmp_path / "home")}
    env.pop("PREFECT_HOME", None)
    completed = subprocess.run(
        [str(Path(sys.executable).parent / "qhopper"), "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    for heading in ("route", "Batches and templates", "Time per stage", "Results:"):
        assert heading in completed.stdout
    # A one-off run calls the run core directly: no temporary Prefect server, no Prefect home.
    assert not (tmp_path / "home" / "prefect").exists()
    parquet = list((tmp_path / "home" / "results" / "problems").glob("date=*/*.parquet"))
    assert parquet
