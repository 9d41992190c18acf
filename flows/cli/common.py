"""What every command shares: the app, the common options, settings and clean failures.

Exit codes: 0 ok, 2 bad input, usage or configuration, 1 a failure (an unreachable
service included). Failures print one line, never a traceback.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from pipeline.config import Settings
from pipeline.config_sources import LoadedSettings, load_settings_with_sources
from pipeline.durations import parse_duration
from pipeline.errors import ConfigError, KeyConflict, QhopperError, ServiceUnavailable
from pipeline.private import make_folder
from pipeline.redact import redact_text
from pipeline.timebounds import duration_issue

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
    typer.Option(  # QHOPPER_HOME is read with the settings, so its source is named right
        "--home", help="Queue database, artifacts and results [default: $QHOPPER_HOME, ./.qhopper]"
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
    """Settings for a command that writes: the home is created (owner-only) when missing."""
    loaded = load_checked(home, config, **overrides)
    try:
        make_folder(loaded.settings.home)
    except OSError as exc:
        fail(f"cannot create the home {loaded.settings.home}: {exc.strerror or exc}", 2)
    return loaded


def settings_only(home: Path | None, config: Path | None, **overrides: Any) -> Settings:
    return settings_for(home, config, **overrides).settings


def settings_to_read(home: Path | None, config: Path | None, uses: Collection[str]) -> Settings:
    """Settings for a command that only reads ``uses`` (``intake``, ``results``, anything else
    lives in the home). A missing home it would read is a wrong target (a misspelt --home),
    not an empty one: one line, exit 2, and nothing is created."""
    loaded = load_checked(home, config)
    settings = loaded.settings
    elsewhere = {"intake": settings.intake.database_url, "results": settings.results.url}
    if not settings.home.is_dir() and any(not elsewhere.get(use) for use in uses):
        source = loaded.sources.get("home", "default")
        fail(
            f"no qhopper home at {settings.home} ({source}); nothing was created "
            "(submit, run or demo make one)",
            2,
        )
    return settings


def load_checked(home: Path | None, config: Path | None, **overrides: Any) -> LoadedSettings:
    """Load and check settings, creating nothing; exit 2 with one line when they are wrong."""
    try:
        loaded = load_settings_with_sources(home, config, overrides)
        from pipeline.backends import check_backend_spec

        check_backend_spec(loaded.settings.quantum.backend)
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    return loaded


def duration_option(text: str, units: Collection[str], name: str, like: str) -> float:
    """An option's duration in seconds, or a usage error (exit 2): ``'5x' is not {like}``, or
    ``the {name} must be ...`` for one that is no duration a run can use."""
    try:
        value = parse_duration(text, units)
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not {like}") from None
    issue = duration_issue(value)
    if issue is not None:
        raise typer.BadParameter(f"the {name} {issue}")
    return value


def print_table(table: Table) -> None:
    """Print ``table``; off a terminal (a pipe, a file) at its natural width, so no cell is
    cut short: the next program needs ids whole."""
    if out.is_terminal:
        out.print(table)
        return
    width = Measurement.get(out, out.options.update(max_width=1_000_000), table).maximum
    Console(file=out.file, width=max(width, out.width), soft_wrap=True).print(table)


def fail(message: str, code: int) -> typer.Exit:
    """Print one line (no URL password in it) and exit with ``code``."""
    err.print(f"[red]{escape(redact_text(message))}[/]", highlight=False)
    raise typer.Exit(code)


def errors_found(issues: Sequence[object], more: int = 0) -> str:
    """'3 errors found' (errors, not "problems", in a tool where a problem is what users
    submit), saying when only the first are listed."""
    total = len(issues) + more
    said = f"{total} error{'' if total == 1 else 's'} found"
    return said if not more else f"{said}, the first {len(issues)} listed"


@contextmanager
def clean_failures(what: str) -> Iterator[None]:
    """Map qhopper's errors to one line and an exit code: 2 for configuration and key
    conflicts, 1 otherwise."""
    try:
        yield
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    except KeyConflict as exc:  # bad input, found only against the queue
        fail(f"{what} refused: {exc}", 2)
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
