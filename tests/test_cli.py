"""CLI behaviour that needs no flow run: exit codes, intervals, status of unknown ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.serving import parse_interval
from pipeline.readers import MAX_ISSUES

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


def test_a_file_of_many_bad_records_lists_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(['{"kind": "maxcut", "n": 2, "edges": [[0, 0]]}'] * 130))
    home = ["--home", str(tmp_path)]
    for command in (["submit", str(bad)], ["submit", str(bad), "--skip-invalid"]):
        result = runner.invoke(app, [*command, *home])
        assert result.exit_code == 2 and result.stderr.count("self-loop") == MAX_ISSUES
    assert "130 problem(s) found, the first 100 listed; nothing was enqueued" in " ".join(
        runner.invoke(app, ["submit", str(bad), *home]).stderr.split()
    )
    assert "30 more issue(s), not listed" in result.stderr  # --skip-invalid
    solved = runner.invoke(app, ["solve", str(bad), *home])
    assert solved.exit_code == 2 and "130 problem(s) found, the first 100 listed" in solved.stderr


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


def test_an_unknown_backend_is_one_line_and_exit_2_before_anything_starts(tmp_path: Path) -> None:
    home = tmp_path / "new-home"
    result = runner.invoke(app, ["run", "--backend", "foo", "--home", str(home)])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "configuration error: unknown backend 'foo'; known backends: aer, aer-noisy, faulty, ibm"
    ]


@pytest.mark.parametrize(
    ("url", "code", "words"),
    [
        ("mysql://user@localhost/db", 2, "scheme 'mysql' is not supported"),
        ("postgress://root@127.0.0.1/test", 2, "scheme 'postgress' is not supported"),
        ("postgresql://root@127.0.0.1:1/test", 1, "127.0.0.1:1/test is unavailable"),
    ],
)
def test_a_bad_or_unreachable_database_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, code: int, words: str
) -> None:
    monkeypatch.setenv("QHOPPER_DATABASE_URL", url)
    for command in (["run"], ["status"]):
        result = runner.invoke(app, [*command, "--home", str(tmp_path / "h")])
        assert result.exit_code == code, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], lines


def test_every_command_creates_a_missing_home(tmp_path: Path) -> None:
    for command in (["status"], ["run"], ["results"], ["config"]):
        home = tmp_path / "-".join(command) / "deeper"
        result = runner.invoke(app, [*command, "--home", str(home)])
        assert result.exit_code == 0, result.output
        assert home.is_dir()


def test_config_lookup_order_and_where_each_value_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "qhopper.toml").write_text("[quantum]\nmax_qubits = 11\ndefault_shots = 99\n")
    monkeypatch.chdir(tmp_path)

    def effective(*extra: str) -> dict[str, tuple[object, str]]:
        result = runner.invoke(app, ["config", "--json", "--home", str(home), *extra])
        assert result.exit_code == 0, result.output
        return {r["setting"]: (r["value"], r["source"]) for r in json.loads(result.stdout)}

    found = effective()
    assert found["quantum.max_qubits"][0] == 11 and "home" in found["quantum.max_qubits"][1]
    assert found["quantum.default_reps"] == (2, "default")
    (tmp_path / "qhopper.toml").write_text("[quantum]\nmax_qubits = 12\n")  # ./ beats the home
    found = effective()
    assert (
        found["quantum.max_qubits"][0] == 12 and "./qhopper.toml" in found["quantum.max_qubits"][1]
    )
    assert found["quantum.default_shots"] == (1024, "default")  # one file is read, not merged
    named = tmp_path / "named.toml"
    named.write_text("[quantum]\nmax_qubits = 13\n")
    monkeypatch.setenv("QHOPPER_CONFIG", str(named))
    assert effective()["quantum.max_qubits"][0] == 13
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("[quantum]\nmax_qubits = 14\n")
    assert effective("--config", str(explicit))["quantum.max_qubits"][0] == 14
    monkeypatch.setenv("QHOPPER_BACKEND", "aer-noisy:fake_manila")
    assert effective()["quantum.backend"] == (
        "aer-noisy:fake_manila",
        "environment QHOPPER_BACKEND",
    )


def test_progress_is_plain_lines_when_output_is_not_a_terminal(tmp_path: Path) -> None:
    problems = tmp_path / "p.json"
    problems.write_text(json.dumps({"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2]]}))
    home = str(tmp_path / "home")
    assert runner.invoke(app, ["submit", str(problems), "--home", home]).exit_code == 0
    result = runner.invoke(app, ["run", "--home", home])
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert any("claimed 1 problems" in line for line in lines), lines
    assert any("execute: 1/1 problems written" in line for line in lines), lines


def test_json_logs_are_one_object_per_event_with_ids_and_no_payload(tmp_path: Path) -> None:
    problems = tmp_path / "p.json"
    record = {
        "kind": "maxcut",
        "n": 3,
        "edges": [[0, 1, 4242.4242], [1, 2, 3.5]],
        "key": "secret-key-q9z",
    }
    problems.write_text(json.dumps(record))
    home = str(tmp_path / "home")
    submitted = runner.invoke(app, ["submit", str(problems), "--json", "--home", home])
    [pid] = [item["id"] for item in json.loads(submitted.stdout)]
    result = runner.invoke(app, ["--log-format", "json", "run", "--home", home])
    assert result.exit_code == 0, result.output
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    by_kind = {e.get("event"): e for e in events}
    assert {"claim", "batch", "run"} <= set(by_kind)
    batch = by_kind["batch"]
    assert batch["problem_ids"] == [pid] and batch["backend"] == "aer" and batch["shape"]
    assert batch["provider_job_ids"] == [] and batch["t_execute_s"] >= 0  # shots drawn exactly
    assert by_kind["run"]["run_id"] == batch["run_id"] == by_kind["claim"]["run_id"]
    text = result.stderr
    assert "4242.4242" not in text and "secret-key-q9z" not in text  # no payload, no key
    assert not any({"solution", "edges", "spec", "key"} & set(e) for e in events)


def test_an_unknown_log_format_is_a_usage_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["--log-format", "xml", "status", "--home", str(tmp_path)])
    assert result.exit_code == 2


def test_the_run_summary_shows_answers_far_from_their_bound(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from datetime import UTC, date, datetime

    from flows.cli.running import _print_large_gaps
    from pipeline.config import load_settings
    from pipeline.results import ProblemRow, dataset_path, to_table, write_table

    settings = load_settings(tmp_path / "home")
    now = datetime.now(UTC)
    rows = [
        ProblemRow(
            f"p-{gap}",
            "k",
            "r-1",
            "b-1",
            "maxcut",
            80,
            objective=66.0,
            bound=b,
            gap=gap,
            completed_at=now,
        )
        for gap, b in ((0.005, 66.3), (1.3333, 154.0))
    ]
    path = dataset_path(settings.results_location.path, "problems", date.today(), "b-1")
    write_table(
        path,
        to_table(rows, ProblemRow),
    )
    _print_large_gaps(settings, "r-1")
    shown = capsys.readouterr().out
    assert "from their bound (not proven)" in shown
    assert "p-1.3333" in shown and "133.33%" in shown
    assert "p-0.005" not in shown  # within 1 %: not far
