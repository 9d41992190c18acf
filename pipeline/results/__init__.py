"""The result store: typed records, their Parquet schemas, atomic files, commit and recovery,
in a local folder or on an object store (``location``)."""

from pipeline.results.files import dataset_path, read_table, write_table
from pipeline.results.location import ResultFiles, ResultsLocation, open_files
from pipeline.results.query import connect, query
from pipeline.results.rows import (
    BatchRow,
    CanaryRow,
    DriftRow,
    ProblemRow,
    RunStatus,
    RunSummary,
)
from pipeline.results.schema import SCHEMA_VERSION, schema_of, to_table
from pipeline.results.store import ResultStore

__all__ = [
    "SCHEMA_VERSION",
    "BatchRow",
    "CanaryRow",
    "DriftRow",
    "ProblemRow",
    "ResultFiles",
    "ResultStore",
    "ResultsLocation",
    "RunStatus",
    "RunSummary",
    "connect",
    "dataset_path",
    "open_files",
    "query",
    "read_table",
    "schema_of",
    "to_table",
    "write_table",
]
