"""A whole deployment on loopback, run as users run it: real processes, real TLS.

:class:`Deployment` is a server home made by ``xwserver init`` in a test's folder, its
server started with ``xwserver start``, any number of workers (``xwworker console``, each
with its own ``path.tmpdir``) and the client CLI (``python -m xwclient``) run in a working
folder with ``XWCONFIG`` set to the admin's ``conf/xwrc``.

Every process it starts is ended by :meth:`Deployment.close`, also when the test failed:
workers get SIGTERM then SIGKILL, the server ``xwserver stop`` then SIGKILL; processes
are only ever ended by the pid this class recorded for them.

The demo (demo/run_demo.py) and the benchmarks (bench/) start their deployments with it
too: for them it takes the home's folder (``home=``), more environment for every child
process (``env=``, e.g. ``PYTHONPATH`` naming a checkout), the server's log level
(``start_server(log_level=...)``), a worker's name and its settings as the public config
has them (a setting given as ``None`` is not overridden), the client's output to a file
(``client(stdout=...)``), and say which of its processes outlived :meth:`Deployment.close`
(:meth:`Deployment.processes_left`).

Chaos tests also look underneath: :meth:`Deployment.database` reads the server's database
directly (also while the server is dead), :meth:`Deployment.orphan_files` and
:meth:`Deployment.missing_files` compare the data store with its data rows, and
``start_server(env={"XW_FAULTS": ...})`` arms the server's fault-injection points.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psutil
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from .api import Api
from .net import free_port
from .waiting import wait_until

#: seconds any one CLI call may take before the test fails (a watchdog, not an expectation)
CLI_TIMEOUT_S = 60.0
SERVER_START_TIMEOUT_S = 60.0
WORKER_REGISTER_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
FINAL_STATUSES = frozenset({"COMPLETED", "ERROR", "ABORTED"})

#: server settings that make leases, heartbeats and the reaper fast enough for tests
FAST_LEASES: dict[str, object] = {"lease_s": 3, "heartbeat_interval_s": 0.5, "reaper_interval_s": 0.5}


# -- properties files ------------------------------------------------------------------------------
def read_properties(path: Path) -> dict[str, str]:
    """``key=value`` / ``key: value`` lines, ``#`` comments (XWHEP's properties)."""
    values: dict[str, str] = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")):
            continue
        cuts = [p for p in (line.find("="), line.find(":")) if p > 0]
        if cuts:
            cut = min(cuts)
            values[line[:cut].strip()] = line[cut + 1 :].strip()
    return values


def write_config(dest: Path, source: Path, overrides: Mapping[str, object]) -> Path:
    """Copy the properties file ``source`` to ``dest`` with ``overrides`` set (mode 0600);
    an override whose value is ``None`` leaves the key as ``source`` has it (or without it)."""
    values: dict[str, object] = dict(read_properties(source))
    values.update({k: v for k, v in overrides.items() if v is not None})
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write("".join(f"{k}={v}\n" for k, v in values.items()))
    return dest


def tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"({path} does not exist)"
    return "\n".join(text.splitlines()[-lines:])


def python_program(body: str) -> str:
    """An application script as users send them: a ``#!/usr/bin/env python3`` file."""
    return "#!/usr/bin/env python3\n" + body.lstrip("\n")


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _kill_pid(pid: int, created: float | None = None) -> None:
    """SIGKILL ``pid`` if it is still the process we recorded (same start time)."""
    try:
        proc = psutil.Process(pid)
        if created is not None and abs(proc.create_time() - created) > 0.5:
            return  # the pid was recycled: not ours
        proc.kill()
    except psutil.NoSuchProcess:
        return
    _wait_gone(pid, 10)


# -- workers ----------------------------------------------------------------------------------------
@dataclass
class WorkerProcess:
    """One ``xwworker console`` started by a :class:`Deployment`."""

    name: str
    conf: Path
    tmpdir: Path
    log_path: Path
    proc: subprocess.Popen[bytes]
    _log: IO[bytes]
    host_uid: str = ""
    #: the worker's children (its jobs) seen so far, as (pid, start time): ended at teardown
    descendants: set[tuple[int, float]] = field(default_factory=set)

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def state(self) -> dict[str, Any]:
        """The worker's state file (pid, host_uid, tasks), or {}."""
        try:
            state = json.loads((self.tmpdir / "xwworker.state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def remember_children(self) -> None:
        if not self.alive:
            return  # its pid may already belong to someone else: never adopt a stranger's children
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    self.descendants.add((child.pid, child.create_time()))

    def log_text(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL: the worker dies without a word to the server (its jobs may run on)."""
        self.remember_children()
        if self.alive:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=STOP_TIMEOUT_S)

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM (graceful: finish or hand back tasks), SIGKILL after ``timeout_s``."""
        self.remember_children()
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s / 2)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGTERM)  # a second stop skips the grace periods
                try:
                    self.proc.wait(timeout=timeout_s / 2)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=STOP_TIMEOUT_S)
        return int(self.proc.returncode)

    def _stop_at_teardown(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """At teardown, the worker's fast stop: SIGTERM, and once the worker said it is
        stopping, SIGTERM again, which skips the grace periods (its running jobs, the
        in-flight work request: a second at least) but still hands back what it holds.
        The test is over: how a worker stops gracefully is what tests that call
        :meth:`stop` look at."""
        self.remember_children()
        if not self.alive:
            return
        with contextlib.suppress(OSError):
            self._log.flush()
        seen = self.log_path.stat().st_size
        self.proc.send_signal(signal.SIGTERM)
        # two signals sent at once may arrive as one: the second goes once the first was read
        deadline = time.monotonic() + 1.0
        with open(self.log_path, "rb") as log:
            log.seek(seen)
            said = b""
            while self.alive and time.monotonic() < deadline:
                said = said[-64:] + log.read()
                if b"stop requested" in said:
                    break
                time.sleep(0.02)
        if self.alive:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)

    def close(self) -> None:
        try:
            self._stop_at_teardown()
        finally:
            for pid, created in self.descendants:
                _kill_pid(pid, created)
            self._log.close()


# -- the database underneath ---------------------------------------------------------------------------
class DatabaseProbe:
    """Reads a server's database directly with SQLAlchemy Core, one connection per query.

    Tests use it where the API cannot answer (the server is dead) or would cost the server
    what the test measures (progress polled many times a second). It only reads. SQLite
    is read through the standard library's driver (the server's async one is its own),
    the other databases through their async drivers on a private event loop.
    """

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        self.url = url
        # NullPool: no connection outlives its query, so a dropped database or a killed
        # server never meets one of ours
        self._sync: Engine | None = None
        self._async: AsyncEngine | None = None
        self._runner: asyncio.Runner | None = None
        if parsed.get_backend_name() == "sqlite":
            self._sync = create_engine(parsed.set(drivername="sqlite"), poolclass=NullPool)
        else:
            self._runner = asyncio.Runner()
            self._async = create_async_engine(parsed, poolclass=NullPool)

    async def _rows_async(
        self, engine: AsyncEngine, sql: str, params: Mapping[str, object]
    ) -> list[tuple[Any, ...]]:
        async with engine.connect() as conn:
            result = await conn.execute(text(sql), dict(params))
            return [tuple(row) for row in result]

    def rows(self, sql: str, **params: object) -> list[tuple[Any, ...]]:
        if self._sync is not None:
            with self._sync.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql), params)]
        assert self._runner is not None and self._async is not None
        return self._runner.run(self._rows_async(self._async, sql, params))

    def scalar(self, sql: str, **params: object) -> Any:
        rows = self.rows(sql, **params)
        return rows[0][0] if rows else None

    def close(self) -> None:
        if self._sync is not None:
            self._sync.dispose()
        if self._runner is not None:
            try:
                if self._async is not None:
                    self._runner.run(self._async.dispose())
            finally:
                self._runner.close()


def _in_process(args: list[str]) -> subprocess.CompletedProcess[str]:
    """``xwserver ARGS`` run by its ``main`` in a thread of this process (its own event loop,
    whatever the caller's), with what it prints captured."""
    from xwserver.cli import main

    out, err = io.StringIO(), io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            return main(args)

    with ThreadPoolExecutor(1) as pool:
        code = pool.submit(run).result()
    return subprocess.CompletedProcess(["xwserver", *args], code, out.getvalue(), err.getvalue())


# -- the deployment ----------------------------------------------------------------------------------
class Deployment:
    """A server home in ``root`` with its server, workers and client; see the module doc."""

    def __init__(
        self,
        root: Path,
        *,
        db_url: str | None = None,
        settings: Mapping[str, object] | None = None,
        home: Path | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``home``: the server home (default ``root/home``); ``env``: added to the environment
        of every process started (the server, workers, the client); ``settings``: lines added
        to the server's ``xwserver.conf`` after ``init``."""
        self.root = root
        self.home = home or root / "home"
        self.workdir = root / "client"
        self.db_url = db_url
        self.settings = dict(settings or {})
        self.extra_env = dict(env or {})
        self.port = free_port()
        self.url = f"https://127.0.0.1:{self.port}"
        self.admin_password = "admin-" + secrets.token_hex(8)
        self.workers: list[WorkerProcess] = []
        #: every server process seen, as (pid, start time), so that teardown ends them all
        self.server_pids: list[tuple[int, float]] = []
        self._api: Api | None = None
        self._database: DatabaseProbe | None = None

    # -- paths ----------------------------------------------------------------------------------
    @property
    def server_conf(self) -> Path:
        return self.home / "conf" / "xwserver.conf"

    @property
    def admin_conf(self) -> Path:
        return self.home / "conf" / "xwrc"

    @property
    def worker_conf(self) -> Path:
        return self.home / "conf" / "xtremweb.worker.conf"

    @property
    def keystore(self) -> Path:
        return self.home / "keystore"

    @property
    def ca_file(self) -> Path:
        return self.keystore / "ca.pem"

    @property
    def pid_file(self) -> Path:
        return self.home / "var" / "xwserver.pid"

    @property
    def log_dir(self) -> Path:
        return self.home / "var" / "log"

    @property
    def data_dir(self) -> Path:
        """The content-addressed store: ``var/data/<first two hex>/<sha256>``, ``var/data/tmp/``."""
        return self.home / "var" / "data"

    @property
    def api(self) -> Api:
        if self._api is None:
            self._api = Api(self.url, self.ca_file, "admin", self.admin_password)
        return self._api

    # -- xwserver -------------------------------------------------------------------------------
    def xwserver(
        self,
        *args: str,
        check: bool = True,
        timeout_s: float = 90.0,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "xwserver", *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=self.root,
            env={**self._env(), **(env or {})},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"xwserver {' '.join(args)} exited {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr}"
            )
        return proc

    def init(self, *, in_process: bool = True) -> subprocess.CompletedProcess[str]:
        """``xwserver init`` for this deployment, run in this process: the command's own code
        (``xwserver.cli.main``), without a Python process of its own whose start and imports
        cost ~0.4 s of CPU a deployment. Its keys, passwords and database are its own, as the
        command makes them; tests/integration/test_cli_server.py runs the command itself.

        ``in_process=False`` runs the command as a process of its own, with the deployment's
        environment: a server from another source tree (``env={"PYTHONPATH": tree}``) makes
        its home with its own code."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = ["init", "--home", str(self.home), "--url", self.url, "--admin-password", self.admin_password]
        if self.db_url:
            args += ["--db", self.db_url]
        done = _in_process(args) if in_process else self.xwserver(*args, check=False)
        if done.returncode != 0:
            raise AssertionError(
                f"xwserver {' '.join(args)} exited {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
            )
        if self.settings:
            with open(self.server_conf, "a", encoding="utf-8") as fh:
                fh.write("\n# test settings\n")
                fh.writelines(f"{k}={v}\n" for k, v in self.settings.items())
        return done

    def server_pid(self) -> int | None:
        try:
            text = self.pid_file.read_text(encoding="ascii").strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def start_server(self, env: Mapping[str, str] | None = None, *, log_level: str | None = None) -> int:
        """``xwserver start``: returns once the server answers; its pid.

        ``env`` is added to the server's environment for this start only, e.g.
        ``{"XW_FAULTS": "after_claim_commit:1"}`` (a restart without it is a healthy server).
        ``log_level`` is given as ``--log-level`` (default: the command's, INFO).
        """
        args = ["start", "--home", str(self.home), "--timeout", str(SERVER_START_TIMEOUT_S)]
        if log_level is not None:
            args += ["--log-level", log_level]
        self.xwserver(*args, env=env)
        pid = self.server_pid()
        assert pid is not None and _alive(pid), f"no live server pid after start\n{self.describe()}"
        with contextlib.suppress(psutil.NoSuchProcess):
            self.server_pids.append((pid, psutil.Process(pid).create_time()))
        return pid

    def stop_server(self) -> subprocess.CompletedProcess[str]:
        return self.xwserver("stop", "--home", str(self.home), "--timeout", "10", check=False, timeout_s=60)

    def _stop_server_at_teardown(self, timeout_s: float = 10.0) -> None:
        """At teardown, what ``xwserver stop --timeout 10`` does (SIGTERM, SIGKILL after the
        timeout, the pid file removed) without a Python process started for it (a second of
        CPU each): only a live process whose command line names this home is signalled.
        Tests that stop the server use :meth:`stop_server`, the command users type."""
        pid = self.server_pid()
        if pid is None:
            return
        try:
            proc = psutil.Process(pid)
            if str(self.home) not in " ".join(proc.cmdline()):
                return  # the pid file outlived its server and the pid is someone else's now
            proc.terminate()
        except psutil.Error:
            return
        if not _wait_gone(pid, timeout_s):
            _kill_pid(pid)
        if self.server_pid() == pid:
            self.pid_file.unlink(missing_ok=True)

    def kill_server(self) -> int:
        """SIGKILL the server: no graceful anything, its pid file stays behind."""
        pid = self.server_pid()
        assert pid is not None and any(p == pid for p, _ in self.server_pids), "no server of ours to kill"
        os.kill(pid, signal.SIGKILL)
        assert _wait_gone(pid, 10), f"server pid {pid} survived SIGKILL"
        return pid

    def wait_server_gone(self, *, timeout_s: float) -> int:
        """Wait until the running server dies by itself (a fault-injection point); its pid."""
        pid = self.server_pid()
        assert pid is not None and any(p == pid for p, _ in self.server_pids), "no server of ours running"
        if not _wait_gone(pid, timeout_s):
            raise AssertionError(
                f"the server (pid {pid}) did not die within {timeout_s:.0f}s\n{self.describe()}"
            )
        return pid

    def server_alive(self) -> bool:
        pid = self.server_pid()
        return pid is not None and any(p == pid for p, _ in self.server_pids) and _alive(pid)

    # -- underneath: the database and the data store -------------------------------------------------
    def database(self) -> DatabaseProbe:
        """The server's own database, read directly (see :class:`DatabaseProbe`)."""
        if self._database is None:
            url = read_properties(self.server_conf).get("db.url") or self.db_url
            if not url:
                url = f"sqlite+aiosqlite:///{self.home / 'var' / 'xwserver.db'}"
            self._database = DatabaseProbe(url)
        return self._database

    def store_files(self) -> list[Path]:
        """Every file in the data store, its temporary folder included."""
        if not self.data_dir.is_dir():
            return []
        return sorted(f for sub in self.data_dir.iterdir() if sub.is_dir() for f in sub.iterdir())

    def orphan_files(self) -> list[Path]:
        """Files of the data store that no data row references (and leftover temporary files).

        The folder is listed before the rows are read: a file stored meanwhile whose row
        commits meanwhile is then seen with its row, never as an orphan.
        """
        files = self.store_files()
        referenced = {sha for (sha,) in self.database().rows("SELECT DISTINCT sha256 FROM data")}
        return [f for f in files if f.parent.name == "tmp" or f.name not in referenced]

    def missing_files(self) -> list[str]:
        """Digests of AVAILABLE data rows whose file is not in the store (lost content).

        Only rows that must stay: what users sent, and the results jobs name. A result of a
        lost attempt that no job names is the collector's to take, row and file, at any time.
        """
        rows = self.database().rows(
            "SELECT DISTINCT d.sha256 FROM data d WHERE d.status = 'AVAILABLE' AND (d.task_id IS NULL"
            " OR EXISTS (SELECT 1 FROM jobs j WHERE j.result_data_id = d.id))"
        )
        return sorted(sha for (sha,) in rows if not (self.data_dir / sha[:2] / sha).is_file())

    # -- the client CLI ---------------------------------------------------------------------------
    def _env(self, config: Path | None = None) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("XWWORKER_", "XWSERVER_", "XWCONFIG", "XW_FAULTS"))
        }
        env["PYTHONUNBUFFERED"] = "1"
        env.update(self.extra_env)  # the caller's, e.g. PYTHONUNBUFFERED="" (buffered, as users run them)
        env["XWCONFIG"] = str(config or self.admin_conf)
        return env

    def client(
        self,
        *args: str,
        config: Path | None = None,
        stdin: Path | None = None,
        cwd: Path | None = None,
        check: bool = True,
        timeout_s: float = CLI_TIMEOUT_S,
        stdout: IO[str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``python -m xwclient ARGS`` with ``XWCONFIG`` (default: the admin's xwrc); what it
        prints is captured, or written to the file ``stdout`` (then ``.stdout`` is None)."""
        with contextlib.ExitStack() as stack:
            stdin_stream: Any = subprocess.DEVNULL
            if stdin is not None:
                stdin_stream = stack.enter_context(open(stdin, "rb"))
            proc = subprocess.run(
                [sys.executable, "-m", "xwclient", *args],
                stdin=stdin_stream,
                stdout=stdout if stdout is not None else subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                timeout=timeout_s,
                check=False,
                cwd=cwd or self.workdir,
                env=self._env(config),
            )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"xwclient {' '.join(args)} exited {proc.returncode}\n"
                f"stdout: {proc.stdout}\nstderr: {proc.stderr}\n{self.describe()}"
            )
        return proc

    def client_json(self, *args: str) -> Any:
        return json.loads(self.client(*args, "--xwformat", "json").stdout)

    def send_app(self, name: str, source: str) -> str:
        """Write ``source`` as an executable script and ``--xwsendapp NAME any any FILE`` it."""
        script = self.workdir / f"{name}.py"
        script.write_text(source, encoding="utf-8")
        script.chmod(0o755)
        return self.client("--xwsendapp", name, "any", "any", str(script)).stdout.strip()

    def submit(
        self, app: str, *args: str, stdin: Path | None = None, timeout_s: float = CLI_TIMEOUT_S
    ) -> str:
        """``--xwsendwork APP ARGS… [< stdin]``: the new job's UID (its URI must be all of stdout)."""
        out = self.client("--xwsendwork", app, *args, stdin=stdin, timeout_s=timeout_s).stdout
        lines = out.splitlines()
        assert len(lines) == 1 and lines[0].startswith("xw://"), f"xwsendwork printed {out!r}, not one URI"
        return lines[0].rsplit("/", 1)[1]

    def results(self, uid: str) -> Path:
        """``--xwresults UID``: the folder ``ResultsOf_<UID>/`` it extracted."""
        self.client("--xwresults", uid)
        folder = self.workdir / f"ResultsOf_{uid}"
        assert (self.workdir / f"ResultsOf_{uid}.zip").is_file(), f"no ResultsOf_{uid}.zip"
        assert folder.is_dir(), f"xwresults did not extract into {folder}"
        return folder

    # -- observing -------------------------------------------------------------------------------
    def wait_for_jobs(self, uids: Iterable[str], *, timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
        """Wait until every job is COMPLETED, ERROR or ABORTED; their last state by UID."""
        wanted = set(uids)
        seen: dict[str, dict[str, Any]] = {}

        def done() -> bool:
            seen.update({j["uid"]: j for j in self.api.jobs() if j["uid"] in wanted})
            return wanted <= seen.keys() and all(seen[u]["status"] in FINAL_STATUSES for u in wanted)

        wait_until(
            done,
            timeout_s=timeout_s,
            # the test goes on soon after the last job; a listing of hundreds of jobs costs
            # the server more, and the run it waits for is long anyway
            interval_s=0.1 if len(wanted) <= 50 else 0.25,
            what=f"{len(wanted)} job(s) to finish",
            describe=lambda: self.describe(
                "job statuses: " + ", ".join(sorted(str(j.get("status")) for j in seen.values()))
            ),
        )
        return {u: seen[u] for u in wanted}

    def wait_for_status(self, uid: str, status: str, *, timeout_s: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            job = self.api.job(uid)
            return job if job["status"] == status else None

        return wait_until(
            check,
            timeout_s=timeout_s,
            interval_s=0.1,
            what=f"job {uid} to be {status}",
            describe=self.describe,
        )

    # -- workers -----------------------------------------------------------------------------------
    def start_worker(
        self,
        *,
        workpool_size: int = 1,
        wait_registered: bool = True,
        tmpdir: Path | None = None,
        name: str | None = None,
        **settings: object,
    ) -> WorkerProcess:
        """``xwworker console`` with a copy of the public worker config and its own tmpdir
        (or ``tmpdir``: another worker's state folder, as a restarted worker has it).

        ``name`` is its ``worker.name`` and names its files (default ``workerN``);
        ``settings`` override the config's keys, a key given as ``None`` keeps the public
        config's value (e.g. ``work_request_wait_s=None``: the worker's own long-poll)."""
        name = name or f"worker{len(self.workers) + 1}"
        tmpdir = tmpdir or self.root / name
        conf = write_config(
            self.root / f"{name}.conf",
            self.worker_conf,
            {
                "path.tmpdir": tmpdir,
                "workpool.size": workpool_size,
                "worker.name": name,
                "shutdown_grace_s": 2,
                "kill_grace_s": 1,
                # a stopping worker waits for its pending long-poll: keep it short
                "work_request_wait_s": 2,
                **settings,
            },
        )
        return self.start_worker_with(conf, name=name, tmpdir=tmpdir, wait_registered=wait_registered)

    def start_worker_with(
        self, conf: Path, *, name: str, tmpdir: Path, wait_registered: bool = True
    ) -> WorkerProcess:
        tmpdir.mkdir(parents=True, exist_ok=True)
        log_path = self.root / f"{name}.log"
        log = open(log_path, "wb")  # noqa: SIM115 - closed by WorkerProcess.close
        proc = subprocess.Popen(
            [sys.executable, "-m", "xwworker", "console", "--xwconfig", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=tmpdir,
            env=self._env(),
        )
        worker = WorkerProcess(name, conf, tmpdir, log_path, proc, log)
        self.workers.append(worker)
        if wait_registered:
            self.wait_registered(worker)
        return worker

    def wait_registered(self, worker: WorkerProcess) -> str:
        """Until ``worker`` has registered (its state file names its host); its host uid."""

        def registered() -> str | None:
            if not worker.alive:
                raise AssertionError(
                    f"{worker.name} exited {worker.proc.returncode} before registering:\n{worker.log_text()}"
                )
            state = worker.state()
            return state.get("host_uid") if state.get("pid") == worker.pid else None

        worker.host_uid = wait_until(
            registered,
            timeout_s=WORKER_REGISTER_TIMEOUT_S,
            interval_s=0.05,  # a local file read: the test goes on as soon as the worker is in
            what=f"{worker.name} to register",
            describe=lambda: worker.log_text(),
        )
        return worker.host_uid

    # -- diagnostics and teardown -------------------------------------------------------------------
    def describe(self, note: str = "") -> str:
        parts = [note] if note else []
        parts.append(f"--- {self.log_dir / 'xwserver.log'}:\n{tail(self.log_dir / 'xwserver.log')}")
        parts.append(f"--- {self.log_dir / 'xwserver.out'}:\n{tail(self.log_dir / 'xwserver.out', 15)}")
        for w in self.workers:
            parts.append(f"--- {w.name} (pid {w.pid}, alive {w.alive}):\n{tail(w.log_path, 25)}")
        return "\n".join(parts)

    def processes_left(self) -> list[int]:
        """The pids of the processes this deployment started (servers, workers and the
        workers' jobs seen) that are still alive: none once :meth:`close` has run."""
        left = [w.pid for w in self.workers if w.alive]
        started = [(pid, created) for w in self.workers for pid, created in sorted(w.descendants)]
        for pid, created in [*started, *self.server_pids]:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if abs(proc.create_time() - created) <= 0.5 and proc.status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)  # the same start time: ours, not a recycled pid
        return left

    def close(self) -> None:
        """Stop everything this deployment started, whatever state the test left it in."""
        errors: list[BaseException] = []
        # the workers stop side by side: each may take its grace period to hand tasks back
        with ThreadPoolExecutor(max_workers=max(1, len(self.workers))) as pool:
            for done in [pool.submit(w.close) for w in self.workers]:
                exc = done.exception()
                if exc is not None:  # keep going: the server must be stopped too
                    errors.append(exc)
        if self.home.is_dir():
            try:
                self._stop_server_at_teardown()
            except BaseException as exc:
                errors.append(exc)
        for pid, created in self.server_pids:
            _kill_pid(pid, created)
        if self._database is not None:
            try:
                self._database.close()
            except BaseException as exc:
                errors.append(exc)
            self._database = None
        if errors:
            raise errors[0]


#: the ``deployment`` fixture: ``deployment(db_url=None, *, start=True, **server_settings)``
MakeDeployment = Callable[..., Deployment]


@contextlib.contextmanager
def running_deployment(root: Path) -> Iterator[Deployment]:
    """A deployment in ``root`` with its server initialised and started, stopped with all it
    started on the way out: what a module's shared server fixture yields."""
    d = Deployment(root)
    try:
        d.init()
        d.start_server()
        yield d
    finally:
        d.close()


def send_windows_only_app(d: Deployment, note: str = "a binary for a platform no worker has") -> None:
    """``winonly``: an app for x86_64 Windows only, whose jobs no Linux worker can take."""
    d.workdir.mkdir(parents=True, exist_ok=True)
    never = d.workdir / "winonly.exe"
    never.write_text(note)
    d.client("--xwsendapp", "winonly", "x86_64", "windows", str(never))
