"""DuckDB over the result datasets: the views ``problems``, ``batches``, ``runs``, ``drift``
and ``canary``.

``problems`` has one row per problem, its newest answer: a requeued problem's earlier row is
hidden once a newer row names its batch in ``supersedes``. ``problems_all`` keeps every row.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import duckdb
import pyarrow as pa

from pipeline.results.location import ResultsLocation, open_files
from pipeline.results.rows import BatchRow, CanaryRow, DriftRow, ProblemRow, RunSummary
from pipeline.results.schema import schema_of

VIEWS: dict[str, type] = {
    "problems": ProblemRow,
    "batches": BatchRow,
    "runs": RunSummary,
    "drift": DriftRow,
    "canary": CanaryRow,
}


# Every row of ``problems_all`` that no newer row supersedes.
NEWEST_ANSWERS = (
    "SELECT * FROM problems_all AS answer WHERE NOT EXISTS (SELECT 1 FROM problems_all AS "
    "newer WHERE newer.supersedes = answer.batch_id AND newer.problem_id = answer.problem_id)"
)


def connect(where: ResultsLocation | Path | str) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with one view per dataset (empty, with its columns, if no file yet).

    ``where`` is a folder or any fsspec URL (``s3://bucket/results``): an object store is read
    through its fsspec filesystem, registered with the connection.
    """
    files = open_files(where)
    connection = duckdb.connect()
    root = files.attach(connection)
    for name, record in VIEWS.items():
        # Every column of the record, even where no file has it yet (files written before
        # a column was added): an analyst's query over a new column runs on an old home.
        connection.register(f"_{name}_empty", schema_of(record).empty_table())
        source = f"_{name}_empty"
        if files.has_data(name):
            pattern = f"{root}/{name}/*/*.parquet".replace("'", "''")
            source = (
                f"(SELECT * FROM read_parquet('{pattern}', hive_partitioning = true, "
                f"union_by_name = true) UNION ALL BY NAME SELECT * FROM {source})"
            )
        if name == "problems":
            connection.execute(f"CREATE VIEW problems_all AS SELECT * FROM {source}")
            connection.execute(f"CREATE VIEW problems AS {NEWEST_ANSWERS}")
        else:
            connection.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")
    return connection


def query(
    where: ResultsLocation | Path | str, sql: str, parameters: list[object] | None = None
) -> pa.Table:
    with contextlib.closing(connect(where)) as connection:
        return connection.sql(sql, params=parameters).to_arrow_table()
