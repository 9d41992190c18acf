"""Shared fixtures: temporary homes, intake URLs for SQLite and PostgreSQL, Prefect settings.

Beside them, as plain functions: tests/factories.py (``problem()``, the one generator of
problem records, and ``planned()``, the one PlannedProblem factory) and tests/truth.py (the
independent oracle: objectives and the one brute force, sharing no code with pipeline/).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from s3_stand_in import S3, s3_stand_in

PG_ADMIN_URL = os.environ.get(
    "QHOPPER_TEST_PG_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)
REPO = Path(__file__).resolve().parent.parent

# Prefect reads its settings when first imported: give the whole session one private home.
_PREFECT_HOME = Path(tempfile.mkdtemp(prefix="qhopper-prefect-"))
atexit.register(shutil.rmtree, _PREFECT_HOME, ignore_errors=True)
os.environ.update(
    {
        "PREFECT_HOME": str(_PREFECT_HOME),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
    }
)
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("QHOPPER_HOME", None)
os.environ.pop("QHOPPER_DATABASE_URL", None)


def _postgres_reason() -> str | None:
    try:
        engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception as exc:
        return f"no PostgreSQL answers at {PG_ADMIN_URL}: {type(exc).__name__}: {str(exc).splitlines()[0]}"
    return None


_PG_SKIP_REASON = _postgres_reason()


@pytest.fixture(autouse=True)
def _logging_as_found() -> Iterator[None]:
    """Logging as each test found it: the CLI's ``configure_logging`` points the root logger
    at the stream the test's runner gave it, which is closed once that test ends."""
    root, qhopper = logging.getLogger(), logging.getLogger("qhopper")
    handlers, levels = list(root.handlers), (root.level, qhopper.level)
    yield
    root.handlers[:] = handlers
    root.setLevel(levels[0])
    qhopper.setLevel(levels[1])


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema in the test database, dropped afterwards."""
    if _PG_SKIP_REASON:
        pytest.skip(_PG_SKIP_REASON)
    schema = f"qh_{secrets.token_hex(6)}"
    admin = sa.create_engine(PG_ADMIN_URL)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as connection:
            connection.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def intake_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The intake's database, once per supported dialect."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'intake.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="module")
def s3() -> Iterator[S3]:
    """A local S3 stand-in (tests/s3_stand_in.py), one per test module."""
    with s3_stand_in() as stand_in:
        yield stand_in
