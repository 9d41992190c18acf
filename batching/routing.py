"""The routing rule: which problems the quantum backend can take at all.

Economics (cost, deadlines, budgets) are decided per batch; this first rule decides per
problem on what is never negotiable: the submitter's explicit route and the backend's
qubit limit. The decision carries a sentence saying why, which is stored with the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RouteName = Literal["quantum", "classical"]


@dataclass(frozen=True)
class RouteDecision:
    route: RouteName
    reason: str
    fallback: bool  # True when the submitter asked for quantum and cannot have it


def route_problem(requested: str, n_qubits: int, backend: str, max_qubits: int) -> RouteDecision:
    if requested == "classical":
        return RouteDecision("classical", "classical route requested by the submitter", False)
    if n_qubits > max_qubits:
        reason = f"needs {n_qubits} qubits; backend {backend} takes at most {max_qubits}"
        return RouteDecision("classical", reason, requested == "quantum")
    return RouteDecision("quantum", f"fits {backend} ({n_qubits} of {max_qubits} qubits)", False)
