"""Cheap feasible starts: CP-SAT's solution hint, and its answer when it finds nothing better."""

from __future__ import annotations

from pipeline.formulation import Formulation
from pipeline.kinds import kind_of
from pipeline.kinds.forms import BitArray


def start(formulation: Formulation) -> BitArray:
    """The problem kind's heuristic start on the problem's own objective (no penalties)."""
    return kind_of(formulation.spec).heuristic_start(formulation.spec, formulation.objective_qubo)
