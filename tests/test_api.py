"""The HTTP service as other programs see it: a real ``qhopper api`` process on loopback.

Every server here is a subprocess (``qhopper api``) on a free port, started and stopped
within deadlines; nothing sleeps to wait for anything, everything polls with a deadline.
"""

from __future__ import annotations

import hashlib
import json
import signal
import socket
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest
import sqlalchemy as sa
import truth
from api_server import (
    ALPHA,
    BETA,
    QHOPPER,
    REPO,
    TOKENS,
    Server,
    accepting,
    in_flight,
    maxcut,
    poll,
    start_server,
    stop_server,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.intake import IntakeStore, ProblemOutcome
from pipeline.model import spec_from_record


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("api") / "home", max_body_bytes=65536, rate_per_minute=100000.0
    )
    try:
        yield running
    finally:
        stop_server(running)
        log = running.log.read_text()
        for secret in (
            *TOKENS.values(),
            *(hashlib.sha256(t.encode()).hexdigest() for t in TOKENS.values()),
        ):
            assert secret not in log, "a token or its hash reached the log"
        assert '"edges"' not in log, "a payload reached the log"


# --- contract ---------------------------------------------------------------------------------
def test_submit_is_idempotent_per_key_and_the_tenant_is_the_tokens(server: Server) -> None:
    with server.client() as client:
        body = maxcut(6, tenant="somebody-else")
        first = client.post("/v1/problems", json=body, headers={**ALPHA, "Idempotency-Key": "k-1"})
        again = client.post("/v1/problems", json=body, headers={**ALPHA, "Idempotency-Key": "k-1"})
        assert first.status_code == again.status_code == 202
        (made,) = first.json()["problems"]
        (same,) = again.json()["problems"]
        assert made == {"id": made["id"], "key": "k-1", "created": True}
        assert same == {"id": made["id"], "key": "k-1", "created": False}
        # Another tenant's same key is another problem, and neither sees the other's.
        other = client.post("/v1/problems", json=body, headers={**BETA, "Idempotency-Key": "k-1"})
        assert other.json()["problems"][0]["id"] != made["id"]
        assert client.get(f"/v1/problems/{made['id']}", headers=BETA).status_code == 404
        assert client.get("/v1/problems/p-0000000000000000", headers=ALPHA).status_code == 404
        seen = client.get(f"/v1/problems/{made['id']}", headers=ALPHA).json()
        assert seen["state"] == "queued" and seen["result"] is None and seen["key"] == "k-1"
        assert [e["state"] for e in seen["history"]] == ["queued"]
        batch = client.post("/v1/problems", json=[maxcut(5), maxcut(7)], headers=ALPHA)
        assert batch.status_code == 202 and len(batch.json()["problems"]) == 2
    store = IntakeStore.open(f"sqlite:///{server.home / 'intake.db'}")
    try:
        assert store.get(made["id"])["tenant"] == "alpha"  # type: ignore[index]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/problems"),
        ("GET", "/v1/problems/p-1"),
        ("POST", "/v1/solve"),
        ("GET", "/v1/results"),
        ("POST", "/v1/problems/p-1/requeue"),
    ],
)
def test_every_v1_route_wants_a_valid_token(server: Server, method: str, path: str) -> None:
    with server.client() as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKENS["alpha"]}):
            answer = client.request(method, path, json=maxcut(4), headers=headers)
            assert answer.status_code == 401, headers
            assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_a_tenant_requeues_its_own_failed_problem(server: Server) -> None:
    """POST /v1/problems/{id}/requeue: 202 for the tenant's failed problem, which goes back to
    the queue with a fresh budget; 409 while it is not failed; 404 for another tenant."""
    with server.client() as client:
        (made,) = client.post("/v1/problems", json=maxcut(9), headers=ALPHA).json()["problems"]
        url = f"/v1/problems/{made['id']}/requeue"
        assert client.post(url, headers=ALPHA).status_code == 409  # queued, not failed
        store = IntakeStore.open(f"sqlite:///{server.home / 'intake.db'}")
        try:
            store.claim("a-run", 1, 60, only=[made["id"]])
            store.journal.begin_batch("a-run", "b-failed", [made["id"]], "/r/b-failed.parquet")
            failed = ProblemOutcome(made["id"], "failed", None, None, "no answer")
            store.journal.finish_batch("b-failed", [failed])
        finally:
            store.close()
        assert client.post(url, headers=BETA).status_code == 404
        answer = client.post(url, headers=ALPHA)
        assert answer.status_code == 202 and answer.json() == {"id": made["id"], "state": "queued"}
        seen = client.get(f"/v1/problems/{made['id']}", headers=ALPHA).json()
        assert seen["state"] == "queued"
        assert seen["history"][-1]["detail"].startswith("requeued by api tenant alpha")
        assert client.post(url, headers=ALPHA).status_code == 409  # once is enough


def test_invalid_problems_name_record_and_field_and_enqueue_nothing(server: Server) -> None:
    with server.client() as client:
        bad = [maxcut(4), {"kind": "maxcut", "n": 3, "edges": [[0, 0]]}, {"kind": "nope"}]
        answer = client.post("/v1/problems", json=bad, headers=ALPHA)
        assert answer.status_code == 422
        assert answer.json()["errors"] == [
            {
                "record": "record 2",
                "field": "edges.0",
                "message": answer.json()["errors"][0]["message"],
            },
            {
                "record": "record 3",
                "field": "kind",
                "message": answer.json()["errors"][1]["message"],
            },
        ]
        assert "self-loop" in answer.json()["errors"][0]["message"]
        malformed = client.post("/v1/problems", content=b'{"kind": "maxcut",', headers=ALPHA)
        assert malformed.status_code == 400 and "malformed JSON" in malformed.json()["error"]
        assert (
            client.post("/v1/solve?timeout_s=nan", json=maxcut(4), headers=ALPHA).status_code == 422
        )
        assert (
            client.post("/v1/solve", json=[maxcut(4), maxcut(5)], headers=ALPHA).status_code == 422
        )
        assert client.get("/v1/results?since=yesterday", headers=ALPHA).status_code == 422
        assert client.get("/v1/results?cursor=%%%", headers=ALPHA).status_code == 422


def test_the_tenant_of_command_line_problems_cannot_be_configured_for_a_token(
    tmp_path: Path,
) -> None:
    """A token for "default" would read every problem `qhopper submit` enqueued (their
    tenant when they name none), keys and file names included: refused at start-up."""
    from flows.api import create_app
    from pipeline.config_sources import load_settings
    from pipeline.errors import ConfigError

    digest = hashlib.sha256(b"token").hexdigest()
    settings = load_settings(tmp_path, overrides={"api.tenants": {"default": digest}})
    with pytest.raises(ConfigError, match="'default' is reserved"):
        create_app(settings)
    create_app(load_settings(tmp_path, overrides={"api.tenants": {"Default-team": digest}}))
    # `qhopper api` says so in one line and exits 2, before serving anything.
    from typer.testing import CliRunner

    from flows.cli import app

    config = tmp_path / "qhopper.toml"
    config.write_text(f'[api.tenants]\ndefault = "{digest}"\n')
    result = CliRunner().invoke(app, ["api", "--home", str(tmp_path), "--config", str(config)])
    assert result.exit_code == 2 and "'default' is reserved" in result.stderr


def test_a_key_reused_for_other_content_is_409_naming_the_key(server: Server) -> None:
    """Not 202 with the first problem's id, whose answer the caller would take as its own."""
    with server.client() as client:
        key = {**ALPHA, "Idempotency-Key": "k-409"}
        first = client.post("/v1/problems", json=maxcut(6), headers=key)
        assert first.status_code == 202
        (made,) = first.json()["problems"]
        body = maxcut(6)
        body["edges"] = [list(reversed(e)) for e in reversed(body["edges"])]  # type: ignore[arg-type]
        same = client.post("/v1/problems", json=body, headers=key)  # same content, reordered
        assert same.status_code == 202 and same.json()["problems"][0]["id"] == made["id"]
        for path in ("/v1/problems", "/v1/solve"):
            other = client.post(path, json=maxcut(7), headers=key)
            assert other.status_code == 409, other.text
            [error] = other.json()["errors"]
            assert (error["record"], error["field"]) == ("record 1", "key")
            assert "'k-409'" in error["message"] and made["id"] not in other.text
        third = maxcut(4, key="third-of-a-refused-body")
        inside = [maxcut(5, key="twice"), maxcut(6, key="twice"), third]
        refused = client.post("/v1/problems", json=inside, headers=ALPHA)
        assert refused.status_code == 409 and refused.json()["errors"][0]["record"] == "record 2"
        again = client.post("/v1/problems", json=third, headers=ALPHA).json()["problems"]
        assert again[0]["created"], "a record of the refused body was enqueued"
        assert client.post("/v1/problems", json=maxcut(7), headers=BETA).status_code == 202


def test_times_out_of_range_in_utc_are_422_naming_where(server: Server) -> None:
    """Year 1 east of UTC, year 9999 west of it: an OverflowError and a 500 before."""
    import base64

    early, late = "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"
    with server.client() as client:
        for deadline in (early, late):
            body = [maxcut(4), maxcut(5, deadline=deadline)]
            answer = client.post("/v1/problems", json=body, headers=ALPHA)
            assert answer.status_code == 422, answer.text
            [error] = answer.json()["errors"]
            assert (error["record"], error["field"]) == ("record 2", "deadline")
            assert "out of range" in error["message"]
            solve = client.post("/v1/solve", json=maxcut(5, deadline=deadline), headers=ALPHA)
            assert solve.status_code == 422, solve.text
            since = client.get("/v1/results", params={"since": deadline}, headers=ALPHA)
            assert since.status_code == 422 and since.json()["errors"][0]["field"] == "since"
            forged = base64.urlsafe_b64encode(json.dumps([deadline, "p-1"]).encode()).decode()
            cursor = client.get("/v1/results", params={"cursor": forged}, headers=ALPHA)
            assert cursor.status_code == 422 and cursor.json()["errors"][0]["field"] == "cursor"


def test_bodies_over_the_limit_are_refused_before_parsing_chunked_too(server: Server) -> None:
    big = json.dumps(maxcut(4, key="x" * 100_000)).encode()
    with server.client() as client:
        declared = client.post("/v1/problems", content=big, headers=ALPHA)
        assert declared.status_code == 413
    with server.client() as client:

        def chunks() -> Iterator[bytes]:
            for start in range(0, len(big), 8192):
                yield big[start : start + 8192]

        chunked = client.post("/v1/problems", content=chunks(), headers=ALPHA)
        assert chunked.status_code == 413
        assert "max_body_bytes" in chunked.json()["error"]


def test_solve_answers_labelled_within_the_budget_and_keeps_the_trace(server: Server) -> None:
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    with server.client() as client:
        started = time.monotonic()
        answer = client.post(
            "/v1/solve?timeout_s=10",
            json=maxcut(12),
            headers={**ALPHA, "traceparent": f"00-{trace}-00f067aa0ba902b7-01"},
        )
        assert time.monotonic() - started < 10.5
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["result"]["trace_id"] == trace  # the caller's trace reaches the row
        assert body["state"] == ("degraded" if body["result"]["fallback_reason"] else "completed")
        result = body["result"]
        assert result["problem_id"] == body["id"] and result["tenant"] == "alpha"
        assert result["status"] == body["state"] and result["solver_path"] in (
            "simulator",
            "classical",
        )
        assert len(result["solution"]) == 12 and result["objective"] is not None
        assert (result["status"] == "degraded") == bool(result["fallback_reason"])
        assert answer.headers["traceparent"].split("-")[1] == trace
        seen = client.get(f"/v1/problems/{body['id']}", headers=ALPHA).json()
        assert seen["trace_id"] == trace and seen["result"]["problem_id"] == body["id"]
        assert client.get(f"/v1/problems/{body['id']}", headers=BETA).status_code == 404


def test_a_budget_quantum_cannot_meet_is_answered_by_the_labelled_fallback(server: Server) -> None:
    with server.client() as client:
        started = time.monotonic()
        answer = client.post(
            "/v1/solve?timeout_s=0.3", json=maxcut(10, extra=1, route="quantum"), headers=ALPHA
        )
        elapsed = time.monotonic() - started
        assert elapsed < 0.3 + 1.0, "the answer must not wait past its budget"
        body = answer.json()
        if answer.status_code == 200:
            assert body["result"]["status"] == "degraded" and body["result"]["fallback_reason"]
        else:  # even the fallback did not fit: the state and why, never a hang
            assert answer.status_code == 202 and body["result"] is None and body["error"]


def test_results_are_the_tenants_own_a_page_at_a_time(server: Server) -> None:
    with server.client() as client:
        for extra in range(3):
            assert client.post("/v1/solve", json=maxcut(8, extra), headers=ALPHA).status_code == 200
        rows, cursor = [], None
        while True:
            page = client.get(
                "/v1/results",
                params={"limit": 1, **({"cursor": cursor} if cursor else {})},
                headers=ALPHA,
            ).json()
            rows += page["results"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert len(rows) >= 3 and len({r["problem_id"] for r in rows}) == len(rows)
        assert all(r["tenant"] == "alpha" for r in rows)
        assert client.get("/v1/results", headers=BETA).json()["results"] == []
        since = client.get("/v1/results", params={"since": "2999-01-01T00:00:00Z"}, headers=ALPHA)
        assert since.json() == {"results": [], "next_cursor": None}


def test_health_readiness_metrics_and_openapi(server: Server) -> None:
    with server.client() as client:
        assert client.get("/healthz").json() == {"ok": True}
        assert client.get("/readyz").json() == {"ready": True}
        text = client.get("/metrics").text
        for name in (
            'qhopper_queue_depth{state="queued"}',
            "qhopper_answers_total",
            "qhopper_fallback_ratio",
            "qhopper_first_attempt_success_ratio",
            "qhopper_problem_stage_seconds_bucket",
            "qhopper_cost_usd_total",
            "qhopper_http_request_duration_seconds_bucket",
            "qhopper_http_requests_in_flight",
            'qhopper_solve_workers{state="warm"} 2.0',  # the worker and its spare
        ):
            assert name in text, name
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/v1/problems", "/v1/problems/{problem_id}", "/v1/solve", "/v1/results"} <= set(
            paths
        )


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
_kinds = st.fixed_dictionaries(
    {"kind": st.sampled_from(["maxcut", "qubo", "portfolio", "x"])},
    optional={
        "n": _json,
        "edges": _json,
        "mu": _json,
        "sigma": _json,
        "linear": _json,
        "key": _json,
    },
)


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    body=st.one_of(_json, _kinds, st.lists(_kinds, max_size=3), st.binary(max_size=64)),
    authorised=st.booleans(),
    text=st.text(max_size=30),
)
def test_no_input_makes_a_5xx(server: Server, body: object, authorised: bool, text: str) -> None:
    headers = ALPHA if authorised else {}
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    with server.client() as client:
        answers = [
            client.post("/v1/problems", content=content, headers=headers),
            client.post("/v1/solve", params={"timeout_s": "0.5"}, content=content, headers=headers),
            client.post("/v1/solve", params={"timeout_s": text}, content=content, headers=headers),
            client.get(f"/v1/problems/{quote(text, safe='')}", headers=headers),
            client.get("/v1/results", params={"since": text, "limit": text}, headers=headers),
            client.get("/v1/results", params={"cursor": text}, headers=headers),
            client.post(
                "/v1/problems",
                content=content,
                headers={**headers, "Idempotency-Key": _header_safe(text)},
            ),
        ]
    for answer in answers:
        assert answer.status_code < 500, (answer.request.url, answer.status_code, answer.text)


def _header_safe(text: str) -> str:
    """What an HTTP client can send as a header value (httpx refuses the rest itself)."""
    return "k" + "".join(c for c in text if c.isascii() and c.isprintable()).strip()


# --- rate, concurrency, shutdown --------------------------------------------------------------
def test_a_tenant_over_its_rate_gets_429_with_retry_after(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", warm_up=False, rate_per_minute=6.0, burst=2)
    try:
        with server.client() as client:
            codes = [client.get("/v1/results", headers=ALPHA).status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            limited = client.get("/v1/results", headers=ALPHA)
            assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
            assert client.get("/v1/results", headers=BETA).status_code == 200  # its own bucket
    finally:
        stop_server(server)


def test_concurrent_clients_with_overlapping_keys_get_one_id_per_key(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", warm_up=False, rate_per_minute=1e9, burst=100000)
    keys = [f"key-{i}" for i in range(150)]
    seen: dict[str, set[str]] = defaultdict(set)
    created: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def client_work(worker: int) -> None:
        with server.client() as client:
            for i in range(500):
                key = keys[(worker * 37 + i * 7) % len(keys)]
                answer = client.post(
                    "/v1/problems", json=maxcut(6), headers={**ALPHA, "Idempotency-Key": key}
                )
                assert answer.status_code == 202, answer.text
                (outcome,) = answer.json()["problems"]
                with lock:
                    seen[key].add(outcome["id"])
                    created[key] += outcome["created"]

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(client_work, range(8)))
    finally:
        stop_server(server)
    assert set(seen) == set(keys)
    assert all(len(ids) == 1 for ids in seen.values())
    assert all(created[key] == 1 for key in keys)
    engine = sa.create_engine(f"sqlite:///{server.home / 'intake.db'}")
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT count(*) FROM problems")).scalar_one() == len(
            keys
        )
    engine.dispose()


def test_sigterm_drains_the_request_in_flight_and_exits_within_10_s(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home", warm_up=False)
    port = int(server.url.rsplit(":", 1)[1])
    body = json.dumps(maxcut(6)).encode()
    head = (
        f"POST /v1/problems HTTP/1.1\r\nHost: x\r\nAuthorization: {ALPHA['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
            sock.sendall(head + body[:10])
            poll(lambda: in_flight(server) >= 2, "the request to be in flight")
            server.process.send_signal(signal.SIGTERM)
            signalled = time.monotonic()
            poll(lambda: not accepting(port), "the server to stop accepting")
            sock.sendall(body[10:])
            answer = b""
            while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 202"), answer
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["problems"][0]["created"] is True
        # uvicorn re-raises the signal once drained, so a supervisor sees a SIGTERM exit.
        assert server.process.wait(timeout=10) in (0, -signal.SIGTERM)
        assert time.monotonic() - signalled < 10
    finally:
        stop_server(server)


# --- the intake's trace column and the command line --------------------------------------------
def test_old_intake_databases_gain_the_trace_column_and_claims_carry_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'intake.db'}"
    IntakeStore.open(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.exec_driver_sql("ALTER TABLE problems DROP COLUMN trace_id")
    engine.dispose()
    store = IntakeStore.open(url)
    try:
        spec = spec_from_record(maxcut(5))
        other = spec_from_record(maxcut(6))
        traced, plain = store.submit([(spec, "test", "ab" * 16), (other, "test")])
        claims = {c.id: c for c in store.claim("r-1", 10, 60.0)}
        assert claims[traced.id].trace_id == "ab" * 16
        assert claims[plain.id].trace_id is None
    finally:
        store.close()


def test_solve_command_answers_labelled(tmp_path: Path) -> None:
    problems = tmp_path / "p.json"
    problems.write_text(json.dumps([maxcut(8), maxcut(9)]))
    done = subprocess.run(
        [
            *QHOPPER,
            "solve",
            str(problems),
            "--timeout",
            "20s",
            "--json",
            "--home",
            str(tmp_path / "h"),
        ],
        cwd=REPO,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    answers = json.loads(done.stdout)
    assert len(answers) == 2
    for answer in answers:
        result = answer["result"]
        # labelled: degraded exactly when a fallback answered, and then it says why
        assert result["status"] == ("degraded" if result["fallback_reason"] else "completed")
        assert result["solver_path"] == ("classical" if result["fallback_reason"] else "simulator")
        assert result["objective"] == pytest.approx(
            truth.objective(maxcut(len(result["solution"])), result["solution"])
        )


# --- schemathesis: every endpoint, with and without a valid token ------------------------------
OPTIONAL_FIELDS = {"deadline", "priority", "route", "reps", "shots", "tenant", "key"}


def test_schemathesis_finds_no_server_error_and_no_schema_violation(server: Server) -> None:
    """Cases generated from /openapi.json for every operation, each sent with a valid token
    and without one: no 5xx, every response as the schema says. The problems are generated
    from each kind's spec, so every optional field of a problem is among what is sent."""
    import schemathesis
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import response_schema_conformance

    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/problems", "/v1/solve", "/v1/results"}
    sent: Counter[str] = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=10, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            for headers in (ALPHA, {}):
                case.call_and_validate(
                    headers=headers,
                    timeout=90,
                    checks=[not_a_server_error, response_schema_conformance],
                )
                sent[case.operation.path] += 1
            for problem in case.body if isinstance(case.body, list) else [case.body]:
                sent.update(OPTIONAL_FIELDS & set(problem if isinstance(problem, dict) else []))

        check()
    assert all(sent[op.path] >= 2 for op in operations), sent
    assert all(sent[name] for name in OPTIONAL_FIELDS), sent
