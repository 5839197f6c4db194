"""A static web server on loopback, over plain HTTP or HTTPS with a throwaway CA: where
tests put documents that data by URL names (the CA is made with ``cryptography``, as
``xwserver init`` makes a deployment's, and given only to whom the test says)."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path
from types import TracebackType

from helpers.net import free_port
from xwserver import keystore


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  # the base class's name
        self.server.requests.append(self.path)  # type: ignore[attr-defined]


class WebServer:
    """Serves ``root`` at :attr:`url` until closed; :attr:`requests` lists the paths asked."""

    def __init__(self, root: Path, *, tls_dir: Path | None = None) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        handler = functools.partial(_Quiet, directory=str(root))
        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
        self._server.requests = []  # type: ignore[attr-defined]
        self.ca_file: Path | None = None
        scheme = "http"
        if tls_dir is not None:
            keystore.issue_certificate(tls_dir, ["127.0.0.1"], ca_common_name="test documents CA")
            self.ca_file = keystore.KeystorePaths.of(tls_dir).ca_cert
            context = keystore.server_ssl_context(tls_dir)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def requests(self) -> list[str]:
        return list(self._server.requests)  # type: ignore[attr-defined]

    def put(self, name: str, content: bytes) -> str:
        """Publish ``content`` as ``name``; its URL."""
        (self.root / name).write_bytes(content)
        return f"{self.url}/{name}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> WebServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
