"""The run's vocabulary, each word defined once: the routes a batch takes, the paths that
answer it, the roles of its tasks, and the states a problem passes through.

String enums, so the values stored in Parquet, the intake and logs stay the plain words
they always were ("quantum", "completed", ...), while the code compares members, not
strings, and a typo is an AttributeError instead of a silent mismatch.
"""

from __future__ import annotations

from enum import StrEnum


class Route(StrEnum):
    """The route a batch is decided onto (once, at routing)."""

    QUANTUM = "quantum"
    CLASSICAL = "classical"


class SolverPath(StrEnum):
    """What answered: a quantum device, a simulator of one, or the classical solver."""

    QPU = "qpu"
    SIMULATOR = "simulator"
    CLASSICAL = "classical"


class TaskRole(StrEnum):
    """Why a task was sent: the batch's own route, the CP-SAT reference a quantum answer is
    judged by, or the CP-SAT answer to a quantum problem that fell back."""

    QUANTUM = "quantum"
    CLASSICAL = "classical"
    REFERENCE = "reference"
    FALLBACK = "fallback"


class State(StrEnum):
    """A problem's lifecycle: queued, held by a run (claimed -> running), then final."""

    QUEUED = "queued"
    CLAIMED = "claimed"
    COMPILED = "compiled"
    SUBMITTED = "submitted"
    RUNNING = "running"
    COMPLETED = "completed"
    DEGRADED = "degraded"
    FAILED = "failed"


ACTIVE_STATES = (State.CLAIMED, State.COMPILED, State.SUBMITTED, State.RUNNING)
FINAL_STATES = (State.COMPLETED, State.DEGRADED, State.FAILED)


class RefineMode(StrEnum):
    """How much a problem that follows its class's pilots refines (``quantum.refine``)."""

    AUTO = "auto"  # nothing where the pilots showed transfer loses little, else what it warrants
    ALWAYS = "always"  # at least a line search along the gammas
    NEVER = "never"  # nothing: the class's angles as they are


class BackendFamily(StrEnum):
    """A backend spec's name, before any ':' (``aer-noisy:fake_torino``); ``[backends.<name>]``
    tables are keyed by it."""

    AER = "aer"
    AER_NOISY = "aer-noisy"
    BRAKET = "braket"
    BRAKET_LOCAL = "braket-local"
    FAULTY = "faulty"
    IBM = "ibm"
