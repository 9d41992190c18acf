"""The analyst notebooks run headless, cell by cell, on a real home and on a rich one.

The real home is filled through the CLI (``qhopper submit`` and ``qhopper run``): it has no
fallback or drift yet, so the notebooks' "not there yet" paths run. The rich one (written as
Parquet by ``test_report.write_rich_results``) has references, fallbacks, a failure and drift
rows, so every plot draws. Each test checks what the cells showed, not only that they ran. Any cell error fails the test. Without
Jupyter (nbclient, nbformat, ipykernel) or matplotlib the test skips, naming what is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from test_report import fill_home, write_mixed_results, write_rich_results

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
NEEDED = ("nbclient", "nbformat", "ipykernel", "matplotlib")
MISSING = [name for name in NEEDED if importlib.util.find_spec(name) is None]
needs_jupyter = pytest.mark.skipif(
    bool(MISSING),
    reason=f"Jupyter is not installed here (missing: {', '.join(MISSING)}); "
    "the notebooks cannot be executed",
)


def test_the_three_notebooks_are_there_and_stored_without_outputs() -> None:
    assert [p.name for p in NOTEBOOKS] == [
        "fallbacks_drift.ipynb",
        "latency_cost.ipynb",
        "quality.ipynb",
    ]
    for path in NOTEBOOKS:
        notebook = json.loads(path.read_text())
        assert notebook["nbformat"] == 4
        code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
        assert code and all(not c["outputs"] and c["execution_count"] is None for c in code)
        assert "QHOPPER_HOME" in "".join("".join(c["source"]) for c in notebook["cells"])


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    if MISSING:
        pytest.skip(f"Jupyter is not installed here (missing: {', '.join(MISSING)})")
    real = tmp_path_factory.mktemp("real") / "home"
    fill_home(real)
    rich = tmp_path_factory.mktemp("rich") / "home"
    write_rich_results(rich / "results")
    mixed = tmp_path_factory.mktemp("mixed") / "home"
    write_mixed_results(mixed / "results")
    return {"real": real, "rich": rich, "mixed": mixed}


def execute(path: Path, home: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Run the notebook on ``home``; what its cells showed, cell by cell (text and HTML)."""
    import nbclient
    import nbformat

    monkeypatch.setenv("QHOPPER_HOME", str(home))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    # The kernel imports ``pipeline`` the way the notebooks' readers do: from the checkout.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(home.parent)}},
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error
    errors = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if output.output_type == "error"
    ]
    assert not errors, errors
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{path.name} drew no plot"
    return [
        "".join(
            output.get("text", "")
            + output.get("data", {}).get("text/plain", "")
            + output.get("data", {}).get("text/html", "")
            for output in cell.outputs
        )
        for cell in notebook.cells
        if cell.cell_type == "code"
    ]


# What each notebook shows on each home, cell by cell: (cell, text it shows) and, after
# "not", (cell, text it must not show). The real home (test_report.fill_home): 5 problems
# through the CLI, 4 answered on the quantum path (each judged against its reference) and 1
# classical, on three tenants; no fallback, no drift. The rich one (write_rich_results): 28
# problems in two runs, 24 quantum (2 judged by gap), 2 degraded by the budget, 2 failed, six
# drift rows, costs of 1 to 12 millionths of a dollar.
SHOWN: dict[tuple[str, str], dict[str, list[tuple[int, str]]]] = {
    ("fallbacks_drift", "real"): {
        "shown": [(2, "No fallback: every answer came from its planned route."), (4, "No drift")],
        "not": [],
    },
    ("fallbacks_drift", "rich"): {
        "shown": [
            (1, "r-one"),
            (1, "r-two"),
            (2, "route_budget"),
            (2, "quantum would cost more than the budget allows"),
            (2, "attempt_limit"),
            (3, "b-r-two-q"),
            (4, "aer-noisy"),
        ],
        "not": [(2, "No fallback"), (4, "No drift")],
    },
    ("latency_cost", "real"): {
        "shown": [(1, "aer"), (1, "ortools-cpsat"), (4, "alpha"), (4, "beta"), (4, "default")],
        "not": [(1, "(none)")],
    },
    ("latency_cost", "rich"): {
        "shown": [
            (1, "(none)"),
            (1, "aer-noisy"),
            (4, "$0.000036"),
            (4, "$0.000042"),
            (6, "$0.00010"),
        ],
        "not": [(4, "e-05")],
    },
    ("quality", "real"): {
        "shown": [
            (1, "4 quantum answers, 4 with a reference: 4 judged by ratio, 0 by gap; 1 classical")
        ],
        "not": [(1, "No reference objective yet")],
    },
    ("quality", "rich"): {
        "shown": [
            (
                1,
                "24 quantum answers, 24 with a reference: 22 judged by ratio, 2 by gap; 2 classical",
            ),
            (4, "0.3736"),
        ],
        "not": [(1, "No reference objective yet")],
    },
}
PROBLEMS = {"real": 5, "rich": 28}


@needs_jupyter
@pytest.mark.parametrize("which", ["real", "rich"])
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_runs_headless(
    path: Path, which: str, homes: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    shown = execute(path, homes[which], monkeypatch)
    results = homes[which] / "results"
    assert f"results in {results}: {PROBLEMS[which]} problems" in shown[0], shown[0]
    expected = SHOWN[(path.stem, which)]
    for cell, text in expected["shown"]:
        assert text in shown[cell], (cell, text, shown[cell][:2000])
    for cell, text in expected["not"]:
        assert text not in shown[cell], (cell, text, shown[cell][:2000])


@needs_jupyter
def test_the_notebooks_read_well_at_scale(
    homes: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mixed run of 2,000 problems: sizes binned, classical answers not judged, the
    near-zero reference judged by its gap, money as money."""
    shown = execute(REPO / "notebooks" / "quality.ipynb", homes["mixed"], monkeypatch)
    summary, by_size, gaps = shown[1], shown[2], shown[4]
    assert "1000 quantum answers" in summary and "1000 classical answers" in summary
    assert "9–16" in by_size and by_size.count("<tr>") <= 1 + 3 * 3  # header, kinds x bins
    assert "qubo" in gaps and "0.3736" in gaps
    shown = execute(REPO / "notebooks" / "latency_cost.ipynb", homes["mixed"], monkeypatch)
    costs = "".join(shown)
    assert "$0.000033" in costs and "$0.033" in costs and "e-05" not in costs
