"""How fast a fleet sharing the public worker identity registers, then logs in again.

Starts a server (``xwserver init`` and ``start`` in a temporary home), then N simulated
workers, all at once, each as a real worker does on its first start: its own HTTPS
connection, a password login, ``POST /work/register``. Then each logs in again as after a
restart or an expired token: with its host credential where the server gave one, else with
the password. Prints the time for each phase and the logins per second.

    .venv/bin/python bench/registration.py --workers 1000
    .venv/bin/python bench/registration.py --workers 1000 --server-tree /tmp/older-checkout

``--server-tree`` runs the server from another source tree (an older commit, exported with
``git archive``), with the same clients: a before/after comparison on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from xwcommon.config import load_properties  # noqa: E402
from xwcommon.protocol.work import Registered, Registration  # noqa: E402
from xwcommon.transport import Transport  # noqa: E402


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _xwserver(tree: Path, home: Path, *args: str) -> None:
    """``python -m xwserver ARGS`` from ``tree`` (run outside it: ``-m`` puts the current
    folder first on the import path)."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    cmd = [sys.executable, "-m", "xwserver", *args]
    done = subprocess.run(cmd, env=env, cwd=home.parent, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr or done.stdout}")


async def _first_start(servers: str, ca: str, login: str, password: str, i: int) -> tuple[str, str | None]:
    """A worker's first start: password login, registration. (host uid, host key or None)."""
    async with Transport(servers, ca, login, password, retry_for_s=None, connections=1) as t:
        reg = Registration(name=f"bench-{i}", os="linux", cpu="x86_64", cores=2)
        answer = await t.request("POST", "/work/register", json=reg.to_wire(), timeout_s=600)
        registered = Registered.from_wire(answer)
        return registered.host_uid, answer.get("host_key")


async def _login_again(servers: str, ca: str, login: str, password: str, host: tuple[str, str | None]) -> str:
    """A restarted worker's login: with its host key if it has one, else its password."""
    async with Transport(servers, ca, login, password, retry_for_s=None, connections=1) as t:
        uid, key = host
        if key is None:
            await t.login()
            return "password"
        await t.request(
            "POST", "/login/host", json={"login": login, "host_uid": uid, "host_key": key}, auth=False
        )
        return "host key"


async def _run(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    conf = load_properties(home / "conf" / "xtremweb.worker.conf")
    servers, ca = conf["dispatcher.servers"], str(home / "keystore" / "ca.pem")
    login, password = conf["login"], conf["password"]
    sem = asyncio.Semaphore(args.concurrency)

    async def limited(coro: Any) -> Any:
        async with sem:
            return await coro

    start = time.perf_counter()
    hosts = await asyncio.gather(
        *(limited(_first_start(servers, ca, login, password, i)) for i in range(args.workers))
    )
    registered_s = time.perf_counter() - start
    start = time.perf_counter()
    kinds = await asyncio.gather(*(limited(_login_again(servers, ca, login, password, h)) for h in hosts))
    again_s = time.perf_counter() - start
    return {"registered_s": registered_s, "again_s": again_s, "kinds": sorted(set(kinds))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=1000, help="workers in flight at once")
    parser.add_argument("--server-tree", type=Path, default=ROOT, help="source tree the server runs from")
    parser.add_argument("--db", default=None, help="database URL (default: SQLite in the home)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="xw-bench-registration-"))
    home = folder / "home"
    init = ["init", "--home", str(home), "--url", f"https://127.0.0.1:{_free_port()}"]
    if args.db:
        init += ["--db", args.db]
    try:
        _xwserver(args.server_tree, home, *init)
        _xwserver(args.server_tree, home, "start", "--home", str(home))
        try:
            figures = asyncio.run(_run(args, home))
        finally:
            _xwserver(args.server_tree, home, "stop", "--home", str(home))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    n = args.workers
    print(f"server from {args.server_tree}; {n} workers sharing the public worker identity")
    print(
        f"first start (password login + registration): {figures['registered_s']:.1f} s, {n / figures['registered_s']:.0f}/s"
    )
    print(
        f"login again ({', '.join(figures['kinds'])}): {figures['again_s']:.1f} s, {n / figures['again_s']:.0f}/s"
    )


if __name__ == "__main__":
    main()
