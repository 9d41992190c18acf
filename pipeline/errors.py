"""The one error tree of qhopper.

    QhopperError
    ├── InputRejected          bad input; carries every InputIssue (file, record, field)
    ├── KeyConflict            a key that already names other content; carries every Conflict
    ├── ConfigError            an unreadable or inconsistent configuration
    ├── BackendError           anything a quantum backend raised, mapped at its boundary
    │   ├── TransientBackendError   worth retrying (timeouts, rate limits, network, 5xx, queue full)
    │   │   ├── BackendTimeout          a job stayed queued or ran past its configured timeout
    │   │   └── BackendUnavailable      the provider is down (outage, 503, circuit breaker open)
    │   └── PermanentBackendError   never retried (invalid circuit, unsupported target, auth)
    └── FallbackRequired       quantum work stopped on purpose; the batch goes to CP-SAT
        ├── BudgetExhausted         the next attempt would spend more than the batch was allotted
        └── DeadlineExceeded        the next attempt could not finish before the batch's deadline

Errors of the libraries underneath are mapped onto this tree in one place per
boundary (``raise ... from exc``), so callers decide on retries by type alone: the
quantum backends' boundary is :func:`pipeline.backends.base.translate_error`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class QhopperError(Exception):
    """Base of every error qhopper raises on purpose."""


@dataclass(frozen=True)
class InputIssue:
    """One thing wrong with one record: where it is and what is wrong."""

    file: str
    record: str  # "line 7", "record 3" or "file"
    field: str  # dotted path inside the record, "" for the record as a whole
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.record}"
        if self.field:
            where += f": field '{self.field}'"
        return f"{where}: {self.message}"


class InputRejected(QhopperError):
    """Raised when input is invalid; nothing has been enqueued. ``more_issues``: issues found
    past the ones listed (a file keeps its first ones only), counted."""

    def __init__(self, issues: list[InputIssue], more_issues: int = 0) -> None:
        self.issues = issues
        self.more_issues = more_issues
        more = [f"and {more_issues} more issue(s), not listed"] if more_issues else []
        super().__init__("\n".join([*(str(issue) for issue in issues), *more]))


class ConflictReason(Enum):
    """Why a key cannot be reused: as a phrase that ends a sentence about it."""

    CONTENT = "its content differs"
    TENANT = "it belongs to another tenant"


@dataclass(frozen=True)
class Conflict:
    """One submitted problem whose key already names another problem.

    ``index`` is its position in the submission. The key names ``problem_id`` (stored
    before), or the problem at ``first_index`` of this same submission.
    """

    index: int
    key: str
    reason: ConflictReason
    problem_id: str | None = None
    first_index: int | None = None


class KeyConflict(QhopperError):
    """The same key with different content (or another tenant): refused, nothing enqueued.

    Answering with the first problem's id instead would hand the caller another problem's
    answer as its own; the HTTP service answers 409, ``qhopper submit`` exits 2.
    """

    def __init__(self, conflicts: list[Conflict]) -> None:
        self.conflicts = conflicts
        super().__init__(
            "; ".join(
                f"key {c.key!r} already names a problem and {c.reason.value}" for c in conflicts
            )
        )


class ConfigError(QhopperError):
    """Configuration that cannot be used as written."""


class ServiceUnavailable(QhopperError):
    """A service qhopper depends on (the intake database) cannot be reached or opened now.

    Raised at the first connection with one line naming where it looked (host:port/database
    or the database file) and why it failed (refused, timed out, no such database, ...).
    """


class BackendError(QhopperError):
    """A quantum backend failed; subclasses say whether a retry can help."""


class TransientBackendError(BackendError):
    """A failure that may pass: retry with backoff, within the bound."""


class PermanentBackendError(BackendError):
    """A failure that will repeat: never retried, the batch falls back at once."""


class BackendTimeout(TransientBackendError):
    """A job waited in the queue or ran longer than its configured timeout; it was cancelled."""


class BackendUnavailable(TransientBackendError):
    """The provider does not take work now: an outage, a 503, or our circuit breaker is open."""


class FallbackRequired(QhopperError):
    """Quantum work was stopped by policy, not by a failure; the batch falls back to CP-SAT."""


class BudgetExhausted(FallbackRequired):
    """Spending more on this batch would exceed the budget it was allotted at routing."""


class DeadlineExceeded(FallbackRequired):
    """Another attempt could not finish before the batch's deadline."""


class RunTimeout(QhopperError):
    """The run's batches did not all come back within ``dask.run_timeout_s``: the run stops
    cleanly and gives back what it holds, as an interrupted run does."""
