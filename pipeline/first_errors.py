"""A spec type's validator that stops at the first bad item of every list.

Why: pydantic keeps every error it finds (~0.4 KB each, ~1 KB more once listed), so a 4 MB
record of a million bad edges cost ~1.5 GB before any cap on the issues could drop them.
The readers check large records with this first: what it passes, the spec type's own
validator passes too (the same schema, only stopping sooner), and what it refuses costs a
few errors.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic_core import SchemaValidator


class _Fields:
    """What the validator builds (and nobody uses): a plain class, since given a pydantic
    model class pydantic-core validates with that model's own validator instead."""


@cache
def first_errors(spec_type: type[BaseModel]) -> SchemaValidator:
    """``spec_type``'s validator, stopping at the first bad item of every list."""

    def fail_fast(node: Any) -> Any:
        if isinstance(node, list):
            return [fail_fast(item) for item in node]
        if not isinstance(node, dict):
            return node
        schema = {key: fail_fast(value) for key, value in node.items()}
        if schema.get("type") == "list":
            schema["fail_fast"] = True
        if schema.get("type") == "model":
            schema["cls"] = _Fields
        return schema

    return SchemaValidator(fail_fast(spec_type.__pydantic_core_schema__))
