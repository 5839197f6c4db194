"""Loopback ports and a plain TCP listener."""

from __future__ import annotations

import os
import random
import socket
import threading
from types import TracebackType

#: the ports tests' servers listen on: below Linux's ephemeral range (32768-60999), which the
#: kernel hands to outgoing connections and to ``bind(0)``, so that no client connection, of
#: this test or of another, takes a port a server is about to bind or bind again after a restart
SERVER_PORTS = range(20000, 32768)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now.

    Under ``pytest -n N`` each worker process draws from its own share of :data:`SERVER_PORTS`,
    so two tests running at once never pick the same port between its pick and its bind.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    ports = SERVER_PORTS[int(worker or 0) % count :: count]
    for _ in range(1000):
        port = random.choice(ports)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # taken, or still in TIME_WAIT: draw again
                continue
            return port
    raise RuntimeError(f"no free port among {len(ports)} of {SERVER_PORTS}")


class RecordingListener:
    """A TCP listener on 127.0.0.1 that accepts connections and records the bytes sent.

    Used as a stand-in for a plaintext server: a program that must never talk plaintext
    must never connect to it.
    """

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port = int(self._sock.getsockname()[1])
        self.received: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="recording-listener", daemon=True)
        self._thread.start()

    @property
    def connections(self) -> int:
        return len(self.received)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(1.0)
                data = b""
                try:
                    while len(data) < 65536:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.received.append(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()

    def __enter__(self) -> RecordingListener:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
