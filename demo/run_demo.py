"""``make demo``: a whole desktop grid on this machine computes pi by Monte Carlo.

In a temporary folder it creates and starts a server (embedded SQLite, a free loopback
port), starts two volunteer workers, inserts the bundled ``pi.py`` as the app ``pi`` for
every platform, submits 50 jobs (one seed each), shows their progress, fetches every
result, combines them into one estimate of pi, and stops everything it started.

Exit status 0 when the estimate was computed from all 50 results and every process
is gone; non-zero with a message saying what failed otherwise.

The temporary folder is removed after a run that went well, unless ``--keep`` is given
(``python demo/run_demo.py --keep``): then it stays, and the demo says where the results
are. After a failure it always stays, for its logs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PI_APP = HERE / "pi.py"

try:
    from xwclient.sdk import XWClient
    from xwcommon.config import load_properties, resolve_path, write_properties
    from xwcommon.errors import XWError
except ImportError:  # run from a checkout where the package is not installed
    sys.path.insert(0, str(ROOT))
    from xwclient.sdk import XWClient
    from xwcommon.config import load_properties, resolve_path, write_properties
    from xwcommon.errors import XWError

APP_NAME = "pi"
JOBS = 50
SAMPLES_PER_JOB = 400_000  # about 0.2 s of CPU for pi.py
WORKERS = 2
WORKPOOL_SIZE = 2  # jobs at once per worker
JOBS_TIMEOUT_S = 45.0  # the whole demo should stay within about a minute
COMMAND_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
PROGRESS_INTERVAL_S = 0.2
PROGRESS_LINE_EVERY_S = 2.0  # when stdout is not a terminal


class DemoError(Exception):
    """Raised when a step of the demo fails; the message says which and why."""


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env() -> dict[str, str]:
    """Our child programs import this checkout first, installed or not."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    return env


def run_program(args: list[str], *, what: str, cwd: Path, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
    """Run ``python -m ARGS``; return its stdout, or raise DemoError with its stderr."""
    cmd = [sys.executable, "-m", *args]
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout_s, env=child_env(), cwd=cwd
        )
    except subprocess.TimeoutExpired as exc:
        raise DemoError(f"{what}: `{' '.join(args)}` did not finish within {timeout_s:.0f} s") from exc
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip() or "(no output)").splitlines()[-10:]
        raise DemoError(
            f"{what}: `{' '.join(args)}` exited with {proc.returncode}:\n  " + "\n  ".join(detail)
        )
    return proc.stdout


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a live process (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the server -----------------------------------------------------------------------------------


class Server:
    """The demo's deployment: ``xwserver init`` + ``start``, and ``stop`` at the end."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.url = f"https://127.0.0.1:{free_loopback_port()}"
        self.pid: int | None = None

    @property
    def client_conf(self) -> Path:
        return self.home / "conf" / "xwrc"

    @property
    def worker_conf(self) -> Path:
        return self.home / "conf" / "xtremweb.worker.conf"

    def init(self) -> None:
        run_program(
            ["xwserver", "init", "--home", str(self.home), "--url", self.url],
            what="creating the server",
            cwd=self.home.parent,
            timeout_s=60,
        )

    def start(self) -> None:
        run_program(
            ["xwserver", "start", "--home", str(self.home)], what="starting the server", cwd=self.home.parent
        )
        self.pid = self._read_pid()

    def _read_pid(self) -> int | None:
        try:
            return int((self.home / "var" / "xwserver.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def stop(self) -> list[str]:
        """Stop the server; return problems (empty when its process is gone)."""
        problems = []
        pid = self.pid or self._read_pid()
        try:
            run_program(
                ["xwserver", "stop", "--home", str(self.home)],
                what="stopping the server",
                cwd=self.home.parent,
            )
        except DemoError as exc:
            problems.append(str(exc))
        if pid is not None and not wait_gone(pid, STOP_TIMEOUT_S):
            # xwserver stop did not end the process we started: end it ourselves, by its pid
            problems.append(f"the server (pid {pid}) outlived `xwserver stop`; sent SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5.0)
        return problems

    def log_tail(self, lines: int = 15) -> str:
        return tail(self.home / "var" / "log" / "xwserver.log", lines)


def tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return ""
    return f"--- {path} (last {len(text)} lines)\n" + "\n".join(text)


# -- the workers ----------------------------------------------------------------------------------


@dataclass
class Worker:
    name: str
    conf: Path
    folder: Path
    proc: subprocess.Popen[bytes] | None = None
    console_log: TextIO | None = None
    terminated: bool = False

    def start(self) -> None:
        self.console_log = open(self.folder / "console.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "xwworker", "console", "--xwconfig", str(self.conf)],
            stdout=self.console_log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=child_env(),
            cwd=self.folder,
        )

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise DemoError(f"worker {self.name} exited with {self.proc.returncode}\n{self.log_tail()}")

    def terminate(self) -> None:
        """Send SIGTERM once (a second one may mean "hurry" to the worker)."""
        if self.proc is not None and self.proc.poll() is None and not self.terminated:
            self.proc.send_signal(signal.SIGTERM)
            self.terminated = True

    def stop(self) -> list[str]:
        """SIGTERM, wait; SIGKILL if it will not go. Return problems (empty when it is gone)."""
        problems = []
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                problems.append(f"worker {self.name} (pid {self.proc.pid}) ignored SIGTERM; sent SIGKILL")
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None and pid_alive(self.proc.pid):
            problems.append(f"worker {self.name} (pid {self.proc.pid}) is still running")
        if self.console_log is not None:
            self.console_log.close()
        return problems

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(
            t
            for t in (
                tail(self.folder / "console.log", lines),
                tail(self.folder / "tmp" / "xwworker.log", lines),
            )
            if t
        )


def make_worker(index: int, server: Server, base: Path) -> Worker:
    """A copy of the deployment's worker config with its own name, scratch folder and pool."""
    name = f"demo-worker-{index}"
    folder = base / name
    (folder / "tmp").mkdir(parents=True)
    props = load_properties(server.worker_conf)
    ca = props.get("ca.file") or props.get("path.certfile")
    if not ca:
        raise DemoError(f"{server.worker_conf} names no ca.file")
    props.pop("path.certfile", None)
    props["ca.file"] = str(resolve_path(ca, server.worker_conf.parent))  # the copy lives elsewhere
    props["path.tmpdir"] = str(folder / "tmp")
    props["workpool.size"] = str(WORKPOOL_SIZE)
    props["worker.name"] = name
    props["shutdown_grace_s"] = "5"
    # a stopping worker lets its pending long-poll return first: keep that short for the demo
    props["work_request_wait_s"] = "2"
    conf = folder / "xtremweb.worker.conf"
    write_properties(conf, props, header=f"{name}: the demo's copy of {server.worker_conf}")
    return Worker(name, conf, folder)


# -- the client side ----------------------------------------------------------------------------


class Progress:
    """``completed 23/50`` on one updating line on a terminal; a line now and then otherwise."""

    def __init__(self, total: int, stream: TextIO = sys.stdout) -> None:
        self.total = total
        self.stream = stream
        self.tty = stream.isatty()
        self._last_text = ""
        self._last_line_at = 0.0

    def show(self, done: int, running: int, errors: int) -> None:
        text = f"      completed {done}/{self.total}  (running {running}" + (
            f", {errors} failed)" if errors else ")"
        )
        if self.tty:
            if text == self._last_text:
                return
            self.stream.write("\r" + text.ljust(len(self._last_text)))
            self.stream.flush()
        elif text != self._last_text and (
            done == self.total or time.monotonic() - self._last_line_at >= PROGRESS_LINE_EVERY_S
        ):
            print(text, file=self.stream, flush=True)
            self._last_line_at = time.monotonic()
        else:
            return
        self._last_text = text

    def end(self) -> None:
        if self.tty and self._last_text:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class Outcome:
    estimate: float
    samples: int
    jobs: int
    wall_s: float
    per_worker: dict[str, int]


async def compute_pi(server: Server, workers: list[Worker], workdir: Path, *, keep: bool = False) -> Outcome:
    """Submit the jobs, follow them, fetch and combine the results."""
    label = f"pi-demo-{os.getpid()}"
    seeds = list(range(1, JOBS + 1))
    async with XWClient.from_config(server.client_conf) as xw:
        specs = [
            {"app": APP_NAME, "args": [str(SAMPLES_PER_JOB), str(seed)], "label": label} for seed in seeds
        ]
        t0 = time.monotonic()
        jobs = await xw.submit_many(specs)
        seed_of = {job["uid"]: seed for job, seed in zip(jobs, seeds, strict=True)}
        step(
            4,
            f"{len(jobs)} jobs submitted in one bulk request: pi.py {SAMPLES_PER_JOB} SEED, seeds 1..{JOBS}",
        )

        step(5, "waiting for the workers")
        progress = Progress(JOBS)
        try:
            final = await follow(xw, label, workers, progress, t0)
        finally:
            progress.end()
        wall_s = time.monotonic() - t0
        failed = [j for j in final if j["status"] != "COMPLETED"]
        if failed:
            first = failed[0]
            raise DemoError(
                f"{len(failed)} job(s) did not complete; job {first['uid']} ended {first['status']} "
                f"(exit code {first.get('exit_code')}): {first.get('message') or 'no message'}"
            )
        per_worker = await jobs_per_worker(xw, seed_of)

        results_dir = workdir / "results"
        gate = asyncio.Semaphore(8)

        async def fetch(uid: str) -> dict[str, int]:
            async with gate:
                folder = await xw.fetch_result(uid, results_dir)
            return parse_pi_output(uid, folder / "stdout.txt", seed_of[uid])

        counts = await asyncio.gather(*(fetch(uid) for uid in seed_of))
        # the folder is named only if it outlives the demo (--keep)
        step(6, f"{len(counts)} results fetched" + (f" into {results_dir}" if keep else ""))
    inside = sum(c["inside"] for c in counts)
    samples = sum(c["samples"] for c in counts)
    return Outcome(4.0 * inside / samples, samples, len(counts), wall_s, per_worker)


async def follow(
    xw: XWClient, label: str, workers: list[Worker], progress: Progress, t0: float
) -> list[dict]:
    """Poll the jobs of ``label`` until all are final; return them."""
    while True:
        jobs = await xw.list_jobs(label=label)
        by_status: dict[str, int] = {}
        for job in jobs:
            by_status[job["status"]] = by_status.get(job["status"], 0) + 1
        final = sum(by_status.get(s, 0) for s in ("COMPLETED", "ERROR", "ABORTED"))
        progress.show(
            by_status.get("COMPLETED", 0), by_status.get("RUNNING", 0), final - by_status.get("COMPLETED", 0)
        )
        if len(jobs) >= JOBS and final == len(jobs):
            return jobs
        for w in workers:
            w.check_alive()
        if time.monotonic() - t0 > JOBS_TIMEOUT_S:
            raise DemoError(
                f"only {final} of {JOBS} jobs finished within {JOBS_TIMEOUT_S:.0f} s "
                f"({', '.join(f'{n} {s}' for s, n in sorted(by_status.items()))})"
            )
        await asyncio.sleep(PROGRESS_INTERVAL_S)


async def jobs_per_worker(xw: XWClient, seed_of: dict[str, int]) -> dict[str, int]:
    """How many of our jobs each host completed (from the tasks, one per attempt)."""
    names = {h["uid"]: h["name"] for h in await xw.list_hosts()}
    counts: dict[str, int] = {}
    for task in await xw.list_tasks(status="COMPLETED"):
        if task["job_uid"] in seed_of:
            name = names.get(task["host_uid"], task["host_uid"])
            counts[name] = counts.get(name, 0) + 1
    return counts


def parse_pi_output(uid: str, stdout: Path, seed: int) -> dict[str, int]:
    """Read one job's ``{"samples", "inside", "seed"}`` line and check it is the job's own."""
    try:
        lines = stdout.read_text().strip().splitlines()
        record = json.loads(lines[-1])
        samples, inside, got_seed = int(record["samples"]), int(record["inside"]), int(record["seed"])
    except (OSError, IndexError, ValueError, KeyError, TypeError) as exc:
        raise DemoError(f"job {uid}: cannot read a pi.py result from {stdout}: {exc}") from None
    if got_seed != seed or samples != SAMPLES_PER_JOB or not 0 <= inside <= samples:
        raise DemoError(f"job {uid}: result {record} does not match its arguments ({SAMPLES_PER_JOB} {seed})")
    return {"samples": samples, "inside": inside}


# -- the driver -----------------------------------------------------------------------------------


def step(n: int, text: str) -> None:
    print(f"[{n}/6] {text}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Estimate pi by Monte Carlo on a desktop grid of this machine."
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the demo's folder (server home, workers, fetched results) and say where it is",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    keep = parse_args(argv).keep
    workdir = Path(tempfile.mkdtemp(prefix="xwdemo-"))
    server = Server(workdir / "server")
    workers: list[Worker] = []
    ok = False
    failure = ""
    print(f"XtremWeb-Py demo: estimating pi by Monte Carlo on a desktop grid of {WORKERS} workers")
    try:
        server.init()
        server.start()
        step(1, f"server started at {server.url} (embedded SQLite, home {server.home})")
        for i in range(1, WORKERS + 1):
            workers.append(make_worker(i, server, workdir))
            workers[-1].start()
        step(2, "workers started: " + ", ".join(f"{w.name} (pid {w.proc.pid})" for w in workers if w.proc))
        out = run_program(
            [
                "xwclient",
                "--xwsendapp",
                APP_NAME,
                "any",
                "any",
                str(PI_APP),
                "--xwconfig",
                str(server.client_conf),
            ],
            what="inserting the app",
            cwd=workdir,
        )
        shown = out.strip().splitlines()[-1] if out.strip() else "ok"
        step(3, f"app {APP_NAME!r} inserted for any OS and CPU (xwsendapp): {shown}")
        outcome = asyncio.run(compute_pi(server, workers, workdir, keep=keep))
        report(outcome)
        ok = True
    except DemoError as exc:
        failure = str(exc)
    except XWError as exc:
        failure = f"the server answered {exc.code}: {exc.message}"
    except KeyboardInterrupt:
        failure = "interrupted"
    finally:
        # a second Ctrl-C must not cut the cleanup short and leave processes running;
        # every step of it has its own time limit
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        if failure:
            print(f"\ndemo failed: {failure}", file=sys.stderr)
            if failure != "interrupted":
                for text in [server.log_tail(), *(w.log_tail() for w in workers)]:
                    if text:
                        print(text, file=sys.stderr)
        print("stopping the workers and the server…", flush=True)
        problems = shutdown(server, workers)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for p in problems:
        print(f"cleanup: {p}", file=sys.stderr)
    if ok and not problems:
        if keep:
            print(f"the demo's files are kept in {workdir} (results in {workdir / 'results'})")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
        return 0
    print(f"the demo's files are kept in {workdir}", file=sys.stderr)
    return 1


def shutdown(server: Server, workers: list[Worker]) -> list[str]:
    """Stop the workers, then the server; check that no process of ours is left."""
    problems: list[str] = []
    for w in workers:
        w.terminate()  # all at once: they stop in parallel
    for w in workers:
        problems += w.stop()
    problems += server.stop()
    pids = [w.proc.pid for w in workers if w.proc is not None] + ([server.pid] if server.pid else [])
    left = [pid for pid in pids if pid_alive(pid)]
    if left:
        problems.append(f"processes still running: {', '.join(map(str, left))}")
    elif pids:
        print(f"stopped {len(workers)} workers and the server; no process left ({len(pids)} pids checked)")
    return problems


def report(o: Outcome) -> None:
    error = o.estimate - math.pi
    print()
    print(f"  pi ~= {o.estimate:.6f}   (math.pi = {math.pi:.6f}, error {error:+.2e})")
    print(f"  samples: {o.samples:,} in {o.jobs} jobs")
    print(f"  {o.jobs / o.wall_s:.1f} jobs/s ({o.jobs} jobs in {o.wall_s:.1f} s, submit to last completion)")
    if o.per_worker:
        print("  jobs per worker: " + ", ".join(f"{name} {n}" for name, n in sorted(o.per_worker.items())))
    print()


if __name__ == "__main__":
    sys.exit(main())
