"""The result store: atomic files, schemas, DuckDB views."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.results import (
    PROBLEM_SCHEMA,
    RUN_SCHEMA,
    SCHEMA_VERSION,
    dataset_path,
    query,
    write_rows,
)


def run_row(run_id: str) -> dict:
    row = {name: None for name in RUN_SCHEMA.names}
    row.update(
        run_id=run_id,
        problems=3,
        completed=3,
        t_total_s=1.5,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        completed_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
    )
    return row


def test_write_is_atomic_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    path = dataset_path(tmp_path, "runs", date(2026, 1, 1), "r-1")
    write_rows(path, RUN_SCHEMA, [run_row("r-1")])
    assert path.exists() and list(path.parent.iterdir()) == [path]
    table = pq.read_table(path)
    assert table.schema.equals(RUN_SCHEMA) and table.column("schema_version").to_pylist() == [
        SCHEMA_VERSION
    ]


def test_failed_write_leaves_nothing_behind(tmp_path: Path) -> None:
    path = dataset_path(tmp_path, "runs", date(2026, 1, 1), "r-bad")
    with pytest.raises((TypeError, ValueError)):
        write_rows(path, RUN_SCHEMA, [{**run_row("r-bad"), "problems": "many"}])
    assert not path.parent.exists() or list(path.parent.iterdir()) == []


def test_queries_see_every_partition_and_an_empty_store_has_the_columns(tmp_path: Path) -> None:
    empty = query(tmp_path, "SELECT * FROM problems")
    assert empty.num_rows == 0 and set(PROBLEM_SCHEMA.names) <= set(empty.column_names)
    for day, run_id in ((date(2026, 1, 1), "r-1"), (date(2026, 1, 2), "r-2")):
        write_rows(dataset_path(tmp_path, "runs", day, run_id), RUN_SCHEMA, [run_row(run_id)])
    result = query(
        tmp_path, "SELECT run_id, CAST(date AS VARCHAR) AS day FROM runs ORDER BY run_id"
    ).to_pylist()
    assert result == [
        {"run_id": "r-1", "day": "2026-01-01"},
        {"run_id": "r-2", "day": "2026-01-02"},
    ]
