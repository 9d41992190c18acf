"""``qhopper api`` (the HTTP service) and ``qhopper solve`` (its synchronous path, here).

``api`` and ``serve`` run side by side as separate processes on one home (one intake
database): ``api`` enqueues and answers ``/v1/solve`` at once in its own process;
``serve`` batches everything else on its interval.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated

import typer

from flows.cli.common import (
    ConfigOption,
    HomeOption,
    JsonOption,
    app,
    clean_failures,
    duration_option,
    err,
    errors_found,
    fail,
    out,
    settings_only,
)


def parse_timeout(text: str) -> float:
    """``--timeout``: ``10s``, ``500ms``, ``2m`` or plain seconds."""
    return duration_option(text, ("ms", "s", "m"), "timeout", "a time like 10s, 500ms, 2m")


@app.command()
def api(
    host: Annotated[str, typer.Option("--host", help="Address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on")] = 8000,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """The HTTP service other programs call: tenants, tokens, synchronous solve, metrics."""
    import uvicorn

    from flows.api import create_app
    from pipeline.errors import ConfigError

    settings = settings_only(home, config)
    if not logging.getLogger().handlers:  # one line per request needs somewhere to go
        logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("qhopper").setLevel(logging.INFO)
    try:
        application = create_app(settings)
    except ConfigError as exc:
        fail(f"configuration error: {exc}", 2)
    server = uvicorn.Server(
        uvicorn.Config(
            application,
            host=host,
            port=port,
            access_log=False,  # the service logs one line per request itself, without secrets
            log_level="info",
            timeout_graceful_shutdown=max(1, round(settings.api.drain_s)),
            limit_concurrency=settings.api.max_connections,
            server_header=False,
        )
    )
    with clean_failures("api"):
        server.run()
    if not server.started:
        raise typer.Exit(1)


@app.command()
def solve(
    file: Annotated[Path, typer.Argument(help="A problem file (any format submit reads)")],
    timeout: Annotated[
        str, typer.Option("--timeout", help="Time budget for the whole file: 10s, 500ms")
    ] = "10s",
    as_json: JsonOption = False,
    home: HomeOption = None,
    config: ConfigOption = None,
) -> None:
    """Answer small problems synchronously, labelled; never waits past the timeout."""
    started = time.monotonic()
    timeout_s = parse_timeout(timeout)
    from flows.api.solve import Budget, read_answers, run_in_thread, with_deadline
    from flows.deps import open_deps
    from pipeline.readers import read_path

    settings = settings_only(home, config)
    records = read_path(file, settings.limits)
    issues = [issue for record in records for issue in record.issues]
    if issues:
        for issue in issues:
            err.print(f"[red]invalid:[/] {issue}", highlight=False)
        more = sum(record.more_issues for record in records)
        fail(f"{errors_found(issues, more)}; nothing was solved.", 2)
    budget = Budget.from_start(timeout_s, started)
    specs = [with_deadline(r.spec, budget.left()) for r in records if r.spec is not None]
    with clean_failures("solve"), open_deps(settings) as deps:
        outcomes = deps.intake.submit(
            [(spec, f"solve {file}:{r.record}") for spec, r in zip(specs, records, strict=True)]
        )
        ids, keys = [o.id for o in outcomes], [o.key for o in outcomes]
        answers = read_answers(deps, ids, keys, budget, run_in_thread(deps, ids, budget))
    if as_json:
        out.print_json(json.dumps([a.as_json() for a in answers]))
    else:
        for answer in answers:
            out.print(_line(answer.id, answer.state, answer.result, answer.error), highlight=False)
    if any(a.result is None or a.state == "failed" for a in answers):
        raise typer.Exit(1)


def _line(problem_id: str, state: str, result: dict[str, object] | None, why: str | None) -> str:
    if result is None:
        return f"{problem_id} {state}: {why}"
    text = (
        f"{problem_id} {result.get('status')} via {result.get('solver_path')} "
        f"objective={result.get('objective')} solution={result.get('solution')}"
    )
    if result.get("fallback_reason"):
        text += f" (fallback: {result.get('fallback_reason')})"
    return text
