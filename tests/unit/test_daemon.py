"""Background programs: detached start, pid file, graceful stop, stale pid files (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from xwcommon import daemon
from xwcommon.daemon import DaemonError, DaemonSpec, PidFile

NAME = "xwfakedaemon"

# A stand-in for a server or worker: holds its pid file, says goodbye on SIGTERM.
PROGRAM = """
import signal, sys, time
from pathlib import Path
from xwcommon.daemon import PidFile

pid_file, mode = Path(sys.argv[1]), sys.argv[2]
if mode == "crash":
    print("boom: cannot open the database", flush=True)
    sys.exit(3)

def bye(signum, frame):
    print("graceful stop", flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, signal.SIG_IGN if mode == "stubborn" else bye)
with PidFile(pid_file, "xwfakedaemon"):
    print("started", flush=True)
    while True:
        time.sleep(0.05)
"""


@pytest.fixture
def make_spec(tmp_path: Path) -> Iterator[Callable[..., DaemonSpec]]:
    program = tmp_path / f"{NAME}.py"
    program.write_text(PROGRAM)
    specs: list[DaemonSpec] = []

    def make(mode: str = "normal", **kw: Any) -> DaemonSpec:
        spec = DaemonSpec(
            name=NAME,
            argv=[sys.executable, str(program), str(tmp_path / "var" / f"{NAME}.pid"), mode],
            pid_file=tmp_path / "var" / f"{NAME}.pid",
            out_file=tmp_path / "var" / "log" / f"{NAME}.out",
            cwd=tmp_path,
            **kw,
        )
        specs.append(spec)
        return spec

    yield make
    for spec in specs:  # never leave a process behind, whatever the test did
        pid = daemon.read_pid(spec.pid_file)
        if pid is not None and daemon.is_our_process(pid, NAME, spec.pid_file):
            daemon.stop(spec, timeout_s=1)


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_start_returns_once_the_pid_file_is_written_and_stop_is_graceful(
    make_spec: Callable[..., DaemonSpec],
) -> None:
    spec = make_spec()
    pid = daemon.start(spec, timeout_s=20)
    assert daemon.read_pid(spec.pid_file) == pid
    assert daemon.status(spec) == daemon.DaemonStatus(running=True, pid=pid)

    assert daemon.stop(spec, timeout_s=10) == pid
    assert not psutil.pid_exists(pid)  # gone and reaped: it was our child
    assert not spec.pid_file.exists()
    assert "graceful stop" in spec.out_file.read_text()
    assert daemon.status(spec) == daemon.DaemonStatus(running=False, pid=None)


def test_the_started_program_has_its_own_session(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec()
    pid = daemon.start(spec, timeout_s=20)
    assert os.getsid(pid) == pid  # no controlling terminal shared with whoever started it


def test_starting_a_running_program_again_returns_its_pid(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec()
    pid = daemon.start(spec, timeout_s=20)
    assert daemon.start(spec, timeout_s=20) == pid
    copies = [p for p in psutil.process_iter(["cmdline"]) if str(spec.pid_file) in (p.info["cmdline"] or [])]
    assert [p.pid for p in copies] == [pid]


def test_a_program_ignoring_sigterm_is_killed_after_the_timeout(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec("stubborn")
    pid = daemon.start(spec, timeout_s=20)
    t0 = time.monotonic()
    assert daemon.stop(spec, timeout_s=0.5) == pid
    assert time.monotonic() - t0 < 10
    assert not psutil.pid_exists(pid)
    assert not spec.pid_file.exists()


def test_a_program_that_exits_while_starting_fails_with_its_output(
    make_spec: Callable[..., DaemonSpec],
) -> None:
    spec = make_spec("crash")
    with pytest.raises(DaemonError, match=r"exited with status 3(.|\n)*boom: cannot open the database"):
        daemon.start(spec, timeout_s=20)
    assert not spec.pid_file.exists()


def test_a_program_that_never_answers_is_stopped_and_reported(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec(ready=lambda: False)
    with pytest.raises(DaemonError, match="did not answer within 1s(.|\n)*started"):
        daemon.start(spec, timeout_s=1)
    assert daemon.status(spec).running is False


def test_a_readiness_probe_that_raises_means_not_yet(make_spec: Callable[..., DaemonSpec]) -> None:
    calls = []

    def ready() -> bool:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError("not listening yet")
        return True

    spec = make_spec(ready=ready)
    daemon.start(spec, timeout_s=20)
    assert len(calls) == 3


def test_a_pid_file_of_a_dead_process_is_stale(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec()
    spec.pid_file.parent.mkdir(parents=True)
    spec.pid_file.write_text(f"{_dead_pid()}\n")
    st = daemon.status(spec)
    assert not st.running and st.stale
    assert daemon.stop(spec) is None
    assert not spec.pid_file.exists()


def test_a_pid_file_naming_another_program_is_stale(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec()
    spec.pid_file.parent.mkdir(parents=True)
    spec.pid_file.write_text(f"{os.getpid()}\n")  # alive, but pytest is not xwfakedaemon
    assert daemon.status(spec).stale
    assert daemon.stop(spec) is None
    assert psutil.pid_exists(os.getpid())


def test_a_recycled_pid_younger_than_the_pid_file_is_not_ours(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec()
    pid = daemon.start(spec, timeout_s=20)
    hour_ago = time.time() - 3600
    os.utime(spec.pid_file, (hour_ago, hour_ago))
    assert not daemon.is_our_process(pid, NAME, spec.pid_file)
    os.utime(spec.pid_file, None)
    assert daemon.is_our_process(pid, NAME, spec.pid_file)


def test_start_replaces_a_stale_pid_file(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec()
    spec.pid_file.parent.mkdir(parents=True)
    spec.pid_file.write_text("not a pid\n")
    pid = daemon.start(spec, timeout_s=20)
    assert daemon.read_pid(spec.pid_file) == pid


def test_the_pid_file_refuses_a_second_copy(make_spec: Callable[..., DaemonSpec]) -> None:
    spec = make_spec()
    pid = daemon.start(spec, timeout_s=20)
    with pytest.raises(DaemonError, match=f"already running \\(pid {pid}"):
        PidFile(spec.pid_file, NAME).acquire()
    assert daemon.read_pid(spec.pid_file) == pid


def test_the_pid_file_is_removed_on_exit_only_if_it_is_still_ours(tmp_path: Path) -> None:
    path = tmp_path / "x.pid"
    with PidFile(path, NAME):
        assert daemon.read_pid(path) == os.getpid()
    assert not path.exists()
    with PidFile(path, NAME):
        path.write_text("12345\n")  # someone else took it over
    assert path.read_text() == "12345\n"


def test_tail_shows_only_what_was_written_since_an_offset(tmp_path: Path) -> None:
    log = tmp_path / "out"
    log.write_text("old run\n")
    offset = log.stat().st_size
    with open(log, "a") as fh:
        fh.write("".join(f"line {i}\n" for i in range(100)))
    text = daemon.tail(log, since=offset, lines=3)
    assert text == "line 97\nline 98\nline 99"
    assert daemon.tail(tmp_path / "missing") == ""
