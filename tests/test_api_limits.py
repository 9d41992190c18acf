"""The HTTP service under abuse: what it tells strangers, and the limits that keep one caller
(or a crowd of strangers) from starving the others, measured against a real ``qhopper api``.

Every server is a subprocess on loopback with a temporary home; nothing sleeps to wait for
anything, everything polls with a deadline, every socket and client has a timeout.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from api_server import Server, poll, start_server, stop_server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("limits") / "home", warm_up=False)
    try:
        yield running
    finally:
        stop_server(running)


# --- what strangers see -----------------------------------------------------------------------
def test_the_interactive_docs_are_off_by_default(server: Server) -> None:
    with server.client() as client:
        assert client.get("/docs").status_code == 404
        assert client.get("/redoc").status_code == 404
        assert client.get("/openapi.json").status_code == 200  # the contract machines read


class Relay:
    """A loopback TCP relay to ``target`` that can be cut: the database going away."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                near, _ = self.listener.accept()
                far = socket.create_connection(self.target, timeout=5)
            except OSError:
                return  # cut
            self.sockets += [near, far]
            for a, b in ((near, far), (far, near)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        for sock in (self.listener, *self.sockets):
            with contextlib.suppress(OSError):  # never connected, or already shut
                sock.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked on it; close() would not
            sock.close()


@pytest.mark.postgres
def test_readyz_says_only_not_ready_when_the_database_is_down(
    tmp_path: Path, postgres_url: str
) -> None:
    relay = Relay(("127.0.0.1", 5432))
    url = postgres_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    running = start_server(tmp_path / "home", intake_url=url, warm_up=False, docs=True)
    try:
        with running.client(timeout=15.0) as client:
            assert client.get("/readyz").json() == {"ready": True}
            assert client.get("/docs").status_code == 200  # [api] docs = true
            relay.cut()
            down: list[httpx.Response] = []
            poll(lambda: down.append(client.get("/readyz")) or down[-1].status_code == 503, "503")
            assert down[-1].json() == {"ready": False}  # not where the database is, nor why
    finally:
        relay.cut()
        stop_server(running)
