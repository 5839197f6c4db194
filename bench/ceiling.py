"""The bare ceiling: what this machine serves with no middleware at all, in requests per second.

A bare aiohttp handler that parses a small JSON body, does one SQLite ``INSERT`` and its
``COMMIT`` (stdlib ``sqlite3`` in the event loop's thread, ``journal_mode=WAL`` and
``synchronous=NORMAL`` like the server, a file database in a temporary folder) and answers a
small JSON body, served over TLS (a throwaway self-signed P-256 certificate made with
``cryptography``; the clients trust it and nothing else) on kept-alive connections. M client
coroutines (aiohttp, one session and one connection each, like the simulated workers of
bench/dispatch.py) send R requests in all, as fast as the answers come back.

The server runs in a process of its own (this program started again with ``--serve``), the
clients in this one: the same split as the dispatch benchmark (``xwserver`` in one process,
the simulated workers in another). Each client opens its connection with one untimed request
first, so the figure is the steady state, not TLS handshakes.

Nothing here is XtremWeb-Py: it is the yardstick the dispatch benchmark divides by
(``bench/dispatch.py --ceiling`` runs it in the same run), so that figures taken on machines
that differ up to 5x from one day to the next can be compared.

    .venv/bin/python bench/ceiling.py                    # 50 clients, 10,000 requests
    .venv/bin/python bench/ceiling.py --clients 50 --requests 20000 --json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import ipaddress
import json
import math
import os
import platform
import select
import shutil
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

#: what the figure is, as the dispatch benchmark prints it
WHAT = "bare aiohttp + SQLite INSERT+COMMIT, TLS, keep-alive"
DEFAULT_CLIENTS = 50
DEFAULT_REQUESTS = 20_000
SERVER_START_TIMEOUT_S = 30.0
SERVER_STOP_TIMEOUT_S = 10.0
REQUEST_TIMEOUT_S = 30.0
HOST = "127.0.0.1"
PATH = "/insert"


class CeilingError(Exception):
    """Raised when the ceiling cannot be measured; the message says why."""


@dataclass
class Ceiling:
    """One measurement. ``req_per_s`` is the ceiling."""

    what: str = WHAT
    clients: int = 0
    requests: int = 0
    wall_s: float = math.nan
    req_per_s: float = math.nan
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    #: answers other than 200, by HTTP status, and requests that got no answer
    errors: dict[str, int] = field(default_factory=dict)
    server_cpu_s: float = math.nan
    client_cpu_s: float = math.nan
    #: CPU the rest of the machine used meanwhile, in cores (0.5: half a core busy elsewhere)
    others_cores: float = math.nan
    rows: int = -1

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in (
            "wall_s",
            "req_per_s",
            "p50_ms",
            "p99_ms",
            "server_cpu_s",
            "client_cpu_s",
            "others_cores",
        ):
            out[key] = round(out[key], 3)
        return out


# -- the certificate ------------------------------------------------------------------------------------
def write_self_signed(folder: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 and localhost; (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())  # the server's own key type (xwserver.keystore)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench ceiling")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


# -- the server (its own process) ---------------------------------------------------------------------------
def open_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)  # we say BEGIN and COMMIT, as the server does
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS reports ("
        "id INTEGER PRIMARY KEY, client TEXT NOT NULL, n INTEGER NOT NULL, at REAL NOT NULL)"
    )
    return conn


async def serve(db: Path, cert: Path, key: Path) -> None:
    """Listen on a free loopback port, print ``PORT <n>``, serve until SIGTERM."""
    conn = open_db(db)

    async def insert(request: web.Request) -> web.Response:
        body = await request.json()
        conn.execute("BEGIN IMMEDIATE")
        cur = conn.execute(
            "INSERT INTO reports (client, n, at) VALUES (?, ?, ?)", (body["client"], body["n"], time.time())
        )
        conn.execute("COMMIT")
        return web.json_response({"id": cur.lastrowid})

    app = web.Application()
    app.router.add_post(PATH, insert)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    port = sock.getsockname()[1]
    site = web.SockSite(runner, sock, ssl_context=ctx)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    print(f"PORT {port}", flush=True)
    await stop.wait()
    await runner.cleanup()
    conn.close()


# -- the clients (this process) ------------------------------------------------------------------------------
async def drive(port: int, cert: Path, clients: int, requests: int, server_pid: int) -> Ceiling:
    """``clients`` coroutines, one kept-alive TLS connection each, ``requests`` requests in all."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # pinned: this certificate and nothing else
    ctx.load_verify_locations(cafile=str(cert))
    url = f"https://{HOST}:{port}{PATH}"
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=1, keepalive_timeout=60), timeout=timeout
        )
        for _ in range(clients)
    ]
    statuses: Counter[str] = Counter()
    latencies_s: list[float] = []
    remaining = requests

    async def post(session: aiohttp.ClientSession, name: str, n: int) -> bool:
        try:
            async with session.post(url, json={"client": name, "n": n}) as resp:
                await resp.read()
                if resp.status != 200:
                    statuses[str(resp.status)] += 1
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            statuses[type(exc).__name__] += 1
            return False

    async def client(i: int, session: aiohttp.ClientSession) -> None:
        nonlocal remaining
        name = f"client-{i:03d}"
        n = 0
        while remaining > 0:
            remaining -= 1
            n += 1
            t0 = time.perf_counter()
            if await post(session, name, n):
                latencies_s.append(time.perf_counter() - t0)

    try:
        # open every connection (TLS handshake) before the clock starts
        warm = await asyncio.gather(*(post(s, f"client-{i:03d}", 0) for i, s in enumerate(sessions)))
        if not all(warm):
            raise CeilingError(f"the ceiling server refused the first requests: {dict(statuses)}")
        client_cpu0, server_cpu0, busy0 = time.process_time(), process_cpu_s(server_pid), machine_busy_s()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(i, s) for i, s in enumerate(sessions)))
        wall_s = time.perf_counter() - t0
        client_cpu_s = time.process_time() - client_cpu0
        server_cpu_s = process_cpu_s(server_pid) - server_cpu0
        busy_s = machine_busy_s() - busy0
    finally:
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
    ok = len(latencies_s)
    return Ceiling(
        clients=clients,
        requests=requests,
        wall_s=wall_s,
        req_per_s=ok / wall_s if wall_s > 0 else math.nan,
        p50_ms=percentile_ms(latencies_s, 50),
        p99_ms=percentile_ms(latencies_s, 99),
        errors=dict(statuses),
        server_cpu_s=server_cpu_s,
        client_cpu_s=client_cpu_s,
        others_cores=others_cores(busy_s, server_cpu_s + client_cpu_s, wall_s),
    )


def percentile_ms(values_s: list[float], q: float) -> float:
    """Nearest-rank percentile in milliseconds (NaN when empty)."""
    if not values_s:
        return math.nan
    ordered = sorted(values_s)
    return 1000 * ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (NaN when unknown)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_s() -> float:
    """CPU seconds the whole machine has been busy (all cores; /proc/stat), NaN when unknown."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return math.nan
    if fields[0] != "cpu":
        return math.nan
    # user nice system idle iowait irq softirq steal (guest time is inside user already)
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def others_cores(busy_s: float, ours_s: float, wall_s: float) -> float:
    """Cores the rest of the machine kept busy over ``wall_s``: all its busy time less ours."""
    return max(0.0, busy_s - ours_s) / wall_s if wall_s > 0 else math.nan


def read_port(proc: subprocess.Popen[str], timeout_s: float) -> int:
    """The ``PORT <n>`` line the server prints once it listens."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.1)
        if ready:
            line = proc.stdout.readline()
            if line.startswith("PORT "):
                return int(line.split()[1])
            if not line and proc.poll() is not None:
                break
        elif proc.poll() is not None:
            break
    raise CeilingError(f"the ceiling server did not listen within {timeout_s:.0f} s (exit {proc.poll()})")


def measure(clients: int = DEFAULT_CLIENTS, requests: int = DEFAULT_REQUESTS) -> Ceiling:
    """Start the ceiling server in a process of its own, drive it from this one, stop it."""
    if clients < 1 or requests < 1:
        raise CeilingError("clients and requests must be at least 1")
    workdir = Path(tempfile.mkdtemp(prefix="xwbench-ceiling-"))
    proc: subprocess.Popen[str] | None = None
    try:
        cert, key = write_self_signed(workdir)
        db = workdir / "ceiling.db"
        open_db(db).close()
        proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "--serve",
                "--db",
                str(db),
                "--cert",
                str(cert),
                "--key",
                str(key),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
            cwd=workdir,
        )
        port = read_port(proc, SERVER_START_TIMEOUT_S)
        result = asyncio.run(drive(port, cert, clients, requests, proc.pid))
        stop(proc)
        with contextlib.closing(sqlite3.connect(db)) as conn:
            result.rows = int(conn.execute("SELECT count(*) FROM reports").fetchone()[0])
        return result
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(workdir, ignore_errors=True)


def stop(proc: subprocess.Popen[str]) -> None:
    """End the server process we started, by its pid: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(SERVER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--clients", type=int, default=DEFAULT_CLIENTS, help="client coroutines (default 50)")
    p.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="requests in all (default 20000)")
    p.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)  # the server process
    p.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--cert", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--key", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        asyncio.run(serve(args.db, args.cert, args.key))
        return 0
    try:
        result = measure(args.clients, args.requests)
    except CeilingError as exc:
        print(f"bench/ceiling.py: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json()))
        return 0
    print(f"XtremWeb-Py bench ceiling: {WHAT}")
    rows = [
        ("ceiling", f"{result.req_per_s:.0f} req/s ({result.requests} requests, {result.wall_s:.2f} s)"),
        ("clients", f"{result.clients} coroutines, one kept-alive connection each"),
        ("latency p50 / p99", f"{result.p50_ms:.1f} / {result.p99_ms:.1f} ms"),
        (
            "cpu",
            f"server {1e6 * result.server_cpu_s / max(1, result.requests):.0f} µs/request, "
            f"clients {1e6 * result.client_cpu_s / max(1, result.requests):.0f} µs/request",
        ),
        (
            "checks",
            f"{result.rows} rows inserted (one more per client, opening its connection), "
            f"errors {result.errors or 'none'}",
        ),
        ("other load", f"{result.others_cores:.2f} cores busy elsewhere on this machine meanwhile"),
        (
            "machine",
            f"{os.cpu_count()} cores, Python {platform.python_version()}, aiohttp {aiohttp.__version__}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"  {key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
