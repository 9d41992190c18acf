"""The routing rule: which problems the quantum backend can take at all.

Economics (cost, deadlines, budgets) are decided per batch; this first rule decides per
problem on what is never negotiable: the submitter's explicit route and the backend's
size limit. The decision carries a sentence saying why, which is stored with the batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pipeline.fallback import Fallback, FallbackCode

RouteName = Literal["quantum", "classical"]


@dataclass(frozen=True)
class RouteDecision:
    route: RouteName
    reason: str
    fallback: Fallback | None  # set when the submitter asked for quantum and cannot have it


def route_problem(
    requested: str, n_qubits: int, backend: str, why_not: str | None
) -> RouteDecision:
    """``why_not`` is the backend's own sentence for a problem it cannot take, or None."""
    if requested == "classical":
        return RouteDecision("classical", "classical route requested by the submitter", None)
    if why_not is not None:
        fallback = Fallback(FallbackCode.QUBIT_LIMIT, why_not) if requested == "quantum" else None
        return RouteDecision("classical", why_not, fallback)
    return RouteDecision("quantum", f"fits {backend} ({n_qubits} qubits)", None)
