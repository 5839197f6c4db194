"""A small synchronous HTTPS client to observe a server (jobs, tasks, hosts) from a test.

Tests act through the programs (the client CLI, the worker, ``xwserver``); they look at
what happened through this client, which speaks the wire of docs/api.md with nothing but
the standard library, trusting the deployment CA only.
"""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

API_PREFIX = "/api/v1"


class ApiError(AssertionError):
    """Raised when the server answers a call with an error status."""

    def __init__(self, method: str, path: str, status: int, body: bytes) -> None:
        super().__init__(f"{method} {path} answered {status}: {body[:500]!r}")
        self.status = status


class Api:
    def __init__(
        self, url: str, ca_file: Path, login: str, password: str, *, timeout_s: float = 10.0
    ) -> None:
        parts = urlsplit(url)
        assert parts.scheme == "https" and parts.hostname and parts.port, url
        self.host, self.port = parts.hostname, parts.port
        self.ssl = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.ssl.load_verify_locations(cafile=str(ca_file))
        self.login_name, self.password = login, password
        self.timeout_s = timeout_s
        self._token: str | None = None

    def _raw(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=self.timeout_s)
        try:
            headers = {"Accept": "application/json"}
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
            if auth and self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            conn.request(method, API_PREFIX + path, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            raise ApiError(method, path, resp.status, payload)
        return json.loads(payload) if payload else None

    def login(self) -> None:
        answer = self._raw(
            "POST", "/login", {"login": self.login_name, "password": self.password}, auth=False
        )
        self._token = answer["token"]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        if self._token is None:
            self.login()
        try:
            return self._raw(method, path, body)
        except ApiError as exc:
            if exc.status != 401:
                raise
            self.login()  # the token expired, or the server forgot it
            return self._raw(method, path, body)

    # -- what tests look at --------------------------------------------------------------------
    def version(self) -> dict[str, Any]:
        return dict(self._raw("GET", "/version", auth=False))

    def job(self, uid: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/jobs/{uid}"))

    def jobs(self, **query: Any) -> list[dict[str, Any]]:
        q = {"limit": 5000, **query}
        return list(self.call("GET", "/jobs?" + urlencode(q))["jobs"])

    def tasks(self, job_uid: str | None = None) -> list[dict[str, Any]]:
        q: dict[str, Any] = {"limit": 5000}
        if job_uid is not None:
            q["job"] = job_uid
        return list(self.call("GET", "/tasks?" + urlencode(q))["tasks"])

    def hosts(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/hosts")["hosts"])
