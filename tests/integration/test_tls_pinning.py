"""Workers and clients trust their deployment's CA only, and nothing travels in plaintext.

The foreign server is a real one: a second deployment with its own CA, whose certificate
is valid for 127.0.0.1, so the CA is the only thing wrong with it.
"""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator

import pytest
from helpers.deployment import Deployment, write_config
from helpers.net import RecordingListener

WORKER_EXIT_TIMEOUT_S = 30.0


@pytest.fixture(scope="module")
def ours_and_foreign(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Deployment, Deployment]]:
    """Our deployment (only its configs and CA are needed: never started) and a foreign one,
    running; the module's tests share them, each with configs and workers of its own names."""
    root = tmp_path_factory.mktemp("tls-pinning")
    ours, foreign = Deployment(root / "ours"), Deployment(root / "foreign")
    try:
        ours.init()
        foreign.init()
        foreign.start_server()
        yield ours, foreign
    finally:
        try:
            foreign.close()
        finally:
            ours.close()


def _requests_seen_by(dep: Deployment) -> str:
    log = dep.log_dir / "access.log"
    return log.read_text(encoding="utf-8") if log.exists() else ""


def _worker_exit(dep: Deployment, conf_overrides: dict[str, object], name: str) -> tuple[int, str]:
    """Start a worker with our worker config changed by ``conf_overrides``; its exit code and log."""
    tmpdir = dep.root / name
    conf = write_config(dep.root / f"{name}.conf", dep.worker_conf, {"path.tmpdir": tmpdir, **conf_overrides})
    worker = dep.start_worker_with(conf, name=name, tmpdir=tmpdir, wait_registered=False)
    try:
        code = worker.proc.wait(timeout=WORKER_EXIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the worker kept running against {conf_overrides}:\n{worker.log_text()}")
    return code, worker.log_text()


def test_the_client_refuses_a_server_whose_certificate_is_not_from_the_deployment_ca(
    ours_and_foreign: tuple[Deployment, Deployment],
) -> None:
    ours, foreign = ours_and_foreign
    conf = write_config(ours.root / "xwrc-foreign", ours.admin_conf, {"dispatcher.servers": foreign.url})

    done = ours.client("--xwworks", config=conf, check=False)

    assert done.returncode == 6, (done.returncode, done.stdout, done.stderr)  # 6: TLS refused
    assert "certificate" in done.stderr and "deployment CA" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert "/login" not in _requests_seen_by(foreign), "the client sent its password to a foreign server"


def test_a_worker_refuses_a_server_whose_certificate_is_not_from_the_deployment_ca(
    ours_and_foreign: tuple[Deployment, Deployment],
) -> None:
    ours, foreign = ours_and_foreign

    code, log = _worker_exit(ours, {"dispatcher.servers": foreign.url}, "foreign-worker")

    assert code != 0, log
    assert "certificate not signed by the deployment CA" in log, log
    assert "Traceback" not in log
    assert "/login" not in _requests_seen_by(foreign), "the worker sent its password to a foreign server"


def test_the_client_refuses_a_plaintext_server_url_without_connecting(
    ours_and_foreign: tuple[Deployment, Deployment],
) -> None:
    ours, _ = ours_and_foreign
    with RecordingListener() as plain:
        conf = write_config(
            ours.root / "xwrc-plain",
            ours.admin_conf,
            {"dispatcher.servers": f"http://127.0.0.1:{plain.port}"},
        )
        done = ours.client("--xwworks", config=conf, check=False)
    assert done.returncode != 0
    assert "plaintext http is refused" in done.stderr, done.stderr
    assert plain.connections == 0, f"the client connected to a plaintext server: {plain.received!r}"


def test_a_worker_refuses_a_plaintext_server_url_without_connecting(
    ours_and_foreign: tuple[Deployment, Deployment],
) -> None:
    ours, _ = ours_and_foreign
    with RecordingListener() as plain:
        code, log = _worker_exit(
            ours, {"dispatcher.servers": f"http://127.0.0.1:{plain.port}"}, "plain-worker"
        )
    assert code != 0, log
    assert "plaintext http is refused" in log, log
    assert plain.connections == 0, f"the worker connected to a plaintext server: {plain.received!r}"


def test_the_server_does_not_answer_plain_http(ours_and_foreign: tuple[Deployment, Deployment]) -> None:
    _, dep = ours_and_foreign  # a server as any deployment's
    request = f"GET /api/v1/version HTTP/1.1\r\nHost: 127.0.0.1:{dep.port}\r\nConnection: close\r\n\r\n"
    answer = b""
    with socket.create_connection(("127.0.0.1", dep.port), timeout=5) as sock:
        sock.sendall(request.encode("ascii"))
        try:
            while chunk := sock.recv(4096):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert not answer.startswith(b"HTTP/"), f"the server answered plain HTTP: {answer[:200]!r}"
    assert b'"version"' not in answer
    assert dep.api.version()["api"] == "v1"  # while HTTPS works
