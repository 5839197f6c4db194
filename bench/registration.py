"""How fast a fleet sharing the public worker identity registers, then logs in again.

Starts a server (``xwserver init`` and ``start`` in a temporary home, by the tests' harness
tests/helpers/deployment.py, as every benchmark's server), then N simulated
workers, all at once, each as a real worker does on its first start: its own HTTPS
connection, a password login, ``POST /work/register``. Then each logs in again as after a
restart or an expired token: with its host credential where the server gave one, else with
the password. Prints the time for each phase and the logins per second.

    .venv/bin/python bench/registration.py --workers 1000
    .venv/bin/python bench/registration.py --workers 1000 --server-tree /tmp/older-checkout

``--server-tree`` runs the server from another source tree (an older commit, exported with
``git archive``; its ``xwserver init`` too), with the same clients: a before/after
comparison on one machine.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
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
sys.path.insert(0, str(ROOT / "tests"))  # the tests' harness

from helpers.deployment import Deployment  # noqa: E402

from xwcommon.config import load_properties  # noqa: E402
from xwcommon.protocol.work import Registered, Registration  # noqa: E402
from xwcommon.transport import Transport  # noqa: E402


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


async def _run(args: argparse.Namespace, server: Deployment) -> dict[str, Any]:
    conf = load_properties(server.worker_conf)
    servers, ca = conf["dispatcher.servers"], str(server.ca_file)
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
    # the server's processes import --server-tree (run outside it: ``-m`` puts the current
    # folder first on the import path), their output buffered as users run them
    server = Deployment(
        folder,
        home=folder / "home",
        db_url=args.db,
        env={"PYTHONPATH": str(args.server_tree), "PYTHONUNBUFFERED": ""},
    )
    try:
        # another tree's xwserver init runs as its own process, with that tree's code
        server.init(in_process=args.server_tree.resolve() == ROOT)
        server.start_server()
        figures = asyncio.run(_run(args, server))
    except (AssertionError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"bench/registration.py: {exc}") from None
    finally:
        server.close()
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
