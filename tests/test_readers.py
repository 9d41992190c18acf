"""Readers: every input format, the real benchmark files, and every rejection DESIGN.md lists.

Each rejection is checked for the exact record ("record N" / "line N" / "file") and field
it names, not just for being rejected.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import truth
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.config import LimitSettings
from pipeline.errors import InputIssue, InputRejected
from pipeline.formulation import formulate, objective
from pipeline.model import MaxCutSpec, PortfolioSpec, QuboSpec, idempotency_key
from pipeline.readers import MAX_ISSUES, PARTIAL_CHECK, ParsedRecord, read_bytes, read_path

BENCHMARKS = Path(__file__).resolve().parent.parent / "data" / "benchmarks"
KARLOFF = BENCHMARKS / "ciquab-karloff-maxcut/Karloff/Karloff_6_3_1.txt"
G05_60 = BENCHMARKS / "biqmac-maxcut/rudy/g05_60.0"
GKA1B = BENCHMARKS / "biqmac-qubo/gka/gka1b.sparse"
RECORD = re.compile(r"^(file|line [1-9]\d*|record [1-9]\d*)$")

MAXCUT = {"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2, 2.5]]}
QUBO = {"kind": "qubo", "n": 2, "linear": [[0, 1]], "quadratic": [[0, 1, -2]], "sense": "max"}
PORTFOLIO = {
    "kind": "portfolio",
    "mu": [1, 2, 3],
    "sigma": [[1, 0.5, 0], [0.5, 2, 0], [0, 0, 1]],
    "budget": 2,
    "risk": 0.5,
}


def read(name: str, raw: bytes | str, **limits: int) -> list[ParsedRecord]:
    data = raw.encode() if isinstance(raw, str) else raw
    return read_bytes(name, data, LimitSettings(**limits))


def where(records: list[ParsedRecord]) -> list[tuple[str, str]]:
    """(record, field) of every issue, in order."""
    return [(issue.record, issue.field) for r in records for issue in r.issues]


def line(document: Any) -> str:
    return json.dumps(document)


def assert_consistent(name: str, records: list[ParsedRecord]) -> None:
    """Each record is ok xor has issues, and every issue names this file and a record."""
    assert records
    for r in records:
        assert (r.spec is not None and not r.issues) or (r.spec is None and r.issues), r
        assert r.ok == (r.spec is not None)
        assert r.file == name
        assert RECORD.match(r.record), r.record
        for issue in r.issues:
            assert isinstance(issue, InputIssue)
            assert issue.file == name
            assert RECORD.match(issue.record), issue.record
            assert issue.message
            assert str(issue).startswith(f"{name}: {issue.record}")
            assert issue.field.isprintable()


# --- formats ------------------------------------------------------------------------------


def test_json_object() -> None:
    records = read("p.json", line(MAXCUT))
    assert [(r.record, r.ok) for r in records] == [("record 1", True)]
    spec = records[0].spec
    assert isinstance(spec, MaxCutSpec)
    assert spec.n == 3 and spec.edges == [[0, 1], [1, 2, 2.5]]


def test_json_array() -> None:
    records = read("p.json", json.dumps([MAXCUT, QUBO, PORTFOLIO], indent=2))
    assert [(r.record, r.ok) for r in records] == [
        ("record 1", True),
        ("record 2", True),
        ("record 3", True),
    ]
    assert [type(r.spec) for r in records] == [MaxCutSpec, QuboSpec, PortfolioSpec]


@pytest.mark.parametrize("name", ["p.jsonl", "p.ndjson", "p.json"])
def test_json_lines(name: str) -> None:
    text = f"{line(MAXCUT)}\n\n{line(QUBO)}\r\n{line(PORTFOLIO)}\n"
    records = read(name, text)
    assert [(r.record, r.ok) for r in records] == [
        ("line 1", True),
        ("line 3", True),
        ("line 4", True),
    ]
    assert [r.spec.kind for r in records if r.spec] == ["maxcut", "qubo", "portfolio"]


def test_utf8_bom_is_accepted() -> None:
    records = read("p.json", b"\xef\xbb\xbf" + line(MAXCUT).encode())
    assert [r.ok for r in records] == [True]


@pytest.mark.parametrize("name", ["g.txt", "G11", "g05_60.0", "graph.rudy"])
def test_rudy_edge_list(name: str) -> None:
    # 1-based, header with trailing spaces, comments (one with latin-1 bytes: é and the
    # cp1252 ellipsis 0x85, which str.splitlines() would take for a line break).
    raw = (
        b"# a Gset-style graph, caf\xe9 \x85 comment\n"
        b"4 4 \n"
        b"1 2 1\n"
        b"  # indented comment\n"
        b"2 3 -1\n"
        b"3 4 2.5\n"
        b"\n"
        b"4 1 1\n"
    )
    records = read(name, raw)
    assert [(r.record, r.ok) for r in records] == [("file", True)]
    spec = records[0].spec
    assert isinstance(spec, MaxCutSpec)
    assert spec.n == 4
    assert spec.edges == [[0, 1, 1], [1, 2, -1], [2, 3, 2.5], [3, 0, 1]]
    assert float(objective(spec, [1, 0, 1, 0])) == 1 - 1 + 2.5 + 1


def test_rudy_edge_list_from_path(tmp_path: Path) -> None:
    path = tmp_path / "tiny"
    path.write_bytes(b"3 2\n1 2 1\n2 3 1\n")
    records = read_path(path, LimitSettings())
    assert [(r.file, r.record, r.ok) for r in records] == [(str(path), "file", True)]


def sparse_f(q: dict[tuple[int, int], float], y: tuple[int, ...]) -> float:
    """Biq Mac: f(y) = sum q_ii y_i + 2 sum_{i<j} q_ij y_i y_j (1-based keys)."""
    return sum((c if i == j else 2 * c) * y[i - 1] * y[j - 1] for (i, j), c in q.items())


def test_biqmac_sparse_hand_example() -> None:
    raw = b"3 4\n1 1 2\n1 2 -3\n2 3 5\n3 3 -1\n"
    q = {(1, 1): 2, (1, 2): -3, (2, 3): 5, (3, 3): -1}
    records = read("tiny.sparse", raw)
    assert [(r.record, r.ok) for r in records] == [("file", True)]
    spec = records[0].spec
    assert isinstance(spec, QuboSpec)
    assert spec.n == 3 and spec.sense == "min"
    # Hand-checked values: y=110 -> 2 + 2*(-3) = -4; y=011 -> -1 + 2*5 = 9; y=111 -> 5.
    expected_by_hand = {(0, 0, 0): 0, (1, 1, 0): -4, (0, 1, 1): 9, (1, 1, 1): 5, (1, 0, 1): 1}
    for y, value in expected_by_hand.items():
        assert sparse_f(q, y) == value
        assert float(objective(spec, list(y))) == value
        assert float(formulate(spec).qubo.evaluate(list(y))) == value
    for y in np.ndindex(2, 2, 2):
        assert float(objective(spec, list(y))) == sparse_f(q, y)


# --- the real benchmark files, read in place ----------------------------------------------


def parse_triples(path: Path) -> tuple[int, int, list[tuple[int, int, float]]]:
    """An independent reader: header 'n m', then 1-based 'i j w' lines, '#' comments."""
    rows = [
        ln.split()
        for ln in path.read_bytes().decode("latin-1").split("\n")
        if ln.strip() and not ln.strip().startswith("#")
    ]
    n, m = int(rows[0][0]), int(rows[0][1])
    return n, m, [(int(i), int(j), float(w)) for i, j, w in rows[1:]]


@pytest.mark.parametrize(
    ("path", "n", "terms"),
    [(KARLOFF, 20, 90), (G05_60, 60, 885)],
    ids=["karloff", "g05_60"],
)
def test_real_maxcut_files(path: Path, n: int, terms: int) -> None:
    records = read_path(path, LimitSettings())
    assert [(r.record, r.ok) for r in records] == [("file", True)]
    spec = records[0].spec
    assert isinstance(spec, MaxCutSpec)
    assert spec.n == n and len(spec.edges) == terms
    n_file, m_file, triples = parse_triples(path)
    assert (n_file, m_file) == (n, terms)
    assert [tuple(e) for e in spec.edges] == [(i - 1, j - 1, w) for i, j, w in triples]
    rng = np.random.default_rng(1)
    bits = rng.integers(0, 2, size=(50, n))
    expected = [sum(w for i, j, w in triples if x[i - 1] != x[j - 1]) for x in bits]
    np.testing.assert_allclose(objective(spec, bits), expected)


def test_karloff_optimum_is_60() -> None:
    spec = read_path(KARLOFF, LimitSettings())[0].spec
    assert isinstance(spec, MaxCutSpec)
    record = {"kind": "maxcut", "n": spec.n, "edges": spec.edges}
    assert truth.brute_force(record) == pytest.approx(60.0)  # every one of the 2^20 cuts


def test_real_sparse_qubo_gka1b() -> None:
    records = read_path(GKA1B, LimitSettings())
    assert [(r.record, r.ok) for r in records] == [("file", True)]
    spec = records[0].spec
    assert isinstance(spec, QuboSpec)
    n, m, triples = parse_triples(GKA1B)
    assert (spec.n, n, m) == (20, 20, 207)
    diagonal = sum(1 for i, j, _ in triples if i == j)
    assert (len(spec.linear), len(spec.quadratic)) == (diagonal, m - diagonal)
    assert len(spec.linear) + len(spec.quadratic) == 207
    q = {(i, j): w for i, j, w in triples}
    rng = np.random.default_rng(2)
    bits = rng.integers(0, 2, size=(50, n))
    np.testing.assert_allclose(objective(spec, bits), [sparse_f(q, tuple(x)) for x in bits])
    # The published optimum (Biq Mac: -133) holds only with off-diagonals counted twice.
    record = {
        "kind": "qubo",
        "n": n,
        "linear": [[i - 1, c] for (i, j), c in q.items() if i == j],
        "quadratic": [[i - 1, j - 1, 2 * c] for (i, j), c in q.items() if i != j],
    }
    assert truth.brute_force(record) == -133


def test_reading_real_files_twice_gives_one_key() -> None:
    first = read_path(GKA1B, LimitSettings())[0].spec
    second = read_path(GKA1B, LimitSettings())[0].spec
    assert first is not None and second is not None
    assert idempotency_key(first) == idempotency_key(second)


# --- every rejection names file, record and field -----------------------------------------


def mc(**fields: Any) -> str:
    return line({"kind": "maxcut", "n": 3, "edges": [[0, 1]]} | fields)


def qb(**fields: Any) -> str:
    return line({"kind": "qubo", "n": 3} | fields)


def pf(**fields: Any) -> str:
    return line(PORTFOLIO | fields)


BAD_INPUTS = [
    # non-finite numbers (NaN / Infinity are Python's JSON extensions; 1e999 overflows)
    (
        "nan-weight",
        "p.json",
        '{"kind":"maxcut","n":2,"edges":[[0,1,NaN]]}',
        {},
        [("record 1", "edges.0.2")],
    ),
    (
        "inf-weight",
        "p.json",
        '{"kind":"maxcut","n":2,"edges":[[0,1,Infinity]]}',
        {},
        [("record 1", "edges.0.2")],
    ),
    (
        "1e999-weight",
        "p.json",
        '{"kind":"maxcut","n":2,"edges":[[0,1,1e999]]}',
        {},
        [("record 1", "edges.0.2")],
    ),
    (
        "huge-int-weight",
        "p.json",
        '{"kind":"maxcut","n":2,"edges":[[0,1,1' + "0" * 400 + "]]}",
        {},
        [("record 1", "edges.0.2")],
    ),
    ("nan-offset", "p.json", '{"kind":"qubo","n":2,"offset":NaN}', {}, [("record 1", "offset")]),
    (
        "-inf-linear",
        "p.json",
        '{"kind":"qubo","n":2,"linear":[[1,-Infinity]]}',
        {},
        [("record 1", "linear.0.1")],
    ),
    (
        "nan-quadratic",
        "p.json",
        '{"kind":"qubo","n":2,"quadratic":[[0,1,NaN]]}',
        {},
        [("record 1", "quadratic.0.2")],
    ),
    (
        "inf-mu",
        "p.json",
        pf(mu=[1, 2, 3]).replace("[1, 2, 3]", "[1, Infinity, 3]"),
        {},
        [("record 1", "mu.1")],
    ),
    (
        "1e999-sigma",
        "p.json",
        pf().replace("[0, 0, 1]", "[0, 1e999, 1]"),
        {},
        [("record 1", "sigma.2.1")],
    ),
    ("nan-risk", "p.json", pf().replace('"risk": 0.5', '"risk": NaN'), {}, [("record 1", "risk")]),
    (
        "nan-jsonl-line-2",
        "p.jsonl",
        mc() + '\n{"kind":"maxcut","n":2,"edges":[[0,1,NaN]]}\n',
        {},
        [("line 2", "edges.0.2")],
    ),
    ("nan-edge-list", "g.txt", "3 2\n1 2 1\n2 3 nan\n", {}, [("line 3", "w")]),
    ("inf-edge-list", "g.txt", "3 2\n1 2 inf\n2 3 1\n", {}, [("line 2", "w")]),
    ("1e999-sparse", "q.sparse", "3 2\n1 1 1e999\n1 2 1\n", {}, [("line 2", "q")]),
    # indices out of range
    ("edge-index-high", "p.json", mc(edges=[[0, 3]]), {}, [("record 1", "edges.0.1")]),
    ("edge-index-negative", "p.json", mc(edges=[[0, 1], [-1, 2]]), {}, [("record 1", "edges.1.0")]),
    ("edge-index-float", "p.json", mc(edges=[[0.0, 1]]), {}, [("record 1", "edges.0.0")]),
    ("linear-index", "p.json", qb(linear=[[0, 1], [3, 1]]), {}, [("record 1", "linear.1.0")]),
    ("quadratic-index", "p.json", qb(quadratic=[[0, 7, 1]]), {}, [("record 1", "quadratic.0.1")]),
    ("edge-list-index", "g.txt", "3 2\n1 2 1\n1 4 1\n", {}, [("line 3", "j")]),
    ("edge-list-zero-based", "g.txt", "3 2\n0 1 1\n1 2 1\n", {}, [("line 2", "i")]),
    ("sparse-index", "q.sparse", "3 2\n1 1 1\n4 4 2\n", {}, [("line 3", "i")]),
    ("sparse-offdiag-index", "q.sparse", "3 2\n1 1 1\n2 9 2\n", {}, [("line 3", "j")]),
    # self-loops
    ("self-loop", "p.json", mc(edges=[[0, 1], [2, 2, 1]]), {}, [("record 1", "edges.1")]),
    ("self-loop-edge-list", "g.txt", "3 2\n1 2 1\n3 3 1\n", {}, [("line 3", "i j")]),
    # duplicate edges / terms
    (
        "duplicate-edge",
        "p.json",
        mc(edges=[[0, 1], [1, 2], [0, 1, 2]]),
        {},
        [("record 1", "edges.2")],
    ),
    ("duplicate-edge-swapped", "p.json", mc(edges=[[0, 1], [1, 0]]), {}, [("record 1", "edges.1")]),
    ("duplicate-edge-list-swapped", "g.txt", "3 3\n1 2 1\n2 3 1\n2 1 1\n", {}, [("line 4", "i j")]),
    (
        "triplicate-edge-list",
        "g.txt",
        "3 3\n1 2 1\n1 2 1\n1 2 1\n",
        {},
        [("line 3", "i j"), ("line 4", "i j")],
    ),
    ("duplicate-linear", "p.json", qb(linear=[[0, 1], [0, 2]]), {}, [("record 1", "linear.1")]),
    (
        "duplicate-quadratic-swapped",
        "p.json",
        qb(quadratic=[[0, 1, 1], [1, 0, 2]]),
        {},
        [("record 1", "quadratic.1")],
    ),
    ("duplicate-sparse", "q.sparse", "3 3\n1 2 1\n1 1 1\n1 2 3\n", {}, [("line 4", "i j")]),
    # sigma
    (
        "asymmetric-sigma",
        "p.json",
        pf(sigma=[[1, 0.5, 0], [0.4, 2, 0], [0, 0, 1]]),
        {},
        [("record 1", "sigma.0.1")],
    ),
    (
        "asymmetric-sigma-twice",
        "p.json",
        pf(sigma=[[1, 0, 1], [0, 2, 1], [0, 0, 1]]),
        {},
        [("record 1", "sigma.0.2"), ("record 1", "sigma.1.2")],
    ),
    ("sigma-rows", "p.json", pf(sigma=[[1, 0, 0], [0, 1, 0]]), {}, [("record 1", "sigma")]),
    (
        "sigma-ragged",
        "p.json",
        pf(sigma=[[1, 0, 0], [0, 1], [0, 0, 1]]),
        {},
        [("record 1", "sigma.1")],
    ),
    ("budget-over-n", "p.json", pf(budget=4), {}, [("record 1", "budget")]),
    # sizes over the configured limits
    ("maxcut-over-limit", "p.json", mc(n=5, edges=[]), {"max_variables": 4}, [("record 1", "n")]),
    ("qubo-over-limit", "p.json", qb(n=5), {"max_variables": 4}, [("record 1", "n")]),
    ("portfolio-over-limit", "p.json", pf(), {"max_variables": 2}, [("record 1", "mu")]),
    ("edge-list-over-limit", "g.txt", "5 1\n1 2 1\n", {"max_variables": 4}, [("file", "n")]),
    ("sparse-over-limit", "q.sparse", "5 1\n1 2 1\n", {"max_variables": 4}, [("file", "n")]),
    (
        "edges-over-limit",
        "p.json",
        mc(edges=[[0, 1], [1, 2], [0, 2]]),
        {"max_terms": 2},
        [("record 1", "edges")],
    ),
    (
        "terms-over-limit",
        "p.json",
        qb(linear=[[0, 1], [1, 1]], quadratic=[[0, 1, 1]]),
        {"max_terms": 2},
        [("record 1", "quadratic")],
    ),
    (
        "limit-in-array",
        "p.json",
        f"[{mc()}, {mc(n=9, edges=[])}]",
        {"max_variables": 8},
        [("record 2", "n")],
    ),
    # unknown fields and kinds, missing kind
    ("unknown-field", "p.json", mc(colour="red"), {}, [("record 1", "colour")]),
    ("misspelt-option", "p.json", mc(priorty=1), {}, [("record 1", "priorty")]),
    ("field-of-other-kind", "p.json", mc(sense="max"), {}, [("record 1", "sense")]),
    ("unknown-kind", "p.json", line({"kind": "tsp", "n": 3}), {}, [("record 1", "kind")]),
    ("kind-number", "p.json", line({"kind": 3}), {}, [("record 1", "kind")]),
    ("kind-list", "p.json", line({"kind": ["maxcut"]}), {}, [("record 1", "kind")]),
    ("kind-object", "p.json", line({"kind": {"a": 1}}), {}, [("record 1", "kind")]),
    (
        "kind-case",
        "p.json",
        line({"kind": "MaxCut", "n": 3, "edges": []}),
        {},
        [("record 1", "kind")],
    ),
    ("missing-kind", "p.json", line({"n": 3, "edges": []}), {}, [("record 1", "kind")]),
    ("null-kind", "p.jsonl", mc() + "\n" + line({"kind": None}), {}, [("line 2", "kind")]),
    ("missing-field", "p.json", line({"kind": "maxcut", "edges": []}), {}, [("record 1", "n")]),
    (
        "missing-sigma",
        "p.json",
        line({"kind": "portfolio", "mu": [1], "budget": 1, "risk": 0}),
        {},
        [("record 1", "sigma")],
    ),
    # oversized payloads
    ("file-limit", "p.json", mc(tenant="x" * 100), {"max_file_bytes": 100}, [("file", "")]),
    (
        "file-limit-edge-list",
        "g.txt",
        "3 2\n1 2 1\n2 3 1\n",
        {"max_file_bytes": 10},
        [("file", "")],
    ),
    (
        "record-limit-jsonl",
        "p.jsonl",
        mc() + "\n" + mc(tenant="x" * 100) + "\n",
        {"max_record_bytes": 100},
        [("line 2", "")],
    ),
    (
        "record-limit-array",
        "p.json",
        f"[{mc()}, {mc(tenant='x' * 100)}, {mc()}]",
        {"max_record_bytes": 100},
        [("record 2", "")],
    ),
    (
        "record-limit-object",
        "p.json",
        mc(tenant="x" * 100),
        {"max_record_bytes": 100},
        [("record 1", "")],
    ),
    ("key-too-long", "p.json", mc(key="k" * 201), {}, [("record 1", "key")]),
    # invalid JSON
    ("truncated", "p.json", '{"kind": "maxcut", "n": 3,', {}, [("file", "")]),
    ("trailing-comma", "p.json", '{"kind": "maxcut", "n": 3, "edges": [],}', {}, [("file", "")]),
    ("single-quotes", "p.json", "{'kind': 'maxcut'}", {}, [("file", "")]),
    ("empty-file", "p.json", "", {}, [("file", "")]),
    ("empty-array", "p.json", "[]", {}, [("file", "")]),
    ("empty-jsonl", "p.jsonl", "\n \n", {}, [("file", "")]),
    ("jsonl-bad-line", "p.jsonl", mc() + '\n{"kind": \n' + mc() + "\n", {}, [("line 2", "")]),
    (
        "raw-control-char-in-string",
        "p.json",
        '{"kind": "maxcut", "tenant": "a\x01b"}',
        {},
        [("file", "")],
    ),
    # wrong types
    ("n-string", "p.json", mc(n="3"), {}, [("record 1", "n")]),
    ("n-bool", "p.json", mc(n=True), {}, [("record 1", "n")]),
    ("n-float", "p.json", mc(n=3.0), {}, [("record 1", "n")]),
    ("n-zero", "p.json", mc(n=0, edges=[]), {}, [("record 1", "n")]),
    ("edges-object", "p.json", mc(edges={"0": 1}), {}, [("record 1", "edges")]),
    ("edge-string-index", "p.json", mc(edges=[[0, "1"]]), {}, [("record 1", "edges.0.1")]),
    ("edge-bool-weight", "p.json", mc(edges=[[0, 1, True]]), {}, [("record 1", "edges.0.2")]),
    ("edge-null-weight", "p.json", mc(edges=[[0, 1, None]]), {}, [("record 1", "edges.0.2")]),
    ("edge-too-short", "p.json", mc(edges=[[0]]), {}, [("record 1", "edges.0")]),
    ("edge-too-long", "p.json", mc(edges=[[0, 1, 1, 1]]), {}, [("record 1", "edges.0")]),
    ("sense", "p.json", qb(sense="maximise"), {}, [("record 1", "sense")]),
    ("budget-negative", "p.json", pf(budget=-1), {}, [("record 1", "budget")]),
    ("risk-negative", "p.json", pf(risk=-0.5), {}, [("record 1", "risk")]),
    ("mu-empty", "p.json", pf(mu=[]), {}, [("record 1", "mu")]),
    ("priority-string", "p.json", mc(priority="high"), {}, [("record 1", "priority")]),
    ("deadline-garbage", "p.json", mc(deadline="tomorrow"), {}, [("record 1", "deadline")]),
    (
        "deadline-naive",
        "p.json",
        mc(deadline="2030-01-01T00:00:00"),
        {},
        [("record 1", "deadline")],
    ),
    ("route", "p.json", mc(route="gpu"), {}, [("record 1", "route")]),
    ("reps-zero", "p.json", mc(reps=0), {}, [("record 1", "reps")]),
    ("shots-too-many", "p.json", mc(shots=10**7), {}, [("record 1", "shots")]),
    ("tenant-empty", "p.json", mc(tenant=""), {}, [("record 1", "tenant")]),
    ("record-not-object", "p.json", f"[{mc()}, 3, null]", {}, [("record 2", ""), ("record 3", "")]),
    ("document-string", "p.json", '"maxcut"', {}, [("record 1", "")]),
    ("jsonl-array-line", "p.jsonl", mc() + "\n[1, 2]\n", {}, [("line 2", "")]),
    (
        "two-bad-fields",
        "p.json",
        mc(n="x", edges=5),
        {},
        [("record 1", "n"), ("record 1", "edges")],
    ),
    # non-UTF-8 JSON
    (
        "latin1-json",
        "p.json",
        b'{"kind": "maxcut", "n": 2, "edges": [], "tenant": "caf\xe9"}',
        {},
        [("file", "")],
    ),
    ("latin1-jsonl", "p.jsonl", mc().encode() + b'\n{"tenant": "\xff"}\n', {}, [("file", "")]),
    ("utf16-json", "p.json", line(MAXCUT).encode("utf-16"), {}, [("file", "")]),
    # duplicate field names
    (
        "duplicate-field",
        "p.json",
        '{"kind": "maxcut", "n": 2, "n": 3, "edges": []}',
        {},
        [("record 1", "n")],
    ),
    (
        "duplicate-kind",
        "p.json",
        '{"kind": "maxcut", "n": 2, "edges": [], "kind": "qubo"}',
        {},
        [("record 1", "kind")],
    ),
    (
        "duplicate-in-array",
        "p.json",
        f'[{mc()}, {{"kind": "maxcut", "n": 2, "edges": [], "edges": []}}]',
        {},
        [("record 2", "edges")],
    ),
    (
        "duplicate-in-jsonl",
        "p.jsonl",
        mc() + '\n{"kind": "maxcut", "n": 2, "edges": [], "tenant": "a", "tenant": "b"}\n',
        {},
        [("line 2", "tenant")],
    ),
    (
        "duplicate-two-fields",
        "p.json",
        '{"kind": "maxcut", "n": 2, "n": 3, "edges": [], "edges": []}',
        {},
        [("record 1", "n"), ("record 1", "edges")],
    ),
    # deep nesting
    ("deep-document", "p.json", "[" * 100_000 + "]" * 100_000, {}, [("file", "")]),
    ("deep-object", "p.json", '{"a":' * 100_000 + "1" + "}" * 100_000, {}, [("file", "")]),
    (
        "deep-jsonl-line",
        "p.jsonl",
        mc() + "\n" + "[" * 100_000 + "]" * 100_000 + "\n",
        {},
        [("line 2", "")],
    ),
    (
        "nested-edges",
        "p.json",
        mc(edges=[[[[[[[[0]]]]]]], [0, 1]]),
        {},
        [("record 1", "edges.0.0")],
    ),
    # control characters in keys
    ("control-char-idempotency-key", "p.json", mc(key="a\u0000b"), {}, [("record 1", "key")]),
    ("escape-seq-key", "p.json", mc(key="\u001b[2Jhi"), {}, [("record 1", "key")]),
    (
        "line-separator-tenant",
        "p.jsonl",
        mc(tenant="a\u2028b").replace("\\u2028", "\u2028") + "\n" + mc(n="x") + "\n",
        {},
        [("line 1", "tenant"), ("line 2", "n")],
    ),
    ("control-char-field-name", "p.json", mc(**{"\u001b[2J": 1}), {}, [("record 1", "\\x1b[2J")]),
    (
        "control-char-duplicate-name",
        "p.json",
        '{"kind": "maxcut", "n": 2, "edges": [], "\\u0007": 1, "\\u0007": 2}',
        {},
        [("record 1", "\\x07")],
    ),
    # deadlines Python's datetime cannot hold once in UTC (an OverflowError inside submit),
    # and a number (which pydantic would read as Unix seconds or milliseconds)
    (
        "deadline-year-1-east-of-utc",
        "p.json",
        mc(deadline="0001-01-01T00:00:00+01:00"),
        {},
        [("record 1", "deadline")],
    ),
    (
        "deadline-year-9999-west-of-utc",
        "p.json",
        mc(deadline="9999-12-31T23:59:59-01:00"),
        {},
        [("record 1", "deadline")],
    ),
    ("deadline-unix-seconds", "p.json", mc(deadline=1_700_000_000), {}, [("record 1", "deadline")]),
    # coefficients whose objective could overflow: named by their largest one
    (
        "weights-1e308",
        "p.json",
        mc(edges=[[0, 1, 1e308], [1, 2, 1e308]]),
        {},
        [("record 1", "edges.0.2")],
    ),
    (
        "qubo-terms-1e308",
        "p.json",
        qb(linear=[[0, 1e200]], quadratic=[[0, 1, -1e308]], offset=1e307),
        {},
        [("record 1", "quadratic.0.2")],
    ),
    ("portfolio-mu-1e308", "p.json", pf(mu=[1e308, 1e308, 1]), {}, [("record 1", "mu.0")]),
    ("portfolio-risk-1e300", "p.json", pf(risk=1e300), {}, [("record 1", "sigma.1.1")]),
    ("gset-weights-1e308", "g.txt", "3 2\n1 2 1e308\n2 3 1e308\n", {}, [("line 2", "w")]),
    # bad headers and line counts in line-oriented files
    ("header-count-high", "g.txt", "3 3\n1 2 1\n2 3 1\n", {}, [("file", "header")]),
    ("header-count-low", "g.txt", "3 1\n1 2 1\n2 3 1\n", {}, [("file", "header")]),
    ("edge-line-two-values", "g.txt", "3 2\n1 2 1\n2 3\n", {}, [("line 3", "")]),
    ("edge-line-four-values", "g.txt", "3 2\n1 2 1 7\n2 3 1\n", {}, [("line 2", "")]),
    ("edge-line-not-numbers", "g.txt", "3 2\n1 two 1\n2 3 1\n", {}, [("line 2", "")]),
    ("edge-line-float-index", "g.txt", "3 2\n1.5 2 1\n2 3 1\n", {}, [("line 2", "")]),
    ("edge-list-n-zero", "g.txt", "0 0\n", {}, [("file", "n")]),
    ("edge-list-one-number-header", "g.txt", "3\n1 2 1\n", {}, [("line 1", ""), ("line 2", "")]),
    ("sparse-header-one-number", "q.sparse", "3\n1 2 1\n", {}, [("line 1", "header")]),
    ("sparse-header-words", "q.sparse", "n m\n1 2 1\n", {}, [("line 1", "header")]),
    ("sparse-empty", "q.sparse", "", {}, [("file", "")]),
    ("sparse-comments-only", "q.sparse", "# nothing\n", {}, [("file", "")]),
    ("sparse-count", "q.sparse", "3 3\n1 1 1\n1 2 1\n", {}, [("file", "header")]),
    ("sparse-bad-line", "q.sparse", "3 2\n1 1 1\n1 2\n", {}, [("line 3", "")]),
    (
        "sparse-latin1-comment-shift",
        "q.sparse",
        b"# \x85 \x1c \x0c\n3 2\n1 1 1\n1 5 1\n",
        {},
        [("line 4", "j")],
    ),
]


@pytest.mark.parametrize(
    ("name", "raw", "limits", "expected"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_INPUTS],
)
def test_bad_input_is_rejected_with_file_record_and_field(
    name: str, raw: str | bytes, limits: dict[str, int], expected: list[tuple[str, str]]
) -> None:
    records = read(name, raw, **limits)
    assert_consistent(name, records)
    assert where(records) == expected
    bad = [r for r in records if r.issues]
    assert bad, "the input was accepted"
    # Valid neighbours in the same file stay valid; InputRejected carries every issue.
    rejected = InputRejected([issue for r in bad for issue in r.issues])
    for record_name, field in expected:
        assert f"{name}: {record_name}" in str(rejected)
        if field:
            assert f"field '{field}'" in str(rejected)


def test_valid_records_beside_bad_ones_stay_valid() -> None:
    text = "\n".join([mc(), mc(edges=[[0, 0]]), qb(), pf(budget=9), pf()])
    records = read("mixed.jsonl", text)
    assert [(r.record, r.ok) for r in records] == [
        ("line 1", True),
        ("line 2", False),
        ("line 3", True),
        ("line 4", False),
        ("line 5", True),
    ]


def test_messages_say_what_is_wrong() -> None:
    [record] = read("g.txt", "3 3\n1 2 1\n2 3 1\n2 1 1\n")
    [issue] = record.issues
    assert "duplicate edge" in issue.message and "line 2" in issue.message
    [record] = read("p.json", mc(colour=1))
    assert record.issues[0].message == "unknown field"
    [record] = read("p.json", '{"kind":"maxcut","n":2,"edges":[[0,1,NaN]]}')
    assert "finite" in record.issues[0].message
    [record] = read("p.json", mc(n=5, edges=[]), max_variables=4)
    assert "limit of 4" in record.issues[0].message
    [record] = read("p.jsonl", mc(tenant="x" * 100), max_record_bytes=100)
    assert "100 bytes" in record.issues[0].message


def test_large_weights_that_cannot_overflow_and_edge_of_range_deadlines_are_accepted() -> None:
    text = "\n".join(
        [
            mc(edges=[[0, 1, 1e200], [1, 2, -1e249]]),
            qb(linear=[[0, 1e200]], quadratic=[[0, 1, -1e200]], offset=1e200),
            pf(risk=1e249),
            mc(deadline="0001-01-01T01:00:00+01:00"),
            mc(deadline="9999-12-31T23:59:59.999999Z"),
            mc(deadline=None),
        ]
    )
    assert [r.issues for r in read("big.jsonl", text)] == [[]] * 6


# --- a bad file costs its first issues and a count of the rest, whatever it holds ----------
def test_a_file_keeps_its_first_issues_and_counts_the_rest() -> None:
    lines = read("bad.jsonl", "\n".join([mc(edges=[[0, 0]])] * 250 + [mc()]))
    assert_consistent("bad.jsonl", lines[:-1])
    assert [r.record for r in lines[-2:]] == ["line 251", "file"]  # the valid one stays
    assert lines[-2].ok and sum(len(r.issues) for r in lines) == MAX_ISSUES
    assert lines[-1].more_issues == 150 and not lines[-1].ok and not lines[-1].issues
    [record, note] = read("p.json", mc(n=3, edges=[[0, 0]] * 130))  # one record, 130 issues
    assert len(record.issues) == MAX_ISSUES and note.more_issues == 30
    rejected = InputRejected(record.issues, note.more_issues)
    assert str(rejected).endswith("and 30 more issue(s), not listed")


def test_a_record_too_big_to_list_every_error_stops_at_each_lists_first() -> None:
    """Two 2 MB records of half a million bad edges each: pydantic would hold a million
    errors (~1.5 GB once listed); checked up to each list's first bad item, they cost two."""
    edges = ",".join(["[0]"] * 500_000)
    record = f'{{"kind": "maxcut", "n": 2, "edges": [{edges}], "sigma": 1}}'
    records = read("p.json", f"[{record}, {record}]", max_file_bytes=8 * 1024 * 1024)
    fields = ["edges.0", "sigma", ""]  # the first bad edge, the unknown field, the note
    assert where(records) == [(f"record {i}", field) for i in (1, 2) for field in fields]
    assert records[0].issues[1].message == "unknown field"
    assert records[0].issues[2].message == PARTIAL_CHECK
    small, note = read("p.json", mc(edges=[[0]] * 1000))  # under FULL_CHECK_BYTES: all counted
    assert len(small.issues) == MAX_ISSUES and note.more_issues == 1000 - MAX_ISSUES


def test_file_limit_through_read_path(tmp_path: Path) -> None:
    path = tmp_path / "big.json"
    path.write_text(mc(tenant="x" * 500))
    records = read_path(path, LimitSettings(max_file_bytes=100))
    assert where(records) == [("file", "")]
    assert records[0].issues[0].file == str(path)


def test_missing_file_through_read_path(tmp_path: Path) -> None:
    records = read_path(tmp_path / "nope.json", LimitSettings())
    assert where(records) == [("file", "")]
    assert "cannot read" in records[0].issues[0].message


# --- property: the reader never raises, and every record is ok xor has issues ------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["maxcut", "qubo", "portfolio", "min", "max", "auto", "quantum"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(
            st.one_of(st.text(max_size=6), st.sampled_from(["kind", "n", "edges", "mu", "sigma"])),
            children,
            max_size=4,
        ),
    ),
    max_leaves=20,
)
VALID = [
    MAXCUT,
    QUBO,
    PORTFOLIO,
    {"kind": "qubo", "n": 3, "linear": [[0, 1], [2, -1]], "quadratic": [[0, 1, 2]], "offset": 1},
    {"kind": "maxcut", "n": 2, "edges": [[0, 1, 3]], "key": "k", "reps": 2, "shots": 100},
]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def mutate(document: Any, data: st.DataObject, depth: int = 0) -> Any:
    """Replace, drop or add one thing somewhere inside a valid record."""
    if isinstance(document, dict) and document:
        key = data.draw(st.sampled_from(sorted(document)))
        action = data.draw(st.sampled_from(["replace", "drop", "add", "descend"]))
        changed = dict(document)
        if action == "replace":
            changed[key] = data.draw(json_values)
        elif action == "drop":
            del changed[key]
        elif action == "add":
            changed[data.draw(st.text(max_size=6))] = data.draw(json_values)
        else:
            changed[key] = mutate(document[key], data, depth + 1)
        return changed
    if isinstance(document, list) and document:
        index = data.draw(st.integers(0, len(document) - 1))
        changed_list = list(document)
        action = data.draw(st.sampled_from(["replace", "drop", "duplicate", "descend"]))
        if action == "replace":
            changed_list[index] = data.draw(json_values)
        elif action == "drop":
            del changed_list[index]
        elif action == "duplicate":
            changed_list.append(document[index])
        else:
            changed_list[index] = mutate(document[index], data, depth + 1)
        return changed_list
    return data.draw(st.one_of(json_values, st.integers(-3, 5)))


def check_never_raises(name: str, raw: bytes, limits: LimitSettings | None = None) -> None:
    records = read_bytes(name, raw, limits or LimitSettings())
    assert_consistent(name, records)


@PROPERTY
@given(json_values, st.sampled_from(["r.json", "r.jsonl", "r"]))
def test_random_json_never_raises(value: Any, name: str) -> None:
    check_never_raises(name, json.dumps(value).encode())


@PROPERTY
@given(st.sampled_from(VALID), st.data())
def test_mutated_records_never_raise(document: dict[str, Any], data: st.DataObject) -> None:
    mutated = document
    for _ in range(data.draw(st.integers(1, 3))):
        mutated = mutate(mutated, data)
    raw = json.dumps(mutated).encode()
    for name in ("m.json", "m.jsonl"):
        check_never_raises(name, raw)
    check_never_raises("m.jsonl", raw + b"\n" + json.dumps(document).encode())
    check_never_raises("a.json", json.dumps([document, mutated]).encode())
    check_never_raises(
        "s.json", raw, LimitSettings(max_variables=2, max_terms=1, max_record_bytes=60)
    )


@PROPERTY
@given(
    st.lists(
        st.lists(
            st.one_of(
                st.integers(-2, 6).map(str),
                st.sampled_from(["nan", "inf", "-inf", "1e999", "1.5", "x", "#", "1_0", "٣"]),
            ),
            max_size=4,
        ).map(" ".join),
        max_size=8,
    ),
    st.sampled_from(["g.txt", "q.sparse", "g05"]),
)
def test_random_line_files_never_raise(lines: list[str], name: str) -> None:
    check_never_raises(name, "\n".join(lines).encode())
    check_never_raises(name, ("3 2\n" + "\n".join(lines)).encode())


@PROPERTY
@given(st.binary(max_size=200), st.sampled_from(["b.json", "b.jsonl", "b.sparse", "b.txt"]))
def test_random_bytes_never_raise(raw: bytes, name: str) -> None:
    check_never_raises(name, raw)
