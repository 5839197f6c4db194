"""A real single-node Slurm cluster in a test's folder, started without systemd.

:class:`SlurmCluster` writes a munge key and a minimal ``slurm.conf`` (one node,
``localhost``, with this machine's CPUs; one partition ``debug``; state, spool, logs and
pid files in the folder; free loopback ports), then starts ``munged``, ``slurmctld -D``
and ``slurmd -D -N localhost`` as children of the test and waits until ``sinfo`` shows the
node idle. Nothing in /etc is read or changed: every Slurm command finds the config through
``SLURM_CONF`` (:attr:`SlurmCluster.env`) and munge through ``AuthInfo=socket=…``.
:meth:`SlurmCluster.close` cancels the cluster's jobs and ends the daemons by the pids it
recorded.

With ``accounting_db`` (a MariaDB database, made and dropped by the test) it also starts
``slurmdbd`` on it, registers the cluster with ``sacctmgr`` and has ``slurmctld`` send its
records there, so that ``sacct`` shows the jobs (:meth:`SlurmCluster.accounted`). Finished
jobs are also written by ``jobcomp/filetxt`` to :attr:`SlurmCluster.jobcomp_log` and stay
visible to ``scontrol show job`` for ``MinJobAge`` seconds.

The daemons run as the current user, which must be root: slurmd starts each batch job as
the user that submitted it. A machine without Slurm (``slurm-wlm``, ``slurmdbd``, ``munge``) skips the tests locally and fails
them in CI (``CI=true``), as the database servers do (helpers.databases).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from .databases import in_ci
from .net import free_port
from .waiting import wait_until

START_TIMEOUT_S = 40.0
PARTITION = "debug"
COMMAND_TIMEOUT_S = 20.0
DAEMONS = (
    "munged",
    "slurmctld",
    "slurmd",
    "slurmdbd",
    "sbatch",
    "squeue",
    "sinfo",
    "scontrol",
    "sacct",
    "sacctmgr",
)


def require_slurm() -> None:
    """Skip (locally) or fail (in CI) when Slurm and munge are not installed, or we are not root."""
    missing = [d for d in DAEMONS if _which(d) is None]
    reason = ""
    if missing:
        reason = f"Slurm is not installed (no {', '.join(missing)}; Debian: apt-get install slurm-wlm slurmdbd munge)"
    elif os.geteuid() != 0:
        reason = "a test's own Slurm needs root (slurmd runs batch jobs as their submitter)"
    if reason:
        if in_ci():
            pytest.fail(reason + "; CI needs it", pytrace=False)
        pytest.skip(reason)


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")


def _memory_mb() -> int:
    with open("/proc/meminfo", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    return 1024


class SlurmCluster:
    """munged, slurmctld and slurmd for one test, in ``root``; see the module doc."""

    def __init__(self, root: Path, accounting_db: URL | None = None) -> None:
        self.root = root
        self.accounting_db = accounting_db
        self.dbd_port = free_port()
        self.conf = root / "slurm.conf"
        self.jobcomp_log = root / "jobcomp.log"
        self.munge_socket = root / "munge" / "munge.socket"
        self.cpus = os.cpu_count() or 1
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        # a test's own cluster: nothing of an outer Slurm job may steer its commands
        for key in [k for k in self.env if k.startswith(("SLURM_", "SBATCH_", "SQUEUE_"))]:
            if key != "SLURM_CONF":
                del self.env[key]

    # -- setting up ---------------------------------------------------------------------------------
    def _write_files(self) -> None:
        for sub in ("munge", "state", "spool", "log"):
            (self.root / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        key = self.root / "munge" / "munge.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o400)
        with os.fdopen(fd, "wb") as fh:
            fh.write(os.urandom(1024))
        # keep 10% of the memory and a GiB aside: slurmd drains a node that has less than
        # its configured RealMemory
        memory_mb = max(256, int(_memory_mb() * 0.9) - 1024)
        settings = {
            "ClusterName": "xwtest",
            "SlurmctldHost": "localhost",
            "SlurmctldPort": free_port(),
            "SlurmdPort": free_port(),
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": self.root / "state",
            "SlurmdSpoolDir": self.root / "spool",
            "SlurmctldPidFile": self.root / "slurmctld.pid",
            "SlurmdPidFile": self.root / "slurmd.pid",
            "SlurmctldLogFile": self.root / "log" / "slurmctld.log",
            "SlurmdLogFile": self.root / "log" / "slurmd.log",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU",
            "SchedulerType": "sched/backfill",
            "SchedulerParameters": "batch_sched_delay=0,bf_interval=1,sched_min_interval=0",
            "MpiDefault": "none",
            "SwitchType": "switch/none",
            "JobAcctGatherType": "jobacct_gather/none",
            **self._accounting(),
            "JobCompType": "jobcomp/filetxt",
            "JobCompLoc": self.jobcomp_log,
            "ReturnToService": 2,
            "MinJobAge": 300,
            "MailProg": "/bin/true",
            "SlurmdTimeout": 30,
            "InactiveLimit": 0,
            "KillWait": 5,
        }
        lines = [f"{k}={v}" for k, v in settings.items()]
        lines.append(
            f"NodeName=localhost NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory_mb} State=UNKNOWN"
        )
        lines.append(f"PartitionName={PARTITION} Nodes=localhost Default=YES MaxTime=INFINITE State=UP")
        self.conf.write_text("\n".join(lines) + "\n", encoding="utf-8")
        if self.accounting_db is not None:
            db = self.accounting_db
            dbd = {
                "DbdHost": "localhost",
                "DbdPort": self.dbd_port,
                "SlurmUser": "root",
                "AuthType": "auth/munge",
                "AuthInfo": f"socket={self.munge_socket}",
                "PidFile": self.root / "slurmdbd.pid",
                "LogFile": self.root / "log" / "slurmdbd.log",
                "StorageType": "accounting_storage/mysql",
                "StorageHost": db.host or "127.0.0.1",
                "StoragePort": db.port or 3306,
                "StorageUser": db.username or "root",
                "StorageLoc": db.database,
            }
            if db.password:
                dbd["StoragePass"] = db.password
            # slurmdbd reads slurmdbd.conf next to SLURM_CONF and wants it private
            dbd_conf = self.root / "slurmdbd.conf"
            fd = os.open(dbd_conf, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("".join(f"{k}={v}\n" for k, v in dbd.items()))

    def _accounting(self) -> dict[str, object]:
        if self.accounting_db is None:
            return {"AccountingStorageType": "accounting_storage/none"}
        return {
            "AccountingStorageType": "accounting_storage/slurmdbd",
            "AccountingStorageHost": "localhost",
            "AccountingStoragePort": self.dbd_port,
            # to slurmdbd, Slurm's commands reach munge through this (AuthInfo is for the rest)
            "AccountingStoragePass": self.munge_socket,
        }

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "wb")  # noqa: SIM115 - the child keeps it
        try:
            self.procs[name] = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=self.env
            )
        finally:
            log.close()

    def start(self) -> SlurmCluster:
        """Start the three daemons; returns once the node is idle (or raises, saying why)."""
        self._write_files()
        munge = self.root / "munge"
        self._spawn(
            "munged",
            [
                str(_which("munged")),
                "--foreground",
                "--force",  # run as root, in a folder of our own
                f"--key-file={munge / 'munge.key'}",
                f"--socket={self.munge_socket}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={munge / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
            ],
        )
        wait_until(
            lambda: self._check_alive() and self.munge_socket.exists(),
            timeout_s=START_TIMEOUT_S,
            interval_s=0.05,
            what="munged's socket",
            describe=self.describe,
        )
        if self.accounting_db is not None:
            self._spawn("slurmdbd", [str(_which("slurmdbd")), "-D"])
            wait_until(
                lambda: (
                    self._check_alive()
                    and self.run("sacctmgr", "--noheader", "list", "cluster", check=False).returncode == 0
                ),
                timeout_s=START_TIMEOUT_S,
                interval_s=0.2,
                what="slurmdbd to answer",
                describe=self.describe,
            )
            self.run("sacctmgr", "--immediate", "add", "cluster", "xwtest")
        self._spawn("slurmctld", [str(_which("slurmctld")), "-D", "-c", "-f", str(self.conf)])
        self._spawn("slurmd", [str(_which("slurmd")), "-D", "-N", "localhost", "-f", str(self.conf)])
        wait_until(
            lambda: self._check_alive() and self.node_state() == "idle",
            timeout_s=START_TIMEOUT_S,
            interval_s=0.2,
            what="the Slurm node to be idle",
            describe=self.describe,
        )
        return self

    def _check_alive(self) -> bool:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise AssertionError(f"{name} exited {proc.returncode}\n{self.describe()}")
        return True

    # -- observing ----------------------------------------------------------------------------------
    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """A Slurm command (``squeue``, ``scontrol``…) against this cluster."""
        done = subprocess.run(
            list(argv),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr}{done.stdout}")
        return done

    def node_state(self) -> str:
        done = self.run("sinfo", "--noheader", "--nodes=localhost", "--format=%T", check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    def queued(self) -> dict[str, str]:
        """Jobs ``squeue`` lists: id -> state."""
        out = self.run("squeue", "--noheader", "--format=%i %T").stdout
        return dict(line.split(None, 1) for line in out.splitlines() if line.strip())

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job ID`` as key -> value (empty once Slurm forgot the job)."""
        done = self.run("scontrol", "--oneliner", "show", "job", job_id, check=False)
        fields: dict[str, str] = {}
        for word in done.stdout.split():
            key, sep, value = word.partition("=")
            if sep:
                fields.setdefault(key, value)
        return fields

    def accounted(self, job_id: str) -> dict[str, str]:
        """``sacct``'s record of a job (State, ExitCode), empty until slurmdbd has it."""
        out = self.run(
            "sacct", "--jobs", job_id, "--noheader", "--parsable2", "--format=JobID,State,ExitCode"
        ).stdout
        for line in out.splitlines():
            fields = line.split("|")
            if len(fields) == 3 and fields[0] == job_id:
                return {"State": fields[1], "ExitCode": fields[2]}
        return {}

    def completions(self) -> dict[str, dict[str, str]]:
        """The job completion log: job id -> its fields (JobState, ExitCode…)."""
        records: dict[str, dict[str, str]] = {}
        if self.jobcomp_log.exists():
            for line in self.jobcomp_log.read_text(encoding="utf-8", errors="replace").splitlines():
                fields = dict(w.partition("=")[::2] for w in line.split() if "=" in w)
                if "JobId" in fields:
                    records[fields["JobId"]] = fields
        return records

    def describe(self) -> str:
        parts = []
        for name in (
            "munged.out",
            "slurmdbd.log",
            "slurmctld.log",
            "slurmd.log",
            "slurmctld.out",
            "slurmd.out",
        ):
            path = self.root / "log" / name
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-20:]
                parts.append(f"--- {path}:\n" + "\n".join(text))
        munge_log = self.root / "munge" / "munged.log"
        if munge_log.exists():
            parts.append(f"--- {munge_log}:\n{munge_log.read_text(errors='replace')[-2000:]}")
        return "\n".join(parts)

    # -- teardown -------------------------------------------------------------------------------------
    def close(self) -> None:
        """Cancel every job of this cluster (a batch job's processes outlive slurmd), then
        SIGTERM each daemon (slurmd first; slurmctld gets SIGKILL at once), SIGKILL after a few
        seconds; by recorded pid only."""
        if all(p.poll() is None for p in self.procs.values()) and "slurmd" in self.procs:
            try:
                self.run("scancel", f"--partition={PARTITION}", check=False)
                wait_until(
                    lambda: not self.queued(),
                    timeout_s=20,
                    what="this cluster's jobs to end",
                    tolerate=(OSError, AssertionError),
                )
            finally:
                self._stop_daemons()
        else:
            self._stop_daemons()

    def _stop_daemons(self) -> None:
        for name in ("slurmd", "slurmctld", "slurmdbd", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            if name == "slurmctld":
                # its graceful stop saves the cluster's state for a restart that this throwaway
                # cluster never has, and takes a second and a half
                proc.kill()
            else:
                proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()


def wait_gone(cluster: SlurmCluster, job_ids: set[str], timeout_s: float) -> None:
    """Until ``squeue`` lists none of ``job_ids``."""
    deadline = time.monotonic() + timeout_s
    wait_until(
        lambda: not (job_ids & cluster.queued().keys()),
        timeout_s=max(0.0, deadline - time.monotonic()),
        what=f"Slurm jobs {sorted(job_ids)} to leave the queue",
        describe=cluster.describe,
    )
