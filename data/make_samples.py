"""Regenerate the bundled demo samples in data/samples (deterministic: fixed seeds).

python data/make_samples.py
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent / "samples"


def regular_graph(n: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """A random simple d-regular graph by repeated pairing (fine at these sizes)."""
    while True:
        stubs = [v for v in range(n) for _ in range(degree)]
        rng.shuffle(stubs)
        edges = {tuple(sorted(stubs[i : i + 2])) for i in range(0, len(stubs), 2)}
        if len(edges) == n * degree // 2 and all(u != v for u, v in edges):
            return sorted(edges)  # type: ignore[arg-type]


def main() -> None:
    rng = random.Random(2026)
    HERE.mkdir(exist_ok=True)
    # Shape A: ten weighted MaxCut problems on one 3-regular 10-node graph (one template).
    graph = regular_graph(10, 3, rng)
    with (HERE / "maxcut_3regular_10.jsonl").open("w") as out:
        for index in range(10):
            edges = [[u, v, rng.randint(1, 9)] for u, v in graph]
            out.write(
                json.dumps(
                    {"kind": "maxcut", "n": 10, "edges": edges, "key": f"demo-maxcut10-{index}"}
                )
                + "\n"
            )
    # Shape B: six unweighted ring-with-chords MaxCut problems at depth 2, plus one forced classical.
    ring = [[i, (i + 1) % 8] for i in range(8)] + [[i, i + 4] for i in range(4)]
    problems = [
        {
            "kind": "maxcut",
            "n": 8,
            "edges": ring,
            "reps": 2,
            "shots": 2048,
            "key": f"demo-ring8-{i}",
            "priority": i,
        }
        for i in range(6)
    ]
    problems.append(
        {
            "kind": "maxcut",
            "n": 8,
            "edges": ring,
            "route": "classical",
            "key": "demo-ring8-classical",
        }
    )
    (HERE / "maxcut_ring8.json").write_text(json.dumps(problems, indent=1))
    # Shape C: QUBOs sharing one sparsity pattern, minimised and maximised.
    pattern = [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (0, 5), (1, 4)]
    qubos = []
    for index in range(6):
        qubos.append(
            {
                "kind": "qubo",
                "n": 6,
                "key": f"demo-qubo6-{index}",
                "linear": [[i, rng.randint(-5, 5)] for i in range(6)],
                "quadratic": [[i, j, rng.randint(-4, 4) or 1] for i, j in pattern],
                "offset": rng.randint(-3, 3),
                "sense": "min" if index % 2 == 0 else "max",
            }
        )
    (HERE / "qubo_chain6.json").write_text(json.dumps(qubos, indent=1))
    # Shape D: portfolio selection with a budget (a penalised, fully connected QUBO).
    portfolios = []
    for index in range(4):
        n = 6
        mu = [round(rng.uniform(0.02, 0.15), 4) for _ in range(n)]
        factors = [[rng.gauss(0, 0.1) for _ in range(3)] for _ in range(n)]
        sigma = [
            [
                round(
                    sum(a * b for a, b in zip(factors[i], factors[j], strict=True))
                    + (0.01 if i == j else 0),
                    6,
                )
                for j in range(n)
            ]
            for i in range(n)
        ]
        portfolios.append(
            {
                "kind": "portfolio",
                "mu": mu,
                "sigma": sigma,
                "budget": 3,
                "risk": 0.5,
                "key": f"demo-portfolio6-{index}",
            }
        )
    (HERE / "portfolio6.json").write_text(json.dumps(portfolios, indent=1))
    # Too large for the simulator's 16-qubit limit: 3-regular MaxCut at 24 and 40 nodes (rudy format).
    for n in (24, 40):
        edges = regular_graph(n, 3, rng)
        lines = [f"{n} {len(edges)}"] + [f"{u + 1} {v + 1} {rng.randint(1, 9)}" for u, v in edges]
        (HERE / f"maxcut_3regular_{n}.rudy").write_text(
            "# random weighted 3-regular graph, seed 2026\n" + "\n".join(lines) + "\n"
        )

    # Shape E: weighted MaxCut on a 5-node wheel, small enough for a 5-qubit device's noise
    # model (qhopper drift --backend aer-noisy:fake_manila replays these).
    wheel = [(0, i) for i in range(1, 5)] + [(i, i % 4 + 1) for i in range(1, 5)]
    small = [
        {"kind": "maxcut", "n": 5, "edges": [[u, v, rng.randint(1, 6)] for u, v in wheel]}
        for _ in range(4)
    ]
    (HERE / "maxcut_wheel5.json").write_text(json.dumps(small, indent=1))


if __name__ == "__main__":
    main()
