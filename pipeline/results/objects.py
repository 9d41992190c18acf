"""Result files on an object store (any fsspec URL): the same commit with no rename.

An object store has no atomic rename, but one PUT is atomic: a reader sees the whole object
or none (S3, GCS and Azure complete a multipart upload the same way). So a batch's file is
staged by one PUT under its hidden staged key (``.<stem>.staged.tmp``: the dataset globs
only ``*.parquet``), and published after the intake's commit point by a server-side copy to
the final key, then a delete of the staged key. Publishing twice is harmless: the second
publisher finds the staged key gone (its copy fails as not found) and the final one present.
A crash between copy and delete leaves a staged key whose batch is written: recovery
publishes it again, copying the same bytes. Runs and drift rows are PUT to their final key.
Nothing else is left behind: a PUT cut short leaves no object.
"""

from __future__ import annotations

import contextlib
import posixpath
from collections.abc import Mapping
from datetime import date
from typing import Any

import duckdb
import fsspec
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem

STAGED_SUFFIX = ".staged.tmp"
# Other hosts write the same dataset: a listing cached in this process would hide their files.
DEFAULT_OPTIONS = {"use_listings_cache": False}


class ObjectFiles:
    """:class:`~pipeline.results.location.ResultFiles` on an fsspec filesystem."""

    def __init__(self, fs: AbstractFileSystem, root: str) -> None:
        self.fs = fs
        self.root = root.rstrip("/")  # without the protocol, as fsspec paths are

    @classmethod
    def open(cls, url: str, storage_options: Mapping[str, Any]) -> ObjectFiles:
        fs, root = fsspec.core.url_to_fs(url, **(DEFAULT_OPTIONS | dict(storage_options)))
        return cls(fs, root)

    def key(self, dataset: str, day: date, name: str) -> str:
        return self._url(f"{self.root}/{dataset}/date={day.isoformat()}/{name}.parquet")

    def sibling(self, key: str, dataset: str) -> str:
        folder, name = posixpath.split(self._path(key))
        return self._url(f"{self.root}/{dataset}/{posixpath.basename(folder)}/{name}")

    def stage(self, key: str, table: pa.Table) -> None:
        self._put(_staged(self._path(key)), table)

    def publish(self, key: str) -> bool:
        path = self._path(key)
        try:
            self.fs.cp_file(_staged(path), path)
        except FileNotFoundError:
            return False
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(_staged(path))
        return True

    def unstage(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(_staged(self._path(key)))

    def read_staged(self, key: str) -> pa.Table | None:
        try:
            return self._get(_staged(self._path(key)))
        except (OSError, pa.ArrowException):
            return None

    def has_staged(self, key: str) -> bool:
        return bool(self.fs.exists(_staged(self._path(key))))

    def staged(self, dataset: str) -> list[str]:
        found = self.fs.glob(f"{self.root}/{dataset}/date=*/.*{STAGED_SUFFIX}")
        return [
            self._url(posixpath.join(folder, f"{name[1 : -len(STAGED_SUFFIX)]}.parquet"))
            for folder, name in (posixpath.split(path) for path in sorted(found))
        ]

    def write(self, key: str, table: pa.Table) -> None:
        self._put(self._path(key), table)

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def read(self, key: str) -> pa.Table:
        return self._get(self._path(key))

    def find(self, dataset: str, name: str = "*") -> list[str]:
        return [
            self._url(path)
            for path in sorted(self.fs.glob(f"{self.root}/{dataset}/*/{name}.parquet"))
        ]

    def has_data(self, dataset: str) -> bool:
        return bool(self.find(dataset))

    def remove_orphans(self, older_than_s: float) -> None:
        """Nothing to do: a PUT cut short leaves no object (an unfinished multipart upload is
        invisible; a bucket lifecycle rule reclaims its parts)."""

    def attach(self, connection: duckdb.DuckDBPyConnection) -> str:
        """DuckDB reads through this fsspec filesystem: no httpfs extension to download."""
        connection.register_filesystem(self.fs)
        return self._url(self.root)

    def _put(self, path: str, table: pa.Table) -> None:
        """One whole-object PUT: the object appears whole or not at all."""
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression="snappy")
        self.fs.pipe_file(path, sink.getvalue().to_pybytes())

    def _get(self, path: str) -> pa.Table:
        return pq.read_table(pa.BufferReader(self.fs.cat_file(path)))

    def _path(self, key: str) -> str:
        return str(self.fs._strip_protocol(key))

    def _url(self, path: str) -> str:
        return str(self.fs.unstrip_protocol(path))


def _staged(path: str) -> str:
    folder, name = posixpath.split(path)
    return f"{folder}/.{name.removesuffix('.parquet')}{STAGED_SUFFIX}"
