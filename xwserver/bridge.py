"""``xwserver bridge slurm``: pilot workers in a Slurm cluster (XWHEP's gliding-in).

The bridge runs on a Slurm submit host that sees the server home (the admin's ``conf/xwrc``
and the CA). For each pilot it

1. makes a WORKER user of its own (``xwpilot-<hex>``, a random password) through the API,
   as the home's admin;
2. writes ``var/bridge/slurm/<pilot>/`` (mode 0700): ``worker.conf`` (0600, a copy of the
   home's public worker config with that identity, its own ``path.tmpdir`` and
   ``worker.name``) and ``pilot.sbatch``, whose payload is
   ``xwworker console --pilot --max-idle-s N [--max-lifetime-s M]`` with as many job slots
   as the allocation has CPUs (``--cpus-per-task``, default 1);
3. submits the script with ``sbatch`` and records the Slurm job id in the folder.

Why an identity per pilot rather than the public worker's: the public worker's password is
shared by every volunteer, so a pilot config left readable on a cluster's shared file
system could only be revoked by changing it for all of them. A pilot's own user is revoked
alone: the bridge removes it (the server then removes its host and hands back any task it
still held) as soon as Slurm no longer lists the pilot's job. Its hosts, tasks and credit
show which allocation did the work, as XWHEP's gliding-in workers had their own identity.

Every run of the bridge first reaps the pilots of earlier runs that Slurm no longer lists.
``--watch`` then keeps ``--workers`` pilots queued or running while the server has PENDING
jobs (at most one pilot per pending job), polling ``squeue`` and the server every
``--poll-s`` seconds, until SIGTERM or SIGINT. It then cancels the pilots Slurm has not
started and removes their identities; pilots that run end on their own once idle, and the
next run of the bridge removes theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xwcommon.errors import ConfigError, XWError

from .home import CLIENT_CONF, WORKER_CONF
from .settings import ServerSettings

log = logging.getLogger(__name__)

#: a pilot with no work for this long exits (its allocation ends)
DEFAULT_MAX_IDLE_S = 120.0
#: ``--watch`` looks at Slurm's queue and the server's pending jobs this often
DEFAULT_POLL_S = 10.0
#: a pilot with a Slurm time limit stops this long before it (up to a tenth of the limit),
#: handing its unfinished tasks back instead of being killed with them
LIFETIME_MARGIN_S = 60.0
#: how long one Slurm command may take
SLURM_COMMAND_TIMEOUT_S = 60.0
PILOT_PREFIX = "xwpilot-"
JOB_ID_FILE = "slurm-job-id"
ENDED_FILE = "ended"


class BridgeError(XWError):
    """Raised when Slurm refuses or fails a command the bridge runs."""


@dataclass(frozen=True)
class SlurmOptions:
    """What ``xwserver bridge slurm`` was asked for."""

    workers: int
    partition: str | None = None
    time_limit: str | None = None
    account: str | None = None
    cpus_per_task: int = 1
    max_idle_s: float = DEFAULT_MAX_IDLE_S
    poll_s: float = DEFAULT_POLL_S

    @property
    def max_lifetime_s(self) -> float | None:
        """The pilot's lifetime: its Slurm time limit less a margin (none without ``--time``)."""
        if self.time_limit is None:
            return None
        total_s = slurm_time_s(self.time_limit)
        return max(1.0, total_s - min(LIFETIME_MARGIN_S, total_s / 10))


@dataclass
class Pilot:
    """One pilot: its folder, identity and Slurm job."""

    name: str
    folder: Path
    job_id: str


_TIME_FORMS = (
    (re.compile(r"^(\d+)$"), ("m",)),
    (re.compile(r"^(\d+):(\d+)$"), ("m", "s")),
    (re.compile(r"^(\d+):(\d+):(\d+)$"), ("h", "m", "s")),
    (re.compile(r"^(\d+)-(\d+)$"), ("d", "h")),
    (re.compile(r"^(\d+)-(\d+):(\d+)$"), ("d", "h", "m")),
    (re.compile(r"^(\d+)-(\d+):(\d+):(\d+)$"), ("d", "h", "m", "s")),
)
_UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def slurm_time_s(text: str) -> float:
    """Seconds in a Slurm time limit (``sbatch --time``): ``M``, ``M:S``, ``H:M:S``, ``D-H``,
    ``D-H:M``, ``D-H:M:S``."""
    for pattern, units in _TIME_FORMS:
        match = pattern.match(text.strip())
        if match:
            seconds = sum(int(v) * _UNIT_S[u] for v, u in zip(match.groups(), units, strict=True))
            if seconds <= 0:
                break
            return float(seconds)
    raise ConfigError(
        f"--time {text!r} is not a Slurm time limit greater than 0 "
        "(minutes, M:S, H:M:S, D-H, D-H:M or D-H:M:S)"
    )


Runner = Callable[[Sequence[str]], subprocess.CompletedProcess[str]]


def run_slurm(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """Run a Slurm command; a missing command or a failure is a :class:`BridgeError`."""
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=SLURM_COMMAND_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise BridgeError(f"{argv[0]} not found: run the bridge on a Slurm submit host") from None
    except subprocess.TimeoutExpired:
        raise BridgeError(f"{argv[0]} did not answer within {SLURM_COMMAND_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise BridgeError(f"{argv[0]} failed (exit {done.returncode}): {said[-1] if said else 'no message'}")
    return done


class SlurmBridge:
    """Submits and reaps a deployment's pilots; see the module doc."""

    def __init__(
        self,
        settings: ServerSettings,
        options: SlurmOptions,
        *,
        run: Runner = run_slurm,
        python: str = sys.executable,
    ) -> None:
        self.settings = settings
        self.options = options
        self.run = run
        self.python = python
        self.folder = settings.var_dir / "bridge" / "slurm"

    # -- the server side ------------------------------------------------------------------------------
    def _client(self) -> Any:
        from xwclient.sdk import XWClient  # the client's dependencies only when bridging

        admin = self.settings.conf_dir / CLIENT_CONF
        if not admin.is_file():
            raise ConfigError(
                f"{admin} is missing: the bridge acts as the home's admin (xwserver init writes it)"
            )
        return XWClient.from_config(admin)

    async def pending_jobs(self, client: Any, at_most: int) -> int:
        """How many jobs are PENDING on the server, counted up to ``at_most``."""
        page = await client.transport.request(
            "GET", "/jobs", params={"status": "PENDING", "limit": max(1, at_most), "offset": 0}
        )
        return len(page["jobs"])

    # -- pilots ---------------------------------------------------------------------------------------
    def _pilot_config(self, name: str, password: str, folder: Path) -> str:
        public = self.settings.conf_dir / WORKER_CONF
        try:
            lines = public.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigError(f"{public}: {exc.strerror}; the pilots' config is made from it") from None
        own = {"login": name, "password": password, "path.tmpdir": folder / "work", "worker.name": name}
        kept = [
            line
            for line in lines
            if re.split(r"[=:]", line.strip(), maxsplit=1)[0].strip() not in own
            or line.lstrip().startswith("#")
        ]
        return "\n".join([*kept, "", f"# pilot {name}", *(f"{k}={v}" for k, v in own.items())]) + "\n"

    def _script(self, name: str, folder: Path) -> str:
        opts = self.options
        directives = [
            f"--job-name={name}",
            f"--output={folder / 'slurm-%j.out'}",
            "--ntasks=1",
            "--nodes=1",
            f"--cpus-per-task={opts.cpus_per_task}",
        ]
        if opts.partition:
            directives.append(f"--partition={opts.partition}")
        if opts.time_limit:
            directives.append(f"--time={opts.time_limit}")
        if opts.account:
            directives.append(f"--account={opts.account}")
        command = [
            self.python,
            "-m",
            "xwworker",
            "console",
            "--pilot",
            "--xwconfig",
            str(folder / "worker.conf"),
            "--max-idle-s",
            f"{opts.max_idle_s:g}",
        ]
        if opts.max_lifetime_s is not None:
            command += ["--max-lifetime-s", f"{opts.max_lifetime_s:g}"]
        return "\n".join(
            [
                "#!/bin/sh",
                *(f"#SBATCH {d}" for d in directives),
                f"# An XtremWeb-Py pilot worker for {self.settings.url}, written by xwserver bridge slurm.",
                f"cd {shlex.quote(str(folder))} || exit 1",
                "# as many jobs at once as the allocation has CPUs, whatever the node has",
                f"XWWORKER_WORKPOOL_SIZE=${{SLURM_CPUS_PER_TASK:-{opts.cpus_per_task}}}",
                "export XWWORKER_WORKPOOL_SIZE",
                "exec " + shlex.join(command),
                "",
            ]
        )

    async def submit(self, client: Any) -> Pilot:
        """Make one pilot's identity and folder, and ``sbatch`` it."""
        name = PILOT_PREFIX + secrets.token_hex(5)
        password = secrets.token_urlsafe(24)
        folder = self.folder / name
        folder.mkdir(parents=True, mode=0o700)
        (folder / "work").mkdir(mode=0o700)
        _write_private(folder / "worker.conf", self._pilot_config(name, password, folder))
        script = folder / "pilot.sbatch"
        _write_private(script, self._script(name, folder))
        await client.create_user(name, password, None, "WORKER")
        try:
            done = await asyncio.to_thread(self.run, ["sbatch", "--parsable", str(script)])
        except BridgeError:
            await self._forget(client, name, folder)
            raise
        job_id = done.stdout.strip().split(";", 1)[0]
        if not job_id.isdigit():
            await self._forget(client, name, folder)
            raise BridgeError(f"sbatch printed {done.stdout.strip()!r}, not a job id")
        (folder / JOB_ID_FILE).write_text(job_id + "\n", encoding="ascii")
        log.info("pilot %s submitted as Slurm job %s", name, job_id)
        return Pilot(name, folder, job_id)

    def pilots(self) -> list[Pilot]:
        """This home's pilots not reaped yet (submitted ones only)."""
        found = []
        if self.folder.is_dir():
            for folder in sorted(self.folder.iterdir()):
                id_file = folder / JOB_ID_FILE
                if (
                    folder.name.startswith(PILOT_PREFIX)
                    and id_file.is_file()
                    and not (folder / ENDED_FILE).exists()
                ):
                    found.append(Pilot(folder.name, folder, id_file.read_text(encoding="ascii").strip()))
        return found

    async def queued(self) -> dict[str, str]:
        """The current user's Slurm jobs, pending or running: id -> state."""
        done = await asyncio.to_thread(self.run, ["squeue", "--noheader", "--me", "--format=%i %T"])
        states = {}
        for line in done.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2:
                states[parts[0]] = parts[1]
        return states

    async def reap(self, client: Any, queued: dict[str, str]) -> list[Pilot]:
        """Remove the identity of every pilot Slurm no longer lists; those pilots."""
        gone = [p for p in self.pilots() if p.job_id not in queued]
        for pilot in gone:
            await self._forget(client, pilot.name, pilot.folder)
            (pilot.folder / ENDED_FILE).write_text("", encoding="ascii")
            log.info("pilot %s (Slurm job %s) has ended; its identity is removed", pilot.name, pilot.job_id)
        return gone

    async def _forget(self, client: Any, name: str, folder: Path) -> None:
        from xwcommon.errors import Conflict, NotFound

        try:
            await client.remove_user(name)
        except NotFound:
            pass
        except Conflict as exc:  # it owns objects (only a SUPER could have given it any)
            log.warning("pilot %s: its identity is kept: %s", name, exc.message)
        with contextlib.suppress(OSError):
            (folder / "worker.conf").unlink()  # the password is revoked: nothing to keep it for

    async def top_up(self, client: Any, queued: dict[str, str], *, when_pending: bool) -> list[Pilot]:
        """Submit pilots until ``workers`` are queued or running (with ``when_pending``: no
        more than the server has PENDING jobs)."""
        live = sum(1 for p in self.pilots() if p.job_id in queued)
        wanted = self.options.workers
        if when_pending:
            wanted = min(wanted, await self.pending_jobs(client, wanted))
        return [await self.submit(client) for _ in range(max(0, wanted - live))]

    async def once(self) -> list[Pilot]:
        """Reap ended pilots, then submit ``workers`` more (without ``--watch``)."""
        async with self._client() as client:
            await self.reap(client, await self.queued())
            return [await self.submit(client) for _ in range(self.options.workers)]

    async def watch(self, stop: asyncio.Event) -> None:
        """Keep pilots for the pending jobs until ``stop`` is set; a failed round is logged
        and retried at the next poll."""
        async with self._client() as client:
            while not stop.is_set():
                try:
                    queued = await self.queued()
                    await self.reap(client, queued)
                    await self.top_up(client, queued, when_pending=True)
                except XWError as exc:
                    log.warning("bridge round failed: %s", exc.message)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.options.poll_s)
            with contextlib.suppress(XWError):
                await self.cancel_pending()
                await self.reap(client, await self.queued())

    async def cancel_pending(self) -> list[Pilot]:
        """``scancel`` the pilots Slurm has not started yet: with no bridge watching, nothing
        would remove their identities once they ran; those that run are left to end idle."""
        queued = await self.queued()
        waiting = [p for p in self.pilots() if queued.get(p.job_id) == "PENDING"]
        if waiting:
            await asyncio.to_thread(self.run, ["scancel", *(p.job_id for p in waiting)])
            log.info("bridge: cancelled %d pilot(s) Slurm had not started", len(waiting))
        return waiting


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)


async def run_watch(bridge: SlurmBridge) -> None:
    """:meth:`SlurmBridge.watch` until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("bridge: keeping up to %d pilot(s) while jobs are pending", bridge.options.workers)
    await bridge.watch(stop)
    log.info("bridge: stopped")


def main_slurm(settings: ServerSettings, options: SlurmOptions, *, watch: bool) -> int:
    """``xwserver bridge slurm``: submit ``workers`` pilots, or with ``watch`` keep them up."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    bridge = SlurmBridge(settings, options)
    if watch:
        asyncio.run(run_watch(bridge))
        return 0
    for pilot in asyncio.run(bridge.once()):
        print(f"{pilot.name}  Slurm job {pilot.job_id}  ({pilot.folder})")
    return 0
