"""The answers a request can end with short of success: one exception type carrying the status,
JSON body and headers, so every refusal (bad input, a limit, a missing token) is a 4xx or a
503 with a body that says why, wherever in the request it was decided."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ApiError(Exception):
    """A 4xx (or 503) answer: its status, JSON body and headers."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


def error(status: int, message: str, **headers: str) -> ApiError:
    return ApiError(status, {"error": message}, dict(headers))


def invalid(record: str, field_name: str, message: str) -> ApiError:
    return ApiError(422, {"errors": [{"record": record, "field": field_name, "message": message}]})
