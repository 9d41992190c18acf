"""The result store: schemas derived from records, atomic files, DuckDB views."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.results import (
    SCHEMA_VERSION,
    ProblemRow,
    RunSummary,
    dataset_path,
    query,
    schema_of,
    to_table,
    write_table,
)


def run_row(run_id: str) -> RunSummary:
    return RunSummary(
        run_id=run_id,
        backend="aer",
        executor="inline",
        problems=3,
        completed=3,
        t_total_s=1.5,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        completed_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
    )


def test_schema_has_one_typed_column_per_field() -> None:
    schema = schema_of(ProblemRow)
    assert schema.names == [f.name for f in dataclasses.fields(ProblemRow)]
    assert schema.field("objective").type == pa.float64()
    assert schema.field("n_variables").type == pa.int32()
    assert schema.field("angles").type == pa.list_(pa.float64())
    assert schema.field("completed_at").type == pa.timestamp("us", tz="UTC")


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = dataset_path(tmp_path, "runs", date(2026, 1, 1), "r-1")
    write_table(path, to_table([run_row("r-1")], RunSummary))
    assert path.exists() and list(path.parent.iterdir()) == [path]
    table = pq.read_table(path)
    assert table.schema.equals(schema_of(RunSummary))
    assert table.column("schema_version").to_pylist() == [SCHEMA_VERSION]


def test_a_crash_before_the_rename_leaves_no_visible_file(tmp_path: Path) -> None:
    path = dataset_path(tmp_path, "runs", date(2026, 1, 1), "r-bad")

    def crash() -> None:
        raise RuntimeError("killed before the rename")

    with pytest.raises(RuntimeError):
        write_table(path, to_table([run_row("r-bad")], RunSummary), before_rename=crash)
    assert list(path.parent.iterdir()) == []


def test_a_record_of_the_wrong_type_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    path = dataset_path(tmp_path, "runs", date(2026, 1, 1), "r-bad")
    with pytest.raises((TypeError, ValueError, pa.ArrowInvalid)):
        bad = dataclasses.replace(run_row("r-bad"), problems="many")  # type: ignore[arg-type]
        write_table(path, to_table([bad], RunSummary))
    assert not path.parent.exists() or list(path.parent.iterdir()) == []


def test_queries_see_every_partition_and_an_empty_store_has_the_columns(tmp_path: Path) -> None:
    empty = query(tmp_path, "SELECT * FROM problems")
    assert empty.num_rows == 0 and set(schema_of(ProblemRow).names) <= set(empty.column_names)
    for day, run_id in ((date(2026, 1, 1), "r-1"), (date(2026, 1, 2), "r-2")):
        write_table(
            dataset_path(tmp_path, "runs", day, run_id), to_table([run_row(run_id)], RunSummary)
        )
    result = query(
        tmp_path, "SELECT run_id, CAST(date AS VARCHAR) AS day FROM runs ORDER BY run_id"
    ).to_pylist()
    assert result == [
        {"run_id": "r-1", "day": "2026-01-01"},
        {"run_id": "r-2", "day": "2026-01-02"},
    ]
    assert query(
        tmp_path, "SELECT count(*) AS n FROM runs WHERE run_id = ?", ["r-2"]
    ).to_pylist() == [{"n": 1}]
