"""The HTTP service's throughput and synchronous latency, against a real ``qhopper api``.

Measures: submissions per second with one problem per request and with batched bodies
(8 concurrent clients), and ``/v1/solve`` p50/p95 for 8-14-node MaxCut problems on a
warm service (one client, one solve at a time). Run: ``python benchmarks/bench_api.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

TOKEN = "bench-token"
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


def problem(n: int, seed: int) -> dict[str, object]:
    rnd = random.Random(seed)
    edges = {(min(i, (i + 1) % n), max(i, (i + 1) % n)) for i in range(n)}
    while len(edges) < int(1.5 * n):
        u, v = rnd.sample(range(n), 2)
        edges.add((min(u, v), max(u, v)))
    return {"kind": "maxcut", "n": n, "edges": sorted([u, v] for u, v in edges)}


def start(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    digest = hashlib.sha256(TOKEN.encode()).hexdigest()
    (home / "qhopper.toml").write_text(
        f'[api]\nrate_per_minute = 1e9\nburst = 1000000\n[api.tenants]\nbench = "{digest}"\n'
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from flows.cli import main; main()",
            "api",
            "--home",
            str(home),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=(home / "api.log").open("wb"),
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise SystemExit("qhopper api did not become ready")


def submit_rate(url: str, per_request: int, total: int, clients: int = 8) -> float:
    bodies = [
        [problem(8, seed) for seed in range(start, start + per_request)]
        for start in range(0, total, per_request)
    ]

    def send(chunk: list[list[dict[str, object]]]) -> None:
        with httpx.Client(base_url=url, timeout=60) as client:
            for body in chunk:
                answer = client.post("/v1/problems", json=body, headers=HEADERS)
                assert answer.status_code == 202, answer.text

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(send, [bodies[i::clients] for i in range(clients)]))
    return total / (time.perf_counter() - started)


def solve_latency(url: str, count: int) -> list[float]:
    times = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for index in range(count):
            body = problem(8 + index % 7, 10_000 + index)
            started = time.perf_counter()
            answer = client.post("/v1/solve?timeout_s=10", json=body, headers=HEADERS)
            times.append(time.perf_counter() - started)
            assert answer.status_code == 200, answer.text
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--submissions", type=int, default=2000)
    parser.add_argument("--solves", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        process, url = start(Path(folder))
        try:
            single = submit_rate(url, 1, args.submissions)
            batched = submit_rate(url, 50, args.submissions * 5)
            times = sorted(solve_latency(url, args.solves))
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    p95 = times[min(len(times) - 1, round(0.95 * len(times)) - 1)]
    print(f"submissions/s, one problem per request (8 clients): {single:,.0f}")
    print(f"submissions/s, 50 problems per request (8 clients): {batched:,.0f}")
    print(
        f"/v1/solve, 8-14-node MaxCut, warm, {len(times)} solves: "
        f"p50 {statistics.median(times) * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
