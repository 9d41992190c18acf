"""The result store: hive-partitioned Parquet, one file per batch, written atomically.

Layout under ``<home>/results``::

    problems/date=YYYY-MM-DD/<batch_id>.parquet   one row per problem
    batches/date=YYYY-MM-DD/<batch_id>.parquet    one row per batch
    runs/date=YYYY-MM-DD/<run_id>.parquet         one row per flow run

Files are written under a hidden temporary name, flushed, and renamed into place, so a
reader (DuckDB, pyarrow, pandas) never sees a partial file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA_VERSION = 1
_TS = pa.timestamp("us", tz="UTC")

PROBLEM_SCHEMA = pa.schema(
    [
        ("problem_id", pa.string()),
        ("key", pa.string()),
        ("run_id", pa.string()),
        ("batch_id", pa.string()),
        ("kind", pa.string()),
        ("n_variables", pa.int32()),
        ("shape_key", pa.string()),
        ("route", pa.string()),
        ("solver_path", pa.string()),
        ("backend", pa.string()),
        ("status", pa.string()),
        ("fallback_reason", pa.string()),
        ("solution", pa.string()),
        ("objective", pa.float64()),
        ("feasible", pa.bool_()),
        ("proven_optimal", pa.bool_()),
        ("expected_objective", pa.float64()),
        ("reps", pa.int32()),
        ("shots", pa.int32()),
        ("evaluations", pa.int64()),
        ("cost_usd", pa.float64()),
        ("t_queue_s", pa.float64()),
        ("t_compile_s", pa.float64()),
        ("t_execute_s", pa.float64()),
        ("t_post_s", pa.float64()),
        ("t_total_s", pa.float64()),
        ("submitted_at", _TS),
        ("completed_at", _TS),
        ("provider_job_id", pa.string()),
        ("circuit_hash", pa.string()),
        ("input_hash", pa.string()),
        ("schema_version", pa.int32()),
    ]
)

BATCH_SCHEMA = pa.schema(
    [
        ("batch_id", pa.string()),
        ("run_id", pa.string()),
        ("route", pa.string()),
        ("route_reason", pa.string()),
        ("shape_key", pa.string()),
        ("kind", pa.string()),
        ("size", pa.int32()),
        ("n_qubits", pa.int32()),
        ("reps", pa.int32()),
        ("backend", pa.string()),
        ("solver_path", pa.string()),
        ("attempts", pa.int32()),
        ("templates_compiled", pa.int32()),
        ("templates_reused", pa.int32()),
        ("artifact_key", pa.string()),
        ("chunks", pa.int32()),
        ("evaluations", pa.int64()),
        ("t_compile_s", pa.float64()),
        ("t_execute_s", pa.float64()),
        ("t_post_s", pa.float64()),
        ("cost_usd", pa.float64()),
        # Routing economics: the estimates and limits behind the route (batching.economics).
        ("est_backend", pa.string()),
        ("est_quantum_feasible", pa.bool_()),
        ("est_quantum_cost_usd", pa.float64()),
        ("est_quantum_queue_s", pa.float64()),
        ("est_quantum_compile_s", pa.float64()),
        ("est_quantum_execute_s", pa.float64()),
        ("est_quantum_latency_s", pa.float64()),
        ("est_quantum_memory_bytes", pa.int64()),
        ("est_classical_cost_usd", pa.float64()),
        ("est_classical_latency_s", pa.float64()),
        ("deadline", _TS),
        ("deadline_slack_s", pa.float64()),
        ("budget_problem_usd", pa.float64()),
        ("budget_run_left_usd", pa.float64()),
        ("budget_tenant_left_usd", pa.float64()),
        ("budget_allotted_usd", pa.float64()),
        # What execution on the quantum backend took: every attempt, failed ones included.
        ("backend_attempts", pa.int32()),
        ("backend_failures", pa.int32()),
        ("max_attempts_per_call", pa.int32()),
        ("quantum_cost_usd", pa.float64()),
        ("provider_job_ids", pa.string()),
        ("fallback_reason", pa.string()),
        ("started_at", _TS),
        ("completed_at", _TS),
        ("schema_version", pa.int32()),
    ]
)

RUN_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("backend", pa.string()),
        ("dask_address", pa.string()),
        ("problems", pa.int32()),
        ("completed", pa.int32()),
        ("degraded", pa.int32()),
        ("failed", pa.int32()),
        ("batches", pa.int32()),
        ("quantum_batches", pa.int32()),
        ("classical_batches", pa.int32()),
        ("templates_compiled", pa.int32()),
        ("templates_reused", pa.int32()),
        ("recovered_batches", pa.int32()),
        ("t_recover_s", pa.float64()),
        ("t_collect_s", pa.float64()),
        ("t_plan_s", pa.float64()),
        ("t_compile_s", pa.float64()),
        ("t_cluster_wait_s", pa.float64()),
        ("t_execute_s", pa.float64()),
        ("t_total_s", pa.float64()),
        ("cost_usd", pa.float64()),
        ("started_at", _TS),
        ("completed_at", _TS),
        ("schema_version", pa.int32()),
    ]
)

DATASETS = {"problems": PROBLEM_SCHEMA, "batches": BATCH_SCHEMA, "runs": RUN_SCHEMA}


def dataset_path(results_dir: Path, dataset: str, day: date, name: str) -> Path:
    return results_dir / dataset / f"date={day.isoformat()}" / f"{name}.parquet"


def write_rows(path: Path, schema: pa.Schema, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows as one Parquet file, atomically: temporary name, fsync, rename, fsync dir."""
    table = pa.Table.from_pylist(
        [{**row, "schema_version": SCHEMA_VERSION} for row in rows], schema=schema
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            pq.write_table(table, out, compression="snappy")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_file(path: Path) -> pa.Table:
    return pq.read_table(path)


def connect(results_dir: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the views ``problems``, ``batches`` and ``runs``."""
    connection = duckdb.connect()
    for name, schema in DATASETS.items():
        if any((results_dir / name).glob("*/*.parquet")):
            pattern = _quote(str(results_dir / name / "*" / "*.parquet"))
            source = f"read_parquet('{pattern}', hive_partitioning = true, union_by_name = true)"
        else:  # no file yet: the same columns, no rows
            connection.register(f"_{name}_empty", schema.empty_table())
            source = f"_{name}_empty"
        connection.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")
    return connection


def _quote(text: str) -> str:
    return text.replace("'", "''")


def query(results_dir: Path, sql: str) -> pa.Table:
    with contextlib.closing(connect(results_dir)) as connection:
        return connection.sql(sql).to_arrow_table()
