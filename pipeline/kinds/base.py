"""What every problem kind shares, and the interface each kind implements.

A kind is one module in this package that defines ``KIND``, an instance of a
:class:`Kind` subclass, and is listed once in ``pipeline/kinds/__init__.py``. The kind
owns everything that differs between problem kinds, so no other code branches on them:

* ``spec_type``: its pydantic spec model (a subclass of :class:`Options`);
* ``n_variables`` and ``content``: its size and its canonical content (what keys hash);
* ``term_issues``: the semantic checks pydantic's types cannot express;
* ``magnitudes``: every coefficient's size and field, which keep the objective finite;
* ``objective_qubo`` (the true objective as a QUBO, in the problem's own sense and
  units), ``quantum_qubo`` (with constraint penalties) and ``cardinality``;
* ``cpsat_terms``, ``cpsat_link`` and ``cpsat_hint``: its CP-SAT model specifics;
* ``heuristic_start``: a cheap feasible start for CP-SAT's hint.
"""

from __future__ import annotations

import math
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Context, Decimal, Inexact, localcontext
from typing import TYPE_CHECKING, Annotated, Any, Generic, Literal, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError

from pipeline.kinds.forms import BitArray, Qubo
from pipeline.timebounds import utc_issue

if TYPE_CHECKING:
    from ortools.sat.python import cp_model

Route = Literal["auto", "quantum", "classical"]
Pair = tuple[int, int]
Issues = list[tuple[str, str]]  # (field path, message) pairs
KEY_MAX_LENGTH = 200
DEFAULT_TENANT = "default"  # the tenant of a problem that names none (every CLI submission)
# The most the absolute coefficients of an objective (offset included) may add up to: every
# value computed from them (objectives, Ising weights, penalties times n^2) then stays finite
# with 58 orders of magnitude to spare. 1e308 weights made NaN objectives marked completed.
MAX_MAGNITUDE = 1e250
_TYPE_ERRORS = frozenset({"int_type", "float_type"})
# Decimal arithmetic for CP-SAT terms: 200 digits, and Inexact says if that ever rounded.
_DECIMALS = Context(prec=200)


def _number(value: Any, handler: ValidatorFunctionWrapHandler) -> int | float:
    """One error per bad number (not one per union member), and no integer a float cannot hold."""
    try:
        number: int | float = handler(value)
    except ValidationError as exc:
        errors = exc.errors()
        pick = next((e for e in errors if e["type"] not in _TYPE_ERRORS), errors[-1])
        raise PydanticCustomError(pick["type"], pick["msg"]) from None
    if isinstance(number, int) and abs(number) > sys.float_info.max:
        raise PydanticCustomError(
            "finite_number", "Input should be a finite number (too large for a float)"
        )
    return number


Number = Annotated[StrictInt | StrictFloat, WrapValidator(_number)]


def _deadline(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    """ISO-8601 text with a time zone (a datetime from Python code), within UTC's years.

    Not a number: pydantic would read one as Unix seconds or milliseconds, whichever fits.
    """
    if not isinstance(value, str | datetime):
        raise PydanticCustomError(
            "deadline_type",
            "must be an ISO-8601 date and time with a time zone, e.g. 2026-01-31T12:00:00Z",
        )
    when: datetime = handler(value)
    issue = utc_issue(when)
    if issue is not None:
        raise PydanticCustomError("deadline_range", issue)
    return when


Deadline = Annotated[AwareDatetime, WrapValidator(_deadline)]


class Options(BaseModel):
    """Fields every problem may carry besides its data; each kind's spec extends this."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    key: Annotated[str, Field(min_length=1, max_length=KEY_MAX_LENGTH)] | None = None
    priority: StrictInt = Field(default=0, ge=-1_000_000, le=1_000_000)
    deadline: Deadline | None = None
    route: Route = "auto"
    tenant: Annotated[str, Field(min_length=1, max_length=100)] = DEFAULT_TENANT
    reps: StrictInt | None = Field(default=None, ge=1, le=10)
    shots: StrictInt | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("key", "tenant")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must contain printable characters only (no control characters)")
        return value


OPTION_FIELDS = frozenset(Options.model_fields)
S = TypeVar("S", bound=Options)


def canonical_number(value: float) -> int | float:
    """Integral numbers as ints, so 1 and 1.0 hash alike."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def decimal(value: float) -> Decimal:
    """A number as the decimal it prints as: what the submitter wrote."""
    return Decimal(value) if isinstance(value, int) else Decimal(repr(float(value)))


def index_issues(field: str, indices: list[Any], n: int) -> Issues:
    """Indices that are not integers in 0..n-1, named by position within ``field``."""
    issues = []
    for position, index in enumerate(indices):
        if not isinstance(index, int) or isinstance(index, bool):
            issues.append((f"{field}.{position}", f"index must be an integer, got {index!r}"))
        elif not 0 <= index < n:
            issues.append((f"{field}.{position}", f"index {index} is out of range 0..{n - 1}"))
    return issues


@dataclass(frozen=True)
class Terms:
    """An objective to MINIMISE as exact decimals: linear terms and pair terms (i < j).

    Pair terms weigh the kind's pair variables (see :meth:`Kind.cpsat_link`). ``exact`` is
    False if the decimal arithmetic ever rounded, so CP-SAT's optimum proves nothing.
    """

    linear: dict[int, Decimal]
    pairs: dict[Pair, Decimal]
    exact: bool


def decimal_terms(fill: Callable[[dict[int, Decimal], dict[Pair, Decimal]], None]) -> Terms:
    """Run ``fill`` on empty term maps at 200 digits, noting whether anything rounded."""
    linear: dict[int, Decimal] = {}
    pairs: dict[Pair, Decimal] = {}
    with localcontext(_DECIMALS) as context:  # a copy: flags start clear every time
        fill(linear, pairs)
        exact = not context.flags[Inexact]
    return Terms(linear, pairs, exact)


@dataclass(frozen=True)
class Kind(ABC, Generic[S]):
    """One problem kind: see the module docstring for what a new kind must provide."""

    name: str
    spec_type: type[S]
    size_field: str  # the field named when a spec has more variables than allowed

    @abstractmethod
    def n_variables(self, spec: S) -> int:
        """How many 0/1 variables the problem has."""

    @abstractmethod
    def content(self, spec: S) -> dict[str, Any]:
        """The problem's data fields in one fixed form (sorted, integral numbers as ints)."""

    @abstractmethod
    def term_issues(self, spec: S, max_terms: int) -> Issues:
        """Semantic problems of a spec already within the variable limit; empty if valid."""

    @abstractmethod
    def magnitudes(self, spec: S) -> list[tuple[str, npt.ArrayLike]]:
        """The objective's coefficients, offset included, by field: (a field path with a
        ``{}`` per index of the array, the coefficients as they weigh in the objective)."""

    def magnitude_issues(self, spec: S) -> Issues:
        """The field of the largest coefficient, when together they could overflow the objective."""
        total, largest, field = 0.0, -1.0, ""
        with np.errstate(over="ignore"):  # an overflow makes inf, which is over the limit too
            for path, values in self.magnitudes(spec):
                sizes = np.abs(np.asarray(values, dtype=np.float64))
                if sizes.size == 0:
                    continue
                total += float(sizes.sum())
                index = np.unravel_index(int(np.argmax(sizes)), sizes.shape)
                if sizes[index] > largest:
                    largest, field = float(sizes[index]), path.format(*index)
        if total <= MAX_MAGNITUDE:
            return []
        amount = f"{total:.3g}" if math.isfinite(total) else "more than a float can hold"
        return [
            (
                field,
                f"the objective's coefficients add up to {amount} in absolute value, over the "
                f"limit of {MAX_MAGNITUDE:.0e} (its value could overflow); this is the largest",
            )
        ]

    @abstractmethod
    def sense(self, spec: S) -> str:
        """'min' or 'max': the sense of the problem's own objective."""

    @abstractmethod
    def objective_qubo(self, spec: S) -> Qubo:
        """The problem's own objective (no penalties), in its own sense and units."""

    def quantum_qubo(self, spec: S, objective: Qubo) -> Qubo:
        """The QUBO the quantum path samples: ``objective`` (the objective QUBO) plus
        constraint penalties; an unconstrained kind samples ``objective`` itself."""
        return objective

    def cardinality(self, spec: S) -> int | None:
        """``sum(x)`` every feasible answer must have, or None when unconstrained."""
        return None

    @abstractmethod
    def cpsat_terms(self, spec: S) -> Terms:
        """The objective to minimise, as exact decimals (a max problem is negated)."""

    @abstractmethod
    def cpsat_link(
        self,
        spec: S,
        model: cp_model.CpModel,
        x: list[cp_model.IntVar],
        pairs: Mapping[Pair, int],
    ) -> dict[Pair, cp_model.IntVar]:
        """Create the pair variables ``pairs`` weigh, tied to ``x``, and any hard constraints.

        Returns the pair variables; a pair with no variable must weigh nothing.
        """

    @abstractmethod
    def cpsat_hint(
        self, bits: BitArray, pairs: Mapping[Pair, cp_model.IntVar]
    ) -> tuple[BitArray, dict[Pair, int]]:
        """Values of ``x`` and the pair variables for a start ``bits``, obeying the model."""

    def heuristic_start(self, spec: S, qubo: Qubo) -> BitArray:
        """A feasible start from ``qubo`` (the objective): here a 1-flip descent."""
        return one_flip_descent(qubo)


def one_flip_descent(qubo: Qubo) -> BitArray:
    """Flip the best improving bit until none improves: a local optimum in O(n^2) steps."""
    linear, matrix = qubo.minimisation_form()
    n = len(linear)
    bits = np.zeros(n, dtype=np.int8)
    field = linear.copy()  # change in the minimised objective from setting x_i = 1
    for _ in range(10 * n):
        gains = np.where(bits == 1, -field, field)  # change from flipping each bit
        best = int(np.argmin(gains))
        if gains[best] >= 0:
            break
        field += (1 - 2 * int(bits[best])) * matrix[best]
        bits[best] ^= 1
    return bits
