"""Pilots once per class per run: the class's first chunk runs them, the rest follow.

A batch's chunks are sized for parallelism; what its problems learn from each other must
not depend on that. So the run's first chunk of an angle class is cut down to the class's
pilots alone and goes first; every other chunk of the class, of this batch or a later one
or wave, waits here until the pilots are back and then starts from what they found
(:class:`~pipeline.qaoa.angles.ClassAngles`, set on its plan as ``shared``), spending only
what the loss they measured warrants. A class whose library entries already hold
``confirm_problems`` problems with a small measured loss needs one pilot (it checks the
entry on this run's problems); ``refine = "never"`` with any entry needs none.

Across runs on one intake, the pilots of a class new to the library run in one run at a
time: the others wait (``pilot_wait_s``) for its finding and follow it.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from batching.batches import PlannedProblem
from pipeline.config import QuantumSettings
from pipeline.qaoa.angle_store import AngleLibrary
from pipeline.qaoa.angles import AnglePlan, ClassAngles
from pipeline.qaoa.findings import Findings
from pipeline.qaoa.starts import PILOTS
from pipeline.qaoa.transfer import FAR_OFF
from pipeline.vocabulary import RefineMode

log = logging.getLogger("qhopper.dispatch")
Chunk = tuple[PlannedProblem, ...]


@dataclass(frozen=True)
class Admitted:
    """A batch's chunks as they may go now (each with its plan) and those that wait."""

    now: list[tuple[Chunk, AnglePlan]]
    held: list[Chunk]
    piloting: bool = False  # the first chunk of ``now`` is the class's pilots


@dataclass
class _Class:
    """One class's state in this run."""

    found: ClassAngles | None = None
    shape: str | None = None  # the shape its pilots ran on (None: found by another run)
    flying: bool = False
    leased: bool = False
    off: bool = False  # its pilots failed: every chunk runs pilots of its own
    confirmed: bool | None = None  # read from the library once a run (None: not yet)


@dataclass
class PilotBoard:
    """The run's classes: whose pilots are out, what they found, which chunks wait."""

    run_id: str
    settings: QuantumSettings
    library: AngleLibrary | None
    findings: Findings | None
    classes: dict[str, _Class] = field(default_factory=lambda: defaultdict(_Class))

    def admit(self, plan: AnglePlan, shape: str, chunks: Sequence[Chunk]) -> Admitted:
        """Which of a batch's chunks go now, with what plan, and which wait for pilots."""
        state = self.classes[plan.class_key]
        if state.off:
            return Admitted([(c, plan) for c in chunks], [])
        if state.flying:
            return Admitted([], list(chunks))
        if state.found is None:
            state.found = self._known(plan, state)
        if state.found is not None:
            follow = self._follower(plan, state, shape)
            return Admitted([(c, follow) for c in chunks], [])
        return self._pilot(plan, state, chunks)

    def found(self, plan: AnglePlan, shape: str, learned: ClassAngles | None, pilots: int) -> bool:
        """The pilots are back: whether the class's waiting chunks follow them (False: they
        failed, and each waiting chunk runs pilots of its own)."""
        state = self.classes[plan.class_key]
        state.flying = False
        if learned is None:
            state.off = True
        else:
            loss = learned.loss
            if pilots < 2:  # one pilot measures no transfer: the class's record says
                loss = self._recorded_loss(plan.class_key)
            state.found = dataclasses.replace(learned, loss=loss)
            state.shape = shape
            self._record(plan.class_key, learned, pilots)
        if state.leased and self.findings is not None:
            self.findings.release(plan.class_key, self.run_id)
            state.leased = False
        return state.found is not None

    def follow(self, plan: AnglePlan, shape: str) -> AnglePlan:
        """The plan of a waiting chunk of the class (its own batch's plan and shape) once
        its pilots are back; as it is where they failed."""
        state = self.classes[plan.class_key]
        if state.found is None:
            return plan
        return self._follower(plan, state, shape)

    def close(self) -> None:
        """Give back the pilot leases this run still holds (its pilots never came back)."""
        if self.findings is None:
            return
        for class_key, state in self.classes.items():
            if state.leased:
                self.findings.release(class_key, self.run_id)
                state.leased = False

    def _pilot(self, plan: AnglePlan, state: _Class, chunks: Sequence[Chunk]) -> Admitted:
        """This run pilots the class: its first problems alone, the rest held (a batch no
        larger than its pilots is all pilots, and later batches of the class follow it)."""
        problems = [p for chunk in chunks for p in chunk]
        pilots = min(self._pilots(plan), len(problems))
        state.flying = True
        first = chunks[0][pilots:]
        held = [first, *chunks[1:]] if first else list(chunks[1:])
        pilot_plan = dataclasses.replace(plan, warm_pilots=pilots)
        return Admitted([(tuple(problems[:pilots]), pilot_plan)], held, piloting=True)

    def _pilots(self, plan: AnglePlan) -> int:
        """One pilot checks a confirmed entry; published angles or a young entry take the
        plan's (two: enough to measure transfer); the grid its three."""
        if not plan.candidates:
            return PILOTS
        if plan.refined and self._confirmed(plan.class_key, self.classes[plan.class_key]):
            return 1
        return plan.warm_pilots

    def _known(self, plan: AnglePlan, state: _Class) -> ClassAngles | None:
        """Angles the class may follow without pilots of this run: with ``never``, its
        library entry as it is; a class new to the library whose pilots another run is
        running: their finding, once recorded (within ``pilot_wait_s``)."""
        if plan.refine is RefineMode.NEVER and plan.refined:
            entry = plan.candidates[0]
            return ClassAngles(entry.gammas, entry.betas, (), 0.0)
        if plan.refined or self.findings is None:
            return None
        earlier = self.findings.latest(plan.class_key)  # recorded before its library entry
        if earlier is not None:
            return earlier
        # A lease lasts as long as a run waits for it: a slow or dead holder is overtaken.
        since = self.findings.take_lease(plan.class_key, self.run_id, self.settings.pilot_wait_s)
        if since is None:
            state.leased = True
            return None
        log.info("class %s: waiting for another run's pilots", plan.class_key)
        return self.findings.wait(plan.class_key, since, self.settings.pilot_wait_s)

    def _follower(self, plan: AnglePlan, state: _Class, shape: str) -> AnglePlan:
        """The plan of a chunk that follows the class's finding. ``auto`` takes it as it is
        only for a confirmed class (an entry that is young, or transfer to another graph of
        the class than the pilots', was not measured well enough): otherwise the chunk
        refines at least a line search (a loss of ``FAR_OFF``)."""
        found = state.found
        assert found is not None
        measured = state.shape == shape and self._confirmed(plan.class_key, state)
        if not measured and plan.refine is not RefineMode.NEVER:
            found = dataclasses.replace(found, loss=max(found.loss, FAR_OFF))
        return dataclasses.replace(plan, shared=found)

    def _confirmed(self, class_key: str, state: _Class) -> bool:
        """Whether the library holds ``confirm_problems`` of the class's problems and its
        last measuring pilots found a loss under ``free_loss``: read once a run, so every
        chunk of the class is decided alike and dispatch queries the library once."""
        if state.confirmed is None:
            problems = (
                0
                if self.library is None
                else sum(e.problems for e in self.library.entries(class_key))
            )
            state.confirmed = problems >= self.settings.confirm_problems and (
                self._recorded_loss(class_key) <= self.settings.free_loss
            )
        return state.confirmed

    def _recorded_loss(self, class_key: str) -> float:
        """The loss the class's last measuring pilots found (inf: none measured one)."""
        if self.findings is None:
            return float("inf")
        found = self.findings.latest(class_key)
        return found.loss if found is not None else float("inf")

    def _record(self, class_key: str, learned: ClassAngles, pilots: int) -> None:
        if self.findings is not None and pilots >= 2:
            self.findings.add(class_key, learned, pilots, self.run_id)
