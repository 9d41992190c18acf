"""Where the results live, and the one seam every writer and reader of them goes through.

A location is a local folder (the default, under the home; also ``file://``) or any fsspec
URL (``s3://``, ``gs://``, ``memory://``, ...). Its :class:`ResultFiles` does every file
operation the exactly-once commit needs, so the store's commit and recovery read the same
on both: a local folder stages with temporary name, fsync and rename
(:mod:`pipeline.results.files`); an object store stages with one whole-object PUT and
publishes with a server-side copy (:mod:`pipeline.results.objects`).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Protocol

import duckdb
import pyarrow as pa

from pipeline.config import ResultsLocation


class ResultFiles(Protocol):
    """File operations on one results location. Keys are full paths or URLs, as the journal
    stores them; a staged key is hidden from readers, which glob only ``*.parquet``."""

    def key(self, dataset: str, day: date, name: str) -> str:
        """``<root>/<dataset>/date=<day>/<name>.parquet``."""
        ...

    def sibling(self, key: str, dataset: str) -> str:
        """The key of the same partition and name in another dataset."""
        ...

    def stage(self, key: str, table: pa.Table) -> None:
        """Write ``table`` whole under ``key``'s staged name, not visible to readers."""
        ...

    def publish(self, key: str) -> bool:
        """Make ``key``'s staged file visible; False if none was staged (a second publisher)."""
        ...

    def unstage(self, key: str) -> None:
        """Delete ``key``'s staged file and any partial one: it must never become visible."""
        ...

    def read_staged(self, key: str) -> pa.Table | None:
        """The rows staged for ``key``, or None when none are staged or they are cut short."""
        ...

    def has_staged(self, key: str) -> bool: ...

    def staged(self, dataset: str) -> list[str]:
        """The final keys of ``dataset`` whose staged file waits to be published."""
        ...

    def write(self, key: str, table: pa.Table) -> None:
        """Write ``table`` to ``key`` at once, atomically (runs, drift: nothing to commit)."""
        ...

    def exists(self, key: str) -> bool: ...

    def read(self, key: str) -> pa.Table: ...

    def find(self, dataset: str, name: str = "*") -> list[str]:
        """The visible files of ``dataset`` called ``name`` (a glob), in every partition."""
        ...

    def has_data(self, dataset: str) -> bool:
        """Whether ``dataset`` has a visible file yet (a folder stops at the first)."""
        ...

    def remove_orphans(self, older_than_s: float) -> None:
        """Delete temporaries a writer cut short left behind, once older than this."""
        ...

    def attach(self, connection: duckdb.DuckDBPyConnection) -> str:
        """Let ``connection`` read this location; returns the root its globs start from."""
        ...


def open_files(where: ResultsLocation | Path | str) -> ResultFiles:
    """The file operations of a results location: a local folder's, or an object store's."""
    location = ResultsLocation.of(where)
    if location.is_local:
        from pipeline.results.files import LocalFiles

        return LocalFiles(location.path)
    from pipeline.results.objects import ObjectFiles

    return ObjectFiles.open(location.url, location.storage_options)
