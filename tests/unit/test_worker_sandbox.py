"""The sandbox and the resource limits, with real jobs.

Sandbox tests need bubblewrap able to run here: where it cannot, they skip with the reason
locally and fail in CI (CI=true), which installs it. The limit tests run with both runners:
limits apply with or without the sandbox.
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from xwcommon.errors import ConfigError
from xwcommon.protocol.work import Assignment, DataRef
from xwcommon.status import TaskStatus
from xwworker.executor import Executor, Outcome
from xwworker.sandbox import (
    BubblewrapRunner,
    LocalRunner,
    ResourceLimits,
    Runner,
    choose_runner,
    probe_bwrap,
)
from xwworker.settings import WorkerSettings

SHA = "0" * 64

_BWRAP, _WHY = probe_bwrap()


def bwrap_runner() -> BubblewrapRunner:
    if _BWRAP is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the sandbox must run in CI: {_WHY}")
        pytest.skip(f"bubblewrap cannot run here: {_WHY}")
    return BubblewrapRunner(_BWRAP)


@pytest.fixture(params=["local", "bubblewrap"])
def runner(request: pytest.FixtureRequest) -> Runner:
    return LocalRunner() if request.param == "local" else bwrap_runner()


@pytest.fixture
def sandbox() -> Runner:
    return bwrap_runner()


async def run_job(
    tmp_path: Path, runner: Runner, body: str, *, args: list[str] | None = None, **limits: float
) -> Outcome:
    binary = tmp_path / "cache" / "app.py"
    binary.parent.mkdir(parents=True, exist_ok=True)
    binary.write_text("#!/usr/bin/env python3\n" + body)
    executor = Executor(tmp_path / "work", runner, kill_grace_s=1.0, limits=ResourceLimits(**limits))  # type: ignore[arg-type]
    a = Assignment(
        task_uid=str(uuid.uuid4()),
        job_uid=str(uuid.uuid4()),
        seq=1,
        app_name="app",
        args=args or [],
        lease_expires_at="2099-01-01T00:00:00Z",
        binary=DataRef(data_uid=str(uuid.uuid4()), sha256=SHA),
    )
    return await asyncio.wait_for(executor.run(a, binary), timeout=60)


def stdout_of(tmp_path: Path) -> str:
    (scratch,) = (tmp_path / "work" / "tasks").iterdir()
    return (scratch / "stdout.txt").read_text()


# -- the sandbox ------------------------------------------------------------------------------------
async def test_a_sandboxed_job_cannot_read_the_volunteers_home(tmp_path: Path, sandbox: Runner) -> None:
    home = tmp_path / "home" / "volunteer"
    home.mkdir(parents=True)
    secret = home / "secret.txt"
    secret.write_text("my bank password")
    paths = [str(secret)]
    root_secret = Path("/root") / f".xw-sandbox-test-{uuid.uuid4().hex}"
    if os.geteuid() == 0:
        root_secret.write_text("root's secret")
        paths.append(str(root_secret))
    try:
        outcome = await run_job(
            tmp_path,
            sandbox,
            "import sys\n"
            "for p in sys.argv[1:]:\n"
            "    try:\n"
            "        print(p, 'READ', open(p).read())\n"
            "    except OSError as exc:\n"
            "        print(p, 'DENIED', type(exc).__name__)\n",
            args=paths,
        )
    finally:
        root_secret.unlink(missing_ok=True)

    assert outcome.status is TaskStatus.COMPLETED, outcome.message
    out = stdout_of(tmp_path)
    assert "READ" not in out
    assert out.count("DENIED") == len(paths)


async def test_a_sandboxed_job_can_write_only_in_its_scratch_dir(tmp_path: Path, sandbox: Runner) -> None:
    outside = tmp_path / "outside.txt"
    targets = [str(outside), f"/usr/xw-sandbox-{uuid.uuid4().hex}", f"/etc/xw-sandbox-{uuid.uuid4().hex}"]
    outcome = await run_job(
        tmp_path,
        sandbox,
        "import os, sys\n"
        "open('inside.txt', 'w').write('fine')\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        open(p, 'w').write('escaped')\n"
        "        print(p, 'WROTE')\n"
        "    except OSError as exc:\n"
        "        print(p, 'DENIED', type(exc).__name__)\n"
        "print('home', os.environ['HOME'] == os.getcwd())\n",
        args=targets,
    )

    assert outcome.status is TaskStatus.COMPLETED, outcome.message
    for p in targets:
        assert not os.path.exists(p), p
    (scratch,) = (tmp_path / "work" / "tasks").iterdir()
    assert (scratch / "inside.txt").read_text() == "fine"
    assert "home True" in stdout_of(tmp_path)


async def test_a_sandboxed_job_cannot_open_a_network_connection(tmp_path: Path, sandbox: Runner) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setblocking(False)
        port = listener.getsockname()[1]
        outcome = await run_job(
            tmp_path,
            sandbox,
            "import socket, sys\n"
            "try:\n"
            "    socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5).close()\n"
            "    print('CONNECTED')\n"
            "except OSError as exc:\n"
            "    print('REFUSED', type(exc).__name__)\n",
            args=[str(port)],
        )
        with pytest.raises(BlockingIOError):
            listener.accept()

    assert outcome.status is TaskStatus.COMPLETED, outcome.message
    out = stdout_of(tmp_path)
    assert "REFUSED" in out and "CONNECTED" not in out


async def test_the_same_job_reaches_the_listener_without_the_sandbox(tmp_path: Path) -> None:
    # the control for the test above: the listener does answer a job that is not sandboxed
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        outcome = await run_job(
            tmp_path,
            LocalRunner(),
            "import socket, sys\nsocket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5).close()\n",
            args=[str(port)],
        )
    assert outcome.status is TaskStatus.COMPLETED, outcome.message


def test_with_the_sandbox_off_the_worker_is_told_why() -> None:
    choice = choose_runner(enable=False)
    assert isinstance(choice.runner, LocalRunner) and not isinstance(choice.runner, BubblewrapRunner)
    assert "sandbox.enable is false" in choice.warning and "WITHOUT a sandbox" in choice.warning


def test_without_bwrap_the_worker_is_told_why(tmp_path: Path) -> None:
    choice = choose_runner(bwrap=str(tmp_path / "no-such-bwrap"))
    assert not isinstance(choice.runner, BubblewrapRunner)
    assert "no-such-bwrap" in choice.warning and "WITHOUT a sandbox" in choice.warning


def test_where_bwrap_runs_it_is_chosen_without_warning() -> None:
    bwrap_runner()
    choice = choose_runner()
    assert isinstance(choice.runner, BubblewrapRunner) and choice.warning == ""


# -- resource limits, with and without the sandbox ------------------------------------------------
@pytest.fixture
def no_leftovers() -> Iterator[None]:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    yield
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    gone, alive = psutil.wait_procs(left, timeout=5)
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE], alive


FORK_BOMB = (
    "import os, sys, time\n"
    "children = 0\n"
    "for i in range(2000):\n"  # bounded, so that a broken limit cannot take the machine down
    "    if os.fork() == 0:\n"
    "        time.sleep(30)\n"
    "        os._exit(0)\n"
    "    children += 1\n"
    "print('forked', children)\n"
    "time.sleep(30)\n"
)


async def test_a_fork_bomb_is_stopped_and_later_jobs_still_run(
    tmp_path: Path, runner: Runner, no_leftovers: None
) -> None:
    outcome = await run_job(tmp_path / "bomb", runner, FORK_BOMB, processes=64)

    assert outcome.status is TaskStatus.ERROR
    assert outcome.message is not None and "limit.processes" in outcome.message, outcome.message
    assert outcome.wall_time_s < 25
    after = await run_job(tmp_path / "after", runner, "print('still here')\n")
    assert after.status is TaskStatus.COMPLETED, after.message


async def test_a_memory_hog_is_stopped_and_later_jobs_still_run(
    tmp_path: Path, runner: Runner, no_leftovers: None
) -> None:
    limit = 300 * 1024 * 1024
    outcome = await run_job(
        tmp_path / "hog",
        runner,
        "blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 1024 * 1024))\n",
        memory_bytes=limit,
    )

    assert outcome.status is TaskStatus.ERROR
    assert outcome.message is not None and "limit.memory_bytes" in outcome.message, outcome.message
    assert outcome.accounting is not None and outcome.accounting["max_rss_bytes"] <= limit
    after = await run_job(tmp_path / "after", runner, "print('still here')\n")
    assert after.status is TaskStatus.COMPLETED, after.message


async def test_a_job_past_its_wall_clock_limit_is_killed(
    tmp_path: Path, runner: Runner, no_leftovers: None
) -> None:
    outcome = await run_job(tmp_path, runner, "import time\ntime.sleep(60)\n", wall_s=1.0)

    assert outcome.status is TaskStatus.ERROR
    assert outcome.message is not None and "limit.wall_s" in outcome.message, outcome.message
    assert outcome.wall_time_s < 10


async def test_a_job_past_its_cpu_limit_is_stopped(tmp_path: Path, runner: Runner) -> None:
    outcome = await run_job(tmp_path, runner, "while True:\n    pass\n", cpu_s=1)

    assert outcome.status is TaskStatus.ERROR
    assert outcome.message is not None and "limit.cpu_s" in outcome.message, outcome.message


async def test_a_job_writing_a_file_past_its_size_limit_fails_naming_it(
    tmp_path: Path, runner: Runner
) -> None:
    outcome = await run_job(
        tmp_path, runner, "open('big', 'wb').write(b'x' * (2 * 1024 * 1024))\n", file_bytes=1024 * 1024
    )

    assert outcome.status is TaskStatus.ERROR
    assert outcome.message is not None and "limit.file_bytes" in outcome.message, outcome.message


# -- settings -------------------------------------------------------------------------------------
def settings_with(tmp_path: Path, **extra: str) -> WorkerSettings:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    props = {"dispatcher.servers": "localhost", "login": "w", "password": "p", "ca.file": str(ca), **extra}
    return WorkerSettings.from_properties(props, base=tmp_path)


def test_the_sandbox_is_on_without_network_and_limits_have_defaults_by_default(tmp_path: Path) -> None:
    s = settings_with(tmp_path)
    assert s.sandbox_enable is True and s.sandbox_network is False
    assert s.limits == ResourceLimits()
    assert all(
        v > 0 for v in (s.limits.cpu_s, s.limits.memory_bytes, s.limits.file_bytes, s.limits.processes)
    )


def test_sandbox_and_limit_keys_are_read(tmp_path: Path) -> None:
    s = settings_with(
        tmp_path,
        **{
            "sandbox.enable": "false",
            "sandbox.network": "true",
            "limit.cpu_s": "60",
            "limit.memory_bytes": "1000000",
            "limit.file_bytes": "0",
            "limit.processes": "8",
            "limit.wall_s": "2.5",
        },
    )
    assert s.sandbox_enable is False and s.sandbox_network is True
    assert s.limits == ResourceLimits(cpu_s=60, memory_bytes=1000000, file_bytes=0, processes=8, wall_s=2.5)
    assert "limit.cpu_s" not in s.extra


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("sandbox.enable", "perhaps"),
        ("sandbox.network", "2"),
        ("limit.cpu_s", "lots"),
        ("limit.memory_bytes", "-1"),
        ("limit.file_bytes", "1.5"),
        ("limit.processes", "-3"),
        ("limit.wall_s", "soon"),
    ],
)
def test_a_wrong_sandbox_or_limit_setting_names_its_key(tmp_path: Path, key: str, value: str) -> None:
    with pytest.raises(ConfigError, match="^" + re.escape(key) + ": "):
        settings_with(tmp_path, **{key: value})
