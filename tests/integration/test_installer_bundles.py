"""``xwserver installer`` with real processes: the worker and client bundles of a deployment
are installed as a new machine would install them (a fresh folder, a fresh venv from the
system's Python, the wheel in the bundle, dependencies from the package index), a job runs
through them against a real server, and their uninstall scripts remove what they added."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from helpers.deployment import MakeDeployment, python_program, read_properties
from helpers.waiting import wait_until
from helpers.wheel import build_wheel

#: building the wheel and two venvs with their dependencies: minutes on a slow network
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

INSTALL_TIMEOUT_S = 600
HELLO = python_program('import sys\nprint("hello from a bundle:", *sys.argv[1:])\n')


def _python() -> str:
    """The system's Python (what a volunteer's machine has), else this one's base."""
    return shutil.which("python3") or sys._base_executable  # type: ignore[attr-defined]


def _env(**extra: str) -> dict[str, str]:
    """A clean environment: nothing of this checkout or of the test's deployment leaks in."""
    keep = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "TMPDIR", "PIP_INDEX_URL")}
    keep["PATH"] = ":".join(p for p in keep.get("PATH", "").split(":") if ".venv" not in p)
    return {**keep, **extra}


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        args, cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"{' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


def _run_side_by_side(*runs: tuple[list[str], Path]) -> None:
    """Run each ``(args, cwd)`` as :func:`_run` does, all at once (two machines installing
    at the same time: most of an install waits for the package index)."""
    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        for done in [pool.submit(_run, args, cwd) for args, cwd in runs]:
            done.result()


def test_bundles_install_in_fresh_venvs_run_a_job_and_uninstall(
    deployment: MakeDeployment, tmp_path: Path
) -> None:
    with ThreadPoolExecutor(max_workers=1) as pool:
        building = pool.submit(build_wheel, tmp_path / "build")  # meanwhile, the server starts
        dep = deployment()
        alice_conf = dep.workdir / "alice.xwrc"
        dep.client(
            "--xwsenduser",
            "alice",
            "alice-s3cret!",
            "alice@example.org",
            "ADVANCED",
            "--xwout",
            str(alice_conf),
        )
        wheel = building.result()
    out = tmp_path / "bundles"
    made = dep.xwserver(
        "installer",
        "--home",
        str(dep.home),
        "--out",
        str(out),
        "--wheel",
        str(wheel),
        "--client-config",
        str(alice_conf),
    )
    assert "install with: sh install.sh" in made.stdout
    host = f"127.0.0.1-{dep.port}"
    worker_bundle, client_bundle = out / f"xtremweb-worker-{host}", out / f"xtremweb-client-{host}"
    for bundle in (worker_bundle, client_bundle):
        assert (bundle / "wheels" / wheel.name).read_bytes() == wheel.read_bytes()
        assert (bundle / "ca.pem").read_bytes() == dep.ca_file.read_bytes()
        with tarfile.open(bundle.with_name(bundle.name + ".tar.gz")) as tar:
            assert f"{bundle.name}/install.sh" in tar.getnames()
    worker_conf = read_properties(worker_bundle / "xtremweb.worker.conf")
    assert worker_conf["ca.file"] == "ca.pem" and worker_conf["dispatcher.servers"] == dep.url
    assert (worker_bundle / "xwworker.service").is_file() and (
        worker_bundle / "org.xtremweb.xwworker.plist"
    ).is_file()
    client_conf = read_properties(client_bundle / "xwrc")
    assert client_conf["login"] == "alice" and client_conf["ca.file"] == "ca.pem"
    assert dep.admin_password not in (client_bundle / "xwrc").read_text()

    # two new machines: the bundles are moved elsewhere and installed there
    machine = tmp_path / "machine"
    machine.mkdir()
    shutil.move(worker_bundle, machine / worker_bundle.name)
    shutil.move(client_bundle, machine / client_bundle.name)
    worker_prefix, client_prefix = machine / "opt" / "worker", machine / "opt" / "client"
    _run_side_by_side(
        (
            ["sh", "install.sh", "--prefix", str(worker_prefix), "--no-service", "--python", _python()],
            machine / worker_bundle.name,
        ),
        (
            ["sh", "install.sh", "--prefix", str(client_prefix), "--python", _python()],
            machine / client_bundle.name,
        ),
    )
    where = _run(
        [str(client_prefix / "venv" / "bin" / "python"), "-c", "import xwclient; print(xwclient.__file__)"],
        machine,
    )
    assert where.stdout.startswith(str(client_prefix / "venv"))

    state = machine / "worker-state"
    log = open(machine / "worker.log", "wb")  # noqa: SIM115  # closed below
    worker = subprocess.Popen(
        [
            str(worker_prefix / "venv" / "bin" / "xwworker"),
            "console",
            "--xwconfig",
            str(worker_prefix / "etc" / "xtremweb.worker.conf"),
        ],
        cwd=machine,
        env=_env(XWWORKER_PATH_TMPDIR=str(state), XWWORKER_WORK_REQUEST_WAIT_S="2"),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(
            lambda: (state / "xwworker.host").is_file(),
            timeout_s=60,
            what="the bundle's worker to register",
            describe=lambda: (machine / "worker.log").read_text(errors="replace"),
        )
        client_env = {"XWCONFIG": str(client_prefix / "etc" / "xwrc")}
        script = machine / "hello.py"
        script.write_text(HELLO)
        bin_dir = client_prefix / "venv" / "bin"
        _run([str(bin_dir / "xwsendapp"), "hello", "any", "any", str(script)], machine, **client_env)
        sent = _run([str(bin_dir / "xwsendwork"), "hello", "42", "--xwwait"], machine, **client_env)
        assert "COMPLETED" in sent.stdout, sent.stdout + (machine / "worker.log").read_text(errors="replace")
        uid = sent.stdout.splitlines()[0].rsplit("/", 1)[1]
        _run([str(bin_dir / "xwresults"), uid], machine, **client_env)
        assert (machine / f"ResultsOf_{uid}" / "stdout.txt").read_text() == "hello from a bundle: 42\n"
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
        log.close()

    # uninstalling removes what installing added (the worker's state folder is its own)
    for prefix in (worker_prefix, client_prefix):
        _run(["sh", str(prefix / "uninstall.sh")], machine)
        assert not prefix.exists()
    assert state.is_dir()
