"""``xwserver diagnostics``: a healthy home passes; a broken one fails and says what is wrong."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from xwserver import keystore
from xwserver.cli import main
from xwserver.db.engine import MIGRATIONS_DIR

URL = "https://localhost:14997"


@pytest.fixture
def server_home(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    home = tmp_path / "server"
    assert main(["init", "--home", str(home), "--url", URL, "--admin-password", "s3cret-admin"]) == 0
    capsys.readouterr()
    return home


def _diagnose(home: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, object]]]:
    code = main(["diagnostics", "--home", str(home), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is (code == 0)
    checks: dict[str, dict[str, object]] = {}
    for check in report["checks"]:
        checks.setdefault(str(check["name"]), check)
    return code, checks


def test_a_fresh_home_passes_every_check(server_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, checks = _diagnose(server_home, capsys)
    assert code == 0, checks
    assert {c["status"] for c in checks.values()} <= {"ok", "warn"}
    assert checks["database"]["status"] == "ok" and "latest migration" in str(checks["database"]["detail"])
    assert checks["server certificate"]["status"] == "ok"
    assert checks["jobs"]["PENDING"] == 0 and checks["hosts"]["active"] == 0
    assert int(str(checks["data store disk"]["free_bytes"])) > 0
    assert checks["address"]["bind"] == "localhost:14997"
    # the text form says the same for people
    assert main(["diagnostics", "--home", str(server_home)]) == 0
    out = capsys.readouterr().out
    assert "all checks passed" in out and "OK    database" in out


def test_an_unknown_config_key_fails(server_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = server_home / "conf" / "xwserver.conf"
    conf.write_text(conf.read_text() + "lease_ss=30\n")
    code, checks = _diagnose(server_home, capsys)
    assert code == 1
    assert checks["config key"]["status"] == "fail"
    assert "'lease_ss'" in str(checks["config key"]["detail"]) and "lease_s" in str(
        checks["config key"]["detail"]
    )


def test_an_expired_server_certificate_fails(server_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ks = server_home / "keystore"
    keystore.issue_certificate(
        ks,
        ["localhost"],
        ca_dir=ks,
        valid_days=1,
        not_before=dt.datetime.now(dt.UTC) - dt.timedelta(days=3),
        force=True,
    )
    code, checks = _diagnose(server_home, capsys)
    assert code == 1
    assert checks["server certificate"]["status"] == "fail"
    assert "expired on" in str(checks["server certificate"]["detail"])


def test_a_missing_certificate_fails(server_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (server_home / "keystore" / "server.pem").unlink()
    code, checks = _diagnose(server_home, capsys)
    assert code == 1
    assert checks["keystore"]["status"] == "fail" and "server.pem" in str(checks["keystore"]["detail"])


def test_a_database_behind_the_latest_migration_fails(
    server_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    script = ScriptDirectory.from_config(cfg)
    [head] = script.get_heads()
    previous = script.get_revision(head).down_revision
    assert isinstance(previous, str)
    with sqlite3.connect(server_home / "var" / "xwserver.db") as db:
        db.execute("UPDATE alembic_version SET version_num = ?", (previous,))
    code, checks = _diagnose(server_home, capsys)
    assert code == 1
    detail = str(checks["database"]["detail"])
    assert (
        checks["database"]["status"] == "fail"
        and f"at migration {previous}, behind the latest {head}" in detail
    )


def test_an_unreachable_database_fails(server_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    conf = server_home / "conf" / "xwserver.conf"
    conf.write_text(conf.read_text() + "db.url=postgresql+asyncpg://nobody@127.0.0.1:1/none\n")
    code, checks = _diagnose(server_home, capsys)
    assert code == 1
    assert checks["database"]["status"] == "fail" and "does not answer" in str(checks["database"]["detail"])
    assert "jobs" not in checks


def test_a_url_host_the_bind_address_does_not_serve_fails(
    server_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    conf = server_home / "conf" / "xwserver.conf"
    conf.write_text(conf.read_text() + "server.listen=127.0.0.2\n")
    code, checks = _diagnose(server_home, capsys)
    assert code == 1
    assert checks["address"]["status"] == "fail" and "does not reach the server" in str(
        checks["address"]["detail"]
    )
