"""Where settings come from, layer on layer: embedded defaults, then ``qhopper.toml``, the
environment and command-line options (last wins), each value's source kept for
``qhopper config``.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.config import DEFAULT_HOME, Settings
from pipeline.errors import ConfigError
from pipeline.redact import masked_options, redact_text

ENV_OVERRIDES: dict[str, tuple[str, str]] = {
    "QHOPPER_DATABASE_URL": ("intake", "database_url"),
    "QHOPPER_LEASE_SECONDS": ("intake", "lease_seconds"),
    "QHOPPER_DASK_ADDRESS": ("dask", "address"),
    "QHOPPER_BACKEND": ("quantum", "backend"),
    "QHOPPER_RESULTS_URL": ("results", "url"),
}
CONFIG_NAME = "qhopper.toml"


@dataclass(frozen=True)
class LoadedSettings:
    """Settings and where each value came from (dotted name -> source)."""

    settings: Settings
    sources: dict[str, str]
    config_file: Path | None


def find_config(home: Path, explicit: Path | None) -> tuple[Path | None, str]:
    """The configuration file to read and why: ``--config``, ``QHOPPER_CONFIG``,
    ``./qhopper.toml``, then ``<home>/qhopper.toml``; the first that is named or exists."""
    if explicit is not None:
        return explicit, "--config"
    named = os.environ.get("QHOPPER_CONFIG")
    if named:
        return Path(named), "QHOPPER_CONFIG"
    for candidate, why in ((Path(CONFIG_NAME), "./" + CONFIG_NAME), (home / CONFIG_NAME, "home")):
        if candidate.is_file():
            return candidate, why
    return None, ""


def load_settings(
    home: Path | None = None,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Settings:
    """Merge defaults, the TOML file, the environment and explicit overrides (last wins)."""
    return load_settings_with_sources(home, config_file, overrides).settings


def load_settings_with_sources(
    home: Path | None = None,
    config_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> LoadedSettings:
    """Like :func:`load_settings`, and say where every value came from (layer on layer)."""
    home_path, home_source = _home(home)
    path, why = find_config(home_path, config_file)
    raw, sources = _from_file(path, why)
    _from_environment(raw, sources)
    if home is not None or os.environ.get("QHOPPER_HOME") or "home" not in raw:
        raw["home"] = home_path
        sources["home"] = home_source
    _from_options(raw, sources, overrides or {})
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_one_line(path, exc)) from exc
    return LoadedSettings(settings, sources, path)


def _from_file(path: Path | None, why: str) -> tuple[dict[str, Any], dict[str, str]]:
    """The TOML file's values, and each one's source: the file and why it was read."""
    if path is None:
        return {}, {}
    raw = _read_toml(path)
    if "home" in raw and why == "home":
        raise ConfigError(f"{path}: 'home' cannot be set in the home's own {CONFIG_NAME}")
    source = f"file {path} ({why})"
    sources = {}
    for section, values in raw.items():
        for key in values if isinstance(values, dict) else [None]:
            sources[section if key is None else f"{section}.{key}"] = source
    for backend, limits in _tables(raw.get("backends")).items():  # [backends.<name>] tables
        sources.update({f"backends.{backend}.{key}": source for key in _tables(limits)})
    return raw, sources


def _tables(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _from_environment(raw: dict[str, Any], sources: dict[str, str]) -> None:
    """The variables of ``ENV_OVERRIDES`` that are set, over the file."""
    for var, (section, key) in ENV_OVERRIDES.items():
        if os.environ.get(var):
            raw.setdefault(section, {})[key] = os.environ[var]
            sources[f"{section}.{key}"] = f"environment {var}"


def _from_options(raw: dict[str, Any], sources: dict[str, str], overrides: dict[str, Any]) -> None:
    """Command-line options given (not None), by dotted name, over everything else."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        section, _, key = dotted.partition(".")
        raw.setdefault(section, {})[key] = value
        sources[dotted] = "command-line option"


def flatten(settings: Settings) -> dict[str, Any]:
    """Every setting by dotted name, for ``qhopper config``, with no secret in it: URL
    passwords masked, storage options shown only where known to be harmless. The intake
    URL is the effective one (the default names the SQLite file under the home); a
    ``[backends.<name>]`` table shows the limits it sets."""
    flat: dict[str, Any] = {}
    for name, value in settings.model_dump().items():
        if isinstance(value, dict) and name != "home":
            flat.update({f"{name}.{key}": inner for key, inner in value.items()})
        else:
            flat[name] = value
    for backend, limits in settings.backends.items():  # only what each table sets
        del flat[f"backends.{backend}"]
        flat.update({f"backends.{backend}.{key}": v for key, v in limits.given().items()})
    flat["intake.database_url"] = settings.database_url
    flat = {name: redact_text(v) if isinstance(v, str) else v for name, v in flat.items()}
    flat["results.storage_options"] = masked_options(settings.results.storage_options)
    return flat


def _home(home: Path | None) -> tuple[Path, str]:
    if home is not None:
        return home, "option --home"
    if os.environ.get("QHOPPER_HOME"):
        return Path(os.environ["QHOPPER_HOME"]), "environment QHOPPER_HOME"
    return DEFAULT_HOME, "default"


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc


def _one_line(path: Path | None, exc: ValidationError) -> str:
    """Pydantic's errors as one line each: where, what."""
    where = str(path) if path else "settings"
    parts = []
    for error in exc.errors():
        location = ".".join(str(p) for p in error["loc"])
        parts.append(f"{location}: {error['msg']}")
    return f"{where}: " + "; ".join(parts)
