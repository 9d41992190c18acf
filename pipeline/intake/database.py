"""The intake's database: URL validation, engine creation and the first connection.

Two databases are supported: SQLite (the default, one file under the home) and
PostgreSQL (through psycopg 3; ``postgres://``, the alias many hosts hand out, too).
Anything else fails at once with a ConfigError that names the scheme; a database that
cannot be reached fails within seconds with a ServiceUnavailable that names where and
why, in one line. A SQLite file is created only in a folder that exists: a misspelt URL
must not make folders (the home, which holds the default file, is made by the commands
that write).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine

from pipeline.errors import ConfigError, ServiceUnavailable
from pipeline.private import make_file

SUPPORTED_SCHEMES = ("sqlite", "postgresql")  # and postgres://, read as postgresql
# The drivers this package installs; any other would fail later with ModuleNotFoundError.
_DRIVERS = {
    "sqlite": "sqlite",
    "sqlite+pysqlite": "sqlite",
    "postgresql": "postgresql+psycopg",
    "postgresql+psycopg": "postgresql+psycopg",
    "postgres": "postgresql+psycopg",  # Heroku's, Render's and libpq's own alias
}
PG_CONNECT_TIMEOUT_S = 5
SQLITE_BUSY_TIMEOUT_S = 60


def parse_url(text: str) -> URL:
    """The URL as SQLAlchemy reads it, with its driver fixed; ConfigError when unsupported."""
    try:
        url = sa.make_url(text)
    except sa.exc.ArgumentError:
        scheme = text.partition("://")[0] if "://" in text else text
        raise ConfigError(
            f"intake database URL {scheme!r}...: not a database URL; supported schemes: "
            f"{', '.join(SUPPORTED_SCHEMES)}"
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise ConfigError(
            f"intake database URL scheme {url.drivername!r} is not supported; supported "
            f"schemes: {', '.join(SUPPORTED_SCHEMES)} (e.g. sqlite:///path/intake.db, "
            f"postgresql://user@host:5432/db)"
        )
    return url.set(drivername=driver)


def describe(url: URL) -> str:
    """Where the database is, without credentials: host:port/database or the file."""
    if url.get_backend_name() == "sqlite":
        return f"SQLite file {url.database}" if url.database else "in-memory SQLite"
    return f"{url.host or 'localhost'}:{url.port or 5432}/{url.database or ''}"


def create_intake_engine(url: str, sqlite_synchronous: str = "FULL", create: bool = True) -> Engine:
    """An engine tuned for concurrent writers: SQLite in WAL mode with immediate transactions.

    SQLite syncs the WAL at every commit (``synchronous=FULL``): a submission or a journal
    entry that was acknowledged survives a power cut. ``NORMAL`` (synced at checkpoints
    only, so the last commits can be lost) is there for the benchmark's comparison.

    Creates a missing SQLite file owner-only when ``create`` (a command that only reads passes
    False: a file that is not there is a wrong target, not an empty queue). Raises
    ConfigError for an unsupported URL, a SQLite folder that does not exist, or a missing
    file not to be created. Connects lazily: :func:`check_connection` makes the first
    connection.
    """
    if sqlite_synchronous not in ("FULL", "NORMAL", "EXTRA"):
        raise ValueError(f"sqlite_synchronous={sqlite_synchronous!r}: FULL, NORMAL or EXTRA")
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        _check_sqlite_file(parsed, create)
        return _sqlite_engine(parsed, sqlite_synchronous)
    connect_args: dict[str, Any] = {}
    if "connect_timeout" not in parsed.query:
        connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT_S
    return sa.create_engine(parsed, pool_pre_ping=True, connect_args=connect_args)


def _check_sqlite_file(url: URL, create: bool) -> None:
    """The file's folder must exist; the file too unless ``create`` (then made owner-only)."""
    database = url.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if not path.parent.is_dir():
        raise ConfigError(
            f"the intake database's folder {path.parent} does not exist (from the URL "
            f"{url.render_as_string()}); create it or correct the URL"
        )
    if not create:
        if not path.is_file():
            raise ConfigError(f"no intake database at {path}: nothing was submitted there")
        return
    try:
        make_file(path)  # owner-only; SQLite's -wal and -shm take its mode
    except OSError as exc:
        raise ConfigError(
            f"cannot create the intake database {database}: {exc.strerror or exc}"
        ) from None


def _sqlite_engine(url: URL, synchronous: str) -> Engine:
    engine = sa.create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "isolation_level": None}
    )

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_S * 1000}")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _begin_immediate(connection: Connection) -> None:
        # Take the write lock up front: no read-then-upgrade deadlocks between writers.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def check_connection(engine: Engine) -> None:
    """Connect once; ServiceUnavailable (one line: where, and why) when that fails."""
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except sa.exc.DBAPIError as exc:
        raise unavailable(engine, exc) from None


def unavailable(engine: Engine, exc: sa.exc.DBAPIError) -> ServiceUnavailable:
    """The database error as one line naming the database and the cause."""
    cause = " ".join(str(exc.orig).split()) or type(exc.orig).__name__
    return ServiceUnavailable(f"intake database {describe(engine.url)} is unavailable: {cause}")


# --- the database's clock -------------------------------------------------------------------
# Leases are stamped and checked against the database's clock, never a client's: two hosts
# whose clocks disagree then still agree on whether a lease has run out.
_SQLITE_NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"


def server_now_sql(dialect: str) -> sa.ColumnElement[Any]:
    """The database's current time (naive UTC) as an SQL expression, comparable with the
    stored ``DateTime`` columns (SQLite stores them as text with microseconds)."""
    if dialect == "postgresql":
        return sa.func.timezone("UTC", sa.func.clock_timestamp())
    return sa.literal_column(f"({_SQLITE_NOW} || '000')")


def server_now(connection: Connection) -> datetime:
    """The database's current time, naive UTC (milliseconds on SQLite)."""
    if connection.dialect.name == "postgresql":
        value = connection.execute(sa.select(server_now_sql("postgresql"))).scalar_one()
        assert isinstance(value, datetime)
        return value
    text = connection.exec_driver_sql(f"SELECT {_SQLITE_NOW}").scalar_one()
    return datetime.fromisoformat(text)
