"""A class's angle model: the features it reads (the depth-1 optimum in closed form), the fit,
and a second run on a new graph that starts from it, with no pilots, at 2 evaluations a
problem on average."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import truth
from factories import problem
from test_pilots import BACKEND, findings_in, submit_and_run
from test_qaoa import true_qaoa_expectation

from pipeline.config_sources import load_settings
from pipeline.formulation import formulate
from pipeline.intake import IntakeStore
from pipeline.model import spec_from_record
from pipeline.qaoa.angle_model import MAX_SAMPLES, AngleModel, ModelSamples
from pipeline.qaoa.angle_store import plan_for
from pipeline.qaoa.angles import ClassAngles, TransferCheck
from pipeline.qaoa.evaluators import BatchProblem
from pipeline.qaoa.features import (
    couplings,
    depth_one_optimum,
    depth_one_terms,
    features,
    most_typical,
)
from pipeline.qaoa.findings import Findings, angle_models
from pipeline.qaoa.lockstep import optimise_chunk
from pipeline.qaoa.refine import FD_STEP, newton_step
from pipeline.qaoa.shapes import shape_of
from pipeline.qaoa.templates import compile_template
from pipeline.results import query
from pipeline.vocabulary import RefineMode

PAIRS_8 = [(0, 1), (0, 4), (0, 7), (1, 2), (1, 5), (2, 3), (2, 6), (3, 4), (3, 7), (4, 5), (5, 6)]
PAIRS_8 += [(6, 7)]  # a 3-regular graph on 8 nodes (a cube-like ring with chords)


def exponential_graph(
    count: int, graph_seed: int, prefix: str, law: str = "exponential"
) -> list[dict]:
    """``count`` 8-node 3-regular MaxCut problems on one random graph, exponential weights
    (heavy-tailed: the law whose optima move most from problem to problem) or uniform in
    [0.1, 1] (whose optima concentrate: every pilot finds its followers' basin)."""
    rng = np.random.default_rng(graph_seed)
    pairs = PAIRS_8 if graph_seed % 2 else _random_regular(rng)

    def weight() -> float:
        drawn = rng.exponential() + 1e-3 if law == "exponential" else rng.uniform(0.1, 1.0)
        return round(float(drawn), 6)

    return [
        {
            "key": f"{prefix}-{i}",
            "kind": "maxcut",
            "n": 8,
            "edges": [[u, v, weight()] for u, v in pairs],
        }
        for i in range(count)
    ]


def _random_regular(rng: np.random.Generator) -> list[tuple[int, int]]:
    """A random 3-regular graph on 8 nodes (pairing model, retried until simple)."""
    while True:
        stubs = rng.permutation(np.repeat(np.arange(8), 3)).reshape(-1, 2)
        pairs = {tuple(sorted(map(int, p))) for p in stubs}
        if len(pairs) == 12 and all(u != v for u, v in pairs):
            return sorted(pairs)  # type: ignore[arg-type]


def normalised(record: dict) -> tuple[list[tuple[int, int]], np.ndarray, float]:
    """The record's pairs, its Ising couplings w/2 divided by their RMS (as the engine
    normalises; computed here from the record), and the cut's constant sum w / 2."""
    weights = np.array([w for _, _, w in record["edges"]], dtype=float)
    pairs = [(min(u, v), max(u, v)) for u, v, _ in record["edges"]]
    return pairs, weights / np.sqrt(np.mean(weights**2)), float(weights.sum() / 2)


@pytest.mark.parametrize(("gamma", "beta"), [(0.3, -0.2), (0.7, 0.1), (1.1, -0.6)])
def test_the_depth_one_energy_in_closed_form_is_the_statevectors(gamma: float, beta: float) -> None:
    """E1(g, b) = A sin 4b + C sin^2 2b equals an independent statevector's expected cut
    (cut = sum w / 2 - rms(w) / 2 * E1, E1 at RMS-normalised couplings)."""
    for record in exponential_graph(3, graph_seed=4, prefix="p1"):
        pairs, J, constant = normalised(record)
        A, C = depth_one_terms(couplings(8, pairs, J[None, :]), np.array([gamma]))
        energy = A[0, 0] * np.sin(4 * beta) + C[0, 0] * np.sin(2 * beta) ** 2
        rms = float(np.sqrt(np.mean(np.array([w for _, _, w in record["edges"]]) ** 2)))
        cut = constant - rms / 2 * energy
        assert cut == pytest.approx(true_qaoa_expectation(record, [gamma], [beta]), rel=1e-10)


def test_the_depth_one_optimum_is_no_worse_than_a_fine_grid() -> None:
    """The closed-form optimum (beta exact, gamma on a grid and a parabola) reaches the best
    energy of a 300 x 300 grid over gamma in [0.02, 1.2] and every beta, up to 1e-4; the
    energy it reports is the closed form's at its angles."""
    records = exponential_graph(2, graph_seed=6, prefix="opt")  # a graph with triangles
    matrix = np.concatenate([couplings(8, p, J[None, :]) for p, J, _ in map(normalised, records)])
    gamma, beta, energy = depth_one_optimum(matrix)
    assert np.abs(depth_one_terms(matrix, gamma[:, None])[1]).min() > 0.1  # C matters here
    gammas, betas = np.linspace(0.02, 1.2, 300), np.linspace(-np.pi / 4, np.pi / 4, 300)
    A, C = depth_one_terms(matrix, gammas)
    grid = A[:, :, None] * np.sin(4 * betas) + C[:, :, None] * np.sin(2 * betas) ** 2
    assert np.all(energy <= grid.min(axis=(1, 2)) + 1e-4)
    A1, C1 = depth_one_terms(matrix, gamma[:, None])
    at = A1[:, 0] * np.sin(4 * beta) + C1[:, 0] * np.sin(2 * beta) ** 2
    assert at == pytest.approx(energy, abs=1e-12)  # the energy reported is at the angles


def test_features_are_the_couplings_means_and_the_depth_one_optimum() -> None:
    """Mean |J| over the couplings, mean |J_e J_f| over pairs of couplings sharing a qubit
    (counted here pair by pair), the depth-1 optimum, its energy per coupling and its
    relative curvature along gamma (beta found here on a fine grid)."""
    record = exponential_graph(1, graph_seed=6, prefix="f")[0]
    pairs, J, _ = normalised(record)
    found = features(8, pairs, J[None, :])[0]
    adjacent = [
        abs(J[a] * J[b])
        for a in range(len(pairs))
        for b in range(len(pairs))
        if a != b and set(pairs[a]) & set(pairs[b])
    ]
    matrix = couplings(8, pairs, J[None, :])
    gamma, beta, energy = depth_one_optimum(matrix)

    def envelope(g: float) -> float:  # the depth-1 energy at gamma g and its best beta
        betas = np.linspace(-np.pi / 4, np.pi / 4, 20001)
        A, C = depth_one_terms(matrix, np.array([g]))
        return float((A[0, 0] * np.sin(4 * betas) + C[0, 0] * np.sin(2 * betas) ** 2).min())

    step = 0.02
    bend = (envelope(gamma[0] - step) + envelope(gamma[0] + step) - 2 * energy[0]) / step**2
    expected = [np.abs(J).mean(), np.mean(adjacent), gamma[0], beta[0], energy[0] / len(pairs)]
    assert found == pytest.approx([*expected, bend / abs(energy[0])], rel=1e-6)


def test_a_model_fitted_on_exact_linear_optima_recovers_them_and_their_main_residual() -> None:
    """Optima that are a linear function of the features plus noise along one direction:
    the fit recovers the coefficients and that direction (in the Hessian's metric), predicts
    unseen problems (within the optima seen, however far their features), and survives its
    own JSON."""
    rng = np.random.default_rng(7)
    found = rng.normal(size=(60, 6))
    truth_coefficients = rng.normal(size=(7, 4))
    axis = np.array([1.0, -2.0, 0.5, 0.0]) / np.linalg.norm([1.0, -2.0, 0.5, 0.0])
    noise = rng.normal(scale=0.05, size=(60, 1)) * axis + rng.normal(scale=1e-4, size=(60, 4))
    optima = np.column_stack([np.ones(60), found]) @ truth_coefficients + noise
    samples = ModelSamples(tuple(map(tuple, found)), tuple(map(tuple, optima)))
    model = AngleModel.fit(samples, np.eye(4))
    assert model is not None and model.problems == 60
    assert np.asarray(model.coefficients) == pytest.approx(truth_coefficients, abs=0.03)
    assert abs(np.dot(model.direction, axis)) > 0.99
    unseen = rng.normal(scale=0.3, size=(5, 6))  # within the features fitted on
    expected = np.column_stack([np.ones(5), unseen]) @ truth_coefficients
    assert model.predict(unseen) == pytest.approx(expected, abs=0.05)
    # Far outside them, a prediction stays within the optima it was fitted on.
    far = model.predict(np.full((1, 6), 50.0))[0]
    assert np.all(far >= optima.min(axis=0)) and np.all(far <= optima.max(axis=0))
    assert np.any(np.isclose(far, optima.min(axis=0)) | np.isclose(far, optima.max(axis=0)))
    assert AngleModel.from_json(model.to_json()) == model
    assert (
        AngleModel.fit(ModelSamples(samples.features[:19], samples.optima[:19]), np.eye(4)) is None
    )
    pooled = ModelSamples((), ())
    for _ in range(MAX_SAMPLES // 60 + 2):  # a large run's chunks: the first MAX_SAMPLES kept
        pooled += samples
    assert len(pooled) == MAX_SAMPLES and pooled.optima[:60] == samples.optima


def test_an_unreadable_stored_model_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        findings = Findings(store.engine)
        with store.engine.begin() as tx:
            tx.execute(
                angle_models.insert().values(
                    class_key="maxcut/q8/d3^8/p2/noh",
                    model_json=json.dumps({"coefficients": [[1.0]], "direction": "x"}),
                    problems=3,
                    run_id="r",
                    created_at=datetime(2026, 1, 1),
                )
            )
        with caplog.at_level(logging.WARNING, logger="qhopper.angles"):
            assert findings.model("maxcut/q8/d3^8/p2/noh") is None
        assert "angle model is ignored" in caplog.text
    finally:
        store.close()


def followers_of_a_pilot(
    count: int, offset: tuple[float, ...] = (0.0,) * 4
) -> tuple[list[dict], list, TransferCheck, ClassAngles]:
    """``count`` followers of one pilot (on an 8-node exponential-weight graph), which
    follow its optimum moved by ``offset``: their records, answers, check, shared angles."""
    records = exponential_graph(count + 1, graph_seed=8, prefix="s")
    problems = [BatchProblem(r["key"], formulate(spec_from_record(r)), 64) for r in records]
    shape = shape_of(problems[0].formulation.ising, 2, BACKEND.target.label)
    template = compile_template(shape, BACKEND, "test")
    plan = plan_for(None, "maxcut", shape)
    piloting = type(plan)(plan.class_key, 2, plan.candidates, warm_pilots=1)
    _, learned = optimise_chunk(template, problems[:1], BACKEND, 30, seed=3, start=piloting)
    assert isinstance(learned, ClassAngles)
    moved = np.array(learned.gammas + learned.betas) + np.array(offset)
    shared = ClassAngles(tuple(moved[:2]), tuple(moved[2:]), learned.curvature, math.inf)
    plan = type(plan)(plan.class_key, 2, plan.candidates, shared=shared, refine=RefineMode.AUTO)
    answers, check = optimise_chunk(template, problems[1:], BACKEND, 10, seed=3, start=plan)
    assert isinstance(check, TransferCheck) and check.samples is not None
    return records[1:], answers, check, shared


def test_staged_followers_return_their_features_and_newton_optima_as_samples() -> None:
    """A chunk of 45 followers steps in two stages (20, then 25 from a model of the first
    20's optima) and hands back every follower's features (the engine's normalised weights
    read independently here) with its optimum; each answer's expectation is an independent
    statevector's at its angles."""
    records, answers, learned, shared = followers_of_a_pilot(45)
    assert learned.samples is not None
    assert len(learned.samples) == 45 and {a.evaluations for a in answers} == {5}
    for record, sample, answer in zip(records, learned.samples.features, answers, strict=True):
        pairs, J, _ = normalised(record)
        assert sample == pytest.approx(features(8, pairs, J[None, :])[0])
        exact = true_qaoa_expectation(record, answer.gammas, answer.betas)
        assert answer.expected_objective == pytest.approx(exact, rel=1e-9)
    # The first 20 stepped from the shared angles, the other 25 from the prediction of a
    # model fitted on the first 20's samples: each optimum is its start plus the full Newton
    # step on forward differences of an independent statevector's energies.
    hessian = np.reshape(shared.curvature, (4, 4))
    head = ModelSamples(learned.samples.features[:20], learned.samples.optima[:20])
    model = AngleModel.fit(head, hessian)
    assert model is not None
    starts = [np.array(shared.gammas + shared.betas)] * 20
    starts += list(model.predict(np.array(learned.samples.features[20:])))
    for record, start, optimum in zip(records, starts, learned.samples.optima, strict=True):
        assert optimum == pytest.approx(independent_newton(record, start, hessian), abs=1e-6)


def test_a_stage_off_its_followers_optima_leaves_no_samples_and_the_next_starts_at_them() -> None:
    """Followers of angles 0.3 off their optima: the first stage's steps are not centred, so
    its optima are no samples of the class; the second stage starts from their mean (no
    model fitted on them) and, centred there, gives the only samples."""
    records, _, learned, shared = followers_of_a_pilot(45, offset=(0.2, 0.2, 0.0, 0.0))
    assert learned.samples is not None and len(learned.samples) == 25
    hessian = np.reshape(shared.curvature, (4, 4))
    start = np.array(shared.gammas + shared.betas)
    first = [independent_newton(r, start, hessian) for r in records[:20]]
    assert np.linalg.norm(np.mean(first, axis=0) - start) > 0.1  # off, as the test means
    restart = np.mean(first, axis=0)
    for record, optimum in zip(records[20:], learned.samples.optima, strict=True):
        assert optimum == pytest.approx(independent_newton(record, restart, hessian), abs=1e-6)


def independent_newton(record: dict, start: np.ndarray, hessian: np.ndarray) -> np.ndarray:
    """The record's optimum by the Newton model from ``start``: forward differences of an
    independent statevector's energy, the given curvature, no radius."""
    energy = independent_energy(record)
    gradient = [(energy(start + FD_STEP * e) - energy(start)) / FD_STEP for e in np.eye(4)]
    return np.asarray(start + newton_step(np.array(gradient), hessian, np.inf))


def independent_energy(record: dict) -> Callable[[np.ndarray], float]:
    """The record's energy at RMS-normalised weights from an independent statevector."""
    ising = formulate(spec_from_record(record)).ising
    scale = float(np.sqrt(np.mean(ising.J[ising.J != 0] ** 2)))

    def energy(theta: np.ndarray) -> float:
        cut = true_qaoa_expectation(record, theta[:2], theta[2:])
        return float((ising.sign * cut - ising.constant) / scale)

    return energy


def test_a_second_run_on_a_new_graph_starts_from_the_model_at_two_evaluations_a_problem(
    home: Path,
) -> None:
    """Run 1: one pilot, 59 followers stepping (samples), a model recorded. Run 2, another
    graph of the class: no pilot; the riskiest fifth of each chunk one Newton step (5), half
    one line search (2), the rest none: 2 evaluations a problem at most. Its answers beat the
    class's shared angles on average (an independent statevector's expectations) and are
    true cuts no better than the brute-force optimum."""
    # A class not confirmed for free following (as exponential weights on 12 nodes are not);
    # uniform weights here, whose optima concentrate: every pilot finds its followers' basin.
    settings = load_settings(home, overrides={"quantum.free_loss": 1e-9})
    first = exponential_graph(60, graph_seed=10, prefix="one", law="uniform")
    second = exponential_graph(60, graph_seed=11, prefix="two", law="uniform")
    class_key = submit_and_run(home, settings, first)
    submit_and_run(home, settings, second)
    with findings_in(settings) as findings:
        model, shared = findings.model(class_key), findings.latest(class_key)
    assert model is not None and shared is not None
    assert model.problems == 59  # every follower of run 1; run 2 adds none
    rows = query(
        settings.results_location, "SELECT * FROM problems WHERE key LIKE 'two-%'"
    ).to_pylist()
    spent = Counter(r["evaluations"] for r in rows)
    assert set(spent) <= {0, 2, 5} and spent[5] >= 1 and spent[2] >= 1 and spent[0] >= 1
    assert sum(r["evaluations"] for r in rows) / len(rows) <= 2.0
    by_key = {r["key"]: r for r in second}
    gains = []
    for row in rows:
        record = by_key[row["key"]]
        exact = true_qaoa_expectation(record, row["angles"][:2], row["angles"][2:])
        assert row["expected_objective"] == pytest.approx(exact, rel=1e-9)
        assert row["objective"] == pytest.approx(truth.objective(record, row["solution"]))
        assert row["objective"] <= truth.brute_force(record) + 1e-9
        at_shared = true_qaoa_expectation(record, shared.gammas, shared.betas)
        gains.append((exact - at_shared) / truth.brute_force(record))
    assert np.mean(gains) > 0


def test_the_most_typical_of_a_pool_reads_each_problem_on_its_own_graph() -> None:
    """A pool's problems each have their own graph: their features, read together over
    every pair any of them has, are each one's own (computed here one problem at a time),
    and the most typical are those nearest the mean."""
    records = [problem("maxcut", 6, seed=i, graph="random") for i in range(30)]
    isings = [formulate(spec_from_record(r)).ising for r in records]
    one_by_one = np.vstack(
        [features(6, i.pairs, (i.J / np.sqrt(np.mean(i.J**2)))[None, :]) for i in isings]
    )
    offsets = one_by_one - one_by_one.mean(axis=0)
    precision = np.linalg.pinv(np.cov(one_by_one, rowvar=False))
    distance = np.einsum("ij,jk,ik->i", offsets, precision, offsets)
    assert len({i.pairs for i in isings}) > 1  # a pool, not one graph
    assert most_typical(isings, 3) == sorted(np.argsort(distance)[:3].tolist())
