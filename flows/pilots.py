"""Pilots once per class per run: the class's first chunk runs them, the rest follow.

A batch's chunks are sized for parallelism; what its problems learn from each other must
not depend on that. So the run's first chunk of an angle class is cut down to the class's
pilots alone and goes first; every other chunk of the class, of this batch or a later one
or wave, waits here until the pilots are back and then starts from what they found
(:class:`~pipeline.qaoa.angles.ClassAngles`, set on its plan as ``shared``): one Newton
step each, and the spread of the optima the Newton model puts them at measures what
taking one problem's optimum for another's loses in the class (:class:`~pipeline.qaoa.angles.TransferCheck`, recorded when
the run ends). A class confirmed by ``confirm_problems`` such measurements with a mean
under ``free_loss`` has two pilots on each run's graph (they refine the entry there), and
the chunks on that graph take their mean optimum with no evaluation; ``refine = "never"``
with any entry needs no pilot at all. A class whose followers fitted a model of their optima
(:mod:`pipeline.qaoa.angle_model`, recorded when the run ends) needs no pilot either: its
chunks start from the model's prediction for each problem, on any graph of the class (with
no evaluation where the class is confirmed, else 2 a problem on average).

Across runs on one intake, the pilots of a class new to the library run in one run at a
time: the others wait (``pilot_wait_s``) for its finding and follow it.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from batching.batches import PlannedProblem
from pipeline.config import QuantumSettings
from pipeline.qaoa.angle_model import MAX_SAMPLES, AngleModel, ModelSamples
from pipeline.qaoa.angles import AnglePlan, ClassAngles, TransferCheck
from pipeline.qaoa.features import most_typical
from pipeline.qaoa.findings import Findings
from pipeline.qaoa.starts import PILOTS
from pipeline.vocabulary import RefineMode

log = logging.getLogger("qhopper.dispatch")
CONFIRMED_PILOTS = 2
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
    confirmed: TransferCheck | None = None  # read once a run; None: not (yet) confirmed
    read: bool = False  # whether ``confirmed`` was read
    measured: TransferCheck = field(default_factory=lambda: TransferCheck(0, 0.0))
    samples: ModelSamples = field(default_factory=lambda: ModelSamples((), ()))


@dataclass
class PilotBoard:
    """The run's classes: whose pilots are out, what they found, which chunks wait."""

    run_id: str
    settings: QuantumSettings
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
            state.found = learned
            state.shape = shape
            if self.findings is not None:
                self.findings.add(plan.class_key, learned, pilots, self.run_id)
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

    def checked(self, class_key: str, check: TransferCheck) -> None:
        """A following chunk measured what following lost: kept for the class's record."""
        state = self.classes[class_key]
        total = state.measured.problems + check.problems
        mean = (state.measured.loss * state.measured.problems + check.loss * check.problems) / total
        state.measured = TransferCheck(total, mean)
        if check.samples is not None and len(state.samples) < MAX_SAMPLES:
            state.samples += check.samples

    def close(self) -> None:
        """Record what this run's followers measured, and the angle model their optima fit;
        give back the pilot leases this run still holds (its pilots never came back)."""
        if self.findings is None:
            return
        for class_key, state in self.classes.items():
            if state.measured.problems:
                self.findings.add_check(class_key, state.measured, self.run_id)
                state.measured = TransferCheck(0, 0.0)
            model = self._fitted(state)
            if model is not None:
                self.findings.add_model(class_key, model, self.run_id)
            state.samples = ModelSamples((), ())
            if state.leased:
                self.findings.release(class_key, self.run_id)
                state.leased = False

    def _pilot(self, plan: AnglePlan, state: _Class, chunks: Sequence[Chunk]) -> Admitted:
        """This run pilots the class: its most typical problems alone (with no linear
        field, by :func:`~pipeline.qaoa.features.most_typical`; else its first), the rest
        held (a batch no larger than its pilots is all pilots, and later batches of the
        class follow it)."""
        problems = [p for chunk in chunks for p in chunk]
        count = min(self._pilots(plan), len(problems))
        chosen: Sequence[int] = range(count)
        if not plan.fields:
            chosen = most_typical([p.formulation.ising for p in problems], count)
        pilots = tuple(problems[i] for i in chosen)
        ids = {p.problem_id for p in pilots}
        state.flying = True
        held = [rest for c in chunks if (rest := tuple(p for p in c if p.problem_id not in ids))]
        pilot_plan = dataclasses.replace(plan, warm_pilots=count)
        return Admitted([(pilots, pilot_plan)], held, piloting=True)

    @staticmethod
    def _fitted(state: _Class) -> AngleModel | None:
        """The model of the class's optima its followers sampled in this run, if enough did
        (on the curvature they stepped with)."""
        found = state.found
        if found is None or not found.curvature or not len(state.samples):
            return None
        dims = 2 * found.reps
        hessian = np.asarray(found.curvature).reshape(dims, dims)
        return AngleModel.fit(state.samples, hessian)

    def _pilots(self, plan: AnglePlan) -> int:
        """From the grid, or for a class with linear fields (whose optima concentrate less:
        on QUBOs one pilot's optimum left its followers 0.03 of relative gap behind three
        pilots' mean), three. From published angles or a young entry, one: its followers
        step anyway, and their steps measure the class. A confirmed class, whose followers
        take the pilots' mean optimum as it is, two: the mean of two optima is half as far
        from the graph's centre as one."""
        if not plan.candidates or plan.fields:
            return PILOTS
        confirmed = plan.refined and self._confirmed(plan.class_key, self.classes[plan.class_key])
        return CONFIRMED_PILOTS if confirmed else 1

    def _known(self, plan: AnglePlan, state: _Class) -> ClassAngles | None:
        """Angles the class may follow without pilots of this run: with ``never``, its
        library entry as it is; a class new to the library whose pilots another run is
        running: their finding, once recorded (within ``pilot_wait_s``)."""
        if plan.refine is RefineMode.NEVER and plan.refined:
            entry = plan.candidates[0]
            return ClassAngles(entry.gammas, entry.betas, (), 0.0)
        if plan.refined:
            return self._modelled(plan, state)
        if self.findings is None:
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

    def _modelled(self, plan: AnglePlan, state: _Class) -> ClassAngles | None:
        """A class known to the library whose followers fitted a model of its optima: its
        problems need no pilots, they start from the model's prediction (None: the class
        pilots as before)."""
        if self.findings is None or plan.fields:
            return None
        model = self.findings.model(plan.class_key)
        if model is None or len(model.direction) != 2 * plan.reps:
            return None
        entry = plan.candidates[0]
        return ClassAngles(entry.gammas, entry.betas, model.curvature, math.inf, model)

    def _follower(self, plan: AnglePlan, state: _Class, shape: str) -> AnglePlan:
        """The plan of a chunk that follows the class's finding, with the loss following it
        is known to cost: the class's measured loss where the class is confirmed and the
        chunk is on the graph its pilots ran on, or follows a model, whose prediction reads
        each problem's own graph (``auto`` then takes the angles as they are if that loss is
        under ``free_loss``); else unknown (a young class, or another graph of it than the
        pilots': ``auto`` steps)."""
        found = state.found
        assert found is not None
        here = state.shape == shape or found.model is not None
        check = self._confirmed(plan.class_key, state) if here else None
        loss = math.inf if check is None else check.loss
        return dataclasses.replace(plan, shared=dataclasses.replace(found, loss=loss))

    def _confirmed(self, class_key: str, state: _Class) -> TransferCheck | None:
        """The class's measured loss where ``confirm_problems`` problems measured it and
        their mean is under ``free_loss`` (else None): read once a run, so every chunk of
        the class is decided alike and dispatch queries the database once."""
        if not state.read:
            state.read = True
            check = None if self.findings is None else self.findings.checked(class_key)
            if (
                check is not None
                and check.problems >= self.settings.confirm_problems
                and check.loss <= self.settings.free_loss
            ):
                state.confirmed = check
        return state.confirmed
