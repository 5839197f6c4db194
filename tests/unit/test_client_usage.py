"""``xwusage`` against a real server, in every output format."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from xwclient import cli, formats

if TYPE_CHECKING:
    from conftest import XW


def _xwrc(xw: XW, folder: Path) -> Path:
    path = folder / "xwrc"
    path.write_text(
        f"dispatcher.servers={xw.url}\nlogin=admin\npassword={xw.admin_password}\nca.file={xw.ca_file}\n"
    )
    return path


async def _run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(cli.main, list(argv), stdin=None, out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("fmt", ["json", "xml", "csv", "html"])
async def test_xwusage_shows_every_user_and_group_and_parses_back(xw: XW, tmp_path: Path, fmt: str) -> None:
    conf = _xwrc(xw, tmp_path)
    await xw.insert_app(xw.admin, "app")
    await xw.submit(xw.admin, "app")
    code, out, err = await _run("--xwusage", "--xwsince", "7d", "--xwformat", fmt, "--xwconfig", str(conf))
    assert (code, err) == (0, "")
    rows = formats.parse(out, fmt)
    admin = next(r for r in rows if r["name"] == "admin")
    assert str(admin["scope"]) == "user" and int(admin["jobs"]) == 1
    assert set(admin) == set(formats.COLUMNS["usage"])
    assert admin["since"] and admin["until"]


async def test_xwusage_as_text_is_a_table_for_people(xw: XW, tmp_path: Path) -> None:
    code, out, _ = await _run("--xwusage", "--xwconfig", str(_xwrc(xw, tmp_path)))
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:4] == ["scope", "name", "group", "users"]
    assert any(line.split()[:2] == ["user", "admin"] for line in lines)


async def test_a_period_the_client_cannot_read_is_refused_before_any_request(xw: XW, tmp_path: Path) -> None:
    code, _, err = await _run("--xwusage", "--xwsince", "last week", "--xwconfig", str(_xwrc(xw, tmp_path)))
    assert code != 0
    assert "--xwsince: 'last week' is neither an ISO 8601 date or time" in err


async def test_a_time_in_another_iso_spelling_is_sent_as_the_servers(xw: XW, tmp_path: Path) -> None:
    conf = str(_xwrc(xw, tmp_path))
    code, out, err = await _run(
        "--xwusage", "--xwsince", "2026-01-01 08:00", "--xwformat", "json", "--xwconfig", conf
    )
    assert (code, err) == (0, "")
    assert formats.parse(out, "json")[0]["since"] == "2026-01-01T08:00:00Z"
