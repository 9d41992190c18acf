"""Parquet schemas derived from the typed records, in one place.

A field's Arrow type follows its annotation (str or a string enum, int, float, bool,
datetime, a tuple of floats); ``arrow(type, default)`` pins another (an int32 count, say). Adding a column is
adding a field to a record.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from functools import cache
from typing import Any

import pyarrow as pa

SCHEMA_VERSION = 2
TIMESTAMP = pa.timestamp("us", tz="UTC")
_MISSING: Any = dataclasses.MISSING
_BASIC: dict[Any, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime: TIMESTAMP,
    tuple[float, ...]: pa.list_(pa.float64()),
}


def arrow(data_type: pa.DataType, default: Any = _MISSING) -> Any:
    """A dataclass field stored as ``data_type`` (with ``default``, if given)."""
    return dataclasses.field(default=default, metadata={"arrow": data_type})


@cache
def schema_of(record: type) -> pa.Schema:
    """The Arrow schema of a record class: one nullable column per field, in order."""
    hints = typing.get_type_hints(record)
    columns = []
    for item in dataclasses.fields(record):
        data_type = item.metadata.get("arrow") or _BASIC[_basic(hints[item.name])]
        columns.append(pa.field(item.name, data_type))
    return pa.schema(columns)


def _basic(hint: Any) -> Any:
    """The plain type behind ``hint``: ``X | None`` is X, a string enum is str."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
    if isinstance(hint, type) and issubclass(hint, StrEnum):
        return str
    return hint


def to_table(records: Sequence[Any], record: type) -> pa.Table:
    """Records of one class as an Arrow table with that class's schema."""
    schema = schema_of(record)
    columns = {name: [getattr(r, name) for r in records] for name in schema.names}
    return pa.Table.from_pydict(columns, schema=schema)
