"""MaxCut: maximise the total weight of the edges cut by a 0/1 partition of the nodes."""

from __future__ import annotations

import math
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field, StrictInt

from pipeline.kinds.base import (
    Issues,
    Kind,
    Number,
    Options,
    Pair,
    Terms,
    canonical_number,
    decimal,
    decimal_terms,
    index_issues,
)
from pipeline.kinds.forms import BitArray, Qubo, assemble

if TYPE_CHECKING:
    from ortools.sat.python import cp_model


class MaxCutSpec(Options):
    kind: Literal["maxcut"]
    n: StrictInt = Field(ge=1)
    edges: list[Annotated[list[Number], Field(min_length=2, max_length=3)]]


def _weight(edge: list[int | float]) -> int | float:
    return edge[2] if len(edge) == 3 else 1


class MaxCut(Kind[MaxCutSpec]):
    """Edges ``[u, v, w?]`` (``w`` defaults to 1); the sense is always max."""

    def n_variables(self, spec: MaxCutSpec) -> int:
        return spec.n

    def content(self, spec: MaxCutSpec) -> dict[str, Any]:
        edges = sorted(
            (min(int(e[0]), int(e[1])), max(int(e[0]), int(e[1])), canonical_number(_weight(e)))
            for e in spec.edges
        )
        return {"n": spec.n, "edges": [list(e) for e in edges]}

    def term_issues(self, spec: MaxCutSpec, max_terms: int) -> Issues:
        if len(spec.edges) > max_terms:
            return [("edges", f"{len(spec.edges)} edges is over the limit of {max_terms}")]
        issues: Issues = []
        seen: dict[tuple[int, int], int] = {}
        for index, edge in enumerate(spec.edges):
            issues += index_issues(f"edges.{index}", edge[:2], spec.n)
            if len(edge) == 3 and not math.isfinite(edge[2]):
                issues.append((f"edges.{index}.2", "weight must be a finite number"))
            u, v = edge[0], edge[1]
            if u == v:
                issues.append((f"edges.{index}", f"self-loop on node {u}"))
                continue
            pair = (int(min(u, v)), int(max(u, v)))
            if pair in seen:
                issues.append(
                    (f"edges.{index}", f"duplicate edge {pair}, first given as edges.{seen[pair]}")
                )
            seen.setdefault(pair, index)
        return issues

    def magnitudes(self, spec: MaxCutSpec) -> list[tuple[str, npt.ArrayLike]]:
        return [("edges.{}.2", [_weight(edge) for edge in spec.edges])]

    def sense(self, spec: MaxCutSpec) -> str:
        return "max"

    def objective_qubo(self, spec: MaxCutSpec) -> Qubo:
        """cut(x) = sum_w w (x_u + x_v - 2 x_u x_v)."""
        linear = np.zeros(spec.n)
        quad: dict[tuple[int, int], float] = {}
        for edge in spec.edges:
            u, v = sorted((int(edge[0]), int(edge[1])))
            w = float(_weight(edge))
            linear[u] += w
            linear[v] += w
            quad[(u, v)] = quad.get((u, v), 0.0) - 2.0 * w
        return assemble(spec.n, linear, quad, 0.0, "max")

    def cpsat_terms(self, spec: MaxCutSpec) -> Terms:
        """Minus each edge's weight on its cut variable: minimise the negated cut."""

        def fill(linear: dict[int, Decimal], pairs: dict[Pair, Decimal]) -> None:
            for edge in spec.edges:
                u, v = sorted((int(edge[0]), int(edge[1])))
                if u != v:
                    pairs[(u, v)] = pairs.get((u, v), Decimal(0)) - decimal(_weight(edge))

        return decimal_terms(fill)

    def cpsat_link(
        self,
        spec: MaxCutSpec,
        model: cp_model.CpModel,
        x: list[cp_model.IntVar],
        pairs: Mapping[Pair, int],
    ) -> dict[Pair, cp_model.IntVar]:
        """One cut variable per weighted edge, ``y = x_u XOR x_v`` as four linear constraints,
        and ``x_0 = 0``: a cut and its complement are the same cut. Product terms are
        10-300x slower; ``add_bool_xor`` proves the same but slightly slower; dropping the
        two constraints the objective does not need makes CP-SAT much slower."""
        cut: dict[Pair, cp_model.IntVar] = {}
        for (i, j), weight in pairs.items():
            if weight == 0:
                continue
            y = model.new_bool_var(f"y{i}_{j}")
            model.add(y <= x[i] + x[j])
            model.add(y <= 2 - x[i] - x[j])
            model.add(y >= x[i] - x[j])
            model.add(y >= x[j] - x[i])
            cut[(i, j)] = y
        model.add(x[0] == 0)
        return cut

    def cpsat_hint(
        self, bits: BitArray, pairs: Mapping[Pair, cp_model.IntVar]
    ) -> tuple[BitArray, dict[Pair, int]]:
        if bits[0]:
            bits = (1 - bits).astype(np.int8)  # the model fixes x_0 = 0
        return bits, {(i, j): int(bits[i] ^ bits[j]) for i, j in pairs}


KIND = MaxCut(name="maxcut", spec_type=MaxCutSpec, size_field="n")
