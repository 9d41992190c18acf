"""Test-only crash hooks: kill this process at a named point, as abruptly as a power cut.

With ``QHOPPER_CRASH_AT=STAGE:COUNT`` in the environment, :func:`fault_point` SIGKILLs
the process the COUNT-th time it passes ``STAGE``; with ``@MARKER_FILE`` appended only
the first process to create that file dies, so one crash can be injected into a
long-lived service. With ``QHOPPER_PAUSE_AT`` (same syntax) the process SIGSTOPs itself
instead, as a paused VM or a stalled writer would: the frozen-writer test resumes it with
SIGCONT once another run has taken its problems over. The durability tests use both to
stop a run at each of its commit points. Unset, a pass costs one environment lookup. Nothing here patches anything: the
code that owns a commit point calls ``fault_point(stage)`` itself, right before or after
it (the result writer calls ``fault_point("write-before-rename")`` just before its rename).
"""

from __future__ import annotations

import os
import signal

CRASH_STAGES = (
    "claim",
    "compile",
    "execute",
    "journal",
    "write-before-rename",
    "write-after-rename",
    "finish",
)
# A recovery's own points (passed only where a batch is left to settle): between reading a
# dead writer's staged files and deciding its batch, and between deciding and publishing.
RECOVERY_STAGES = ("recover-decide", "recover-publish")
_passes: dict[str, int] = {}


def _target(variable: str = "QHOPPER_CRASH_AT") -> tuple[str, int, str] | None:
    text = os.environ.get(variable)
    if not text:
        return None
    spec, _, marker = text.partition("@")
    stage, _, count = spec.partition(":")
    if stage not in (*CRASH_STAGES, *RECOVERY_STAGES) or not count.isdigit() or int(count) < 1:
        raise ValueError(
            f"{variable}={text!r}: expected STAGE:COUNT[@MARKER_FILE] with STAGE one "
            f"of {', '.join((*CRASH_STAGES, *RECOVERY_STAGES))} and COUNT >= 1"
        )
    return stage, int(count), marker


def fault_point(stage: str) -> None:
    """SIGKILL this process at the COUNT-th pass when ``QHOPPER_CRASH_AT=stage:COUNT``
    (SIGSTOP it when ``QHOPPER_PAUSE_AT=stage:COUNT``).

    No ``finally``, no atexit, no flush runs: what is not on disk is lost.
    """
    for variable, signum in (
        ("QHOPPER_CRASH_AT", signal.SIGKILL),
        ("QHOPPER_PAUSE_AT", signal.SIGSTOP),
    ):
        target = _target(variable)
        if target is None or target[0] != stage:
            continue
        key = f"{variable}:{stage}"
        _passes[key] = _passes.get(key, 0) + 1
        if _passes[key] != target[1]:
            continue
        if target[2]:
            try:
                os.close(os.open(target[2], os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            except FileExistsError:
                continue  # someone already stopped here once
        os.kill(os.getpid(), signum)
