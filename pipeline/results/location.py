"""Where the results live, and the one seam every writer and reader of them goes through.

A location is a local folder (the default, under the home; also ``file://``) or any fsspec
URL (``s3://``, ``gs://``, ``memory://``, ...). Its :class:`ResultFiles` does every file
operation the exactly-once commit needs, so the store's commit and recovery read the same
on both: a local folder stages with temporary name, fsync and rename
(:mod:`pipeline.results.files`); an object store stages with one whole-object PUT and
publishes with a server-side copy (:mod:`pipeline.results.objects`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Protocol

import duckdb
import pyarrow as pa

from pipeline.redact import redact_text


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


@dataclass(frozen=True)
class ResultsLocation:
    """A results URL or path, and the fsspec storage options for a URL."""

    url: str
    storage_options: Mapping[str, Any] = field(default_factory=dict, repr=False)  # credentials

    @classmethod
    def of(cls, where: ResultsLocation | Path | str) -> ResultsLocation:
        """A location from a location, a local path, or a URL as ``[results] url`` takes it."""
        return where if isinstance(where, ResultsLocation) else cls(str(where))

    @property
    def is_local(self) -> bool:
        return "://" not in self.url or self.url.startswith("file://")

    @property
    def path(self) -> Path:
        """The local folder; a URL with another scheme has none."""
        if not self.is_local:
            raise ValueError(f"{self.url} is not a local folder")
        return Path(self.url.removeprefix("file://"))

    def files(self) -> ResultFiles:
        if self.is_local:
            from pipeline.results.files import LocalFiles

            return LocalFiles(self.path)
        from pipeline.results.objects import ObjectFiles

        return ObjectFiles.open(self.url, self.storage_options)

    def __str__(self) -> str:
        return str(self.path.resolve()) if self.is_local else redact_text(self.url.rstrip("/"))
