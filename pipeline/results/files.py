"""Atomic Parquet files in a local folder: written under a hidden temporary name, synced,
renamed into place (:class:`LocalFiles` is this module behind the results seam).

A reader (DuckDB, pyarrow, pandas) never sees a partial file: it sees the whole file or
none. Layout under the results folder::

    problems/date=YYYY-MM-DD/<batch_id>.parquet   one row per problem
    batches/date=YYYY-MM-DD/<batch_id>.parquet    one row per batch
    runs/date=YYYY-MM-DD/<run_id>.parquet         one row per flow run
    drift/date=YYYY-MM-DD/<drift_id>.parquet      one row per replayed answer
    canary/date=YYYY-MM-DD/<run_id>.parquet       one row per answer sampled on a candidate
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.private import make_folder

DATASETS = ("problems", "batches", "runs", "drift", "canary")


def dataset_path(results_dir: Path, dataset: str, day: date, name: str) -> Path:
    return results_dir / dataset / f"date={day.isoformat()}" / f"{name}.parquet"


def temporaries(directory: Path, stem: str = "") -> list[Path]:
    """The hidden temporaries a writer of ``stem`` (any writer, if empty) left in ``directory``."""
    return sorted(directory.glob(f".{stem}*.tmp"))


def staged_path(path: Path) -> Path:
    """Where a batch's file waits, whole and synced, until its batch commits."""
    return path.parent / f".{path.stem}.staged.tmp"


def stage_table(path: Path, table: pa.Table) -> Path:
    """Write ``table`` whole and synced under ``path``'s staged name; not visible to readers."""
    staged = staged_path(path)
    write_table(staged, table)
    return staged


def publish(path: Path) -> bool:
    """Rename ``path``'s staged file into place; False if there was none to rename.

    Two publishers of one committed batch (its writer, and a recovery that found it
    committed but unrenamed) are harmless: one renames, the other finds nothing.
    """
    try:
        os.replace(staged_path(path), path)
    except FileNotFoundError:
        return False
    _sync_folder(path.parent)
    return True


def write_table(
    path: Path, table: pa.Table, before_rename: Callable[[], None] | None = None
) -> None:
    """Write ``table`` to ``path`` atomically: temporary name, fsync, rename, fsync the folder.

    ``before_rename`` runs after the temporary file is synced and before it is renamed: the
    crash rehearsals kill the process there.
    """
    make_folder(path.parent)
    handle, temporary = tempfile.mkstemp(  # owner-only, as mkstemp makes it
        dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp"
    )
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
    _sync_folder(path.parent)


def _sync_folder(folder: Path) -> None:
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_table(path: Path) -> pa.Table:
    return pq.read_table(path)


class LocalFiles:
    """:class:`~pipeline.results.location.ResultFiles` on a local folder or a shared mount."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def key(self, dataset: str, day: date, name: str) -> str:
        return str(dataset_path(self.root, dataset, day, name))

    def sibling(self, key: str, dataset: str) -> str:
        path = Path(key)
        return str(self.root / dataset / path.parent.name / path.name)

    def stage(self, key: str, table: pa.Table) -> None:
        stage_table(Path(key), table)

    def publish(self, key: str) -> bool:
        return publish(Path(key))

    def unstage(self, key: str) -> None:
        staged = staged_path(Path(key))
        staged.unlink(missing_ok=True)
        for orphan in temporaries(staged.parent, staged.stem):
            orphan.unlink(missing_ok=True)

    def read_staged(self, key: str) -> pa.Table | None:
        try:
            return read_table(staged_path(Path(key)))
        except (OSError, pa.ArrowException):
            return None

    def has_staged(self, key: str) -> bool:
        return staged_path(Path(key)).exists()

    def staged(self, dataset: str) -> list[str]:
        return [
            str(
                staged.parent
                / f"{staged.name.removeprefix('.').removesuffix('.staged.tmp')}.parquet"
            )
            for staged in (self.root / dataset).glob("date=*/.*.staged.tmp")
        ]

    def write(self, key: str, table: pa.Table) -> None:
        write_table(Path(key), table)

    def exists(self, key: str) -> bool:
        return Path(key).exists()

    def read(self, key: str) -> pa.Table:
        return read_table(Path(key))

    def find(self, dataset: str, name: str = "*") -> list[str]:
        return sorted(str(p) for p in (self.root / dataset).glob(f"*/{name}.parquet"))

    def has_data(self, dataset: str) -> bool:
        return any((self.root / dataset).glob("*/*.parquet"))

    def remove_orphans(self, older_than_s: float) -> None:
        """Staged files are left to the journal's say (see ``ResultStore.recover``)."""
        cutoff = time.time() - older_than_s
        for dataset in DATASETS:
            for orphan in (self.root / dataset).glob("date=*/.*.tmp"):
                if orphan.name.endswith(".staged.tmp"):
                    continue
                try:
                    if orphan.stat().st_mtime < cutoff:
                        orphan.unlink()
                except FileNotFoundError:
                    pass

    def attach(self, connection: duckdb.DuckDBPyConnection) -> str:
        return str(self.root)
