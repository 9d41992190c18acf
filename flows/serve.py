"""``qhopper serve``: the batch flow on Prefect's own interval schedule.

Scheduling needs a real Prefect API: the temporary in-process server never schedules
served runs. So we use ``PREFECT_API_URL`` when it is set, and otherwise start
``prefect server start`` on loopback ourselves, wait until it answers, and serve with
one run at a time (scheduled runs would otherwise overlap; claims are atomic anyway).
Unless given a scheduler, it keeps one warm LocalCluster for all its runs, so an interval
run does not pay seconds of worker start-up each time.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from rich.console import Console

from pipeline.config import Settings
from pipeline.errors import QhopperError

SERVER_START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def prefect_api(home: Path, console: Console) -> Iterator[str]:
    """The API URL to serve against: the configured one, or a loopback server we own."""
    configured = os.environ.get("PREFECT_API_URL")
    if configured:
        yield configured
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    log_path = home / "prefect-server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console.print(f"Starting a Prefect server on 127.0.0.1:{port} (log: {log_path})")
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prefect",
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    try:
        _wait_healthy(url, server)
        os.environ["PREFECT_API_URL"] = url
        yield url
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_healthy(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise QhopperError(
                f"the Prefect server exited with code {server.returncode} while starting"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise QhopperError(
        f"the Prefect server did not become healthy within {SERVER_START_TIMEOUT_S:.0f} s"
    )


def serve_forever(
    settings: Settings,
    config: Path | None,
    interval_s: float,
    backend: str | None,
    dask_address: str | None,
    console: Console,
) -> None:
    from flows.prefect_env import configure_prefect

    configure_prefect(settings.home, log_level="INFO")
    with ExitStack() as stack:
        stack.enter_context(prefect_api(settings.home, console))
        from flows.batch_flow import batch_run
        from flows.dask_client import dask_client

        dask_address = dask_address or settings.dask.address
        if dask_address is None:
            client = stack.enter_context(dask_client(None, settings.dask.n_workers))
            dask_address = str(client.scheduler_info()["address"])
            console.print(f"Dask LocalCluster for every run at {dask_address}")
        console.print(f"Serving every {interval_s:g} s; stop with Ctrl-C.")
        batch_run.serve(
            name="qhopper-interval",
            interval=timedelta(seconds=interval_s),
            parameters={
                "home": str(settings.home.resolve()),
                "config_file": str(config.resolve()) if config else None,
                "backend": backend,
                "dask_address": dask_address,
            },
            global_limit=1,
            limit=1,
            print_starting_message=True,
        )
