"""Test-side factories: one problem generator, one PlannedProblem factory.

``problem()`` writes a raw record the way a user submits one (the contract's JSON fields,
README "Problems"), random where asked and reproducible by its ``seed``; tests that need a
spec call ``spec_from_record`` on it. ``planned()`` makes the PlannedProblem that batching
and routing read. The oracle that judges answers stays apart, in tests/truth.py, which
shares no code with pipeline/ or with this module.

Examples::

    problem("maxcut", 6, seed=3)                     # G(6, 0.5), integer weights 1..9
    problem("maxcut", 5, graph="ring", weights=1.0)  # the 5-ring, every weight 1.0
    problem("qubo", 4, weights="normal", sense="max")
    problem("portfolio", 5, budget=2, risk=0.5, route="quantum", key="p-1")
    planned(0, problem("maxcut", 5, graph="path"))   # problem id "p0", key "k0"
"""

from __future__ import annotations

import functools
import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Literal

import numpy as np

from batching.batches import PlannedProblem
from pipeline.formulation import formulate
from pipeline.model import ProblemSpec, spec_from_record

Kind = Literal["maxcut", "qubo", "portfolio"]
Graph = Literal["random", "ring", "path", "regular", "complete"]
Weights = Literal["unit", "int", "decimal", "float", "normal", "mixed"]
Seed = int | str | np.random.Generator
Record = dict[str, Any]

NOW = datetime(2026, 1, 1)


def rng_of(seed: Seed) -> np.random.Generator:
    """A generator for ``seed``: an int, a string (hashed), or a generator passed through, so
    one stream can feed many problems in turn."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, str):
        seed = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big")
    return np.random.default_rng(seed)


def problem(
    kind: Kind = "maxcut",
    n: int = 5,
    *,
    seed: Seed = 0,
    graph: Graph | Sequence[Sequence[int]] = "random",
    density: float = 0.5,
    n_edges: int | None = None,
    nonempty: bool = False,
    weights: Weights | float = "int",
    span: tuple[float, float] = (1, 9),
    decimals: int | None = 3,
    orient: bool = False,
    linear_density: float = 0.7,
    diagonal: bool = False,
    route: str | None = None,
    key: str | None = None,
    **fields: Any,
) -> Record:
    """A raw ``kind`` record of ``n`` variables.

    - ``graph``: MaxCut's edges, QUBO's quadratic pairs. ``"random"`` keeps each pair with
      probability ``density`` (exactly ``n_edges`` pairs when given; ``nonempty``: pair
      (0, 1) if none was kept), ``"ring"``, ``"path"``, ``"regular"`` (3-regular),
      ``"complete"``, or the pairs themselves.
    - ``weights``: each coefficient (edge weight, QUBO term and offset): ``"unit"`` (MaxCut
      edges written without one), ``"int"`` (integers in ``span``, both ends included),
      ``"decimal"`` (uniform in ``span``, rounded to ``decimals``), ``"float"`` (uniform in
      ``span``, full precision), ``"normal"`` (standard normal), ``"mixed"`` (each one an
      integer or a 3-decimal number in ``span``; 30 % of MaxCut's edges none), or a
      number, every coefficient that number.
    - ``orient``: each pair written either way round, as users may.
    - Draws interleave as in a plain loop over the pairs: keep it, which way round, its
      weight; a QUBO's linear terms, then its pairs, then its offset.
    - QUBO: ``linear_density`` of the variables get a linear term; ``diagonal``: quadratic
      terms ``[i, i, c]`` too, each with probability ``density``.
    - Portfolio: ``sigma = A Aᵀ / n`` with A standard normal, ``mu`` uniform in
      [-0.2, 1.0), both rounded to ``decimals`` (None: full precision); ``budget`` drawn in
      [0, n] and ``risk`` from (0, 0.5, 1, 2.5) unless given.
    - ``route``, ``key`` and any other ``fields`` (``sense``, ``budget``, ``risk``,
      ``offset``, ``tenant``, ``deadline``, ``reps``, ``shots``...) are written as given,
      over what was drawn.
    """
    rng = rng_of(seed)
    if kind == "portfolio":
        record = _portfolio(n, rng, decimals)
    else:
        draw = _coefficients(weights, span, decimals, rng)
        keep = density if graph == "random" and n_edges is None else 1.0
        if kind == "maxcut":
            pairs = _pairs(n, graph, rng, n_edges, diagonal=False)
            weight = functools.partial(draw, unweighted=True)  # a MaxCut edge may have none
            edges = _terms(pairs, keep, nonempty and n >= 2, orient, weight, rng)
            record = {"kind": "maxcut", "n": n, "edges": edges}
        else:
            linear = [[i, *draw()] for i in range(n) if rng.random() < linear_density]
            pairs = _pairs(n, graph, rng, n_edges, diagonal)
            quadratic = _terms(pairs, keep, nonempty and n >= 2, orient, draw, rng)
            [offset] = draw()
            record = {
                "kind": "qubo",
                "n": n,
                "linear": linear,
                "quadratic": quadratic,
                "offset": offset,
            }
    if route is not None:
        record["route"] = route
    if key is not None:
        record["key"] = key
    return record | fields


def planned(
    index: int | str,
    source: Record | ProblemSpec,
    *,
    key: str | None = None,
    reps: int = 1,
    shots: int = 128,
    at: datetime = NOW,
) -> PlannedProblem:
    """A claimed problem as batching reads it: id ``p<index>`` and key ``k<index>`` (a string
    ``index`` is the id itself, and the key unless ``key`` is given), formulated, submitted and
    claimed ``at``, attempt 1, input hash ``"h"``."""
    spec = spec_from_record(source) if isinstance(source, dict) else source
    problem_id = f"p{index}" if isinstance(index, int) else index
    if key is None:
        key = f"k{index}" if isinstance(index, int) else index
    return PlannedProblem(problem_id, key, spec, formulate(spec), "h", 1, at, at, reps, shots)


def _terms(
    pairs: Iterable[tuple[int, int]],
    keep: float,
    nonempty: bool,
    orient: bool,
    draw: Callable[[], list[int | float]],
    rng: np.random.Generator,
) -> list[list[int | float]]:
    """The pairs as ``[u, v, coefficient?]``, each written the moment it is drawn (kept with
    probability ``keep``, which way round, its coefficient), as a plain loop over the pairs
    would draw them; ``nonempty``: pair (0, 1) if none was kept."""

    def term(u: int, v: int) -> list[int | float]:
        if orient and rng.random() >= 0.5:
            u, v = v, u
        return [u, v, *draw()]

    terms = [term(u, v) for u, v in pairs if keep >= 1.0 or rng.random() < keep]
    return terms or ([term(0, 1)] if nonempty else [])


def _pairs(
    n: int,
    graph: Graph | Sequence[Sequence[int]],
    rng: np.random.Generator,
    n_edges: int | None,
    diagonal: bool,
) -> list[tuple[int, int]]:
    """The candidate pairs: every pair for a random graph (``diagonal``: and each (i, i)),
    ``n_edges`` of them drawn at once, or the graph's own."""
    if not isinstance(graph, str):
        return [(int(u), int(v)) for u, v in graph]
    if graph == "ring":
        return [(i, (i + 1) % n) for i in range(n)]
    if graph == "path":
        return [(i, i + 1) for i in range(n - 1)]
    if graph == "regular":
        return _three_regular(n, rng)
    if n_edges is not None:
        return _exactly(n, n_edges, rng)
    if graph == "random" and diagonal:
        return list(itertools.combinations_with_replacement(range(n), 2))
    return list(itertools.combinations(range(n), 2))  # "random" or "complete"


def _exactly(n: int, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """``count`` distinct pairs, uniformly: G(n, m), without listing all n² pairs first."""
    chosen: set[tuple[int, int]] = set()
    while len(chosen) < count:
        u, v = rng.integers(0, n, size=(2, 2 * (count - len(chosen))))
        for a, b in zip(u.tolist(), v.tolist(), strict=True):
            if a != b and len(chosen) < count:
                chosen.add((min(a, b), max(a, b)))
    return sorted(chosen)


def _three_regular(n: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """A random 3-regular simple graph (the configuration model, retried until simple)."""
    while True:
        stubs = rng.permutation(np.repeat(np.arange(n), 3)).tolist()
        pairs = {(min(a, b), max(a, b)) for a, b in zip(stubs[::2], stubs[1::2], strict=True)}
        if len(pairs) == 3 * n // 2 and all(a != b for a, b in pairs):
            return sorted(pairs)


def _oriented(u: int, v: int, orient: bool, rng: np.random.Generator) -> tuple[int, int]:
    return (v, u) if orient and rng.random() < 0.5 else (u, v)


def _coefficients(
    weights: Weights | float,
    span: tuple[float, float],
    decimals: int | None,
    rng: np.random.Generator,
) -> Any:
    """``draw(unweighted=False)``: one coefficient as a list of zero or one number."""
    low, high = span

    def draw(unweighted: bool = False) -> list[int | float]:
        if not isinstance(weights, str):
            return [weights]
        if weights == "unit":
            return [] if unweighted else [1]
        if weights == "int":
            return [int(rng.integers(int(low), int(high) + 1))]
        if weights == "decimal":
            return [round(float(rng.uniform(low, high)), 2 if decimals is None else decimals)]
        if weights == "float":
            return [float(rng.uniform(low, high))]
        if weights == "normal":
            return [float(rng.normal())]
        if unweighted and rng.random() < 0.3:  # "mixed"
            return []
        if rng.random() < 0.5:
            return [int(rng.integers(int(low), int(high) + 1))]
        return [round(float(rng.uniform(low, high)), 3)]

    return draw


def _portfolio(n: int, rng: np.random.Generator, decimals: int | None) -> Record:
    a = rng.normal(size=(n, n))
    sigma = a @ a.T / n
    mu = rng.uniform(-0.2, 1.0, n)
    if decimals is not None:
        sigma, mu = sigma.round(decimals), mu.round(decimals)
    return {
        "kind": "portfolio",
        "mu": [float(m) for m in mu],
        "sigma": [[float(s) for s in row] for row in sigma],
        "budget": int(rng.integers(0, n + 1)),
        "risk": float(rng.choice([0.0, 0.5, 1.0, 2.5])),
    }
