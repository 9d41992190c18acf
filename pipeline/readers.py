"""Readers for every input format, turning bytes into validated specs or named issues.

Formats: a JSON object, a JSON array, JSON Lines, Gset / rudy edge lists (MaxCut,
1-based, ``n m`` header, ``#`` comments allowed) and Biq Mac ``.sparse`` QUBO files
(1-based upper triangle, ``f(y) = sum q_ii y_i + 2 sum_{i<j} q_ij y_i y_j``).
Every issue names the file, the record (line or position) and the field.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.config import LimitSettings
from pipeline.errors import InputIssue
from pipeline.model import SPEC_TYPES, ProblemSpec, semantic_issues

JSON_SUFFIXES = {".json", ".jsonl", ".ndjson"}


@dataclass
class ParsedRecord:
    """One record of one file: a valid spec, or the issues that keep it out."""

    file: str
    record: str
    spec: ProblemSpec | None = None
    issues: list[InputIssue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.spec is not None and not self.issues


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
        return list(_read_json_lines(name, text, limits))
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


def _read_json_document(name: str, text: str, limits: LimitSettings) -> list[ParsedRecord]:
    try:
        document = _loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # several documents, one per line: JSON Lines
            return list(_read_json_lines(name, text, limits))
        return [
            _file_issue(name, f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
        ]
    except (RecursionError, ValueError) as exc:
        return [_file_issue(name, _json_failure(exc))]
    if isinstance(document, list):
        if not document:
            return [_file_issue(name, "the JSON array is empty: no problems to submit")]
        big = len(text.encode()) > limits.max_record_bytes  # else no record can be over it
        return [
            _oversized(name, f"record {index}", limits)
            if big and _encoded_size(item) > limits.max_record_bytes
            else _validate(name, f"record {index}", item, limits)
            for index, item in enumerate(document, start=1)
        ]
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
    try:
        spec: ProblemSpec = SPEC_TYPES[kind].model_validate(document)  # type: ignore[assignment]
    except ValidationError as exc:
        for error in exc.errors():
            field_path = _field_name(".".join(str(part) for part in error["loc"]))
            message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            record.issues.append(InputIssue(name, where, field_path, message))
        return record
    for field_path, message in semantic_issues(spec, limits.max_variables, limits.max_terms):
        record.issues.append(InputIssue(name, where, field_path, message))
    if not record.issues:
        record.spec = spec
    return record


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
) -> tuple[int, list[tuple[str, list[int | float]]], list[InputIssue]]:
    """Header and 1-based 'i j w' lines, converted to 0-based triples named by line."""
    lines = _numeric_lines(text)
    header = _read_header(name, lines)
    if isinstance(header, InputIssue):
        return 0, [], [header]
    n, m = header
    triples: list[tuple[str, list[int | float]]] = []
    issues: list[InputIssue] = []
    for number, parts in lines:
        where = f"line {number}"
        if len(parts) != 3:
            issues.append(
                InputIssue(
                    name,
                    where,
                    "",
                    f"expected 'i j {'w' if kind == 'maxcut' else 'q'}', got {len(parts)} values",
                )
            )
            continue
        try:
            i, j = int(parts[0]) - 1, int(parts[1]) - 1
            value = float(parts[2])
        except ValueError:
            issues.append(
                InputIssue(
                    name, where, "", f"expected two integers and a number, got {' '.join(parts)!r}"
                )
            )
            continue
        triples.append((where, [i, j, int(value) if value.is_integer() else value]))
    if not issues and len(triples) != m:
        issues.append(
            InputIssue(
                name,
                "file",
                "header",
                f"header announces {m} entries but the file has {len(triples)}",
            )
        )
    return n, triples, issues


# What each position of a line-oriented entry is called in messages, per list of the document.
_COLUMNS = {"edges": ("i", "j", "w"), "linear": ("i", "q"), "quadratic": ("i", "j", "q")}


def _read_edge_list(name: str, text: str, limits: LimitSettings) -> ParsedRecord:
    n, triples, issues = _read_triples(name, text, "maxcut", limits)
    document = {"kind": "maxcut", "n": n, "edges": [t for _, t in triples]}
    lines = {"edges": [where for where, _ in triples]}
    return _validate_positional(name, document, lines, issues, limits)


def _read_sparse_qubo(name: str, text: str, limits: LimitSettings) -> ParsedRecord:
    n, triples, issues = _read_triples(name, text, "qubo", limits)
    diagonal = [(where, t) for where, t in triples if t[0] == t[1]]
    upper = [(where, t) for where, t in triples if t[0] != t[1]]
    linear = [[t[0], t[2]] for _, t in diagonal]
    # The file lists the upper triangle of a symmetric Q: off-diagonal terms count twice.
    quadratic = [[t[0], t[1], 2 * t[2]] for _, t in upper]
    document = {"kind": "qubo", "n": n, "linear": linear, "quadratic": quadratic, "sense": "min"}
    lines = {"linear": [where for where, _ in diagonal], "quadratic": [where for where, _ in upper]}
    return _validate_positional(name, document, lines, issues, limits)


def _validate_positional(
    name: str,
    document: dict[str, Any],
    lines: dict[str, list[str]],
    issues: list[InputIssue],
    limits: LimitSettings,
) -> ParsedRecord:
    """Validate a line-oriented file as one record, reporting issues by the line they came from.

    ``lines[list_field][k]`` is the line that entry k of ``document[list_field]`` was read from.
    """
    if issues:
        return ParsedRecord(name, "file", issues=issues)
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
