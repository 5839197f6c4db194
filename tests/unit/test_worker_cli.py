"""``xwworker`` on the command line: clear errors without tracebacks, and the daemon verbs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest


def xwworker(*args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("XWWORKER_")}
    return subprocess.run(
        [sys.executable, "-m", "xwworker", *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_conf(tmp_path: Path, extra: str = "") -> Path:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")  # never used: nobody answers
    conf = tmp_path / "xtremweb.worker.conf"
    conf.write_text(
        f"dispatcher.servers=https://127.0.0.1:{free_port()}\nlogin=w\npassword=pw\nca.file=ca.pem\n"
        f"path.tmpdir={tmp_path / 'work'}\nshutdown_grace_s=1\n{extra}"
    )
    return conf


def test_a_missing_config_file_is_one_clear_line_and_exit_code_2(tmp_path: Path) -> None:
    done = xwworker("console", "--xwconfig", str(tmp_path / "nope.conf"))
    assert done.returncode == 2
    assert done.stderr.startswith("xwworker: worker config file ")
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_a_bad_key_is_named(tmp_path: Path) -> None:
    done = xwworker("status", "--xwconfig", str(worker_conf(tmp_path, "workpool.size=lots\n")))
    assert done.returncode == 2
    assert done.stderr.strip() == "xwworker: workpool.size: expected an integer, got 'lots'"


def test_an_unreadable_ca_certificate_fails_cleanly(tmp_path: Path) -> None:
    done = xwworker("console", "--xwconfig", str(worker_conf(tmp_path)))
    assert done.returncode == 2
    assert "ca.file: " in done.stderr and "is not a usable PEM certificate" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_start_status_stop_with_a_server_that_does_not_answer(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    conf = worker_conf(tmp_path)
    # a real CA certificate, so the worker gets as far as trying to connect
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    started = xwworker("start", "--xwconfig", str(conf))
    try:
        assert started.returncode == 0, started.stderr
        assert "started (pid" in started.stdout and "not registered yet" in started.stdout
        # said at the first failed try, not after waiting: why, and that it goes on
        assert "unreachable (" in started.stdout and "; it keeps trying)" in started.stdout, started.stdout
        status = xwworker("status", "--xwconfig", str(conf))
        assert status.returncode == 0
        assert "is running" in status.stdout
    finally:
        stopped = xwworker("stop", "--xwconfig", str(conf))
    assert stopped.returncode == 0
    assert "stopped (pid" in stopped.stdout
    assert xwworker("status", "--xwconfig", str(conf)).returncode == 3
    assert not (tmp_path / "work" / "xwworker.pid").exists()
    log = (tmp_path / "work" / "xwworker.log").read_text()
    assert "unreachable" in log
    assert "stopped before registering" in log
