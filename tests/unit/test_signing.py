"""Application signatures: what is signed binds content, app and platform; the server's
policy by deployment; the executor refuses what does not verify, before anything runs."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from xwcommon import signing
from xwcommon.protocol.work import Assignment, DataRef
from xwcommon.status import TaskStatus
from xwserver.settings import ServerSettings
from xwserver.signing import PUBLIC_KEY_NAME, SigningPolicy, make_signing_key, set_conf_key
from xwworker.executor import Executor

SHA = hashlib.sha256(b"#!/bin/sh\necho hi\n").hexdigest()


@pytest.fixture
def key() -> signing.Ed25519PrivateKey:
    return signing.generate()


def test_a_signature_holds_for_its_app_platform_and_content_only(key: signing.Ed25519PrivateKey) -> None:
    sig = signing.sign(key, "hello", "linux", "x86_64", SHA)
    public = key.public_key()
    signing.verify(public, sig, "hello", "LINUX", "amd64", SHA)  # XWHEP's names, normalized
    for app, os_name, cpu, sha in (
        ("other", "linux", "x86_64", SHA),
        ("hello", "darwin", "x86_64", SHA),
        ("hello", "linux", "aarch64", SHA),
        ("hello", "linux", "x86_64", hashlib.sha256(b"else").hexdigest()),
    ):
        with pytest.raises(signing.SignatureError, match="does not match its signature"):
            signing.verify(public, sig, app, os_name, cpu, sha)
    with pytest.raises(signing.SignatureError, match="does not match"):
        signing.verify(signing.generate().public_key(), sig, "hello", "linux", "x86_64", SHA)
    with pytest.raises(signing.SignatureError, match="is not signed"):
        signing.verify(public, None, "hello", "linux", "x86_64", SHA)


def test_a_home_without_a_key_accepts_unsigned_binaries_and_says_so(tmp_path: Path) -> None:
    settings = ServerSettings(home=tmp_path)
    policy = SigningPolicy.of(settings)
    assert policy.key is None
    policy.check(None, "hello", "any", "any", SHA)  # existing homes keep working
    assert "no application-signing key" in (policy.warning() or "")


def test_keys_signing_writes_the_private_key_away_the_public_key_home_and_pins_it_for_workers(
    tmp_path: Path,
) -> None:
    settings = ServerSettings(home=tmp_path / "home")
    settings.conf_dir.mkdir(parents=True)
    worker_conf = settings.conf_dir / "xtremweb.worker.conf"
    worker_conf.write_text("login=worker\n#signing.key=\n")
    worker_conf.chmod(0o600)
    made = make_signing_key(settings, tmp_path / "away" / "k.key")
    assert made.public_key == settings.keystore_dir / PUBLIC_KEY_NAME
    assert (made.private_key.stat().st_mode & 0o777) == 0o600
    assert worker_conf.read_text() == f"login=worker\nsigning.key={made.public_key}\n"
    assert (worker_conf.stat().st_mode & 0o777) == 0o600
    private = signing.load_private_key(made.private_key)
    policy = SigningPolicy.of(settings)
    assert policy.required and policy.warning() is None
    policy.check(signing.sign(private, "a", "any", "any", SHA), "a", "any", "any", SHA)
    with pytest.raises(signing.SignatureError, match="is not signed"):
        policy.check(None, "a", "any", "any", SHA)
    optional = SigningPolicy(policy.key, required=False)
    optional.check(None, "a", "any", "any", SHA)
    with pytest.raises(signing.SignatureError):  # a signature given is checked all the same
        optional.check(signing.sign(private, "b", "any", "any", SHA), "a", "any", "any", SHA)


def test_set_conf_key_adds_a_key_the_file_lacks(tmp_path: Path) -> None:
    conf = tmp_path / "c.conf"
    conf.write_text("a=1")
    set_conf_key(conf, "signing.key", "/k.pub")
    assert conf.read_text() == "a=1\nsigning.key=/k.pub\n"


async def test_the_executor_refuses_an_unsigned_or_altered_binary_before_running_it(
    tmp_path: Path, key: signing.Ed25519PrivateKey
) -> None:
    public = tmp_path / "app-signing.pub"
    public.write_bytes(signing.public_pem(key.public_key()))
    binary = tmp_path / "bin"
    binary.write_text("#!/bin/sh\necho ran > ran.txt\n")
    sha = hashlib.sha256(binary.read_bytes()).hexdigest()
    executor = Executor(tmp_path / "w", signing_key=public, users=None, cgroups=None)

    def assignment(signature: str | None) -> Assignment:
        ref = DataRef(data_uid="0" * 8 + "-0000-0000-0000-" + "0" * 12, sha256=sha, signature=signature)
        return Assignment(
            task_uid="1" * 8 + "-0000-0000-0000-" + "0" * 12,
            job_uid="2" * 8 + "-0000-0000-0000-" + "0" * 12,
            seq=1,
            app_name="hello",
            args=[],
            lease_expires_at="",
            binary=ref,
        )

    unsigned = await executor.run(assignment(None), binary)
    assert unsigned.status is TaskStatus.ERROR and "is not signed" in (unsigned.message or "")
    signed = assignment(signing.sign(key, "hello", "any", "any", sha))
    assert executor.refusal(signed, binary) is None
    binary.write_text("#!/bin/sh\necho evil\n")  # altered after its download (the cache)
    altered = await executor.run(signed, binary)
    assert altered.status is TaskStatus.ERROR
    assert "binary refused" in (altered.message or "") and "does not match its signature" in (
        altered.message or ""
    )
    assert not list((tmp_path / "w").rglob("ran.txt"))


def test_init_tells_a_new_home_to_make_its_key_and_keeps_signing_key_when_re_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xwserver.cli import main

    home = tmp_path / "home"
    init = ["init", "--home", str(home), "--url", "https://localhost:14997", "--admin-password", "pw-admin-1"]
    assert main(init) == 0
    assert f"xwserver keys signing --home {home}" in capsys.readouterr().out
    assert main(["check-config", "--home", str(home)]) == 0
    assert "note: this deployment has no application-signing key" in capsys.readouterr().out
    key = tmp_path / "offline.key"
    assert main(["keys", "signing", "--home", str(home), "--out", str(key)]) == 0
    out = capsys.readouterr().out
    assert "must not stay on the server" in out and str(key) in out
    assert main([*init, "--force"]) == 0
    worker_conf = (home / "conf" / "xtremweb.worker.conf").read_text()
    assert f"signing.key={home / 'keystore' / PUBLIC_KEY_NAME}" in worker_conf.splitlines()
    assert "keys signing" not in capsys.readouterr().out
    assert main(["check-config", "--home", str(home)]) == 0
    assert "note:" not in capsys.readouterr().out
