"""Readers for every input format, turning bytes into validated specs or named issues.

Formats: a JSON object, a JSON array, JSON Lines, Gset / rudy edge lists (MaxCut,
1-based, ``n m`` header, ``#`` comments allowed) and Biq Mac ``.sparse`` QUBO files
(1-based upper triangle, ``f(y) = sum q_ii y_i + 2 sum_{i<j} q_ij y_i y_j``).
Every issue names the file, the record (line or position) and the field. A file keeps its
first ``MAX_ISSUES`` issues; past those, issues are counted, not kept (see :func:`read_bytes`),
so a file of a million bad values costs a count, not a million messages.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from pipeline.config import LimitSettings
from pipeline.errors import InputIssue
from pipeline.first_errors import first_errors
from pipeline.model import SPEC_TYPES, ProblemSpec, semantic_issues

JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}
MAX_ISSUES = 100  # issues kept per file (or request body); the rest are only counted
FULL_CHECK_BYTES = 64 * 1024  # a larger record is checked with first_errors first: why there
PARTIAL_CHECK = "a large record is checked up to each list's first bad item: there may be more"


@dataclass
class ParsedRecord:
    """One record of one file: a valid spec, or the issues that keep it out (``more_issues``:
    found but not kept; a file's count of them is on its closing ``file`` record)."""

    file: str
    record: str
    spec: ProblemSpec | None = None
    issues: list[InputIssue] = field(default_factory=list)
    more_issues: int = 0

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.issues and not self.more_issues

    def add(self, issues: Iterable[InputIssue]) -> None:
        """Keep the first ``MAX_ISSUES`` issues, count the rest."""
        found = iter(issues)
        self.issues += itertools.islice(found, max(0, MAX_ISSUES - len(self.issues)))
        self.more_issues += sum(1 for _ in found)


def read_path(path: Path, limits: LimitSettings) -> list[ParsedRecord]:
    """Read one file of problems in any supported format."""
    name = str(path)
    try:
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            return [
                _file_issue(
                    name, f"file is {size} bytes, over the limit of {limits.max_file_bytes}"
                )
            ]
        raw = path.read_bytes()
    except OSError as exc:
        return [_file_issue(name, f"cannot read file: {exc.strerror or exc}")]
    return read_bytes(name, raw, limits)


def read_bytes(name: str, raw: bytes, limits: LimitSettings) -> list[ParsedRecord]:
    """The records of one file (or request body), its first ``MAX_ISSUES`` issues kept."""
    return list(_capped(name, _records(name, raw, limits)))


def _capped(name: str, records: Iterable[ParsedRecord]) -> Iterator[ParsedRecord]:
    """Past the first issues, invalid records are left out and their issues counted on one
    closing ``file`` record, so what a bad file costs stays bounded whatever it holds."""
    kept, more = 0, 0
    for record in records:
        if record.spec is not None:
            yield record
            continue
        more += record.more_issues + max(0, len(record.issues) - (MAX_ISSUES - kept))
        record.issues = record.issues[: MAX_ISSUES - kept]
        record.more_issues = 0
        kept += len(record.issues)
        if record.issues:
            yield record
    if more:
        yield ParsedRecord(name, "file", more_issues=more)


def _records(name: str, raw: bytes, limits: LimitSettings) -> Iterable[ParsedRecord]:
    if len(raw) > limits.max_file_bytes:
        return [
            _file_issue(
                name, f"input is {len(raw)} bytes, over the limit of {limits.max_file_bytes}"
            )
        ]
    suffix = Path(name).suffix.lower()
    if suffix == ".sparse":
        return [_read_sparse_qubo(name, raw.decode("latin-1"), limits)]
    if suffix not in JSON_SUFFIXES and _looks_like_edge_list(raw):
        return [_read_edge_list(name, raw.decode("latin-1"), limits)]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return [_file_issue(name, f"not valid UTF-8 (byte {exc.start}): JSON input must be UTF-8")]
    if suffix in {".jsonl", ".ndjson"}:
        return _read_json_lines(name, text, limits)
    return _read_json_document(name, text, limits)


def _file_issue(name: str, message: str) -> ParsedRecord:
    return ParsedRecord(name, "file", issues=[InputIssue(name, "file", "", message)])


def _looks_like_edge_list(raw: bytes) -> bool:
    for line in raw.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(b"#"):
            continue
        parts = stripped.split()
        return len(parts) == 2 and all(p.isdigit() for p in parts)
    return False


def _read_json_document(name: str, text: str, limits: LimitSettings) -> Iterable[ParsedRecord]:
    try:
        document = _loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several documents, one per line: JSON Lines
            return _read_json_lines(name, text, limits)
        return [
            _file_issue(name, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        ]
    except (RecursionError, ValueError) as exc:
        return [_file_issue(name, _json_failure(exc))]
    if isinstance(document, list):
        if not document:
            return [_file_issue(name, "the JSON array is empty: no problems to submit")]
        big = len(text.encode()) > limits.max_record_bytes  # else no record can be over it
        return (
            _oversized(name, f"record {index}", limits)
            if big and _encoded_size(item) > limits.max_record_bytes
            else _validate(name, f"record {index}", item, limits)
            for index, item in enumerate(document, start=1)
        )
    if len(text.encode()) > limits.max_record_bytes:
        return [_oversized(name, "record 1", limits)]
    return [_validate(name, "record 1", document, limits)]


def _encoded_size(item: Any) -> int:
    """Bytes of one record of a JSON array, written compactly."""
    try:
        return len(json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode())
    except (RecursionError, ValueError):
        return 0  # left to _validate, which rejects whatever this is


def _oversized(name: str, where: str, limits: LimitSettings) -> ParsedRecord:
    message = f"record is over the limit of {limits.max_record_bytes} bytes"
    return ParsedRecord(name, where, issues=[InputIssue(name, where, "", message)])


def _read_json_lines(name: str, text: str, limits: LimitSettings) -> Iterator[ParsedRecord]:
    empty = True
    # Only "\n" ends a line: str.splitlines() would also split inside strings at U+2028, U+0085...
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        empty = False
        where = f"line {number}"
        if len(line.encode()) > limits.max_record_bytes:
            yield _oversized(name, where, limits)
            continue
        try:
            document = _loads(line)
        except json.JSONDecodeError as exc:
            yield ParsedRecord(
                name,
                where,
                issues=[
                    InputIssue(name, where, "", f"invalid JSON at column {exc.colno}: {exc.msg}")
                ],
            )
            continue
        except (RecursionError, ValueError) as exc:
            yield ParsedRecord(
                name, where, issues=[InputIssue(name, where, "", _json_failure(exc))]
            )
            continue
        yield _validate(name, where, document, limits)
    if empty:
        yield _file_issue(name, "no records: the file is empty")


def _json_failure(exc: Exception) -> str:
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    return f"invalid JSON: {exc}"


class _Object(dict[str, Any]):
    """A decoded JSON object that remembers the field names it was given more than once."""

    duplicates: tuple[str, ...] = ()


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = _Object(pairs)
    if len(result) != len(pairs):  # reported by _validate, which knows the record
        counts = Counter(key for key, _ in pairs)
        result.duplicates = tuple(key for key, count in counts.items() if count > 1)
    return result


def _loads(text: str) -> Any:
    return json.loads(text, object_pairs_hook=_object)


def _field_name(path: str) -> str:
    """A field path safe to print: control characters escaped."""
    return path if path.isprintable() else path.encode("unicode_escape").decode("ascii")


def _validate(name: str, where: str, document: Any, limits: LimitSettings) -> ParsedRecord:
    """Type-check one decoded record, then run the semantic checks."""
    record = ParsedRecord(name, where)
    if not isinstance(document, dict):
        record.issues.append(
            InputIssue(name, where, "", f"expected a JSON object, got {type(document).__name__}")
        )
        return record
    duplicates = getattr(document, "duplicates", ())
    for key in duplicates:
        record.issues.append(
            InputIssue(name, where, _field_name(key), "field appears more than once in the object")
        )
    if record.issues:
        return record
    kind = document.get("kind")
    if not isinstance(kind, str) or kind not in SPEC_TYPES:
        message = "missing" if kind is None else f"unknown kind {kind!r}"
        record.issues.append(
            InputIssue(name, where, "kind", f"{message}; expected one of {', '.join(SPEC_TYPES)}")
        )
        return record
    spec_type = SPEC_TYPES[kind]
    big = _encoded_size(document) > FULL_CHECK_BYTES
    try:
        if big:  # what it passes, the full check passes too: it only stops sooner
            first_errors(spec_type).validate_python(document)
        spec: ProblemSpec = spec_type.model_validate(document)  # type: ignore[assignment]
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        record.add(_type_issue(name, where, error) for error in errors)
        if big:
            record.add([InputIssue(name, where, "", PARTIAL_CHECK)])
        return record
    record.add(
        InputIssue(name, where, field_path, message)
        for field_path, message in semantic_issues(spec, limits.max_variables, limits.max_terms)
    )
    if not record.issues and not record.more_issues:
        record.spec = spec
    return record


def _type_issue(name: str, where: str, error: ErrorDetails) -> InputIssue:
    field_path = _field_name(".".join(str(part) for part in error["loc"]))
    message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
    return InputIssue(name, where, field_path, message)


def _numeric_lines(text: str) -> Iterator[tuple[int, list[str]]]:
    for number, line in enumerate(text.split("\n"), start=1):  # not splitlines(): see above
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped.split()


def _read_header(name: str, lines: Iterator[tuple[int, list[str]]]) -> tuple[int, int] | InputIssue:
    try:
        number, parts = next(lines)
    except StopIteration:
        return InputIssue(name, "file", "", "empty file: expected a header line 'n m'")
    try:
        n, m = int(parts[0]), int(parts[1])
    except (ValueError, IndexError):
        return InputIssue(name, f"line {number}", "header", "expected 'n m' (two integers)")
    return n, m


def _read_triples(
    name: str, text: str, kind: str, limits: LimitSettings
) -> tuple[int, list[tuple[str, list[int | float]]], ParsedRecord]:
    """Header and 1-based 'i j w' lines, converted to 0-based triples named by line, and the
    file's issues with them (a record with no spec)."""
    lines = _numeric_lines(text)
    header = _read_header(name, lines)
    bad = ParsedRecord(name, "file")
    if isinstance(header, InputIssue):
        bad.add([header])
        return 0, [], bad
    n, m = header
    triples: list[tuple[str, list[int | float]]] = []
    for number, parts in lines:
        where = f"line {number}"
        if len(parts) != 3:
            expected = f"expected 'i j {'w' if kind == 'maxcut' else 'q'}'"
            bad.add([InputIssue(name, where, "", f"{expected}, got {len(parts)} values")])
            continue
        try:
            i, j = int(parts[0]) - 1, int(parts[1]) - 1
            value = float(parts[2])
        except ValueError:
            got = " ".join(parts)
            bad.add(
                [InputIssue(name, where, "", f"expected two integers and a number, got {got!r}")]
            )
            continue
        triples.append((where, [i, j, int(value) if value.is_integer() else value]))
    if not bad.issues and len(triples) != m:
        message = f"header announces {m} entries but the file has {len(triples)}"
        bad.add([InputIssue(name, "file", "header", message)])
    return n, triples, bad


# What each position of a line-oriented entry is called in messages, per list of the document.
_COLUMNS = {"edges": ("i", "j", "w"), "linear": ("i", "q"), "quadratic": ("i", "j", "q")}


def _read_edge_list(name: str, text: str, limits: LimitSettings) -> ParsedRecord:
    n, triples, bad = _read_triples(name, text, "maxcut", limits)
    document = {"kind": "maxcut", "n": n, "edges": [t for _, t in triples]}
    lines = {"edges": [where for where, _ in triples]}
    return _validate_positional(name, document, lines, bad, limits)


def _read_sparse_qubo(name: str, text: str, limits: LimitSettings) -> ParsedRecord:
    n, triples, bad = _read_triples(name, text, "qubo", limits)
    diagonal = [(where, t) for where, t in triples if t[0] == t[1]]
    upper = [(where, t) for where, t in triples if t[0] != t[1]]
    linear = [[t[0], t[2]] for _, t in diagonal]
    # The file lists the upper triangle of a symmetric Q: off-diagonal terms count twice.
    quadratic = [[t[0], t[1], 2 * t[2]] for _, t in upper]
    document = {"kind": "qubo", "n": n, "linear": linear, "quadratic": quadratic, "sense": "min"}
    lines = {"linear": [where for where, _ in diagonal], "quadratic": [where for where, _ in upper]}
    return _validate_positional(name, document, lines, bad, limits)


def _validate_positional(
    name: str,
    document: dict[str, Any],
    lines: dict[str, list[str]],
    bad: ParsedRecord,
    limits: LimitSettings,
) -> ParsedRecord:
    """Validate a line-oriented file as one record, reporting issues by the line they came from.

    ``lines[list_field][k]`` is the line that entry k of ``document[list_field]`` was read from;
    ``bad`` holds the issues of lines that could not be read at all.
    """
    if bad.issues:
        return bad
    parsed = _validate(name, "file", document, limits)

    def line_of(match: re.Match[str]) -> str:  # "first given as edges.3" -> "... on line 7"
        return f"on {lines[match[1]][int(match[2])]}"

    remapped = []
    for issue in parsed.issues:
        where, field_name = issue.record, issue.field
        parts = issue.field.split(".")
        if len(parts) >= 2 and parts[0] in lines and parts[1].isdigit():
            where = lines[parts[0]][int(parts[1])]
            columns = _COLUMNS[parts[0]]
            position = int(parts[2]) if len(parts) >= 3 and parts[2].isdigit() else None
            field_name = columns[position] if position is not None else "i j"
        message = re.sub(r"\bas (edges|linear|quadratic)\.(\d+)\b", line_of, issue.message)
        remapped.append(InputIssue(name, where, field_name, _one_based(message)))
    parsed.issues = remapped
    return parsed


def _one_based(message: str) -> str:
    return (
        message + " (indices as 0-based; the file is 1-based)"
        if any(word in message for word in ("index", "node", "duplicate"))
        else message
    )
