"""The angle library: what every batch learned about its class, in the intake database.

One table of its own, ``angle_library``, beside the intake's tables (created on the same
engine, idempotently, the way the intake creates its own): one row per recorded batch,
keyed by its class (:class:`pipeline.engine.angles.AngleClass`), with the refined angles
(the median over the batch's problems, in the engine's convention: weights divided by
their RMS), the mean expectation ratio they reached, and what that cost. Workers never
touch it: the run core looks a batch's plan up before dispatch (:func:`plan_for`) and
records the batch once its answers are in (:func:`record_batch`).
"""

from __future__ import annotations

import json
import logging
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from pipeline.engine.angles import (
    DEFAULT_MIN_DEPTH_GAIN,
    DEFAULT_TRANSFER_TOLERANCE,
    DEFAULT_WARM_PILOTS,
    AngleClass,
    AnglePlan,
    AngleSet,
    class_of,
    plan,
    usable,
)
from pipeline.engine.shapes import ShapeKey

log = logging.getLogger("qhopper.angles")
KEEP_PER_CLASS = 20  # rows kept per class: the best by ratio, then the newest

metadata = sa.MetaData()

angle_library = sa.Table(
    "angle_library",
    metadata,
    sa.Column("id", sa.Integer, sa.Identity(), primary_key=True),
    sa.Column("class_key", sa.String(300), nullable=False),
    sa.Column("kind", sa.String(20), nullable=False),
    sa.Column("n_qubits", sa.Integer, nullable=False),
    sa.Column("structure", sa.String(200), nullable=False),
    sa.Column("reps", sa.Integer, nullable=False),
    sa.Column("linear", sa.Boolean, nullable=False),
    sa.Column("gammas_json", sa.Text, nullable=False),
    sa.Column("betas_json", sa.Text, nullable=False),
    # Mean expected_objective / reference over the batch (None: no reference was known).
    sa.Column("ratio", sa.Float, nullable=True),
    sa.Column("problems", sa.Integer, nullable=False),
    sa.Column("evaluations", sa.Float, nullable=False),  # per problem
    sa.Column("started_from", sa.String(20), nullable=False),  # library, fixed, interp, grid
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Index("ix_angle_library_class", "class_key", "ratio"),
)


@dataclass(frozen=True)
class AngleEntry:
    id: int
    class_key: str
    reps: int
    gammas: tuple[float, ...]
    betas: tuple[float, ...]
    ratio: float | None
    problems: int
    evaluations: float
    started_from: str
    created_at: datetime

    def as_set(self) -> AngleSet:
        return AngleSet(self.gammas, self.betas, "library", self.ratio)


class Answered(Protocol):
    """What :func:`record_batch` reads of an answer (a :class:`pipeline.tasks.Answer`)."""

    @property
    def angles(self) -> tuple[float, ...]: ...
    @property
    def reps(self) -> int | None: ...
    @property
    def expected_objective(self) -> float | None: ...
    @property
    def evaluations(self) -> int: ...


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = json.loads(text)
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return (math.nan,)  # unreadable: usable() drops it


class AngleLibrary:
    """The ``angle_library`` table on an engine (the intake's: ``IntakeStore.engine``)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.create()

    def create(self) -> None:
        """Create the table if it is missing; safe when another process does the same."""
        try:
            metadata.create_all(self.engine)
        except sa.exc.DatabaseError:
            metadata.create_all(self.engine)  # another process created it in between

    def entries(self, class_key: str | None = None, limit: int = 1000) -> list[AngleEntry]:
        """Entries, best ratio first within a class, newest first among equals."""
        query = sa.select(angle_library)
        if class_key is not None:
            query = query.where(angle_library.c.class_key == class_key)
        query = query.order_by(
            angle_library.c.class_key,
            angle_library.c.ratio.desc().nulls_last(),
            angle_library.c.id.desc(),
        ).limit(limit)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
        return [
            AngleEntry(
                row["id"],
                row["class_key"],
                row["reps"],
                _floats(row["gammas_json"]),
                _floats(row["betas_json"]),
                None if row["ratio"] is None or not math.isfinite(row["ratio"]) else row["ratio"],
                row["problems"],
                row["evaluations"],
                row["started_from"],
                row["created_at"],
            )
            for row in rows
        ]

    def best(self, angle_class: AngleClass) -> AngleEntry | None:
        """The class's best sound entry: highest ratio (at most 1), newest among equals."""
        for entry in self.entries(angle_class.key, limit=KEEP_PER_CLASS + 5):
            if entry.ratio is not None and entry.ratio > 1.0 + 1e-9:
                continue  # an expectation above the optimum: not a measurement, ignore it
            if usable(entry.as_set(), angle_class.reps) is not None:
                return entry
        return None

    def add(
        self,
        angle_class: AngleClass,
        gammas: Sequence[float],
        betas: Sequence[float],
        ratio: float | None,
        problems: int,
        evaluations: float,
        started_from: str,
    ) -> None:
        with self.engine.begin() as tx:
            tx.execute(
                angle_library.insert().values(
                    class_key=angle_class.key,
                    kind=angle_class.kind,
                    n_qubits=angle_class.n_qubits,
                    structure=angle_class.structure,
                    reps=angle_class.reps,
                    linear=angle_class.linear,
                    gammas_json=json.dumps([float(g) for g in gammas]),
                    betas_json=json.dumps([float(b) for b in betas]),
                    ratio=ratio,
                    problems=problems,
                    evaluations=float(evaluations),
                    started_from=started_from,
                    created_at=datetime.now(UTC).replace(tzinfo=None),
                )
            )
            kept = (
                sa.select(angle_library.c.id)
                .where(angle_library.c.class_key == angle_class.key)
                .order_by(angle_library.c.ratio.desc().nulls_last(), angle_library.c.id.desc())
                .limit(KEEP_PER_CLASS)
            )
            keep = [row[0] for row in tx.execute(kept)]
            tx.execute(
                angle_library.delete().where(
                    angle_library.c.class_key == angle_class.key,
                    angle_library.c.id.not_in(keep),
                )
            )


def plan_for(
    library: AngleLibrary | None,
    kind: str,
    shape: ShapeKey,
    min_depth_gain: float | None = DEFAULT_MIN_DEPTH_GAIN,
    transfer_tolerance: float = DEFAULT_TRANSFER_TOLERANCE,
    warm_pilots: int = DEFAULT_WARM_PILOTS,
) -> AnglePlan:
    """A batch's starting angles and depth, from the library (``None``: none kept).

    ``min_depth_gain``: the least rise of expectation ratio an extra layer must have shown
    (``None``: always the shape's depth); ``transfer_tolerance`` and ``warm_pilots``: see
    :data:`~pipeline.engine.angles.DEFAULT_TRANSFER_TOLERANCE` and ``DEFAULT_WARM_PILOTS``
    (``warm_pilots=1``: the economy setting).
    """
    angle_class = class_of(kind, shape)
    best: dict[int, AngleSet] = {}
    if library is not None:
        try:
            for reps in range(max(1, shape.reps - 1), shape.reps + 1):
                entry = library.best(angle_class.at(reps))
                if entry is not None:
                    best[reps] = entry.as_set()
        except sa.exc.SQLAlchemyError as exc:  # the library helps; it never fails a run
            log.warning(
                "angle library unreadable, starting %s without it: %s", angle_class.key, exc
            )
            best = {}
    return plan(angle_class, best, min_depth_gain, transfer_tolerance, warm_pilots)


def record_batch(
    library: AngleLibrary,
    kind: str,
    shape: ShapeKey,
    answers: Iterable[Answered],
    references: Sequence[float | None] | None = None,
    started_from: str = "grid",
) -> AngleEntry | None:
    """Write a finished batch's refined angles and the expectation ratio they reached.

    ``answers``: the batch's quantum answers; ``references``: each one's exact optimum
    (the row's ``reference_objective``) in the same order, ``None`` where unknown. The
    angles written are the median over the answers at the depth most of them ran; the
    ratio is the mean of expected_objective / optimum over the answers with one.
    Returns the class's best entry after the write (None when nothing was worth keeping,
    or the database refused: a warning is logged, the run goes on).
    """
    answers = list(answers)
    refs = list(references) if references is not None else [None] * len(answers)
    if len(refs) != len(answers):
        raise ValueError(f"{len(answers)} answers but {len(refs)} references")
    depths = [a.reps for a in answers if a.reps and len(a.angles) == 2 * a.reps]
    if not depths:
        return None
    reps = statistics.mode(depths)
    chosen = [(a, r) for a, r in zip(answers, refs, strict=True) if a.reps == reps]
    gammas = [statistics.median(a.angles[k] for a, _ in chosen) for k in range(reps)]
    betas = [statistics.median(a.angles[reps + k] for a, _ in chosen) for k in range(reps)]
    if not all(math.isfinite(v) for v in (*gammas, *betas)):
        return None
    ratios = [
        a.expected_objective / r
        for a, r in chosen
        if r is not None
        and a.expected_objective is not None
        and r != 0
        and r * a.expected_objective > 0
    ]
    ratio = statistics.fmean(ratios) if ratios else None
    evaluations = statistics.fmean(a.evaluations for a, _ in chosen)
    angle_class = class_of(kind, shape, reps)
    try:
        library.add(angle_class, gammas, betas, ratio, len(chosen), evaluations, started_from)
        entries = library.entries(angle_class.key, limit=1)
    except sa.exc.SQLAlchemyError as exc:  # the library helps; it never fails a run
        log.warning("angle library not written for %s: %s", angle_class.key, exc)
        return None
    return entries[0] if entries else None


def describe(entry: AngleEntry) -> dict[str, Any]:
    """An entry as plain data (for ``qhopper angles --json``)."""
    return {
        "class": entry.class_key,
        "reps": entry.reps,
        "gammas": list(entry.gammas),
        "betas": list(entry.betas),
        "ratio": entry.ratio,
        "problems": entry.problems,
        "evaluations_per_problem": entry.evaluations,
        "started_from": entry.started_from,
        "recorded_at": entry.created_at.isoformat(),
    }
