"""Pilots once per class: one set per run whatever the batches, one per new class across
concurrent runs on one intake, and answers that take a class's angles with no evaluation."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import truth
from factories import planned, problem
from test_qaoa import true_qaoa_expectation

from flows.deps import open_deps
from flows.pilots import PilotBoard
from flows.run import run_once
from pipeline.backends import get_backend
from pipeline.config import QuantumSettings, Settings
from pipeline.config_sources import load_settings
from pipeline.formulation import formulate
from pipeline.intake import IntakeStore
from pipeline.model import spec_from_record
from pipeline.qaoa.angle_store import AngleLibrary, plan_for
from pipeline.qaoa.angles import AngleSet, ClassAngles, TransferCheck
from pipeline.qaoa.evaluators import BatchProblem
from pipeline.qaoa.features import features
from pipeline.qaoa.findings import Findings, angle_pilot_leases
from pipeline.qaoa.lockstep import optimise_chunk
from pipeline.qaoa.refine import FD_STEP, newton_step
from pipeline.qaoa.shapes import shape_of
from pipeline.qaoa.templates import compile_template
from pipeline.results import query
from pipeline.submit import submit_files
from pipeline.vocabulary import RefineMode

BACKEND = get_backend("aer", 20)
STEP = 5  # what a follower of a young class spends at p=2: one Newton step, 2p + 1


def one_graph(count: int, seed: int = 5) -> list[dict]:
    """``count`` weighted 8-node 3-regular MaxCut problems on one graph (published angles
    apply: a class the pilots start from them)."""
    rng = np.random.default_rng(seed)
    edges = problem("maxcut", 8, seed=seed, graph="regular")["edges"]
    return [
        {
            "key": f"g{seed}-{i}",
            "kind": "maxcut",
            "n": 8,
            "edges": [[u, v, round(float(rng.uniform(0.1, 1)), 4)] for u, v, _ in edges],
        }
        for i in range(count)
    ]


def submit_and_run(home: Path, settings: Settings, records: list[dict]) -> str:
    """Submit ``records`` as a file and run them once, as `qhopper submit` and `qhopper
    run` do (every one answered); the key of their MaxCut class at p=2."""
    source = home / f"{records[0]['key']}.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    submit_files(settings, [source])
    with open_deps(settings) as deps:
        assert run_once(deps).completed == len(records)
    formulation = formulate(spec_from_record(records[0]))
    return plan_for(None, "maxcut", shape_of(formulation.ising, 2, BACKEND.target.label)).class_key


@contextmanager
def findings_in(settings: Settings) -> Iterator[Findings]:
    """The class findings of the settings' intake."""
    store = IntakeStore.open(settings.database_url)
    try:
        yield Findings(store.engine)
    finally:
        store.close()


def running(store: IntakeStore, *run_ids: str, lease_seconds: float = 600) -> None:
    """Each run holds a live claim, as a run piloting a class does: how others tell it is
    still there."""
    for run_id in run_ids:
        record = one_graph(1)[0] | {"key": f"held-by-{run_id}"}
        store.submit([(spec_from_record(record), "test")])
        assert store.claim(run_id, 1, lease_seconds)


def test_the_batches_of_one_class_in_a_run_share_one_set_of_pilots(home: Path) -> None:
    """30 problems of one class in three batches of 10: one pilot in all (from the published
    angles), every other problem one Newton step; each answer its problem's true cut."""
    settings = load_settings(home, overrides={"quantum.max_batch_size": 10})
    records = one_graph(30)
    source = home / "problems.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in records))
    submit_files(settings, [source])
    with open_deps(settings) as deps:
        summary = run_once(deps)
    assert summary.completed == 30 and summary.quantum_batches == 3
    rows = query(settings.results_location, "SELECT * FROM problems").to_pylist()
    spent = sorted(r["evaluations"] for r in rows)
    assert spent[:-1] == [STEP] * 29  # everyone but the pilot
    assert spent[-1] > STEP  # the pilot refined
    by_key = {r["key"]: r for r in records}
    for row in rows:
        record = by_key[row["key"]]
        assert row["objective"] == pytest.approx(truth.objective(record, row["solution"]))
        assert row["objective"] <= truth.brute_force(record) + 1e-9


def test_followers_measure_what_following_loses_and_a_confirmed_class_follows_free(
    home: Path,
) -> None:
    """A young class's followers each take one Newton step, and the optima the Newton
    model puts them at measure the class: twice their mean quadratic-model loss at their
    centre (under the pilot's curvature) relative to their energy, recomputed here from an
    independent statevector's energies. Once that record covers ``confirm_problems``
    problems under ``free_loss``, the next run on another graph needs no pilot: its problems
    take the class model's prediction (fitted on the first run's 29 followers) with no
    evaluation, each its own (features computed here from its weights), its expectation an
    independent statevector's at those angles."""
    settings = load_settings(
        home,
        overrides={
            "quantum.max_batch_size": 10,
            "quantum.confirm_problems": 20,
            "quantum.free_loss": 1.0,
        },
    )
    first, second = one_graph(30, seed=5), one_graph(30, seed=6)
    class_key = submit_and_run(home, settings, first)
    with findings_in(settings) as findings:
        check, shared = findings.checked(class_key), findings.latest(class_key)
        model = findings.model(class_key)
    submit_and_run(home, settings, second)
    rows = {
        r["key"]: r for r in query(settings.results_location, "SELECT * FROM problems").to_pylist()
    }
    followers = [r for r in first if rows[r["key"]]["evaluations"] == STEP]
    assert len(followers) == 29 and check is not None and shared is not None
    gained = [  # what each follower's step gained in expected cut
        rows[r["key"]]["expected_objective"] - true_qaoa_expectation(r, shared.gammas, shared.betas)
        for r in followers
    ]
    expected = independent_spread(followers, rows, shared)
    assert check.problems == 29 and check.loss == pytest.approx(expected, rel=1e-4)
    assert check.loss > 0  # the followers' optima differ: the class has a spread
    assert np.mean(gained) > 0 and min(gained) > -1e-3 * max(map(abs, gained))  # steps pay
    assert model is not None and model.problems == 29
    for record in second:
        row = rows[record["key"]]
        weights = np.array([w for _, _, w in record["edges"]])
        pairs = [(min(u, v), max(u, v)) for u, v, _ in record["edges"]]
        own = features(8, pairs, weights[None, :] / np.sqrt(np.mean(weights**2)))
        assert row["evaluations"] == 0
        assert row["angles"] == pytest.approx(model.predict(own)[0].tolist(), abs=1e-9)
        exact = true_qaoa_expectation(record, row["angles"][:2], row["angles"][2:])
        assert row["expected_objective"] == pytest.approx(exact, rel=1e-9)


def test_a_confirmed_class_with_no_model_pilots_twice_and_follows_free(home: Path) -> None:
    """Too few followers for a model (14 < 20): once their record confirms the class, the
    next run on another graph pilots twice and its other problems take the pilots' mean
    optimum with no evaluation."""
    settings = load_settings(
        home,
        overrides={
            "quantum.max_batch_size": 15,
            "quantum.confirm_problems": 10,
            "quantum.free_loss": 1.0,
        },
    )
    for records in (one_graph(15, seed=5), one_graph(30, seed=6)):
        submit_and_run(home, settings, records)
    rows = query(
        settings.results_location, "SELECT * FROM problems WHERE key LIKE 'g6-%'"
    ).to_pylist()
    spent = sorted(r["evaluations"] for r in rows)
    assert spent[:-2] == [0] * 28 and min(spent[-2:]) > STEP  # two pilots, then free


def independent_spread(followers: list[dict], rows: dict[str, dict], shared: ClassAngles) -> float:
    """The class's measure recomputed with an independent statevector's energies: each
    follower's optimum by the Newton model from the shared angles (forward differences, the
    pilots' curvature), twice the mean model loss at each chunk's centre relative to the
    energy at its final angles, bias-corrected, weighted by chunk."""
    hessian = np.reshape(shared.curvature, (4, 4))
    centre = np.array(shared.gammas + shared.betas)
    chunks: dict[str, list[tuple[np.ndarray, float]]] = {}  # a batch here is one chunk
    for record in followers:
        ising = formulate(spec_from_record(record)).ising
        scale = np.sqrt(np.mean(ising.J[ising.J != 0] ** 2))  # energies at RMS weight 1

        def energy(
            theta: np.ndarray, record: dict = record, ising: Any = ising, scale: float = scale
        ) -> float:
            cut = true_qaoa_expectation(record, theta[:2], theta[2:])
            return float((ising.sign * cut - ising.constant) / scale)

        at_centre = energy(centre)
        gradient = [(energy(centre + FD_STEP * e) - at_centre) / FD_STEP for e in np.eye(4)]
        optimum = centre + newton_step(np.array(gradient), hessian, np.inf)
        row = rows[record["key"]]
        chunks.setdefault(row["batch_id"], []).append((optimum, energy(np.array(row["angles"]))))
    weighted = 0.0
    for members in chunks.values():
        optima = np.array([o for o, _ in members])
        offsets = optima - optima.mean(axis=0)
        model = [0.5 * d @ hessian @ d / abs(e) for d, (_, e) in zip(offsets, members, strict=True)]
        weighted += 2 * np.mean(model) * len(model) / (len(model) - 1) * len(model)
    return weighted / len(followers)


@pytest.mark.postgres
def test_concurrent_runs_pay_for_a_new_class_once(postgres_url: str) -> None:
    """Two runs meet a new class at once: one takes the pilot lease and pilots it; the
    other waits for that finding and sends all its chunks as followers."""
    store = IntakeStore.open(postgres_url)
    try:
        findings, library = Findings(store.engine), AngleLibrary(store.engine)
        running(store, "r-first", "r-second")
        records = one_graph(12)
        formulation = formulate(spec_from_record(records[0]))
        shape = shape_of(formulation.ising, 2, BACKEND.target.label)
        plan = plan_for(library, "maxcut", shape)
        quantum = QuantumSettings(pilot_wait_s=30)
        first = PilotBoard("r-first", quantum, findings)
        second = PilotBoard("r-second", quantum, findings)
        claimed = [planned(i, record, reps=2) for i, record in enumerate(records)]
        chunks = [tuple(claimed[:6]), tuple(claimed[6:])]
        piloting = first.admit(plan, shape.digest, chunks)
        assert piloting.piloting and len(piloting.now) == 1 and len(piloting.held) == 2
        waited: list = []
        waiter = threading.Thread(
            target=lambda: waited.append(second.admit(plan, shape.digest, chunks))
        )
        waiter.start()
        found = ClassAngles((0.2, 0.4), (0.5, 0.3), (1.0,) * 16, 0.001)
        assert first.found(plan, shape.digest, found, pilots=2)
        waiter.join(timeout=60)
        assert not waiter.is_alive()
        [followed] = waited
        assert not followed.piloting and not followed.held and len(followed.now) == 2
        assert all(
            p.shared is not None and p.shared.gammas == found.gammas for _, p in followed.now
        )
    finally:
        store.close()


def test_a_zero_evaluation_answer_has_its_expectation_from_the_statevector() -> None:
    """Problems that take their class's angles as they are spend no evaluation, and their
    expected objective is an independent statevector's at those angles."""
    records = one_graph(4, seed=9)
    problems = [BatchProblem(r["key"], formulate(spec_from_record(r)), 256) for r in records]
    shape = shape_of(problems[0].formulation.ising, 2, BACKEND.target.label)
    template = compile_template(shape, BACKEND, "test")
    shared = ClassAngles((0.21, 0.43), (0.52, 0.27), (), 0.0)
    plan = plan_for(None, "maxcut", shape)
    plan = type(plan)(plan.class_key, 2, plan.candidates, shared=shared, refine=RefineMode.NEVER)
    answers, learned = optimise_chunk(template, problems, BACKEND, 10, seed=3, start=plan)
    assert learned is None  # it ran no pilots
    for record, answer in zip(records, answers, strict=True):
        assert answer.evaluations == 0
        assert answer.gammas == shared.gammas and answer.betas == shared.betas
        exact = true_qaoa_expectation(record, answer.gammas, answer.betas)
        assert answer.expected_objective == pytest.approx(exact, rel=1e-9)


def test_followers_of_a_class_with_fields_keep_only_steps_that_pay() -> None:
    """QUBOs have linear fields: one pilot's curvature may mislead another problem, so each
    follower's step is checked (2p + 2 evaluations) and kept only where it lowers the energy.
    No answer's expectation (an independent statevector's) is worse than at the shared
    angles (the first problem's optimum), here with a curvature far too flat for them; and
    what the steps gained is the class's measure."""
    rng = np.random.default_rng(4)
    pairs = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (1, 4)]
    records = [
        {
            "key": f"q{i}",
            "kind": "qubo",
            "n": 6,
            "sense": "min",
            "linear": [[v, round(float(rng.normal()), 4)] for v in range(6)],
            "quadratic": [[u, v, round(float(rng.normal()), 4)] for u, v in pairs],
        }
        for i in range(8)
    ]
    problems = [BatchProblem(r["key"], formulate(spec_from_record(r)), 256) for r in records]
    shape = shape_of(problems[0].formulation.ising, 2, BACKEND.target.label)
    template = compile_template(shape, BACKEND, "test")
    [pilot] = optimise_chunk(template, problems[:1], BACKEND, 40, seed=3)[0]  # its optimum
    flat = tuple(np.eye(4).ravel() * 1e-3)  # every step the full trust radius: some overshoot
    shared = ClassAngles(pilot.gammas, pilot.betas, flat, math.inf)
    plan = plan_for(None, "qubo", shape)
    plan = type(plan)(plan.class_key, 2, plan.candidates, shared=shared, refine=RefineMode.AUTO)
    answers, learned = optimise_chunk(template, problems, BACKEND, 10, seed=3, start=plan)
    moved, gains = 0, []
    for record, answer in zip(records, answers, strict=True):
        assert answer.evaluations == 6  # the centre, 4 forward differences, the step's check
        before = true_qaoa_expectation(record, shared.gammas, shared.betas)
        assert answer.expected_objective <= before + 1e-9
        assert answer.expected_objective == pytest.approx(
            true_qaoa_expectation(record, answer.gammas, answer.betas), rel=1e-9
        )
        moved += answer.gammas != shared.gammas
        ising = formulate(spec_from_record(record)).ising  # energies up to their scale
        shifted = ising.sign * answer.expected_objective - ising.constant
        gains.append((ising.sign * before - ising.constant - shifted) / abs(shifted))
    assert 0 < moved < len(records)  # some steps paid, some (the first's) were refused
    # The class's measure is what the steps gained, nothing where refused (the cloud of
    # stepped angles would look tighter than the class is).
    assert isinstance(learned, TransferCheck) and learned.problems == len(records)
    assert learned.loss == pytest.approx(np.mean(gains), rel=1e-6) and learned.loss > 0


def test_refine_never_answers_a_known_class_with_no_evaluation(home: Path) -> None:
    """``quantum.refine = "never"``: once the library knows the class, a run's problems take
    its entry as it is (no pilots, no evaluation), and each answer is its problem's cut."""
    settings = load_settings(home, overrides={"quantum.refine": "never"})
    for seed in (5, 6):  # a first run fills the library; the second takes it
        records = one_graph(12, seed=seed)
        submit_and_run(home, settings, records)
    rows = query(
        settings.results_location, "SELECT * FROM problems WHERE key LIKE 'g6-%'"
    ).to_pylist()
    assert len(rows) == 12 and {r["evaluations"] for r in rows} == {0}
    by_key = {r["key"]: r for r in records}
    for row in rows:
        assert row["objective"] == pytest.approx(
            truth.objective(by_key[row["key"]], row["solution"])
        )
        assert row["expected_objective"] <= truth.brute_force(by_key[row["key"]]) + 1e-9


def test_a_pilot_lease_left_by_a_dead_run_is_taken_over_at_once(tmp_path: Path) -> None:
    """A run killed while piloting a class leaves its lease: the next run on this host sees
    its process gone and pilots the class itself, without waiting out the lease."""
    store = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        findings = Findings(store.engine)
        running(store, "r-killed", "r-next", "r-third")
        assert findings.take_lease("c", "r-killed", seconds=3600) is None
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait(timeout=60)
        with store.engine.begin() as tx:
            tx.execute(angle_pilot_leases.update().values(pid=gone.pid))
        assert findings.wait("c", datetime.min, timeout_s=10) is None  # nothing to wait for
        assert findings.take_lease("c", "r-next", seconds=3600) is None
        assert findings.take_lease("c", "r-third", seconds=3600) is not None  # alive: wait
    finally:
        store.close()


def test_a_pilot_lease_of_a_run_whose_claims_lapsed_is_taken_over(tmp_path: Path) -> None:
    """A run frozen (or dead on another host) stops renewing its claims: once they lapse,
    the run that meets its pilot lease pilots the class itself instead of waiting."""
    store = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        findings = Findings(store.engine)
        running(store, "r-next")
        running(store, "r-frozen", lease_seconds=1e-6)  # lapsed at once
        assert findings.take_lease("c", "r-frozen", seconds=3600) is None
        assert findings.take_lease("c", "r-next", seconds=3600) is None
    finally:
        store.close()


def test_a_batch_no_larger_than_its_pilots_pilots_its_class_for_the_run(tmp_path: Path) -> None:
    """A one-problem batch is all pilots: the class's later batches in the run follow what
    it found, and the run's own lease never makes it wait on itself."""
    store = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        findings, library = Findings(store.engine), AngleLibrary(store.engine)
        running(store, "r-1", "r-2")
        formulation = formulate(spec_from_record(one_graph(1)[0]))
        shape = shape_of(formulation.ising, 2, BACKEND.target.label)
        plan = plan_for(library, "maxcut", shape)
        board = PilotBoard("r-1", QuantumSettings(pilot_wait_s=30), findings)
        claimed = [planned(i, record, reps=2) for i, record in enumerate(one_graph(3))]
        first = board.admit(plan, shape.digest, [(claimed[0],)])
        assert first.piloting and len(first.now) == 1 and not first.held
        assert findings.take_lease(plan.class_key, "r-1", 30) is None  # its own: no wait
        learned = ClassAngles((0.2, 0.4), (0.5, 0.3), (1.0,) * 16, 0.001)
        assert board.found(plan, shape.digest, learned, pilots=1)
        later = board.admit(plan, shape.digest, [(claimed[1],), (claimed[2],)])
        assert not later.piloting and not later.held
        assert all(p.shared is not None for _, p in later.now)
        board.close()
        assert findings.take_lease(plan.class_key, "r-2", 30) is None  # given back
    finally:
        store.close()


@pytest.mark.parametrize(("fields", "pilots"), [(False, 1), (True, 3)])
def test_a_class_with_fields_has_three_pilots_where_others_have_one(
    tmp_path: Path, fields: bool, pilots: int
) -> None:
    """A young library entry: one pilot, whose followers step; with linear fields, whose
    optima concentrate less, three, as from the grid (their mean is the followers' start)."""
    store = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        running(store, "r-1")
        formulation = formulate(spec_from_record(one_graph(1)[0]))
        shape = shape_of(formulation.ising, 2, BACKEND.target.label)
        entry = AngleSet((0.2, 0.4), (0.5, 0.3), "library", 0.8)
        plan = dataclasses.replace(
            plan_for(None, "maxcut", shape), candidates=(entry,), fields=fields
        )
        board = PilotBoard("r-1", QuantumSettings(), Findings(store.engine))
        claimed = tuple(planned(i, record, reps=2) for i, record in enumerate(one_graph(10)))
        admitted = board.admit(plan, shape.digest, [claimed])
        assert admitted.piloting and len(admitted.now[0][0]) == pilots
        assert sum(len(chunk) for chunk in admitted.held) == 10 - pilots
    finally:
        store.close()


def test_a_class_is_piloted_by_its_most_typical_problem_not_its_first(tmp_path: Path) -> None:
    """The batch's first problem has weights unlike the others' (one edge 50 times the
    rest): its optimum lies off its class's centre, so it is not the pilot; the pilot is
    the problem whose features lie nearest the others' mean, and every other problem is
    held, once, in its own chunk's order."""
    store = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        running(store, "r-1")
        records = one_graph(12)
        records[0]["edges"][0][2] = 50.0
        claimed = [planned(i, record, reps=2) for i, record in enumerate(records)]
        shape = shape_of(claimed[0].formulation.ising, 2, BACKEND.target.label)
        board = PilotBoard("r-1", QuantumSettings(), Findings(store.engine))
        admitted = board.admit(
            plan_for(None, "maxcut", shape), shape.digest, [tuple(claimed[:6]), tuple(claimed[6:])]
        )
        [(pilots, _)] = admitted.now
        found = np.array(
            [
                features(
                    8,
                    p.formulation.ising.pairs,
                    p.formulation.ising.J[None, :] / np.sqrt(np.mean(p.formulation.ising.J**2)),
                )[0]
                for p in claimed
            ]
        )
        offsets = found - found.mean(axis=0)
        distance = np.einsum("ij,jk,ik->i", offsets, np.linalg.pinv(np.cov(found.T)), offsets)
        assert [p.problem_id for p in pilots] == [claimed[int(np.argmin(distance))].problem_id]
        assert claimed[0].problem_id not in {p.problem_id for p in pilots}
        held = [p.problem_id for chunk in admitted.held for p in chunk]
        assert held == [p.problem_id for p in claimed if p is not pilots[0]]
    finally:
        store.close()
