"""``make fuzz``: schemathesis (``--checks all``) against a real server, admin then STANDARD user.

A throw-away deployment (``xwserver init`` in a temporary folder, a free loopback port) is
started with ``xwserver start`` (with :data:`SETTINGS`), a STANDARD user added, and ``st run`` pointed at the
server's own OpenAPI document with each token (settings in ``schemathesis.toml``). Extra
arguments go to ``st run`` (e.g. ``--max-examples 200``). The server is stopped at the end;
the exit status is 1 if either run found a failure.
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
#: the deployment's settings for a fuzzing run: a work request that finds no job is told at
#: once when to come back instead of long-polling for up to its wait_s (60 s): the answer is
#: what is checked, and a run would otherwise spend most of its time waiting (the long-poll
#: itself is tested in tests/unit/test_server_longpoll.py)
SETTINGS = {"max_waiting_requests": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _post(url: str, ctx: ssl.SSLContext, body: dict[str, str], token: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, json.dumps(body).encode(), headers, method="POST")
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        answer: dict[str, str] = json.load(resp)
        return answer


def main(extra: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="xwfuzz-") as tmp:
        home = Path(tmp) / "home"
        url = f"https://127.0.0.1:{_free_port()}"
        init = subprocess.run(
            [BIN / "xwserver", "init", "--home", home, "--url", url],
            check=True,
            capture_output=True,
            text=True,
        )
        password = next(
            line.split("=", 1)[1]
            for line in (home / "conf" / "xwrc").read_text().splitlines()
            if line.startswith("password=")
        )
        del init
        with (home / "conf" / "xwserver.conf").open("a") as conf:
            conf.writelines(f"{key}={value}\n" for key, value in SETTINGS.items())
        subprocess.run([BIN / "xwserver", "start", "--home", home], check=True)
        try:
            ca = home / "keystore" / "ca.pem"
            ctx = ssl.create_default_context(cafile=str(ca))
            api = url + "/api/v1"
            admin = _post(api + "/login", ctx, {"login": "admin", "password": password})["token"]
            _post(api + "/users", ctx, {"login": "fuzzer", "password": "fuzzer-pw-1"}, admin)
            standard = _post(api + "/login", ctx, {"login": "fuzzer", "password": "fuzzer-pw-1"})["token"]
            failed = False
            for who, token in (("admin", admin), ("STANDARD user", standard)):
                print(f"== schemathesis as {who}", flush=True)
                env = {**os.environ, "XW_FUZZ_CA": str(ca), "XW_FUZZ_TOKEN": token}
                run = subprocess.run(
                    [BIN / "st", "run", api + "/openapi.json", "--checks", "all", *extra], cwd=REPO, env=env
                )
                failed |= run.returncode != 0
        finally:
            subprocess.run([BIN / "xwserver", "stop", "--home", home], check=False)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
