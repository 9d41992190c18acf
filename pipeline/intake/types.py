"""What the intake store takes and gives back: small frozen records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SubmitOutcome:
    """One submitted spec: its problem id, its key, and whether this call created it."""

    id: str
    key: str
    created: bool


@dataclass(frozen=True)
class ClaimedProblem:
    """A problem a run now holds. ``epoch`` is its fencing token: it grows with every claim,
    so a batch journalled under an older epoch cannot finalise the problem any more."""

    id: str
    key: str
    spec_json: str
    input_hash: str
    attempts: int
    submitted_at: datetime
    claimed_at: datetime
    epoch: int = 0
    trace_id: str | None = None  # the submitter's W3C trace id, when it sent one
    supersedes: str | None = None  # requeued: the batch of the answer this one replaces


@dataclass(frozen=True)
class Move:
    """Problems to advance together through ``states`` (in order), with one event detail."""

    problem_ids: list[str]
    states: tuple[str, ...]
    detail: str | None = None


@dataclass(frozen=True)
class ProblemOutcome:
    """How one problem of a batch ended: its final state and the path that answered it."""

    problem_id: str
    status: str  # completed | degraded | failed
    route: str | None
    solver_path: str | None
    fallback_reason: str | None = None
