"""Index the public instances in data/benchmarks by content hash: data/benchmarks/known.json.

Run from the repository root with the project's environment: ``.venv/bin/python
data/make_known.py``. A submitted problem whose canonical content equals an instance's
gets a row note naming it and its published optimum (pipeline/reference.py).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline.config import LimitSettings
from pipeline.model import content_hash
from pipeline.readers import read_path

ROOT = Path(__file__).resolve().parent / "benchmarks"
SETS = ("biqmac-maxcut", "biqmac-qubo", "ciquab-karloff-maxcut")


def main() -> None:
    known: dict[str, dict[str, object]] = {}
    for name in SETS:
        with (ROOT / name / "optima.csv").open() as handle:
            for row in csv.DictReader(handle):
                [record] = read_path(ROOT / name / row["instance"], LimitSettings())
                assert record.spec is not None, record.issues
                optimum = float(row["optimal_value"])
                known[content_hash(record.spec)] = {
                    "instance": f"{name}/{row['instance']}",
                    "optimum": round(optimum, 9),
                    "sense": row["sense"],
                }
    (ROOT / "known.json").write_text(json.dumps(known, indent=1, sort_keys=True) + "\n")
    print(f"{len(known)} instances indexed")


if __name__ == "__main__":
    main()
