"""The registry of problem kinds: each kind's name -> the one object that knows it.

Dispatch is exhaustive: :func:`get` and :func:`kind_of` raise :class:`UnknownKindError`
for a name not registered here, and nothing falls through to a default kind.

Adding a kind: write ``pipeline/kinds/<name>.py`` defining its spec model and ``KIND``
(see :mod:`pipeline.kinds.base` for what a kind must provide), add the module to
``_MODULES`` and its spec to ``ProblemSpec`` below, and give it tests. The tests check
that every module here defining ``KIND`` is registered and in ``ProblemSpec``.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any

from pipeline.kinds import maxcut, portfolio, qubo
from pipeline.kinds.base import Kind
from pipeline.kinds.maxcut import MaxCutSpec
from pipeline.kinds.portfolio import PortfolioSpec
from pipeline.kinds.qubo import QuboSpec

_MODULES = (maxcut, qubo, portfolio)
ProblemSpec = MaxCutSpec | QuboSpec | PortfolioSpec

KINDS: MappingProxyType[str, Kind[Any]] = MappingProxyType({m.KIND.name: m.KIND for m in _MODULES})


class UnknownKindError(LookupError):
    """A problem kind no module in :mod:`pipeline.kinds` registers."""

    def __init__(self, name: object) -> None:
        super().__init__(f"unknown problem kind {name!r}; known kinds: {', '.join(KINDS)}")
        self.name = name


def get(name: str) -> Kind[Any]:
    """The kind called ``name``; raises :class:`UnknownKindError` for any other name."""
    try:
        return KINDS[name]
    except (KeyError, TypeError):  # TypeError: an unhashable name from a hostile record
        raise UnknownKindError(name) from None


def kind_of(spec: ProblemSpec) -> Kind[Any]:
    """The kind a spec belongs to."""
    return get(spec.kind)


__all__ = [
    "KINDS",
    "Kind",
    "MaxCutSpec",
    "PortfolioSpec",
    "ProblemSpec",
    "QuboSpec",
    "UnknownKindError",
    "get",
    "kind_of",
]
