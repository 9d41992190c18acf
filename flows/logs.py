"""Logs for people or for machines: text lines, or one JSON object per event.

``--log-format json`` (or ``QHOPPER_LOG_FORMAT=json``) turns every log record into one JSON
object: its time, level, logger and message, and the structured fields the run attaches
(run, batch and problem ids, backend, shape, provider job ids, per-stage timings). Fields
are attached with ``extra={"fields": {...}}``; problem payloads (specs, solutions) are never
among them. Both formats mask URL passwords (:mod:`pipeline.redact`), whoever logged them.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from pipeline.redact import redact_text

FORMATS = ("text", "json")


class TextFormatter(logging.Formatter):
    """One line per record, for people; no URL password in it."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line; no URL password in it."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        event.update(getattr(record, "fields", {}))
        if record.exc_info:
            event["error"] = self.formatException(record.exc_info)
        return redact_text(json.dumps(event, default=str))


def configure_logging(log_format: str) -> None:
    """Text: warnings and worse, for people. JSON: every qhopper event, for collectors."""
    handler = logging.StreamHandler(sys.stderr)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        root.setLevel(logging.WARNING)
        logging.getLogger("qhopper").setLevel(logging.INFO)
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.setLevel(logging.WARNING)
