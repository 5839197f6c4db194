"""Signed applications with real processes: ``xwserver keys signing`` makes the key, the
server refuses unsigned binaries, ``xwsendapp --xwsign`` signs, a worker runs what verifies
and refuses a binary altered in the server's data store, and the job ends ERROR saying so."""

from __future__ import annotations

import hashlib
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from helpers.deployment import Deployment, MakeDeployment, python_program, read_properties

pytestmark = pytest.mark.slow

HELLO = python_program('print("hello from a signed app")\n')
VICTIM = python_program('print("the program its signer meant")\n')
#: as long as VICTIM: what a tamperer writes in place (the server serves the size it recorded)
EVIL = python_program('print("something else")\n').ljust(len(VICTIM) - 1) + "\n"


def _script(dep: Deployment, name: str, source: str) -> Path:
    path = dep.workdir / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    path.chmod(0o755)
    return path


def _stored(dep: Deployment, sha: str) -> Path:
    (found,) = [p for p in dep.store_files() if p.name == sha]
    return found


def test_a_worker_runs_signed_binaries_and_refuses_one_altered_in_the_servers_store(
    deployment: MakeDeployment,
) -> None:
    dep = deployment()
    key = dep.root / "offline" / "app-signing.key"
    made = dep.xwserver("keys", "signing", "--home", str(dep.home), "--out", str(key))
    assert "must not stay on the server" in made.stdout and str(key) in made.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    public = dep.keystore / "app-signing.pub"
    assert public.is_file() and b"PRIVATE" not in public.read_bytes()
    # the home's worker config pins the public key: workers made from it check signatures
    assert read_properties(dep.worker_conf)["signing.key"] == str(public)
    # a second key is refused: it would orphan every signature made with the first
    again = dep.xwserver("keys", "signing", "--home", str(dep.home), "--out", str(key) + "2", check=False)
    assert again.returncode != 0 and "has a signing key already" in again.stderr

    # the server refuses an unsigned binary now that the deployment has a key
    hello = _script(dep, "hello", HELLO)
    unsigned = dep.client("--xwsendapp", "hello", "any", "any", str(hello), check=False)
    assert unsigned.returncode != 0 and "is not signed" in unsigned.stderr
    # and a binary signed for another app's name
    other = dep.client("--xwsendapp", "other", "any", "any", str(hello), "--xwsign", str(key))
    assert other.returncode == 0

    dep.client("--xwsendapp", "hello", "any", "any", str(hello), "--xwsign", str(key))
    [binary] = dep.client_json("--xwapps", "hello")[0]["binaries"]
    assert binary["signature"]
    dep.start_worker()
    good = dep.submit("hello")
    assert dep.wait_for_jobs([good])[good]["status"] == "COMPLETED"
    assert "hello from a signed app" in (dep.results(good) / "stdout.txt").read_text()

    # an app the worker never ran: its stored binary is altered on the server's disk
    victim = _script(dep, "victim", VICTIM)
    dep.client("--xwsendapp", "victim", "any", "any", str(victim), "--xwsign", str(key))
    sha = hashlib.sha256(VICTIM.encode()).hexdigest()
    stored = _stored(dep, sha)
    stored.chmod(0o600)
    stored.write_text(EVIL, encoding="utf-8")
    tampered = dep.submit("victim")
    job = dep.wait_for_jobs([tampered])[tampered]
    assert job["status"] == "ERROR", job
    assert "sha256" in (job.get("message") or ""), job

    # a compromised server that also rewrites its records (digest and size of the new
    # content, the file under its new name): the content checks out, its signature does not
    evil_sha = hashlib.sha256(EVIL.encode()).hexdigest()
    moved = dep.data_dir / evil_sha[:2] / evil_sha  # the store's layout: var/data/<2 hex>/<sha256>
    moved.parent.mkdir(exist_ok=True)
    stored.rename(moved)
    with sqlite3.connect(dep.home / "var" / "xwserver.db") as db:
        db.execute(
            "UPDATE data SET sha256 = ?, size = ? WHERE sha256 = ?", (evil_sha, len(EVIL.encode()), sha)
        )
    time.sleep(2.5)  # the server's binary cache lives 2 s
    swapped = dep.submit("victim")
    job = dep.wait_for_jobs([swapped])[swapped]
    assert job["status"] == "ERROR", job
    message = job.get("message") or ""
    assert "binary refused" in message and "does not match its signature" in message, job
    worker_log = dep.workers[0].log_text()
    assert "binary refused" in worker_log
    assert "something else" not in worker_log
