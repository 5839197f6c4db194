"""The executor runs real programs: scratch dir, stdin/stdout/stderr, env archive, result zip, kill."""

from __future__ import annotations

import asyncio
import os
import sys
import zipfile
from pathlib import Path

import psutil
import pytest

from xwcommon.protocol.work import Assignment, DataRef
from xwcommon.status import TaskStatus
from xwworker.executor import Executor

SHA = "0" * 64


def assignment(task_uid: str = "task-1", *, app: str = "myapp", args: list[str] | None = None) -> Assignment:
    # built, not decoded: the executor must hold even uids the protocol would refuse
    return Assignment(
        task_uid=task_uid,
        job_uid="job-1",
        seq=1,
        app_name=app,
        args=args or [],
        lease_expires_at="2099-01-01T00:00:00Z",
        binary=DataRef(data_uid="data-bin", sha256=SHA),
    )


def script(tmp_path: Path, body: str, name: str = "app.py") -> Path:
    path = tmp_path / "cache" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/usr/bin/env python3\n" + body)
    path.chmod(0o400)  # as in the cache: the executor must give its copy the x bits
    return path


def zip_members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}


def wait_gone(pid: int, timeout_s: float = 5.0) -> bool:
    try:
        proc = psutil.Process(pid)
        proc.wait(timeout=timeout_s)
    except psutil.NoSuchProcess:
        return True
    except psutil.TimeoutExpired:
        return proc.status() == psutil.STATUS_ZOMBIE
    return True


async def test_a_python_script_runs_with_args_stdin_and_job_environment(tmp_path: Path) -> None:
    binary = script(
        tmp_path,
        "import os, sys\n"
        "print('args', sys.argv[1:])\n"
        "print('stdin', sys.stdin.read().strip())\n"
        "for k in ('XWJOBUID', 'XWSCRATCHPATH', 'XWCMDARGS', 'HOME', 'TMPDIR', 'LANG'):\n"
        "    print(k, os.environ[k])\n"
        "print('cwd', os.getcwd())\n"
        "print('oops', file=sys.stderr)\n"
        "open('out.dat', 'w').write('computed')\n",
    )
    stdin = tmp_path / "cache" / "stdin"
    stdin.write_text("hello from stdin\n")
    ex = Executor(tmp_path / "work")
    outcome = await ex.run(assignment(args=["one", "two words"]), binary, stdin=stdin)

    assert outcome.status is TaskStatus.COMPLETED
    assert (outcome.exit_code, outcome.message) == (0, None)
    assert outcome.result_zip == tmp_path / "work" / "results" / "task-1.zip"
    files = zip_members(outcome.result_zip)
    assert set(files) == {"stdout.txt", "stderr.txt", "out.dat"}  # the binary itself is left out
    scratch = tmp_path / "work" / "tasks" / "task-1"
    out = files["stdout.txt"].decode()
    assert "args ['one', 'two words']" in out
    assert "stdin hello from stdin" in out
    assert "XWJOBUID job-1" in out
    assert f"XWSCRATCHPATH {scratch}" in out
    assert "XWCMDARGS one 'two words'" in out
    assert f"HOME {scratch}" in out and f"TMPDIR {scratch}" in out and "LANG C.UTF-8" in out
    assert f"cwd {scratch}" in out
    assert files["stderr.txt"] == b"oops\n"
    assert files["out.dat"] == b"computed"
    assert (scratch / "myapp").stat().st_mode & 0o777 == 0o755


async def test_the_job_sees_nothing_of_the_volunteers_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XWCONFIG_TOKEN", "volunteer-secret")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "volunteer-secret")
    binary = script(tmp_path, "import os\nfor k in sorted(os.environ):\n    print(k, os.environ[k])\n")
    outcome = await Executor(tmp_path / "work").run(assignment(args=["a"]), binary)
    assert outcome.result_zip is not None
    out = zip_members(outcome.result_zip)["stdout.txt"].decode()
    names = {line.split(" ", 1)[0] for line in out.splitlines()}
    assert "volunteer-secret" not in out
    # XWHEP's variables and a minimal, fixed environment; nothing inherited
    assert names <= {
        "PATH",
        "HOME",
        "TMPDIR",
        "LANG",
        "XWJOBUID",
        "XWTASKUID",
        "XWSCRATCHPATH",
        "XWCMDARGS",
        "PWD",
    }
    assert {"XWJOBUID", "XWSCRATCHPATH", "XWCMDARGS"} <= names


async def test_a_non_zero_exit_is_an_error_result_with_its_code(tmp_path: Path) -> None:
    binary = script(tmp_path, "import sys\nprint('partial')\nsys.exit(3)\n")
    outcome = await Executor(tmp_path / "work").run(assignment(), binary)
    assert outcome.status is TaskStatus.ERROR
    assert outcome.exit_code == 3
    assert outcome.message == "exited with code 3"
    assert outcome.result_zip is not None
    assert zip_members(outcome.result_zip)["stdout.txt"] == b"partial\n"


async def test_without_stdin_the_job_reads_dev_null(tmp_path: Path) -> None:
    binary = script(tmp_path, "import sys\nprint(repr(sys.stdin.read()))\n")
    outcome = await Executor(tmp_path / "work").run(assignment(), binary)
    assert outcome.result_zip is not None
    assert zip_members(outcome.result_zip)["stdout.txt"] == b"''\n"


async def test_a_binary_that_cannot_start_is_an_error_with_a_clear_message(tmp_path: Path) -> None:
    binary = tmp_path / "garbage"
    binary.write_bytes(b"\x7fNOT-AN-EXECUTABLE\x00\x01")
    outcome = await Executor(tmp_path / "work").run(assignment(app="broken"), binary)
    assert outcome.status is TaskStatus.ERROR
    assert outcome.exit_code is None
    assert outcome.message is not None and outcome.message.startswith("cannot start broken: ")
    assert "format" in outcome.message.lower()
    assert outcome.result_zip is not None
    assert b"cannot start broken" in zip_members(outcome.result_zip)["stderr.txt"]


async def test_an_app_whose_interpreter_is_missing_cannot_start(tmp_path: Path) -> None:
    binary = tmp_path / "noint"
    binary.write_bytes(b"#!/nonexistent/interpreter\nprint('never')\n")
    outcome = await Executor(tmp_path / "work").run(assignment(app="noint"), binary)
    assert outcome.status is TaskStatus.ERROR
    assert outcome.exit_code is None
    assert outcome.message is not None and outcome.message.startswith("cannot start noint: "), outcome.message
    assert "No such file" in outcome.message


async def test_the_env_archive_is_expanded_into_the_scratch_dir(tmp_path: Path) -> None:
    env = tmp_path / "env.zip"
    with zipfile.ZipFile(env, "w") as zf:
        zf.writestr("data/input.txt", "21\n")
    binary = script(tmp_path, "n = int(open('data/input.txt').read())\nprint(n * 2)\n")
    outcome = await Executor(tmp_path / "work").run(assignment(), binary, env_archive=env)
    assert outcome.status is TaskStatus.COMPLETED
    assert outcome.result_zip is not None
    files = zip_members(outcome.result_zip)
    assert files["stdout.txt"] == b"42\n"
    assert files["data/input.txt"] == b"21\n"


async def test_a_zip_slip_env_archive_fails_the_task_without_running_it(tmp_path: Path) -> None:
    env = tmp_path / "env.zip"
    with zipfile.ZipFile(env, "w") as zf:
        zf.writestr("../../escaped.txt", "evil")
    marker = tmp_path / "ran"
    binary = script(tmp_path, f"open({str(marker)!r}, 'w').write('ran')\n")
    outcome = await Executor(tmp_path / "work").run(assignment(), binary, env_archive=env)
    assert outcome.status is TaskStatus.ERROR
    assert outcome.message is not None and "'..'" in outcome.message
    assert not marker.exists()
    assert not (tmp_path / "work" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()


async def test_cancelling_a_task_kills_its_whole_process_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # the child ignores SIGTERM, so the group needs the SIGKILL that follows the grace period
    binary = script(
        tmp_path,
        "import os, signal, subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(600)\n",
    )
    ex = Executor(tmp_path / "work", kill_grace_s=0.5)
    run = asyncio.create_task(ex.run(assignment(), binary))
    for _ in range(200):
        if pids.exists() and len(pids.read_text().split()) == 2:
            break
        await asyncio.sleep(0.05)
    parent_pid, child_pid = map(int, pids.read_text().split())
    assert psutil.pid_exists(child_pid)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert wait_gone(parent_pid)
    assert wait_gone(child_pid)


async def test_processes_left_in_the_background_do_not_outlive_the_job(tmp_path: Path) -> None:
    pidfile = tmp_path / "bg.pid"
    binary = script(
        tmp_path,
        "import subprocess, sys\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n",
    )
    outcome = await Executor(tmp_path / "work").run(assignment(), binary)
    assert outcome.status is TaskStatus.COMPLETED
    assert wait_gone(int(pidfile.read_text()))


async def test_cleanup_removes_scratch_and_result(tmp_path: Path) -> None:
    binary = script(tmp_path, "print('x')\n")
    ex = Executor(tmp_path / "work")
    outcome = await ex.run(assignment("t-9"), binary)
    assert outcome.result_zip is not None and outcome.result_zip.exists()
    ex.cleanup("t-9")
    assert not ex.scratch_of("t-9").exists()
    assert not outcome.result_zip.exists()


async def test_a_hostile_task_uid_stays_one_path_component(tmp_path: Path) -> None:
    binary = script(tmp_path, "print('x')\n")
    ex = Executor(tmp_path / "work")
    outcome = await ex.run(assignment("../../etc"), binary)
    assert outcome.status is TaskStatus.COMPLETED
    assert ex.scratch_of("../../etc").parent == tmp_path / "work" / "tasks"
    assert os.listdir(tmp_path / "work" / "results") == ["______etc.zip"]


_SHOW_CGROUP = "import time\ntime.sleep(1.0)\nprint(open('/proc/self/cgroup').read())\n"


async def test_two_workers_on_one_host_running_the_same_task_uid_keep_their_own_cgroups(
    tmp_path: Path,
) -> None:
    """A second worker on the host (another deployment's, or a worker given the same task)
    must neither share nor clear this worker's job cgroup: both jobs complete, each in its
    own cgroup named after its worker."""
    from xwworker.sandbox import Cgroups

    if Cgroups.probe() is None:
        pytest.skip("job cgroups need root and a cgroup hierarchy this process may write")
    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import asyncio, sys\n"
        "from pathlib import Path\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_worker_executor import assignment, script, _SHOW_CGROUP\n"
        "from xwworker.executor import Executor\n"
        f"d = Path({str(other_dir)!r})\n"
        "out = asyncio.run(Executor(d / 'work').run(assignment(), script(d, _SHOW_CGROUP)))\n"
        "import zipfile\n"
        "print(out.status.value, zipfile.ZipFile(out.result_zip).read('stdout.txt').decode())\n",
        stdout=asyncio.subprocess.PIPE,
    )
    await asyncio.sleep(0.3)  # its job has made its cgroup and joined it
    mine = await Executor(tmp_path / "work").run(assignment(), script(tmp_path, _SHOW_CGROUP))
    theirs, _ = await asyncio.wait_for(other.communicate(), 30)
    assert other.returncode == 0 and theirs.decode().startswith("COMPLETED"), theirs
    assert mine.status is TaskStatus.COMPLETED, zip_members(mine.result_zip or Path("/dev/null"))
    assert mine.result_zip is not None
    my_cgroups = zip_members(mine.result_zip)["stdout.txt"].decode()
    assert f"xwjob-{os.getpid()}-" in my_cgroups
    assert f"xwjob-{other.pid}-" in theirs.decode()
