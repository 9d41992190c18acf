"""Hostile input through `qhopper submit`: never a traceback, never a half-valid queue.

tests/test_readers.py covers the readers record by record (every rejection, its record
and field, and that they never raise). This file drives the command line end to end
(typer's CliRunner): whatever the bytes, `submit` exits 0 or 2 with no traceback; an
invalid file enqueues nothing; what is enqueued is exactly the valid records, stored so
that they validate again; hostile idempotency keys are kept verbatim and never used as
paths. The answers for hostile keys are checked in tests/test_durability.py.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import pipeline.intake.enqueue
from flows.cli import app
from pipeline.config import LimitSettings
from pipeline.intake import IntakeStore, problems
from pipeline.kinds.base import OPTION_FIELDS
from pipeline.model import (
    MaxCutSpec,
    ProblemSpec,
    content_hash,
    idempotency_key,
    spec_from_record,
    spec_to_record,
)
from pipeline.readers import read_bytes

runner = CliRunner()
HOSTILE_KEYS = [
    "../../etc/passwd",
    "/absolute/path",
    "C:\\Windows\\system32",
    "a/b\\c/../d",
    "date=2026-01-01/b-1.parquet",
    ".hidden",
    "ключ-🔑-키",
    "'; DROP TABLE problems; --",
    "%s%n%x",
    " leading and trailing ",
    "k" * 200,
]
CONTROL_KEYS = ["a\x00b", "line\nbreak", "\x1b[2J", "tab\there", "del\x7f", "bidi\u202eevil"]


def submit(home: Path, *args: str) -> Any:
    return runner.invoke(app, ["submit", *args, "--home", str(home)])


def queued_rows(home: Path) -> list[dict[str, Any]]:
    engine = sa.create_engine(f"sqlite:///{home / 'intake.db'}")
    try:
        with engine.connect() as connection:
            return [dict(r) for r in connection.execute(sa.select(problems)).mappings()]
    except sa.exc.OperationalError:
        return []  # no database yet: nothing was ever enqueued
    finally:
        engine.dispose()


def assert_clean_exit(result: Any) -> None:
    """Exit 0 or 2, and no traceback: any exception but typer's own exit is a crash."""
    assert result.exit_code in (0, 2), (result.exit_code, result.output[-2000:])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output


def assert_queue_holds_exactly(home: Path, specs: list[ProblemSpec]) -> None:
    """The queue holds one row per distinct key of ``specs``, each re-validating as stored."""
    rows = queued_rows(home)
    first_by_key: dict[str, ProblemSpec] = {}
    for spec in specs:
        first_by_key.setdefault(idempotency_key(spec), spec)
    assert sorted(r["key"] for r in rows) == sorted(first_by_key)
    for row in rows:
        stored = json.loads(row["spec_json"])
        assert spec_to_record(spec_from_record(stored)) == spec_to_record(first_by_key[row["key"]])
        [again] = read_bytes("stored.json", row["spec_json"].encode(), LimitSettings())
        assert again.ok, again.issues  # nothing half-valid reached the queue


# --- property: random hostile files through the CLI --------------------------------------
keys = st.one_of(
    st.sampled_from(HOSTILE_KEYS + CONTROL_KEYS),
    st.text(
        st.one_of(st.characters(), st.sampled_from(list("/\\.\x00\n\r\t\u2028\u202e%'\";"))),
        max_size=210,
    ),
)
huge = st.one_of(
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([10**308, -(10**309), 1e308, 5e-324, 2**63, -(2**64)]),
)


def offset_times(when: st.SearchStrategy[datetime]) -> st.SearchStrategy[str]:
    """ISO-8601 text of ``when`` at a whole-minute UTC offset within a day either way."""
    offsets = st.integers(-(24 * 60 - 1), 24 * 60 - 1).map(lambda m: timezone(timedelta(minutes=m)))
    return st.builds(lambda t, tz: t.replace(tzinfo=tz).isoformat(), when, offsets)


deadlines = st.one_of(
    offset_times(st.datetimes()),  # anywhere in Python's years 1-9999
    offset_times(st.datetimes(max_value=datetime(1, 1, 2))),  # by the edges, where an
    offset_times(st.datetimes(min_value=datetime(9999, 12, 30))),  # offset leaves the range
    st.datetimes().map(datetime.isoformat),  # no time zone
    st.sampled_from(
        [
            "0001-01-01T00:00:00+01:00",
            "9999-12-31T23:59:59-01:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999Z",
            "2026-02-30T00:00:00Z",
            "10000-01-01T00:00:00Z",
            "2026-01-01T00:00:00+24:00",
            "",
            "tomorrow",
        ]
    ),
    st.none(),
    st.booleans(),
    huge,
)
options: dict[str, st.SearchStrategy[Any]] = {
    "key": st.one_of(st.sampled_from(["job-1", "job-2"]), keys),  # reused across a file
    "tenant": keys,
    "deadline": deadlines,
    "priority": st.one_of(st.sampled_from([10**6, -(10**6), 10**6 + 1, -(10**6) - 1]), huge),
    "route": st.one_of(
        st.sampled_from(["auto", "quantum", "classical", "Quantum", "", "gpu"]), st.none(), huge
    ),
    "reps": st.one_of(st.integers(-1, 12), st.sampled_from([2.0, True, "2"]), st.none(), huge),
    "shots": st.one_of(st.sampled_from([0, 1, 1_000_000, 1_000_001, 64.0, False]), st.none(), huge),
}


def _huge_weight(draw: st.DrawFn, record: dict[str, Any], n: int) -> None:
    if isinstance(record["edges"], list):
        record["edges"][0][2] = draw(huge)
        record["edges"][n - 2][2] = draw(huge)  # the ring's last edge (or the same)


def _huge_n(draw: st.DrawFn, record: dict[str, Any], n: int) -> None:
    record["n"] = draw(huge)


def _huge_index(draw: st.DrawFn, record: dict[str, Any], n: int) -> None:
    if isinstance(record["edges"], list):
        record["edges"].append([0, draw(st.one_of(huge, st.integers(-1, n)))])


def _deep(draw: st.DrawFn, record: dict[str, Any], n: int) -> str:
    """Edges nested ``depth`` lists deep: written into the text after ``json.dumps``."""
    depth = draw(st.sampled_from([2, 50, 5_000, 200_000]))
    record["edges"] = "@@DEEP@@"
    return "[" * depth + "]" * depth


def _long_string(draw: st.DrawFn, record: dict[str, Any], n: int) -> None:
    record["tenant"] = "x" * draw(st.sampled_from([100, 101, 70_000]))


def _long_key(draw: st.DrawFn, record: dict[str, Any], n: int) -> None:
    record["key"] = "k" * draw(st.sampled_from([200, 201]))


def _unknown_field(draw: st.DrawFn, record: dict[str, Any], n: int) -> None:
    name = draw(keys) or "?"
    record[f"x_{name}" if name in OPTION_FIELDS | {"kind", "n", "edges"} else name] = 1


def _kind(draw: st.DrawFn, record: dict[str, Any], n: int) -> None:
    record["kind"] = draw(st.one_of(keys, huge, st.none()))


# Each attack beyond a hostile option value, as what it does to the record (and, for "deep",
# the text that replaces the edges once the record is JSON).
ATTACK_ON: dict[str, Callable[[st.DrawFn, dict[str, Any], int], str | None]] = {
    "huge-weight": _huge_weight,
    "huge-n": _huge_n,
    "huge-index": _huge_index,
    "deep": _deep,
    "long-string": _long_string,
    "long-key": _long_key,
    "unknown-field": _unknown_field,
    "kind": _kind,
}


@st.composite
def hostile_record(draw: st.DrawFn) -> str:
    """One JSON record, valid or not, with something hostile in it; returned as text."""
    n = draw(st.integers(2, 6))
    record: dict[str, Any] = {
        "kind": "maxcut",
        "n": n,
        "edges": [[i, (i + 1) % n, draw(st.integers(1, 5))] for i in range(n - 1)],
    }
    deep = ""
    for attack in draw(st.sets(st.sampled_from(ATTACKS), min_size=1, max_size=3)):
        if attack in options:
            record[attack] = draw(options[attack])
        elif attack in ATTACK_ON:
            deep = ATTACK_ON[attack](draw, record, n) or deep
    # NaN and Infinity come out as Python's JSON extensions; non-ASCII stays unescaped,
    # but for a lone surrogate, which only an escape can carry.
    text = json.dumps(record, ensure_ascii=draw(st.booleans()))
    if not _encodable(text):
        text = json.dumps(record)
    return text.replace('"@@DEEP@@"', deep) if deep else text


@st.composite
def keyed_record(draw: st.DrawFn) -> str:
    """A valid record under one of few keys and tenants: files of them reuse keys, for the
    same content (deduplicated) or another (a conflict)."""
    n = draw(st.integers(2, 3))
    record: dict[str, Any] = {
        "kind": "maxcut",
        "n": n,
        "edges": [[0, 1, draw(st.integers(1, 2))]] + ([[1, 2]] if n == 3 else []),
        "key": draw(st.sampled_from(["job-1", "job-2"])),
    }
    for name, values in (("tenant", ["default", "research"]), ("route", ["auto", "classical"])):
        if draw(st.booleans()):
            record[name] = draw(st.sampled_from(values))
    return json.dumps(record)


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


ATTACKS = [*options, *ATTACK_ON]


# --- the rules, written out independently of pipeline.readers and pipeline.kinds ---------
# From the input contract (DESIGN.md, README "Input formats"): a file is a JSON array, one
# JSON object, or JSON Lines, UTF-8 (a BOM allowed); a MaxCut record has kind "maxcut",
# an integer n in 1..max_variables, edges [u, v] or [u, v, w] with integer endpoints in
# 0..n-1, no self-loops, no pair twice, finite weights a float can hold whose absolute sum
# is at most 1e250; key (1..200) and tenant (1..100) printable text; priority an integer
# within +-1,000,000; deadline ISO-8601 text with a time zone, within the years 1-9999 once
# in UTC; route auto, quantum or classical; reps 1..10 and shots 1..1,000,000 integers or
# null; no other field. Across a submission, a key names one content and one tenant.
MAX_VARIABLES = 2_000
MAX_MAGNITUDE = 1e250
GENERATED_FIELDS = {"kind", "n", "edges", *OPTION_FIELDS}
assert set(options) == set(OPTION_FIELDS), "every optional field gets hostile values"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    if _is_int(value):
        return abs(value) <= sys.float_info.max
    return isinstance(value, float) and math.isfinite(value)


def _text(value: Any, longest: int) -> bool:
    return isinstance(value, str) and 1 <= len(value) <= longest and value.isprintable()


def _edges_ok(edges: Any, n: int) -> bool:
    if not isinstance(edges, list):
        return False
    seen: set[tuple[int, int]] = set()
    for edge in edges:
        if not isinstance(edge, list) or not 2 <= len(edge) <= 3:
            return False
        u, v = edge[0], edge[1]
        if not (_is_int(u) and _is_int(v) and 0 <= u < n and 0 <= v < n and u != v):
            return False
        if len(edge) == 3 and not _finite(edge[2]):
            return False
        if (min(u, v), max(u, v)) in seen:
            return False
        seen.add((min(u, v), max(u, v)))
    return sum(abs(float(e[2])) if len(e) == 3 else 1.0 for e in edges) <= MAX_MAGNITUDE


def _deadline_ok(value: Any) -> bool:
    if value is None:
        return True
    if not isinstance(value, str):
        return False
    try:
        when = datetime.fromisoformat(value)
        return when.tzinfo is not None and when.astimezone(UTC) is not None
    except (ValueError, OverflowError):
        return False


def _within(value: Any, low: int, high: int) -> bool:
    return _is_int(value) and low <= value <= high


def options_ok(obj: dict[str, Any]) -> bool:
    return (
        ("key" not in obj or _text(obj["key"], 200))
        and ("tenant" not in obj or _text(obj["tenant"], 100))
        and ("priority" not in obj or _within(obj["priority"], -(10**6), 10**6))
        and ("deadline" not in obj or _deadline_ok(obj["deadline"]))
        and obj.get("route", "auto") in ("auto", "quantum", "classical")
        and (obj.get("reps") is None or _within(obj["reps"], 1, 10))
        and (obj.get("shots") is None or _within(obj["shots"], 1, 10**6))
    )


def maxcut_record_ok(obj: Any) -> bool:
    if not isinstance(obj, dict) or set(obj) - GENERATED_FIELDS:
        return False
    n = obj.get("n")
    return (
        obj.get("kind") == "maxcut"
        and _is_int(n)
        and 1 <= n <= MAX_VARIABLES
        and _edges_ok(obj.get("edges"), n)
        and options_ok(obj)
    )


def without_key_conflicts(verdicts: list[tuple[bool, Any]]) -> list[tuple[bool, Any]]:
    """The verdicts once submitted: a valid record whose key an earlier valid record gave
    other content (or another tenant) is refused too."""
    owner: dict[str, tuple[str, str]] = {}
    judged = []
    for valid, obj in verdicts:
        submitted = valid
        if valid:
            spec = MaxCutSpec.model_validate(obj)
            seen = owner.setdefault(idempotency_key(spec), (content_hash(spec), spec.tenant))
            submitted = seen == (content_hash(spec), spec.tenant)
        judged.append((submitted, obj))
    return judged


def _compact_size(obj: Any) -> int:
    """A record's compact size; one that cannot be encoded (a lone surrogate from a ``\\ud800``
    escape) has none, and its validity alone decides."""
    try:
        return len(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode())
    except ValueError:
        return 0


def _line_verdicts(text: str, limit: int) -> list[tuple[bool, Any]]:
    verdicts: list[tuple[bool, Any]] = []
    for line in text.split("\n"):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            verdicts.append((False, None))
            continue
        verdicts.append((len(line.encode()) <= limit and maxcut_record_ok(obj), obj))
    return verdicts


def expected_verdicts(raw: bytes, layout: str, limit: int) -> list[tuple[bool, Any]] | None:
    """(valid, parsed record) for each record of the file; None if the file is unreadable."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    if layout == "p.jsonl":
        return _line_verdicts(text, limit)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return _line_verdicts(text, limit) if exc.msg == "Extra data" else None
    except (ValueError, RecursionError):
        return None
    if isinstance(document, list):
        return [(_compact_size(o) <= limit and maxcut_record_ok(o), o) for o in document]
    return [(len(text.encode()) <= limit and maxcut_record_ok(document), document)]


LIMITS = LimitSettings(max_record_bytes=64 * 1024)
LAYOUTS = st.sampled_from(["p.jsonl", "p.json", "array.json", "p"])
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1"])


def file_bytes(records: list[str], layout: str, encoding: str) -> bytes:
    text = f"[{', '.join(records)}]" if layout == "array.json" else "\n".join(records) + "\n"
    return text.encode(encoding, errors="replace")


@settings(max_examples=1000, deadline=None)
@given(record=hostile_record())
def test_each_record_is_judged_as_the_rules_say(record: str) -> None:
    [verdict] = expected_verdicts(record.encode(), "p.jsonl", LIMITS.max_record_bytes) or []
    [read] = read_bytes("p.jsonl", record.encode(), LIMITS)
    assert read.ok == verdict[0], (record[:500], read.issues)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(hostile_record(), min_size=1, max_size=4), layout=LAYOUTS, encoding=ENCODINGS
)
def test_the_reader_agrees_with_the_rules_record_by_record(
    records: list[str], layout: str, encoding: str
) -> None:
    raw = file_bytes(records, layout, encoding)
    verdicts = expected_verdicts(raw, layout, LIMITS.max_record_bytes)
    read = read_bytes("p.json" if layout == "array.json" else layout, raw, LIMITS)
    if verdicts is None:  # the file as a whole cannot be read
        assert [r.record for r in read] == ["file"], read
    else:
        assert [r.ok for r in read] == [ok for ok, _ in verdicts], (verdicts, read)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    records=st.lists(st.one_of(hostile_record(), keyed_record()), min_size=1, max_size=4),
    layout=LAYOUTS,
    encoding=ENCODINGS,
    skip_invalid=st.booleans(),
)
def test_hostile_files_exit_0_or_2_and_enqueue_only_valid_records(
    tmp_path: Path,
    records: list[str],
    layout: str,
    encoding: str,
    skip_invalid: bool,
) -> None:
    case = Path(tempfile.mkdtemp(dir=tmp_path))  # one home per example
    home = case / "home"
    path = case / ("p.json" if layout == "array.json" else layout)
    path.write_bytes(file_bytes(records, layout, encoding))
    config = case / "qhopper.toml"
    config.write_text(f"[limits]\nmax_record_bytes = {LIMITS.max_record_bytes}\n")

    read = expected_verdicts(path.read_bytes(), layout, LIMITS.max_record_bytes)
    verdicts = None if read is None else without_key_conflicts(read)
    if read != verdicts:
        event("a key reused for other content or another tenant")
    valid = [MaxCutSpec.model_validate(obj) for ok, obj in verdicts or [] if ok]
    invalid = verdicts is None or not all(ok for ok, _ in verdicts)
    args = [str(path), "--json", "--config", str(config)]
    result = submit(home, *args, *(["--skip-invalid"] if skip_invalid else []))
    assert_clean_exit(result)
    event(f"{len(valid)} valid, invalid={invalid}, skip={skip_invalid}")
    if invalid and (not skip_invalid or not valid):
        assert result.exit_code == 2
        assert "invalid:" in result.stderr or "skipped:" in result.stderr
        assert_queue_holds_exactly(home, [])
        return
    assert result.exit_code == 0, result.output[-2000:]
    printed = json.loads(result.stdout)
    assert len(printed) == len(valid)
    assert_queue_holds_exactly(home, valid)
    assert {p["id"] for p in printed} == {r["id"] for r in queued_rows(home)}
    assert not list(case.glob("**/etc")) and not Path("/absolute/path").exists()


# --- named cases through the CLI ---------------------------------------------------------
MAXCUT = {"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2, 2.5]]}


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_hostile_but_printable_keys_are_kept_verbatim(tmp_path: Path, key: str) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(MAXCUT | {"key": key}), encoding="utf-8")
    first = submit(tmp_path / "home", str(path), "--json")
    again = submit(tmp_path / "home", str(path), "--json")
    assert_clean_exit(first)
    assert first.exit_code == 0, first.output
    [item] = json.loads(first.stdout)
    assert item["key"] == key and item["created"]
    [repeat] = json.loads(again.stdout)
    assert repeat["id"] == item["id"] and not repeat["created"]
    [row] = queued_rows(tmp_path / "home")
    assert row["key"] == key
    # The key named no file: the home holds the queue database and nothing else.
    assert {p.name for p in (tmp_path / "home").iterdir()} <= {
        "intake.db",
        "intake.db-wal",
        "intake.db-shm",
    }


@pytest.mark.parametrize("key", CONTROL_KEYS)
def test_keys_with_control_characters_are_rejected_by_name(tmp_path: Path, key: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps(MAXCUT) + "\n" + json.dumps(MAXCUT | {"key": key}) + "\n")
    result = submit(tmp_path / "home", str(path))
    assert_clean_exit(result)
    assert result.exit_code == 2
    assert f"{path}: line 2: field 'key'" in result.stderr
    assert "nothing was enqueued" in result.stderr
    assert queued_rows(tmp_path / "home") == []


def _deep(depth: int) -> str:
    return '{"kind": "maxcut", "n": 2, "edges": ' + "[" * depth + "]" * depth + "}"


CLI_CASES = [
    ("utf-16", "p.json", json.dumps(MAXCUT).encode("utf-16"), "UTF-8"),
    ("utf-32", "p.jsonl", json.dumps(MAXCUT).encode("utf-32"), "UTF-8"),
    (
        "latin-1",
        "p.json",
        json.dumps(MAXCUT | {"tenant": "café"}, ensure_ascii=False).encode("latin-1"),
        "UTF-8",
    ),
    ("deep-nesting", "p.json", _deep(500_000).encode(), "nested too deeply"),
    ("deep-in-jsonl", "p.jsonl", (json.dumps(MAXCUT) + "\n" + _deep(100_000)).encode(), "line 2"),
    (
        "huge-int-n",
        "p.json",
        b'{"kind": "maxcut", "edges": [], "n": 1' + b"0" * 400 + b"}",
        "field 'n'",
    ),
    (
        "5000-digit-n",
        "p.json",
        b'{"kind": "maxcut", "edges": [], "n": 1' + b"0" * 5000 + b"}",
        "digits",
    ),
    (
        "huge-int-weight",
        "p.json",
        json.dumps(MAXCUT | {"edges": [[0, 1, 10**400]]}).encode(),
        "finite",
    ),
    ("huge-exponent", "p.json", b'{"kind":"maxcut","n":2,"edges":[[0,1,1e99999]]}', "finite"),
    ("huge-index", "p.json", json.dumps(MAXCUT | {"edges": [[0, 2**64]]}).encode(), "edges.0.1"),
    ("binary", "p.json", bytes(range(256)) * 4, "UTF-8"),
    ("nul-bytes", "p.jsonl", b"\x00" * 1000, "invalid JSON"),
    ("empty", "p.json", b"", "invalid JSON"),
    ("edge-list-garbage", "g.txt", b"3 2\n1 2 1e999\n\xff\xfe 3\n", "line"),
]


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [pytest.param(*case[1:], id=case[0]) for case in CLI_CASES],
)
def test_hostile_files_are_rejected_cleanly(
    tmp_path: Path, name: str, raw: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(raw)
    result = submit(tmp_path / "home", str(path))
    assert_clean_exit(result)
    assert result.exit_code == 2
    assert message in result.stderr
    assert queued_rows(tmp_path / "home") == []


def test_oversized_files_and_records_are_rejected_before_reading_on(tmp_path: Path) -> None:
    config = tmp_path / "qhopper.toml"
    config.write_text("[limits]\nmax_file_bytes = 100000\nmax_record_bytes = 1000\n")
    big_file = tmp_path / "big.jsonl"
    big_file.write_text((json.dumps(MAXCUT) + "\n") * 5000)  # 200 kB
    big_record = tmp_path / "record.jsonl"
    big_record.write_text(
        json.dumps(MAXCUT) + "\n" + json.dumps(MAXCUT | {"tenant": "t" * 2000}) + "\n"
    )
    home = tmp_path / "home"
    for path, message in ((big_file, "over the limit of 100000"), (big_record, "line 2")):
        result = submit(home, str(path), "--config", str(config))
        assert_clean_exit(result)
        assert result.exit_code == 2 and message in result.stderr, result.stderr
    skipped = submit(home, str(big_record), "--config", str(config), "--skip-invalid")
    assert skipped.exit_code == 0 and "skipped:" in skipped.stderr
    assert len(queued_rows(home)) == 1


def test_a_failure_inside_the_submit_transaction_enqueues_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """1,200 records go in three chunks of one transaction: the third fails, none lands."""
    from pipeline.model import MaxCutSpec

    store = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    specs = [(MaxCutSpec.model_validate(MAXCUT | {"key": f"k{i}"}), f"f:{i}") for i in range(1200)]
    real = pipeline.intake.enqueue._insert_ignore
    calls = {"n": 0}

    def flaky(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 3:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
        return real(*args)

    monkeypatch.setattr(pipeline.intake.enqueue, "_insert_ignore", flaky)
    with pytest.raises(sa.exc.OperationalError):
        store.submit(specs)
    monkeypatch.setattr(pipeline.intake.enqueue, "_insert_ignore", real)
    assert sum(store.counts().values()) == 0
    assert len(store.submit(specs)) == 1200 and store.counts()["queued"] == 1200
    store.close()
