"""The canary's words: the problem kinds it may be limited to, how a canary row ended, and
the verdict on a candidate backend.

Candidates for :mod:`pipeline.vocabulary` (``ProblemKind`` above all, which the kinds'
registry could check itself against); kept here until that module takes them.
"""

from __future__ import annotations

from enum import StrEnum


class ProblemKind(StrEnum):
    """The kinds a problem may be (``pipeline.kinds.KINDS``; a test keeps the two equal)."""

    MAXCUT = "maxcut"
    QUBO = "qubo"
    PORTFOLIO = "portfolio"


class CanaryStatus(StrEnum):
    """How a problem's canary sample ended: answered on the candidate, or not (why: the
    row's ``error``)."""

    OK = "ok"
    FAILED = "failed"


class Verdict(StrEnum):
    """Whether a candidate backend agrees with the main one (``qhopper canary``)."""

    AGREES = "AGREES"
    DISAGREES = "DISAGREES"
    TOO_FEW_SAMPLES = "TOO FEW SAMPLES"
