"""Reader for the published QAOA p=1 MaxCut dataset copied into data/benchmarks (test helper)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "data" / "benchmarks" / "qaoa-dataset-v1-maxcut"


@dataclass(frozen=True)
class DatasetGraph:
    n: int
    number: int
    edges: tuple[tuple[int, int], ...]
    max_cut: float
    optimised_p1: float  # <C> at the published optimised p=1 angles


def load_graphs(n: int) -> list[DatasetGraph]:
    """Graph blocks: 'Graph k, order n.' then n-1 upper-triangle adjacency rows."""
    results = {}
    for line in (ROOT / "Results" / "p=1" / f"n={n}_p=1.txt").read_text().splitlines():
        if line.strip():
            columns = line.split()
            results[int(float(columns[0]))] = (float(columns[1]), float(columns[3]))
    graphs: list[DatasetGraph] = []
    lines = (ROOT / "Graphs" / f"graph{n}c.txt").read_text().splitlines()
    index = 0
    while index < len(lines):
        header = lines[index].strip()
        if not header.startswith("Graph"):
            index += 1
            continue
        number = int(header.split()[1].rstrip(","))
        rows = [lines[index + 1 + r].strip() for r in range(n - 1)]
        edges = tuple(
            (u, u + 1 + offset)
            for u, row in enumerate(rows)
            for offset, bit in enumerate(row)
            if bit == "1"
        )
        max_cut, optimised = results[number]
        graphs.append(DatasetGraph(n, number, edges, max_cut, optimised))
        index += n
    return graphs
