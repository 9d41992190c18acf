"""The angle library: what every batch learned about its class, in the intake database.

One table of its own, ``angle_library``, beside the intake's tables (created on the same
engine, idempotently, the way the intake creates its own): one row per recorded batch,
keyed by its class (:class:`pipeline.qaoa.angles.AngleClass`), with the refined angles
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

from pipeline import quality
from pipeline.qaoa.angles import (
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
from pipeline.qaoa.shapes import ShapeKey

log = logging.getLogger("qhopper.angles")
KEEP_PER_CLASS = 20  # rows kept per class: the best by ratio, then the newest
# How a row's ratio was computed: pipeline.quality.ratio of expected_objective, which for a
# constrained kind is over its feasible outcomes. Rows from before (no basis) took e / r of
# an expectation that, for these kinds, counted infeasible outcomes: their ratio is read as
# unknown (their angles still serve) until the class's next batch records one.
RATIO_BASIS = "feasible"
REMEASURED_KINDS = ("portfolio",)

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
    # Mean expectation ratio over the batch (pipeline.quality; None: no reference was known).
    sa.Column("ratio", sa.Float, nullable=True),
    sa.Column("problems", sa.Integer, nullable=False),
    sa.Column("evaluations", sa.Float, nullable=False),  # per problem
    sa.Column("started_from", sa.String(20), nullable=False),  # library, fixed, interp, grid
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("ratio_basis", sa.String(20), nullable=True),  # RATIO_BASIS; None: older rows
    sa.Index("ix_angle_library_class", "class_key", "ratio"),
)
# The ratio every reader sees: a row's own, but unknown for a remeasured kind's older rows.
RATIO = sa.case(
    (
        sa.and_(angle_library.c.ratio_basis.is_(None), angle_library.c.kind.in_(REMEASURED_KINDS)),
        sa.null(),
    ),
    else_=angle_library.c.ratio,
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
    outdated: bool = False  # its ratio was recorded the old way: read as unknown

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


def _finite(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else value


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = json.loads(text)
        return tuple(float(v) for v in values)
    except (TypeError, ValueError):
        return (math.nan,)  # unreadable: usable() drops it


class AngleLibrary:
    """The ``angle_library`` table on an engine (the intake's: ``IntakeStore.engine``).

    Each class's best entry is read once and remembered (a run makes one library and asks
    for the same classes wave after wave); what this library adds to a class is read again.
    Other processes' additions meanwhile show in the next run's library: within a run, a
    class's later batches follow its pilots' finding rather than the library.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._best: dict[str, AngleEntry | None] = {}
        self.create()

    def create(self) -> None:
        """Create the table if it is missing, and the ``ratio_basis`` column in a table made
        before it; safe when another process does the same."""
        try:
            metadata.create_all(self.engine)
        except sa.exc.DatabaseError:
            metadata.create_all(self.engine)  # another process created it in between
        columns = {c["name"] for c in sa.inspect(self.engine).get_columns("angle_library")}
        if "ratio_basis" not in columns:
            try:
                with self.engine.begin() as tx:
                    tx.exec_driver_sql(
                        "ALTER TABLE angle_library ADD COLUMN ratio_basis VARCHAR(20)"
                    )
            except sa.exc.DatabaseError:
                pass  # another process added it first

    def entries(self, class_key: str | None = None, limit: int = 1000) -> list[AngleEntry]:
        """Entries, best ratio first within a class, newest first among equals."""
        query = sa.select(angle_library, RATIO.label("known_ratio"))
        if class_key is not None:
            query = query.where(angle_library.c.class_key == class_key)
        query = query.order_by(
            angle_library.c.class_key, RATIO.desc().nulls_last(), angle_library.c.id.desc()
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
                _finite(row["known_ratio"]),
                row["problems"],
                row["evaluations"],
                row["started_from"],
                row["created_at"],
                row["known_ratio"] is None and row["ratio"] is not None,
            )
            for row in rows
        ]

    def best(self, angle_class: AngleClass) -> AngleEntry | None:
        """The class's best sound entry: highest ratio (at most 1), newest among equals."""
        if angle_class.key not in self._best:
            self._best[angle_class.key] = self._read_best(angle_class)
        return self._best[angle_class.key]

    def _read_best(self, angle_class: AngleClass) -> AngleEntry | None:
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
        self._best.pop(angle_class.key, None)
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
                    ratio_basis=RATIO_BASIS,
                )
            )
            kept = (
                sa.select(angle_library.c.id)
                .where(angle_library.c.class_key == angle_class.key)
                .order_by(RATIO.desc().nulls_last(), angle_library.c.id.desc())
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
    :data:`~pipeline.qaoa.angles.DEFAULT_TRANSFER_TOLERANCE` and ``DEFAULT_WARM_PILOTS``
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
    *,
    scales: Sequence[float | None] | None = None,
) -> AngleEntry | None:
    """Write a finished batch's refined angles and the expectation ratio they reached.

    ``answers``: the batch's quantum answers; ``references``: each one's exact optimum
    (the row's ``reference_objective``) in the same order, ``None`` where unknown;
    ``scales``: each one's ``objective_scale``. The angles written are the median over the
    answers at the depth most of them ran; the ratio is the mean of
    :func:`pipeline.quality.ratio` of expected_objective over the answers with one (the
    report's expectation ratio, so ``qhopper angles`` and the report agree).
    Returns the class's best entry after the write (None when nothing was worth keeping,
    or the database refused: a warning is logged, the run goes on).
    """
    answers = list(answers)
    refs = list(references) if references is not None else [None] * len(answers)
    sizes = list(scales) if scales is not None else [None] * len(answers)
    if not len(refs) == len(sizes) == len(answers):
        raise ValueError(f"{len(answers)} answers, {len(refs)} references, {len(sizes)} scales")
    depths = [a.reps for a in answers if a.reps and len(a.angles) == 2 * a.reps]
    if not depths:
        return None
    reps = statistics.mode(depths)
    chosen = [(a, r, s) for a, r, s in zip(answers, refs, sizes, strict=True) if a.reps == reps]
    gammas = [statistics.median(a.angles[k] for a, _, _ in chosen) for k in range(reps)]
    betas = [statistics.median(a.angles[reps + k] for a, _, _ in chosen) for k in range(reps)]
    if not all(math.isfinite(v) for v in (*gammas, *betas)):
        return None
    found = [quality.ratio(a.expected_objective, r, s) for a, r, s in chosen]
    ratios = [value for value in found if value is not None]
    ratio = statistics.fmean(ratios) if ratios else None
    evaluations = statistics.fmean(a.evaluations for a, _, _ in chosen)
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
        "ratio_outdated": entry.outdated,
    }
