"""Problem specifications as users submit them, validated and canonicalised.

A spec is immutable once built. Its canonical content (sorted edges, integral
numbers as integers, fixed key order) is what the default idempotency key hashes,
so the same problem written two ways enqueues once.
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
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

Route = Literal["auto", "quantum", "classical"]
Kind = Literal["maxcut", "qubo", "portfolio"]
_TYPE_ERRORS = frozenset({"int_type", "float_type"})


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
KEY_MAX_LENGTH = 200


class _Options(BaseModel):
    """Fields every problem may carry besides its data."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    key: Annotated[str, Field(min_length=1, max_length=KEY_MAX_LENGTH)] | None = None
    priority: StrictInt = Field(default=0, ge=-1_000_000, le=1_000_000)
    deadline: AwareDatetime | None = None
    route: Route = "auto"
    tenant: Annotated[str, Field(min_length=1, max_length=100)] = "default"
    reps: StrictInt | None = Field(default=None, ge=1, le=10)
    shots: StrictInt | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("key", "tenant")
    @classmethod
    def _printable(cls, value: str | None) -> str | None:
        if value is not None and not value.isprintable():
            raise ValueError("must contain printable characters only (no control characters)")
        return value


class MaxCutSpec(_Options):
    kind: Literal["maxcut"]
    n: StrictInt = Field(ge=1)
    edges: list[Annotated[list[Number], Field(min_length=2, max_length=3)]]


class QuboSpec(_Options):
    kind: Literal["qubo"]
    n: StrictInt = Field(ge=1)
    linear: list[Annotated[list[Number], Field(min_length=2, max_length=2)]] = []
    quadratic: list[Annotated[list[Number], Field(min_length=3, max_length=3)]] = []
    offset: Number = 0.0
    sense: Literal["min", "max"] = "min"


class PortfolioSpec(_Options):
    kind: Literal["portfolio"]
    mu: list[Number] = Field(min_length=1)
    sigma: list[list[Number]]
    budget: StrictInt = Field(ge=0)
    risk: Number = Field(ge=0)


ProblemSpec = MaxCutSpec | QuboSpec | PortfolioSpec
SPEC_TYPES: dict[str, type[BaseModel]] = {
    "maxcut": MaxCutSpec,
    "qubo": QuboSpec,
    "portfolio": PortfolioSpec,
}
OPTION_FIELDS = frozenset(_Options.model_fields)
# Options that change the answer are part of the content; scheduling hints are not.
_CONTENT_OPTIONS = ("route", "reps", "shots")


def n_variables(spec: ProblemSpec) -> int:
    return len(spec.mu) if isinstance(spec, PortfolioSpec) else spec.n


def _num(value: float) -> int | float:
    """Integral numbers as ints, so 1 and 1.0 hash alike."""
    return int(value) if float(value).is_integer() and abs(value) < 2**53 else float(value)


def canonical_content(spec: ProblemSpec) -> dict[str, Any]:
    """The problem's content in one fixed form: what the default key hashes."""
    content: dict[str, Any] = {"kind": spec.kind}
    if isinstance(spec, MaxCutSpec):
        edges = sorted(
            (min(int(e[0]), int(e[1])), max(int(e[0]), int(e[1])), _num(e[2] if len(e) == 3 else 1))
            for e in spec.edges
        )
        content |= {"n": spec.n, "edges": [list(e) for e in edges]}
    elif isinstance(spec, QuboSpec):
        linear = sorted((int(i), _num(c)) for i, c in spec.linear)
        quadratic = sorted(
            (min(int(i), int(j)), max(int(i), int(j)), _num(c)) for i, j, c in spec.quadratic
        )
        content |= {
            "n": spec.n,
            "linear": [list(t) for t in linear],
            "quadratic": [list(t) for t in quadratic],
            "offset": _num(spec.offset),
            "sense": spec.sense,
        }
    else:
        content |= {
            "mu": [_num(m) for m in spec.mu],
            "sigma": [[_num(s) for s in row] for row in spec.sigma],
            "budget": spec.budget,
            "risk": _num(spec.risk),
        }
    for option in _CONTENT_OPTIONS:
        value = getattr(spec, option)
        if value is not None and value != "auto":
            content[option] = value
    return content


def canonical_json(spec: ProblemSpec) -> str:
    return json.dumps(canonical_content(spec), sort_keys=True, separators=(",", ":"))


def content_hash(spec: ProblemSpec) -> str:
    return hashlib.sha256(canonical_json(spec).encode()).hexdigest()


def idempotency_key(spec: ProblemSpec) -> str:
    return spec.key or f"sha256:{content_hash(spec)}"


def spec_to_record(spec: ProblemSpec) -> dict[str, Any]:
    """The full spec as JSON-ready data (content plus every option), for the intake store."""
    record = spec.model_dump(mode="json", exclude_none=True)
    record.update(canonical_content(spec))
    return record


def spec_from_record(record: dict[str, Any]) -> ProblemSpec:
    model = SPEC_TYPES[record["kind"]]
    return model.model_validate(record)  # type: ignore[return-value]


def deadline_of(spec: ProblemSpec) -> datetime | None:
    return spec.deadline


def semantic_issues(spec: ProblemSpec, max_variables: int, max_terms: int) -> list[tuple[str, str]]:
    """Checks pydantic's types cannot express: ranges, loops, duplicates, symmetry, sizes.

    Returns (field, message) pairs; an empty list means the spec is valid.
    """
    issues: list[tuple[str, str]] = []
    n = n_variables(spec)
    if n > max_variables:
        issues.append(
            (
                "n" if not isinstance(spec, PortfolioSpec) else "mu",
                f"{n} variables is over the configured limit of {max_variables}",
            )
        )
        return issues
    if isinstance(spec, MaxCutSpec):
        if len(spec.edges) > max_terms:
            issues.append(("edges", f"{len(spec.edges)} edges is over the limit of {max_terms}"))
            return issues
        seen: dict[tuple[int, int], int] = {}
        for index, edge in enumerate(spec.edges):
            issues += _index_issues(f"edges.{index}", edge[:2], n)
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
    elif isinstance(spec, QuboSpec):
        if len(spec.linear) + len(spec.quadratic) > max_terms:
            issues.append(("quadratic", f"more than {max_terms} terms"))
            return issues
        seen_linear: dict[int | float, int] = {}
        for index, (i, _c) in enumerate(spec.linear):
            issues += _index_issues(f"linear.{index}", [i], n)
            if i in seen_linear:
                issues.append(
                    (
                        f"linear.{index}",
                        f"duplicate term for variable {i}, first given as linear.{seen_linear[i]}",
                    )
                )
            seen_linear.setdefault(int(i), index)
        seen_pairs: dict[tuple[int, int], int] = {}
        for index, (i, j, _c) in enumerate(spec.quadratic):
            issues += _index_issues(f"quadratic.{index}", [i, j], n)
            pair = (int(min(i, j)), int(max(i, j)))
            if pair in seen_pairs:
                issues.append(
                    (
                        f"quadratic.{index}",
                        f"duplicate term for pair {pair}, first given as quadratic.{seen_pairs[pair]}",
                    )
                )
            seen_pairs.setdefault(pair, index)
    else:
        if len(spec.sigma) != n:
            issues.append(("sigma", f"has {len(spec.sigma)} rows; mu has {n} entries"))
            return issues
        for row_index, row in enumerate(spec.sigma):
            if len(row) != n:
                issues.append((f"sigma.{row_index}", f"has {len(row)} entries; expected {n}"))
        if issues:
            return issues
        sigma = np.asarray(spec.sigma, dtype=float)
        asymmetric = np.argwhere(~np.isclose(sigma, sigma.T, rtol=1e-9, atol=1e-12))
        for i, j in asymmetric[asymmetric[:, 0] < asymmetric[:, 1]][:10]:
            issues.append(
                (
                    f"sigma.{i}.{j}",
                    f"sigma is not symmetric: sigma[{i}][{j}]={sigma[i, j]} but sigma[{j}][{i}]={sigma[j, i]}",
                )
            )
        if spec.budget > n:
            issues.append(("budget", f"budget {spec.budget} exceeds the {n} assets"))
    return issues


def _index_issues(field: str, indices: list[Any], n: int) -> list[tuple[str, str]]:
    issues = []
    for position, index in enumerate(indices):
        if not isinstance(index, int) or isinstance(index, bool):
            issues.append((f"{field}.{position}", f"index must be an integer, got {index!r}"))
        elif not 0 <= index < n:
            issues.append((f"{field}.{position}", f"index {index} is out of range 0..{n - 1}"))
    return issues
