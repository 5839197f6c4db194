"""``xwserver init`` and the CLI's error handling (in-process, SQLite in a temporary home)."""

from __future__ import annotations

import dataclasses
import hashlib
import stat
from pathlib import Path

import pytest

from xwcommon.config import load_properties, parse_properties
from xwserver import home as homes
from xwserver import keystore
from xwserver.cli import main
from xwserver.settings import ServerSettings

REPO = Path(__file__).resolve().parents[2]
URL = "https://localhost:14999"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture
def server_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    home = tmp_path / "server"
    assert main(["init", "--home", str(home), "--url", URL, "--admin-password", "s3cret-admin"]) == 0
    capsys.readouterr()
    return home


def test_init_makes_the_home_with_private_configs_and_keys(server_home: Path) -> None:
    conf = server_home / "conf"
    for name in ("xwserver.conf", "xwrc", "xtremweb.worker.conf"):
        assert _mode(conf / name) == 0o600, name
    for folder in ("conf", "keystore", "var", "var/data", "var/log"):
        assert _mode(server_home / folder) == 0o700, folder
    assert _mode(server_home / "keystore" / "ca.key") == 0o600
    assert _mode(server_home / "keystore" / "server.key") == 0o600
    assert keystore.covers_host(server_home / "keystore" / "server.pem", "localhost")


def test_the_admin_and_worker_configs_carry_server_identity_and_ca(server_home: Path) -> None:
    ca = server_home / "keystore" / "ca.pem"
    client = load_properties(server_home / "conf" / "xwrc")
    worker = load_properties(server_home / "conf" / "xtremweb.worker.conf")
    assert client == {
        "dispatcher.servers": URL,
        "login": "admin",
        "password": "s3cret-admin",
        "ca.file": str(ca),
    }
    assert worker["dispatcher.servers"] == URL
    assert worker["ca.file"] == str(ca)
    assert worker["login"] and worker["login"] != "admin"
    assert len(worker["password"]) >= 16
    text = (server_home / "conf" / "xtremweb.worker.conf").read_text()
    assert "#workpool.size=" in text and "#path.tmpdir=" in text


def test_a_generated_admin_password_is_printed_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--home", str(tmp_path / "s"), "--url", URL]) == 0
    out = capsys.readouterr().out
    password = load_properties(tmp_path / "s" / "conf" / "xwrc")["password"]
    assert len(password) >= 20
    assert out.count(password) == 1


def test_a_given_admin_password_is_not_printed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", "--home", str(tmp_path / "s"), "--url", URL, "--admin-password", "given-pw"]) == 0
    assert "given-pw" not in capsys.readouterr().out


def test_the_admin_password_may_come_from_the_environment(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XWSERVER_ADMIN_PASSWORD", "from-env-pw")
    assert main(["init", "--home", str(tmp_path / "s"), "--url", URL]) == 0
    assert "from-env-pw" not in capsys.readouterr().out
    assert load_properties(tmp_path / "s" / "conf" / "xwrc")["password"] == "from-env-pw"


def test_init_twice_is_refused_and_touches_nothing(
    server_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys, confs = _digests(server_home / "keystore"), _digests(server_home / "conf")
    assert main(["init", "--home", str(server_home), "--url", URL]) == 2
    err = capsys.readouterr().err
    assert "already a server home" in err and "--force" in err
    assert "Traceback" not in err
    assert _digests(server_home / "keystore") == keys
    assert _digests(server_home / "conf") == confs


def test_force_rewrites_the_configs_but_keeps_the_keys(server_home: Path) -> None:
    keys = _digests(server_home / "keystore")
    old_worker_pw = load_properties(server_home / "conf" / "xtremweb.worker.conf")["password"]
    assert main(["init", "--home", str(server_home), "--url", URL, "--force"]) == 0
    assert _digests(server_home / "keystore") == keys
    assert load_properties(server_home / "conf" / "xtremweb.worker.conf")["password"] != old_worker_pw


def test_force_with_new_keys_replaces_the_keys(server_home: Path) -> None:
    keys = _digests(server_home / "keystore")
    assert main(["init", "--home", str(server_home), "--url", URL, "--force", "--new-keys"]) == 0
    after = _digests(server_home / "keystore")
    assert set(after) == set(keys)
    assert all(after[name] != keys[name] for name in keys)


def test_a_new_url_outside_the_certificate_needs_new_keys(
    server_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = "https://xw.example.org:4325"
    assert main(["init", "--home", str(server_home), "--url", other, "--force"]) == 2
    assert "--new-keys" in capsys.readouterr().err
    assert main(["init", "--home", str(server_home), "--url", other, "--force", "--new-keys"]) == 0
    assert keystore.covers_host(server_home / "keystore" / "server.pem", "xw.example.org")
    assert load_properties(server_home / "conf" / "xwrc")["dispatcher.servers"] == other


@pytest.mark.parametrize("url", ["http://localhost:4325", "localhost:4325", "https://:4325"])
def test_init_refuses_urls_that_are_not_https_with_a_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], url: str
) -> None:
    assert main(["init", "--home", str(tmp_path / "s"), "--url", url]) == 2
    err = capsys.readouterr().err
    assert err.startswith("xwserver: --url") and "Traceback" not in err
    assert not (tmp_path / "s" / "keystore").exists()


def test_commands_on_a_missing_home_fail_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("status", "start", "stop", "console"):
        assert main([command, "--home", str(tmp_path / "nowhere")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "xwserver init --home" in err


def test_status_of_a_stopped_server_exits_3(server_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--home", str(server_home)]) == 3
    assert "not running" in capsys.readouterr().out


# -- the server config file ---------------------------------------------------------------------------
def _settings_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(ServerSettings)} - {"home", "extra", "warnings"}


def test_every_server_setting_has_a_documented_key() -> None:
    assert {attr for _, attr, _ in homes.SERVER_KEYS} == _settings_fields()
    text = homes.render_server_conf("https://xw.example.org:4325")
    for key, _, doc in homes.SERVER_KEYS:
        assert f"{key}=" in text
        assert doc.splitlines()[0] in text


def test_the_written_config_loads_with_every_key_known(server_home: Path) -> None:
    settings = ServerSettings.load(server_home)
    assert settings.url == URL
    assert settings.extra == {}
    uncommented = {
        line[1:]
        for line in (server_home / "conf" / "xwserver.conf").read_text().splitlines()
        if line.startswith("#") and "=" in line and " " not in line.split("=", 1)[0]
    }
    # every commented default, once uncommented, is understood by the server
    all_set = parse_properties("\n".join(u for u in uncommented if not u.endswith("=")))
    probe = server_home / "conf" / "xwserver.conf"
    probe.write_text(f"server.url={URL}\n" + "\n".join(f"{k}={v}" for k, v in all_set.items()) + "\n")
    assert ServerSettings.load(server_home).extra == {}


def test_a_database_url_given_to_init_is_written(tmp_path: Path) -> None:
    db = f"sqlite+aiosqlite:///{tmp_path / 'other.db'}"
    assert main(["init", "--home", str(tmp_path / "s"), "--url", URL, "--db", db]) == 0
    assert ServerSettings.load(tmp_path / "s").db_url == db
    assert (tmp_path / "other.db").exists()


def test_the_sample_config_is_what_init_writes() -> None:
    sample = (REPO / "conf" / "xwserver.conf.sample").read_text()
    assert sample == homes.render_server_conf(homes.SAMPLE_URL), (
        "regenerate it: python -c 'from xwserver.home import render_server_conf, SAMPLE_URL; "
        'print(render_server_conf(SAMPLE_URL), end="")\' > conf/xwserver.conf.sample'
    )


def test_a_database_password_is_not_printed() -> None:
    from xwserver.cli import _safe_db_url

    assert _safe_db_url("postgresql+asyncpg://xw:pa55@db.example.org:5432/xw") == (
        "postgresql+asyncpg://xw:***@db.example.org:5432/xw"
    )
    assert _safe_db_url("sqlite+aiosqlite:////var/xw.db") == "sqlite+aiosqlite:////var/xw.db"
