"""Does a candidate backend agree with the main one? The canary rows, judged.

Per pair of backends (the main one and the candidate sampled beside it) over the canary rows
since a date: the candidate **agrees** when its samples number at least ``min_samples`` and
the mean ``|relative_difference|`` (the expectation's difference as a share of the classical
reference, :func:`pipeline.quality.relative_to`) is at most ``tolerance``; with fewer samples
there is no verdict yet. Failed rows are counted, never judged: they carry no expectation.
The best-sample agreement rate (equal best-sample objectives) and each side's time and cost
are reported beside it, not judged: shot noise moves the best sample between equally good
answers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from pipeline.canary.vocabulary import CanaryStatus, Verdict
from pipeline.config import CanarySettings, ResultsLocation

SAME_OBJECTIVE = 1e-9  # relative: best-sample objectives are recomputed from bits

# The process exit code of ``qhopper canary`` for its worst verdict (no candidate at all: 3).
EXIT_CODES = {Verdict.AGREES: 0, Verdict.DISAGREES: 1, Verdict.TOO_FEW_SAMPLES: 3}


@dataclass(frozen=True)
class Judgement:
    """One candidate against its main backend: the numbers, and the verdict they give."""

    main_backend: str
    canary_backend: str
    verdict: Verdict
    samples: int  # answered on both sides, with a difference to judge
    failed: int  # canary rows the candidate gave no answer for
    mean_difference: float | None  # signed: the candidate's bias, as a share of the reference
    mean_abs_difference: float | None  # what the verdict judges
    max_abs_difference: float | None
    best_sample_agreement: float | None  # share of samples with equal best-sample objectives
    main_seconds: float | None  # mean per answer
    canary_seconds: float | None
    main_cost_usd: float  # over every canary row
    canary_cost_usd: float
    tolerance: float
    min_samples: int


def judge(
    rows: Iterable[Mapping[str, Any]],
    tolerance: float,
    min_samples: int,
    expected: Sequence[tuple[str, str]] = (),
) -> list[Judgement]:
    """A judgement per (main, candidate) pair in ``rows`` (canary rows as dicts), and for each
    pair of ``expected`` (the configured candidate) even with no row yet; sorted by pair."""
    pairs: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for pair in expected:
        pairs.setdefault(pair, [])
    for row in rows:
        pairs[(row["main_backend"], row["canary_backend"])].append(row)
    return [_judged(pair, found, tolerance, min_samples) for pair, found in sorted(pairs.items())]


def load(
    location: ResultsLocation, config: CanarySettings, main_backend: str, since: date | None
) -> list[Judgement]:
    """The judgements of the canary rows at ``location`` created on or after ``since`` (UTC),
    by the configured tolerance and minimum; the configured candidate is always judged."""
    from pipeline.results import query

    start = f"{since.isoformat()} 00:00:00+00" if since else None
    rows = query(
        location,
        "SELECT * FROM canary WHERE CAST(? AS VARCHAR) IS NULL "
        "OR created_at >= CAST(? AS TIMESTAMPTZ)",
        [start, start],
    ).to_pylist()
    expected = [(main_backend, config.backend)] if config.backend else []
    return judge(rows, config.tolerance, config.min_samples, expected)


def exit_code(judgements: Sequence[Judgement]) -> int:
    """0 when every candidate agrees, 1 when any disagrees, else 3 (too few samples, or no
    candidate at all): no verdict yet."""
    if not judgements:
        return EXIT_CODES[Verdict.TOO_FEW_SAMPLES]
    return max(EXIT_CODES[j.verdict] for j in judgements)


def _judged(
    pair: tuple[str, str], rows: Sequence[Mapping[str, Any]], tolerance: float, min_samples: int
) -> Judgement:
    ok = [r for r in rows if r["status"] == CanaryStatus.OK]
    judged = [r for r in ok if r["relative_difference"] is not None]
    differences = [float(r["relative_difference"]) for r in judged]
    sizes = [abs(d) for d in differences]
    mean_abs = _mean(sizes)
    if len(judged) < min_samples or mean_abs is None:
        verdict = Verdict.TOO_FEW_SAMPLES
    else:
        verdict = Verdict.AGREES if mean_abs <= tolerance else Verdict.DISAGREES
    return Judgement(
        main_backend=pair[0],
        canary_backend=pair[1],
        verdict=verdict,
        samples=len(judged),
        failed=len(rows) - len(ok),
        mean_difference=_mean(differences),
        mean_abs_difference=mean_abs,
        max_abs_difference=max(sizes, default=None),
        best_sample_agreement=_mean([float(_same_best(r)) for r in ok]),
        main_seconds=_mean([r["main_seconds"] for r in ok if r["main_seconds"] is not None]),
        canary_seconds=_mean([r["canary_seconds"] for r in ok if r["canary_seconds"] is not None]),
        main_cost_usd=sum(r["main_cost_usd"] or 0.0 for r in rows),
        canary_cost_usd=sum(r["canary_cost_usd"] or 0.0 for r in rows),
        tolerance=tolerance,
        min_samples=min_samples,
    )


def _same_best(row: Mapping[str, Any]) -> bool:
    a, b = row["main_objective"], row["canary_objective"]
    return a is not None and b is not None and math.isclose(a, b, rel_tol=SAME_OBJECTIVE)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
