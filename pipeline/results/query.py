"""DuckDB over the result datasets: the views ``problems``, ``batches`` and ``runs``."""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.results.records import BatchRow, DriftRow, ProblemRow, RunSummary
from pipeline.results.schema import schema_of

VIEWS: dict[str, type] = {
    "problems": ProblemRow,
    "batches": BatchRow,
    "runs": RunSummary,
    "drift": DriftRow,
}


def connect(results_dir: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per dataset (empty, with its columns, if no file yet)."""
    connection = duckdb.connect()
    for name, record in VIEWS.items():
        if any((results_dir / name).glob("*/*.parquet")):
            pattern = str(results_dir / name / "*" / "*.parquet").replace("'", "''")
            source = f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
        else:
            connection.register(f"_{name}_empty", schema_of(record).empty_table())
            source = f"_{name}_empty"
        connection.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")
    return connection


def query(results_dir: Path, sql: str, parameters: list[object] | None = None) -> pa.Table:
    with contextlib.closing(connect(results_dir)) as connection:
        return connection.sql(sql, params=parameters).to_arrow_table()
