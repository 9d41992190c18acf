"""CLI behaviour that needs no flow run: exit codes, intervals, status of unknown ids."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.serving import parse_interval

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("90", 90), ("0.5m", 30)]
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-1m", "0", "m5"])
def test_parse_interval_rejects_nonsense(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_interval(text)


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["submit"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    assert (
        runner.invoke(app, ["serve", "--interval", "soon", "--home", str(tmp_path)]).exit_code == 2
    )


def test_missing_file_and_unknown_id_exit_2(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["submit", str(tmp_path / "nope.json"), "--home", str(tmp_path)])
    assert missing.exit_code == 2 and "cannot read file" in missing.stderr
    unknown = runner.invoke(app, ["status", "p-0000", "--home", str(tmp_path)])
    assert unknown.exit_code == 2


def test_bad_sql_exits_2(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["results", "--sql", "SELECT nope FROM problems", "--home", str(tmp_path)]
    )
    assert result.exit_code == 2 and "query failed" in result.stderr


def test_bad_config_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "qhopper.toml"
    config.write_text("[quantum]\nmax_qubits = 'many'\n")
    result = runner.invoke(app, ["status", "--config", str(config), "--home", str(tmp_path)])
    assert result.exit_code == 2 and "configuration error" in result.stderr
