"""What every command shares: the app, the common options, settings and clean failures.

Exit codes: 0 ok, 2 bad input, usage or configuration, 1 a failure (an unreachable
service included). Failures print one line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from pipeline.config import LoadedSettings, Settings, load_settings_with_sources
from pipeline.errors import ConfigError, QhopperError, ServiceUnavailable

app = typer.Typer(
    name="qhopper",
    help="Batch aggregation pipeline for hybrid quantum-classical optimization.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

HomeOption = Annotated[
    Path | None,
    typer.Option(
        "--home",
        envvar="QHOPPER_HOME",
        help="Queue database, artifacts and results [default: ./.qhopper]",
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A qhopper.toml [default: $QHOPPER_CONFIG, ./qhopper.toml, <home>/qhopper.toml]",
    ),
]
DaskOption = Annotated[
    str | None,
    typer.Option(
        "--dask-address",
        help="Dask scheduler, e.g. tcp://host:8786 [default: in-process or a LocalCluster]",
    ),
]
BackendOption = Annotated[
    str | None, typer.Option("--backend", help="Quantum backend spec [default: aer]")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable output")]


def settings_for(home: Path | None, config: Path | None, **overrides: Any) -> LoadedSettings:
    """Load and check settings, create the home; exit 2 with one line when they are wrong."""
    try:
        loaded = load_settings_with_sources(home, config, overrides)
        backend = loaded.settings.quantum.backend
        from pipeline.backends import check_backend_spec

        check_backend_spec(backend)
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    try:
        loaded.settings.home.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        fail(f"cannot create the home {loaded.settings.home}: {exc.strerror or exc}", 2)
    return loaded


def settings_only(home: Path | None, config: Path | None, **overrides: Any) -> Settings:
    return settings_for(home, config, **overrides).settings


def fail(message: str, code: int) -> typer.Exit:
    """Print one line and exit with ``code``."""
    err.print(f"[red]{message}[/]", highlight=False)
    raise typer.Exit(code)


def found(issues: Sequence[object], more: int) -> str:
    """How many problems were found in the input, saying when only the first are listed."""
    if not more:
        return f"{len(issues)} problem(s) found"
    return f"{len(issues) + more} problem(s) found, the first {len(issues)} listed"


@contextmanager
def clean_failures(what: str) -> Iterator[None]:
    """Map qhopper's errors to one line and an exit code: 2 for configuration, 1 otherwise."""
    try:
        yield
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    except ServiceUnavailable as exc:
        fail(f"{what} failed: {exc}", 1)
    except QhopperError as exc:
        fail(f"{what} failed: {exc}", 1)


@app.callback()
def main_options(
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format",
            envvar="QHOPPER_LOG_FORMAT",
            help="text (for people) or json (one object per event, for log collectors)",
        ),
    ] = "text",
) -> None:
    """Batch aggregation pipeline for hybrid quantum-classical optimization."""
    from flows.logs import FORMATS, configure_logging

    if log_format not in FORMATS:
        raise typer.BadParameter(f"{log_format!r}: expected one of {', '.join(FORMATS)}")
    configure_logging(log_format)
