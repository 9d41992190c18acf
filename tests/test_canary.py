"""Canary runs through the real run core: a seeded share of a run's quantum batches sampled on
a candidate backend beside the run (flows/canary.py), its rows, and ``qhopper canary``."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import truth
from distributed.diagnostics.plugin import SchedulerPlugin
from factories import problem
from typer.testing import CliRunner

from flows.canary import drawn, settle
from flows.cli import app
from flows.deps import open_deps
from flows.run import run_once
from pipeline.canary.vocabulary import ProblemKind
from pipeline.config import Settings
from pipeline.config_sources import load_settings
from pipeline.errors import ConfigError
from pipeline.kinds import KINDS
from pipeline.report import build_report
from pipeline.results import RunSummary, query
from pipeline.submit import submit_files

pytestmark = pytest.mark.e2e
runner = CliRunner()
NOISY = "aer-noisy:fake_manila"  # 5 qubits
# What a canary must never change: every column of an answer that is not an id, a clock or
# a bill (cost_usd includes the core-seconds the simulation took).
ANSWER_COLUMNS = (
    "key, kind, n_variables, shape_key, route, solver_path, backend, status, fallback_code, "
    "solution, objective, feasible, proven_optimal, expected_objective, angles, "
    "reference_objective, reference_solver, objective_scale, reps, shots, evaluations, "
    "circuit_hash, input_hash"
)


def records() -> list[dict[str, Any]]:
    """Quantum problems of three kinds (five variables at most, but two of six, which
    fake_manila cannot take), and one classical problem; each with a key to find it by."""
    # Few shots: a best sample is then one of a few draws, and the two backends' often differ.
    found = [problem("maxcut", 5, seed=i, nonempty=True, shots=8) for i in range(6)]
    found += [problem("qubo", 4, seed=10 + i) for i in range(4)]
    found += [problem("maxcut", 4, seed=20 + i, nonempty=True) for i in range(2)]
    found += [problem("portfolio", 4, seed=30 + i, budget=2, risk=0.5) for i in range(2)]
    found += [problem("maxcut", 6, seed=40 + i, nonempty=True) for i in range(2)]
    found += [problem("maxcut", 5, seed=50, nonempty=True, route="classical")]
    return [record | {"key": f"c{i}"} for i, record in enumerate(found)]


def run_home(root: Path, name: str, **options: Any) -> tuple[Settings, RunSummary]:
    """A copy of the home ``records()`` were submitted to (the same problem ids, so the same
    sampling seeds and claim order: the same answers), run once with ``options``."""
    queued = root / "queued"
    if not queued.exists():
        source = root / "records.jsonl"
        source.write_text("".join(json.dumps(r) + "\n" for r in records()))
        submit_files(load_settings(queued), [source])
    shutil.copytree(queued, root / name)
    overrides = {
        "quantum.max_batch_size": 2,  # many batches, so the draw has something to choose
        "quantum.max_iterations": 5,
        "classical.time_limit_s": 2.0,
        **options,
    }
    settings = load_settings(root / name, overrides=overrides)
    with open_deps(settings) as deps:
        summary = run_once(deps)
    assert summary.problems == summary.completed == len(records()), summary
    return settings, summary


def rows(settings: Settings, sql: str = "SELECT * FROM canary") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = query(settings.results_location, sql).to_pylist()
    return found


def by_key(settings: Settings) -> dict[str, dict[str, Any]]:
    return {r["problem_id"]: r for r in rows(settings, "SELECT * FROM problems")}


def draw(run_id: str, batch_id: str, fraction: float) -> bool:
    """The documented draw, computed here apart from the code under test."""
    digest = hashlib.sha256(f"{run_id}/{batch_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < fraction * 2**64


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("canary")


@pytest.fixture(scope="module")
def plain(root: Path) -> Settings:
    return run_home(root, "plain")[0]


@pytest.fixture(scope="module")
def noisy(root: Path) -> tuple[Settings, RunSummary]:
    return run_home(root, "noisy", **{"canary.backend": NOISY, "canary.fraction": 0.5})


@pytest.fixture(scope="module")
def everything(root: Path) -> tuple[Settings, RunSummary]:
    """Every quantum batch drawn: the rows' contents checked over all of them, not over
    whichever half a random run id draws."""
    return run_home(root, "everything", **{"canary.backend": NOISY, "canary.fraction": 1.0})


def canary_cli(
    settings: Settings, root: Path, *args: str, **canary: Any
) -> tuple[int, str, list[dict[str, Any]]]:
    """``qhopper canary --json`` on the home, with ``canary`` as its [canary] table."""
    config = root / f"canary-{hashlib.sha256(repr(canary).encode()).hexdigest()[:8]}.toml"
    config.write_text("[canary]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in canary.items()))
    home = ["--home", str(settings.home), "--config", str(config)]
    done = runner.invoke(app, ["canary", "--json", *args, *home])
    judged = json.loads(done.stdout) if done.exit_code in (0, 1, 3) else []
    return done.exit_code, done.output, judged


def test_the_draw_is_seeded_by_run_and_batch_and_takes_its_fraction() -> None:
    batches = [f"b-{i:016x}" for i in range(4000)]
    taken = [b for b in batches if drawn("r-1", b, 0.25)]
    assert taken == [b for b in batches if draw("r-1", b, 0.25)]
    assert abs(len(taken) / len(batches) - 0.25) < 0.03
    assert all(drawn("r-2", b, 1.0) for b in batches[:200])
    assert [b for b in batches if drawn("r-2", b, 0.25)] != taken  # another run, another draw


def test_rows_cover_the_drawn_batches_answers_that_fit_the_candidate_only(
    noisy: tuple[Settings, RunSummary],
) -> None:
    settings, summary = noisy
    answers = by_key(settings)
    quantum = {pid: r for pid, r in answers.items() if r["route"] == "quantum"}
    assert len({r["batch_id"] for r in quantum.values()}) >= 6
    expected = {
        pid
        for pid, r in quantum.items()
        if draw(summary.run_id, r["batch_id"], 0.5) and r["n_variables"] <= 5
    }
    found = rows(settings)
    assert {r["problem_id"] for r in found} == expected and len(found) == len(expected)
    assert {(r["run_id"], r["status"], r["error"]) for r in found} == {(summary.run_id, "ok", None)}
    assert {(r["main_backend"], r["canary_backend"]) for r in found} == {("aer", NOISY)}


def test_each_row_holds_both_sides_and_its_objectives_recompute(
    everything: tuple[Settings, RunSummary],
) -> None:
    settings, _ = everything
    answers = by_key(settings)
    submitted = {r["key"]: r for r in records()}
    found = rows(settings)
    assert found
    for row in found:
        main = answers[row["problem_id"]]
        record = submitted[main["key"]]
        assert row["batch_id"] == main["batch_id"] and row["kind"] == main["kind"]
        assert row["main_solution"] == main["solution"]
        assert row["main_objective"] == main["objective"]
        assert row["main_expected"] == main["expected_objective"]
        assert row["reference_objective"] == main["reference_objective"]
        assert len(row["canary_solution"]) == main["n_variables"]
        assert row["canary_objective"] == pytest.approx(
            truth.objective(record, row["canary_solution"]), abs=1e-9
        )
        difference = row["canary_expected"] - row["main_expected"]
        assert row["expected_difference"] == pytest.approx(difference, abs=1e-12)
        assert row["relative_difference"] == pytest.approx(
            difference / abs(row["reference_objective"]), abs=1e-12
        )
        assert row["canary_seconds"] > 0 and row["main_seconds"] > 0
        assert row["canary_cost_usd"] >= 0 and row["main_cost_usd"] >= 0
    # At 8 shots a best sample is one of a few draws: over the six 8-shot problems the two
    # backends' best samples differ somewhere (a row storing the main side's is caught).
    eight = [r for r in found if r["shots"] == 8]
    assert len(eight) == 6 and any(r["canary_solution"] != r["main_solution"] for r in eight)
    # Noise changes every expectation, and decoherence pulls them towards the uniform
    # average, away from the reference: on the whole the answers drift the worse way, in each
    # problem's own sense (one small problem's may not: readout and relaxation are not
    # uniform, and a short optimisation's angles can sit near the average).
    worse_by = [
        r["expected_difference"]
        * (-1 if truth.sense(submitted[answers[r["problem_id"]]["key"]]) == "max" else 1)
        / abs(r["reference_objective"])
        for r in found
    ]
    assert all(d != 0 for d in worse_by)
    assert sum(worse_by) / len(worse_by) > 0 and sum(d > 0 for d in worse_by) > len(found) / 2


def test_the_answers_are_the_same_with_and_without_a_canary(
    plain: Settings, noisy: tuple[Settings, RunSummary]
) -> None:
    sql = f"SELECT {ANSWER_COLUMNS} FROM problems ORDER BY key"
    without, with_canary = rows(plain, sql), rows(noisy[0], sql)
    assert len(without) == len(records()) and with_canary == without
    assert rows(plain) == []


def test_an_aer_candidate_beside_aer_on_a_cluster_agrees(root: Path) -> None:
    """On Dask (our LocalCluster), the canary's tasks go beside the run's; Aer against Aer at
    the same angles gives the same expectation."""
    settings, summary = run_home(
        root,
        "cluster",
        **{
            "canary.backend": "aer",
            "canary.fraction": 1.0,
            "dask.inline_below_s": 0.0,
            "dask.n_workers": 2,
        },
    )
    assert summary.executor == "local-cluster"
    quantum = [r for r in by_key(settings).values() if r["route"] == "quantum"]
    found = rows(settings)
    assert sorted(r["problem_id"] for r in found) == sorted(r["problem_id"] for r in quantum)
    for row in found:
        assert row["status"] == "ok"
        assert abs(row["expected_difference"]) <= 1e-9 * max(1.0, row["objective_scale"])
    code, output, judged = canary_cli(settings, root, backend="aer", min_samples=len(found))
    assert code == 0, output
    [judgement] = judged
    assert (judgement["main_backend"], judgement["canary_backend"]) == ("aer", "aer")
    assert (judgement["verdict"], judgement["samples"], judgement["failed"]) == (
        "AGREES",
        len(found),
        0,
    )
    assert judgement["max_abs_difference"] <= 1e-9


def test_on_a_cluster_the_run_does_not_own_the_canary_samples_after_the_run(root: Path) -> None:
    """With ``dask.address`` (a warm cluster, as serve keeps one) the canary's tasks go out only
    once the run has ended (every task of the run's own before the first of the canary's), and
    its rows are written in the background, there once settled."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False) as cluster:
        seen: list[str] = []
        cluster.scheduler.add_plugin(_TaskKeys(seen))  # in this process: every task key, in order
        settings, summary = run_home(
            root,
            "warm",
            **{
                "canary.backend": "aer",
                "canary.fraction": 1.0,
                "dask.address": cluster.scheduler_address,
            },
        )
        settle(60.0)
    assert summary.executor != "local-cluster"
    canary = [i for i, key in enumerate(seen) if key.startswith("canary-")]
    own = [i for i, key in enumerate(seen) if not key.startswith("canary-")]
    assert canary and own and max(own) < min(canary)
    found = rows(settings)
    quantum = [r for r in by_key(settings).values() if r["route"] == "quantum"]
    assert sorted(r["problem_id"] for r in found) == sorted(r["problem_id"] for r in quantum)
    assert all(r["status"] == "ok" for r in found)


class _TaskKeys(SchedulerPlugin):  # type: ignore[misc]
    """A Dask scheduler plugin recording every task key as it is submitted (the scheduler runs
    in this process: the list is ours)."""

    name = "task-keys"

    def __init__(self, seen: list[str]) -> None:
        self.seen = seen

    def update_graph(self, scheduler: Any, *, keys: Any = (), **kwargs: Any) -> None:
        self.seen.extend(str(k) for k in keys)


def test_verdicts_with_their_numbers_and_exit_codes(
    root: Path, noisy: tuple[Settings, RunSummary]
) -> None:
    settings, _ = noisy
    found = rows(settings)
    n = len(found)
    differences = [abs(r["relative_difference"]) for r in found]
    mean = sum(differences) / n
    code, output, [disagrees] = canary_cli(
        settings, root, backend=NOISY, tolerance=mean / 2, min_samples=n
    )
    assert code == 1, output
    assert disagrees["verdict"] == "DISAGREES" and disagrees["samples"] == n
    assert disagrees["mean_abs_difference"] == pytest.approx(mean)
    assert disagrees["max_abs_difference"] == pytest.approx(max(differences))
    same = sum(r["canary_objective"] == r["main_objective"] for r in found) / n
    assert disagrees["best_sample_agreement"] == pytest.approx(same)
    assert disagrees["canary_cost_usd"] == pytest.approx(sum(r["canary_cost_usd"] for r in found))
    code, output, [agrees] = canary_cli(
        settings, root, backend=NOISY, tolerance=mean * 2, min_samples=n
    )
    assert (code, agrees["verdict"]) == (0, "AGREES"), output
    code, output, [few] = canary_cli(
        settings, root, backend=NOISY, tolerance=1.0, min_samples=n + 1
    )
    assert (code, few["verdict"], few["samples"]) == (3, "TOO FEW SAMPLES", n), output
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    code, output, [none] = canary_cli(settings, root, "--since", tomorrow, backend=NOISY)
    assert (code, none["verdict"], none["samples"]) == (3, "TOO FEW SAMPLES", 0), output
    config = root / "plain.toml"
    config.write_text(f'[canary]\nbackend = "{NOISY}"\ntolerance = {mean / 2}\nmin_samples = {n}\n')
    text = runner.invoke(app, ["canary", "--home", str(settings.home), "--config", str(config)])
    assert text.exit_code == 1
    assert f"{NOISY} against aer: DISAGREES (mean |difference| {mean:.2%} >" in text.stdout


def test_a_failing_or_late_candidate_leaves_labelled_rows_and_the_run_succeeds(
    root: Path, plain: Settings
) -> None:
    sql = f"SELECT {ANSWER_COLUMNS} FROM problems ORDER BY key"
    refused, _ = run_home(
        root, "refused", **{"canary.backend": "faulty:aer?permanent=1", "canary.fraction": 1.0}
    )
    failed = rows(refused)
    assert failed and {r["status"] for r in failed} == {"failed"}
    assert all(r["error"].startswith("candidate: PermanentBackendError:") for r in failed)
    assert all(r["canary_expected"] is None and r["main_expected"] is not None for r in failed)
    assert rows(refused, sql) == rows(plain, sql)
    code, output, [judged] = canary_cli(refused, root, backend="faulty:aer?permanent=1")
    assert (code, judged["samples"], judged["failed"]) == (3, 0, len(failed)), output
    late, _ = run_home(
        root,
        "late",
        **{
            "canary.backend": "faulty:aer?latency=2s",
            "canary.fraction": 1.0,
            "canary.wait_s": 0.2,
        },
    )
    waited = rows(late)
    assert waited and {r["status"] for r in waited} == {"failed"}
    assert all(
        "waiting: TimeoutError: no answer within canary.wait_s" in r["error"] for r in waited
    )
    assert rows(late, sql) == rows(plain, sql)


def test_kinds_and_max_qubits_narrow_the_sample(root: Path) -> None:
    settings, _ = run_home(
        root,
        "narrow",
        **{
            "canary.backend": "aer",
            "canary.fraction": 1.0,
            "canary.kinds": ["maxcut"],
            "canary.max_qubits": 4,
        },
    )
    answers = by_key(settings)
    expected = {
        pid
        for pid, r in answers.items()
        if r["route"] == "quantum" and r["kind"] == "maxcut" and r["n_variables"] <= 4
    }
    assert expected and {r["problem_id"] for r in rows(settings)} == expected


def test_the_report_has_a_canary_section_with_both_backends(
    noisy: tuple[Settings, RunSummary],
) -> None:
    page = build_report(noisy[0].results_location)
    section = page.split('<section id="canary">', 1)[1].split("</section>", 1)[0]
    assert 'class="figure empty"' not in section
    assert NOISY in section and "aer (main)" in section


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"canary.backend": "nope"}, "canary.backend: Value error, unknown backend 'nope'"),
        ({"canary.backend": "aer-noisy:fake_nowhere"}, "canary.backend"),
        ({"canary.fraction": 0}, "canary.fraction: Input should be greater than 0"),
        ({"canary.fraction": 1.5}, "canary.fraction: Input should be less than or equal to 1"),
        ({"canary.kinds": ["knapsack"]}, "canary.kinds.0: Input should be 'maxcut'"),
        ({"canary.max_qubits": 0}, "canary.max_qubits"),
        ({"canary.tolerance": -0.1}, "canary.tolerance"),
        ({"canary.min_samples": 0}, "canary.min_samples"),
        ({"canary.wait_s": 0}, "canary.wait_s"),
        ({"canary.sample": 3}, "canary.sample: Extra inputs are not permitted"),
    ],
)
def test_a_bad_canary_setting_is_an_error_naming_it(
    tmp_path: Path, overrides: dict[str, Any], field: str
) -> None:
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_settings(tmp_path, overrides=overrides)


def test_the_cli_refuses_a_bad_canary_table_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    config = tmp_path / "bad.toml"
    config.write_text("[canary]\nfraction = 2\n")
    done = runner.invoke(app, ["canary", "--home", str(tmp_path / "home"), "--config", str(config)])
    assert done.exit_code == 2 and "canary.fraction" in done.stderr
    missing = runner.invoke(app, ["canary", "--home", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2


def test_no_canary_at_all_is_no_verdict(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    done = runner.invoke(app, ["canary", "--json", "--home", str(tmp_path / "home")])
    assert (done.exit_code, json.loads(done.stdout)) == (3, [])


def test_the_canary_kinds_are_the_registered_kinds() -> None:
    assert sorted(k.value for k in ProblemKind) == sorted(KINDS)


def test_math_of_the_relative_difference() -> None:
    from pipeline.quality import relative_to

    assert relative_to(-0.5, 10.0, 20.0) == pytest.approx(-0.05)
    assert relative_to(-0.5, -10.0, 20.0) == pytest.approx(-0.05)
    assert relative_to(0.5, 0.01, 20.0) == pytest.approx(0.025)  # near zero: of the scale
    assert relative_to(0.5, None, None) is None and relative_to(None, 1.0, 1.0) is None
    assert math.isclose(relative_to(1.0, 0.0, 4.0) or 0, 0.25)
