"""Atomic Parquet files: written under a hidden temporary name, synced, renamed into place.

A reader (DuckDB, pyarrow, pandas) never sees a partial file: it sees the whole file or
none. Layout under the results folder::

    problems/date=YYYY-MM-DD/<batch_id>.parquet   one row per problem
    batches/date=YYYY-MM-DD/<batch_id>.parquet    one row per batch
    runs/date=YYYY-MM-DD/<run_id>.parquet         one row per flow run
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DATASETS = ("problems", "batches", "runs")


def dataset_path(results_dir: Path, dataset: str, day: date, name: str) -> Path:
    return results_dir / dataset / f"date={day.isoformat()}" / f"{name}.parquet"


def temporaries(directory: Path, stem: str = "") -> list[Path]:
    """The hidden temporaries a writer of ``stem`` (any writer, if empty) left in ``directory``."""
    return sorted(directory.glob(f".{stem}*.tmp"))


def write_table(
    path: Path, table: pa.Table, before_rename: Callable[[], None] | None = None
) -> None:
    """Write ``table`` to ``path`` atomically: temporary name, fsync, rename, fsync the folder.

    ``before_rename`` runs after the temporary file is synced and before it is renamed: the
    crash rehearsals kill the process there.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            pq.write_table(table, out, compression="snappy")
            out.flush()
            os.fsync(out.fileno())
        if before_rename is not None:
            before_rename()
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


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)
