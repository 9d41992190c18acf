"""A wrong target is an error, never a new empty one: read-only commands on a missing home,
report filters that select nothing, SQLite URLs in folders that do not exist.

Each command says so in one line and exits 2, creating and overwriting nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_report import write_rich_results
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()

READ_ONLY = (
    ["status"],
    ["results"],
    ["report"],
    ["replay", "b-0000"],
    ["drift", "--backend", "aer"],
    ["angles"],
    ["requeue", "--failed"],  # it writes, but only to problems that already exist
)


def everything_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
def test_a_read_only_command_on_a_missing_home_exits_2_and_creates_nothing(
    tmp_path: Path, command: list[str]
) -> None:
    typo = tmp_path / "hmoe"
    result = runner.invoke(app, [*command, "--home", str(typo)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"no qhopper home at {typo} (option --home); nothing was created (submit, run or "
        "demo make one)"
    ]
    assert everything_under(tmp_path) == set()


def test_a_missing_home_named_by_the_environment_is_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("QHOPPER_HOME", str(tmp_path / "typo"))
    result = runner.invoke(app, ["status"])
    assert result.exit_code == 2 and "(environment QHOPPER_HOME)" in result.stderr
    assert everything_under(tmp_path) == set()


def test_what_lives_elsewhere_needs_no_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results on a shared folder are read from a host with no home of its own."""
    write_rich_results(tmp_path / "shared")
    monkeypatch.setenv("QHOPPER_RESULTS_URL", str(tmp_path / "shared"))
    before = everything_under(tmp_path)
    sql = "SELECT count(*) AS n FROM problems"
    result = runner.invoke(app, ["results", "--json", "--sql", sql, "--home", str(tmp_path / "h")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": 28}]
    assert everything_under(tmp_path) == before


def test_config_shows_the_settings_of_a_home_not_made_yet_and_makes_none(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "--json", "--home", str(tmp_path / "new")])
    assert result.exit_code == 0, result.output
    assert everything_under(tmp_path) == set()


@pytest.mark.parametrize(
    "selection", [["--run", "r-nope"], ["--since", "2099-01-01"]], ids=["run", "since"]
)
def test_a_report_that_selects_nothing_exits_2_and_leaves_the_report_alone(
    tmp_path: Path, selection: list[str]
) -> None:
    home = tmp_path / "home"
    write_rich_results(home / "results")
    page = home / "report.html"
    page.write_text("the good report")
    before = everything_under(tmp_path)
    result = runner.invoke(app, ["report", *selection, "--home", str(home)])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"{' '.join(selection)} selects no answer; {page} left as it was"
    ]
    assert page.read_text() == "the good report"
    assert everything_under(tmp_path) == before


@pytest.mark.parametrize("command", [["status"], ["run"], ["submit", "PROBLEM"]])
def test_a_sqlite_url_in_a_missing_folder_exits_2_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    problem = tmp_path / "p.json"
    problem.write_text(json.dumps({"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2]]}))
    home = tmp_path / "home"
    home.mkdir()
    folder = tmp_path / "nonexistent" / "dir"
    monkeypatch.setenv("QHOPPER_DATABASE_URL", f"sqlite:///{folder / 'x.db'}")
    args = [str(problem) if a == "PROBLEM" else a for a in command]
    result = runner.invoke(app, [*args, "--home", str(home)])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert f"the intake database's folder {folder} does not exist" in line
    assert not (tmp_path / "nonexistent").exists()


def test_a_read_only_command_never_makes_an_intake_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = tmp_path / "tpyo.db"
    monkeypatch.setenv("QHOPPER_DATABASE_URL", f"sqlite:///{database}")
    for command in (["status"], ["angles"]):
        result = runner.invoke(app, [*command, "--home", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert f"no intake database at {database}" in result.stderr
        assert not database.exists()


def test_commands_that_write_make_the_home_and_its_database(tmp_path: Path) -> None:
    problem = tmp_path / "p.json"
    problem.write_text(json.dumps({"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2]]}))
    for command in (["run"], ["submit", str(problem)]):
        home = tmp_path / command[0] / "deeper"
        result = runner.invoke(app, [*command, "--home", str(home)])
        assert result.exit_code == 0, result.output
        assert (home / "intake.db").is_file()
