"""A real ``qhopper api`` process on loopback for the tests: started on a free port with a
temporary home and its own ``[api]`` settings, stopped within deadlines, polled (never slept
on) until ready.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
QHOPPER = [sys.executable, "-c", "from flows.cli import main; main()"]
TOKENS = {"alpha": "token-alpha-0123456789", "beta": "token-beta-9876543210"}
ALPHA = {"Authorization": f"Bearer {TOKENS['alpha']}"}
BETA = {"Authorization": f"Bearer {TOKENS['beta']}"}
START_S = 90.0


def maxcut(n: int, extra: int = 0, **options: object) -> dict[str, object]:
    edges = [[i, (i + 1) % n] for i in range(n)] + [[0, n // 2], [1, (n // 2 + 1 + extra) % n]]
    unique = sorted({(min(u, v), max(u, v)) for u, v in edges if u != v})
    return {"kind": "maxcut", "n": n, "edges": [list(e) for e in unique], **options}


@dataclass
class Server:
    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, **{"timeout": 30.0, **kwargs})  # type: ignore[arg-type]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(home: Path, intake_url: str | None = None, **api: object) -> Server:
    """``qhopper api`` on a free port with ``[api]`` settings (and an intake database other
    than the home's SQLite file); returns once /readyz is 200."""
    home.mkdir(parents=True, exist_ok=True)
    lines = [f"[intake]\ndatabase_url = {json.dumps(intake_url)}"] if intake_url else []
    lines += ["[api]"] + [f"{k} = {json.dumps(v)}" for k, v in api.items()]
    lines += ["[api.tenants]"]
    lines += [f'{n} = "{hashlib.sha256(t.encode()).hexdigest()}"' for n, t in TOKENS.items()]
    (home / "qhopper.toml").write_text("\n".join(lines) + "\n")
    port = _free_port()
    log = home / "api.log"
    env = {**os.environ, "PYTHONFAULTHANDLER": "1"}
    process = subprocess.Popen(
        [*QHOPPER, "api", "--home", str(home), "--port", str(port)],
        cwd=REPO,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env=env,
    )
    server = Server(f"http://127.0.0.1:{port}", home, process, log)
    deadline = time.monotonic() + START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"qhopper api exited {process.returncode}: {log.read_text()}")
        try:
            if httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.05)  # a poll interval, not a wait for something to happen
    stop_server(server)
    raise AssertionError(f"qhopper api not ready within {START_S} s: {log.read_text()}")


def stop_server(server: Server) -> None:
    if server.process.poll() is None:
        server.process.send_signal(signal.SIGTERM)
        try:
            server.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.process.kill()
            server.process.wait(timeout=10)


def in_flight(server: Server) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=5).text
    line = next(x for x in text.splitlines() if x.startswith("qhopper_http_requests_in_flight "))
    return float(line.split()[1])  # this scrape is one of them


def accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def poll(condition: Callable[[], object], what: str, within_s: float = 20.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.02)  # a poll interval
    raise AssertionError(f"timed out waiting for {what}")
