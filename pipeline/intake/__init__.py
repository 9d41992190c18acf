"""The intake queue: a real database (SQLite by default, PostgreSQL by URL) via SQLAlchemy.

What it guarantees:
- submission is idempotent by key (``INSERT .. ON CONFLICT DO NOTHING``), all-or-nothing
  per call;
- a claim is one atomic ``UPDATE .. WHERE id IN (SELECT .. [FOR UPDATE SKIP LOCKED])
  RETURNING``, so two runs never hold the same problem; claims carry a lease and
  count attempts; a problem whose lease expired, or whose holder is a process of this host
  that no longer exists, is claimable again;
- results are journalled (:mod:`pipeline.intake.journal`), so recovery after a crash can
  roll a batch forward or abandon it (one decision per batch, whoever makes it) and every
  problem ends with exactly one result row;
  every claim bumps the problem's epoch (fencing token), and a batch finalises only the
  problems whose epoch has not moved since it was journalled;
- lease times are the database's clock (SQLite's ``strftime('now')``, PostgreSQL's
  ``clock_timestamp()`` in UTC), so clients with skewed clocks agree on expiry;
- SQLite commits are synced (WAL, ``synchronous=FULL``): acknowledged means durable.
Every state change is also appended to ``problem_events`` with its time.

Modules: ``schema`` (tables, state names), ``database`` (URL validation, engines, first
connection), ``leases`` (host identity, process liveness, LeaseKeeper), ``queue``
(IntakeStore), ``journal`` (ResultJournal), ``enqueue`` (submission), ``requeue``, ``types``
(the records it takes and gives).
"""

from pipeline.intake.database import create_intake_engine
from pipeline.intake.journal import BatchState, ResultJournal
from pipeline.intake.leases import LeaseKeeper, host_identity, process_alive
from pipeline.intake.queue import IntakeStore
from pipeline.intake.requeue import RequeueOutcome, RequeueSelection
from pipeline.intake.schema import (
    CLAIMED,
    COMPILED,
    COMPLETED,
    DEGRADED,
    FAILED,
    QUEUED,
    RUNNING,
    STATES,
    SUBMITTED,
    batch_problems,
    new_id,
    problem_events,
    problems,
    result_batches,
    utcnow,
)
from pipeline.intake.types import ClaimedProblem, Move, ProblemOutcome, SubmitOutcome
from pipeline.vocabulary import ACTIVE_STATES, FINAL_STATES

__all__ = [
    "ACTIVE_STATES",
    "CLAIMED",
    "COMPILED",
    "COMPLETED",
    "DEGRADED",
    "FAILED",
    "FINAL_STATES",
    "QUEUED",
    "RUNNING",
    "STATES",
    "SUBMITTED",
    "BatchState",
    "ClaimedProblem",
    "IntakeStore",
    "LeaseKeeper",
    "Move",
    "ProblemOutcome",
    "RequeueOutcome",
    "RequeueSelection",
    "ResultJournal",
    "SubmitOutcome",
    "batch_problems",
    "create_intake_engine",
    "host_identity",
    "new_id",
    "problem_events",
    "problems",
    "process_alive",
    "result_batches",
    "utcnow",
]
