"""CLI behaviour that needs no flow run: exit codes, intervals, status of unknown ids."""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from flows.cli import app
from flows.cli.serving import parse_interval
from pipeline.intake import IntakeStore
from pipeline.readers import MAX_ISSUES

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("5m", 300), ("1h", 3600), ("90", 90), ("0.5m", 30)]
)
def test_parse_interval(text: str, seconds: float) -> None:
    assert parse_interval(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "-1m", "0", "m5", "3700d", "9" * 400 + "s"])
def test_parse_interval_rejects_nonsense(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_interval(text)


@pytest.mark.parametrize(
    "deadline", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", 1_700_000_000]
)
def test_a_deadline_out_of_range_in_utc_exits_2_naming_file_record_and_field(
    tmp_path: Path, deadline: object
) -> None:
    """Not an OverflowError's traceback and exit 1 from inside the intake."""
    path = tmp_path / "p.jsonl"
    ok = {"kind": "maxcut", "n": 2, "edges": [[0, 1]]}
    path.write_text(json.dumps(ok) + "\n" + json.dumps(ok | {"deadline": deadline}) + "\n")
    result = runner.invoke(app, ["submit", str(path), "--home", str(tmp_path / "home")])
    assert result.exit_code == 2, result.output
    assert f"{path}: line 2: field 'deadline'" in result.stderr
    assert "nothing was enqueued" in result.stderr


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["solve", "{file}", "--timeout", "99999999999999999999s"], 2),
        (["serve", "--interval", "99999999999999d"], 2),
        (["report", "--since", "0001-01-01"], 0),
        (["report", "--since", "9999-12-31"], 2),  # selects no answer
    ],
)
def test_every_time_and_duration_option_is_checked_or_safe_at_its_extremes(
    tmp_path: Path, args: list[str], code: int
) -> None:
    """Durations that would take now past the year 9999 are usage errors (exit 2); the
    report's --since is a date, whose extremes are harmless."""
    from test_report import write_rich_results

    path = tmp_path / "p.json"
    path.write_text(json.dumps({"kind": "maxcut", "n": 2, "edges": [[0, 1]]}))
    write_rich_results(tmp_path / "home" / "results")
    argv = [a.format(file=path) for a in args] + ["--home", str(tmp_path / "home")]
    result = runner.invoke(app, argv)
    assert "Traceback" not in result.output and not isinstance(result.exception, OverflowError)
    assert result.exit_code == code, result.output


@pytest.mark.parametrize(
    "setting", ["[intake]\nlease_seconds = 1e300", "[api]\nmax_solve_timeout_s = inf"]
)
def test_durations_added_to_now_are_bounded_in_the_configuration(
    tmp_path: Path, setting: str
) -> None:
    config = tmp_path / "qhopper.toml"
    config.write_text(setting + "\n")
    result = runner.invoke(app, ["config", "--config", str(config), "--home", str(tmp_path)])
    assert result.exit_code == 2 and "configuration error" in result.stderr


def test_a_key_reused_for_other_content_exits_2_naming_file_record_and_key(
    tmp_path: Path,
) -> None:
    home = ["--home", str(tmp_path / "home")]
    ring = {"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2], [2, 0]]}
    first, other = tmp_path / "first.jsonl", tmp_path / "other.jsonl"
    first.write_text(json.dumps(ring | {"key": "k"}) + "\n")
    made = runner.invoke(app, ["submit", str(first), "--json", *home])
    assert made.exit_code == 0, made.output
    [problem] = json.loads(made.stdout)
    # Again later, with other content under the same key, beside a new problem:
    other.write_text(
        json.dumps(ring | {"key": "new"}) + "\n" + json.dumps(ring | {"n": 4, "key": "k"}) + "\n"
    )
    refused = runner.invoke(app, ["submit", str(other), *home])
    assert refused.exit_code == 2, refused.output
    assert f"{other}: line 2: field 'key': key 'k' already names problem {problem['id']}" in (
        refused.stderr
    )
    assert "nothing was enqueued" in refused.stderr
    # --skip-invalid lists the conflict and enqueues the rest.
    skipped = runner.invoke(app, ["submit", str(other), "--skip-invalid", "--json", *home])
    assert skipped.exit_code == 0, skipped.output
    assert [p["key"] for p in json.loads(skipped.stdout)] == ["new"]
    assert f"skipped: {other}: line 2: field 'key'" in skipped.stderr
    # Within one file: the first record keeps the key, the other is the conflict.
    inside = tmp_path / "inside.json"
    inside.write_text(json.dumps([ring | {"key": "z"}, ring | {"key": "z", "reps": 3}]))
    refused = runner.invoke(app, ["submit", str(inside), *home])
    assert refused.exit_code == 2, refused.output
    assert f"{inside}: record 2: field 'key': key 'z' already names the problem of " in (
        refused.stderr
    )
    assert f"{inside}: record 1" in refused.stderr


SECRETS_TOML = """
[intake]
database_url = "postgresql://qhopper:pg-s3cret@db.example:5432/q?sslmode=require&password=pw-s3cret"
[results]
url = "s3://bucket/results"
[results.storage_options]
connection_string = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=az-s3cret"
sas = "sv=2024-01-01&sig=sas-s3cret"
passphrase = "phrase-s3cret"
auth = "auth-s3cret"
endpoint_url = "http://minio:endpoint-s3cret@minio:9000"
anon = false
region_name = "eu-west-1"
client_kwargs = {endpoint_url = "http://minio:9000", aws_session_token = "token-s3cret"}
"""


@pytest.mark.parametrize("as_json", [True, False])
def test_config_shows_no_secret(tmp_path: Path, as_json: bool) -> None:
    """URL passwords, and every storage option not known to be harmless, are masked."""
    config = tmp_path / "qhopper.toml"
    config.write_text(SECRETS_TOML)
    args = ["config", "--config", str(config), "--home", str(tmp_path)]
    wide = {"COLUMNS": "1000"}  # a table cell wrapped mid-secret would hide it from the check
    result = runner.invoke(app, args + (["--json"] if as_json else []), env=wide)
    assert result.exit_code == 0, result.output
    assert "s3cret" not in result.output
    assert "postgresql://qhopper:***@db.example:5432/q?sslmode=require&password=***" in (
        result.output
    )
    if as_json:
        values = {row["setting"]: row["value"] for row in json.loads(result.stdout)}
        assert values["intake.database_url"] == (
            "postgresql://qhopper:***@db.example:5432/q?sslmode=require&password=***"
        )
        assert values["results.storage_options"] == {
            "connection_string": "***",
            "sas": "***",
            "passphrase": "***",
            "auth": "***",
            "endpoint_url": "***",
            "anon": False,
            "region_name": "eu-west-1",
            "client_kwargs": {"endpoint_url": "http://minio:9000", "aws_session_token": "***"},
        }


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://u:p@ss:w0rd@host/db", "postgresql://u:***@host/db"),
        ("see s3://k:s@bucket/x and http://h/?sig=abc&a=1", "s3://k:***@bucket/x"),
        ("http://h/?sig=abc&a=1", "http://h/?sig=***&a=1"),
        ("tcp://scheduler:8786 and postgresql://root@127.0.0.1/test", None),
    ],
)
def test_url_passwords_are_masked_wherever_they_stand(text: str, shown: str | None) -> None:
    from pipeline.redact import redact_text

    assert (shown or text) in redact_text(text)
    assert "w0rd" not in redact_text(text) and "abc" not in redact_text(text)


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_logs_and_error_lines_show_no_url_password(
    tmp_path: Path, log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import logging

    from flows.logs import configure_logging

    configure_logging(log_format)
    try:
        logging.getLogger("qhopper.test").warning(
            "cannot reach %s", "postgresql://user:log-s3cret@db:5432/q"
        )
        logged = capsys.readouterr().err
    finally:
        configure_logging("text")
    assert "cannot reach postgresql://user:***@db:5432/q" in logged and "s3cret" not in logged
    url = "nosuchscheme://user:fail-s3cret@bucket/results"
    result = runner.invoke(
        app, ["config", "--home", str(tmp_path)], env={"QHOPPER_RESULTS_URL": url}
    )
    assert result.exit_code == 2 and "configuration error" in result.stderr
    assert "nosuchscheme://user:***@bucket" in result.stderr and "s3cret" not in result.stderr


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, which makes files world-readable unless their creator says not."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_the_home_and_everything_in_it_is_owner_only(tmp_path: Path, umask_022: None) -> None:
    """Every tenant's payloads (intake.db) and answers (results/) are in the home."""
    from pipeline.intake import IntakeStore
    from pipeline.model import spec_from_record
    from pipeline.private import open_log

    home = tmp_path / "deep" / "home"
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"kind": "maxcut", "n": 3, "edges": [[0, 1], [1, 2]]}))
    assert runner.invoke(app, ["submit", str(path), "--home", str(home)]).exit_code == 0
    assert runner.invoke(app, ["run", "--home", str(home)]).exit_code == 0
    assert runner.invoke(app, ["report", "--home", str(home)]).exit_code == 0
    elsewhere = tmp_path / "reports" / "r.html"
    assert (
        runner.invoke(app, ["report", "--out", str(elsewhere), "--home", str(home)]).exit_code == 0
    )
    os.close(open_log(home / "prefect-server.log"))  # what `serve` logs the server to
    store = IntakeStore.open(f"sqlite:///{home / 'intake.db'}")
    try:  # while it is open, SQLite's -wal and -shm files are there
        store.submit([(spec_from_record({"kind": "maxcut", "n": 2, "edges": [[0, 1]]}), "t")])
        found = {p.name for p in home.iterdir()}
        assert {"intake.db-wal", "intake.db-shm", "results", "artifacts"} <= found, found
        modes = {
            str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode)
            for p in [home.parent, home, *home.rglob("*"), elsewhere.parent, elsewhere]
        }
    finally:
        store.close()
    loose = {
        name: oct(mode)
        for name, mode in modes.items()
        if mode != (0o700 if (tmp_path / name).is_dir() else 0o600)
    }
    assert not loose, loose
    assert any(name.endswith(".parquet") for name in modes) and "deep/home/report.html" in modes


def test_the_command_line_runs_under_an_owner_only_umask(
    umask_022: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """So what libraries create for it (Prefect's database, temporary files) is private too."""
    from flows.cli import main

    monkeypatch.setattr(sys, "argv", ["qhopper", "--help"])
    with pytest.raises(SystemExit):
        main()
    assert os.umask(0o022) == 0o077


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(app, ["submit"]).exit_code == 2
    assert runner.invoke(app, ["no-such-command"]).exit_code == 2
    assert (
        runner.invoke(app, ["serve", "--interval", "soon", "--home", str(tmp_path)]).exit_code == 2
    )


def test_missing_file_and_unknown_id_exit_2(tmp_path: Path) -> None:
    missing = runner.invoke(app, ["submit", str(tmp_path / "nope.json"), "--home", str(tmp_path)])
    assert missing.exit_code == 2 and "cannot read file" in missing.stderr
    IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}").close()
    unknown = runner.invoke(app, ["status", "p-0000", "--home", str(tmp_path)])
    assert unknown.exit_code == 2 and "no problem with id 'p-0000'" in unknown.stderr


def test_a_file_of_many_bad_records_lists_the_first_and_counts_the_rest(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(['{"kind": "maxcut", "n": 2, "edges": [[0, 0]]}'] * 130))
    home = ["--home", str(tmp_path)]
    for command in (["submit", str(bad)], ["submit", str(bad), "--skip-invalid"]):
        result = runner.invoke(app, [*command, *home])
        assert result.exit_code == 2 and result.stderr.count("self-loop") == MAX_ISSUES
    assert "130 errors found, the first 100 listed; nothing was enqueued" in " ".join(
        runner.invoke(app, ["submit", str(bad), *home]).stderr.split()
    )
    assert "30 more issue(s), not listed" in result.stderr  # --skip-invalid
    solved = runner.invoke(app, ["solve", str(bad), *home])
    assert solved.exit_code == 2 and "130 errors found, the first 100 listed" in solved.stderr


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
        "configuration error: unknown backend 'foo'; known backends: aer, aer-noisy, braket, braket-local, faulty, ibm"
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
    from pipeline.config_sources import load_settings
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


LONG_ID = "p-4ae4c0ffee0123456789abcdef"


def test_tables_off_a_terminal_print_every_cell_whole(tmp_path: Path) -> None:
    """Piped, rich used to cut cells to the terminal's width ('p-4ae4…')."""
    from pipeline.formulation import formulate
    from pipeline.model import spec_from_record
    from pipeline.qaoa.angle_store import AngleLibrary
    from pipeline.qaoa.angles import class_of
    from pipeline.qaoa.shapes import shape_of

    narrow = {"COLUMNS": "40"}
    sql = f"SELECT '{LONG_ID}' AS problem_id, '{'01' * 30}' AS solution"
    result = runner.invoke(app, ["results", "--sql", sql, "--home", str(tmp_path)], env=narrow)
    assert result.exit_code == 0, result.output
    assert LONG_ID in result.stdout and "01" * 30 in result.stdout
    spec = spec_from_record(
        {"kind": "maxcut", "n": 12, "edges": [[i, (i + 1) % 12] for i in range(12)]}
    )
    angle_class = class_of("maxcut", shape_of(formulate(spec).ising, 2, "aer"))
    store = IntakeStore.open(f"sqlite:///{tmp_path / 'intake.db'}")
    try:
        AngleLibrary(store.engine).add(
            angle_class, [0.25, 0.45], [-0.5, -0.27], 0.86, 3, 4.0, "grid"
        )
    finally:
        store.close()
    result = runner.invoke(app, ["angles", "--home", str(tmp_path)], env=narrow)
    assert result.exit_code == 0, result.output
    assert angle_class.key in result.stdout and "0.2500 0.4500" in result.stdout


def test_config_shows_the_effective_intake_url(tmp_path: Path) -> None:
    result = runner.invoke(app, ["config", "--json", "--home", str(tmp_path)])
    values = {row["setting"]: row["value"] for row in json.loads(result.stdout)}
    assert values["intake.database_url"] == f"sqlite:///{tmp_path.resolve() / 'intake.db'}"


def test_input_errors_are_counted_as_errors_not_problems(tmp_path: Path) -> None:
    """In a tool whose problems are what users submit, "2 problem(s) found" misleads."""
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"kind": "maxcut", "n": 2, "edges": [[0, 0]]}\n{"kind": "nope"}\n')
    for command, what in ((["submit"], "enqueued"), (["solve"], "solved")):
        result = runner.invoke(app, [*command, str(bad), "--home", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert result.stderr.strip().splitlines()[-1] == f"2 errors found; nothing was {what}."


def test_a_second_demo_shows_the_samples_answers(tmp_path: Path) -> None:
    """The samples are answered already (the same content is the same problem): the second
    demo shows their stored answers instead of 'Nothing queued'."""
    home = str(tmp_path / "home")
    first = runner.invoke(app, ["demo", "--home", home])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["demo", "--home", home], env={"COLUMNS": "200"})
    assert second.exit_code == 0, second.output
    assert "Nothing queued" not in second.stdout
    assert "the samples' answers from earlier runs" in second.stdout
    assert "quantum" in second.stdout and "classical" in second.stdout
    assert "qhopper demo --home DIR" in second.stdout
