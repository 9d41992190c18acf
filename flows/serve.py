"""``qhopper serve``: the run flow on Prefect's own interval schedule, until stopped.

Scheduling needs a real Prefect API: the temporary in-process server never schedules
served runs. So we use ``PREFECT_API_URL`` when it is set, and otherwise start
``prefect server start`` on loopback ourselves, wait until it answers, and serve with
one run at a time (scheduled runs would otherwise overlap; claims are atomic anyway).
The first run starts at once, not one interval later. Unless given a scheduler, serve
keeps one warm LocalCluster for all its runs. SIGTERM and Ctrl-C stop it cleanly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from rich.console import Console

from flows.signals import stop_on_signals
from pipeline.config import Settings
from pipeline.errors import ServiceUnavailable
from pipeline.private import make_folder, open_log

SERVER_START_TIMEOUT_S = 120.0
PREFECT_SERVER = (sys.executable, "-m", "prefect", "server", "start")
FIRST_RUN_DELAY_S = 1.0  # the runner must be polling before the first run is due


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
    make_folder(log_path.parent)
    console.print(f"Starting a Prefect server on 127.0.0.1:{port} (log: {log_path})")
    with os.fdopen(open_log(log_path), "ab") as log:
        server = subprocess.Popen(
            [*PREFECT_SERVER, "--host", "127.0.0.1", "--port", str(port)],
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
            raise ServiceUnavailable(
                f"the Prefect server exited with code {server.returncode} while starting"
            )
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)  # polling an external process, bounded by the deadline
    raise ServiceUnavailable(
        f"the Prefect server did not become healthy within {SERVER_START_TIMEOUT_S:.0f} s"
    )


def serve_forever(
    settings: Settings,
    config: Path | None,
    interval_s: float,
    backend: str | None,
    console: Console,
) -> None:
    from flows.prefect_env import configure_prefect

    configure_prefect(settings.home, log_level="INFO")
    stop_on_signals()  # once Prefect's runner serves, it takes SIGTERM over itself
    try:
        with ExitStack() as stack:
            stack.enter_context(prefect_api(settings.home, console))
            from prefect.schedules import Interval

            from flows.compute import local_cluster
            from flows.flow import qhopper_run

            dask_address = settings.dask.address
            if dask_address is None:
                client = stack.enter_context(local_cluster(settings.dask.n_workers))
                dask_address = str(client.scheduler_info()["address"])
                console.print(f"Dask LocalCluster for every run at {dask_address}")
            parameters = {
                "home": str(settings.home.resolve()),
                "config_file": str(config.resolve()) if config else None,
                "backend": backend,
                "dask_address": dask_address,
            }
            console.print(f"Serving every {interval_s:g} s; stop with Ctrl-C or SIGTERM.")
            # Anchored a moment from now, the first run starts at once, not an interval later;
            # every run is a subprocess of Prefect's runner, so a crashed run is only a run.
            anchor = datetime.now(UTC) + timedelta(seconds=FIRST_RUN_DELAY_S)
            qhopper_run.serve(
                name="qhopper-interval",
                schedule=Interval(timedelta(seconds=interval_s), anchor_date=anchor),
                parameters=parameters,
                global_limit=1,
                limit=1,
                print_starting_message=False,
            )
    except KeyboardInterrupt:
        pass  # Ctrl-C, or SIGTERM before Prefect's runner took its signals over
    console.print("qhopper serve stopped.")
