"""``xtremweb.client``: the client under the name XWHEP's manual types it.

The manual runs its client as ``xtremweb.client --xwconfig FILE --xwmacro FILE``; the client
already skips a leading ``xtremweb.client`` word (``java -jar xtremweb.jar xtremweb.client.Client
--xwworks``). The console script ``xtremweb.client`` is the same program, so those command
lines work as written. Run here as installed, against a real server.
"""

from __future__ import annotations

import asyncio
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import XW

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "xtremweb.client"


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_the_alias_is_declared_as_the_client_itself() -> None:
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["xtremweb.client"] == scripts["xwclient"] == "xwclient.cli:main"


async def _run(*argv: str, cwd: Path) -> tuple[int, str, str]:
    if not SCRIPT.exists():
        pytest.fail(f"{SCRIPT} is not installed: run make install (pyproject.toml declares it)")
    proc = await asyncio.create_subprocess_exec(
        str(SCRIPT),
        *argv,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_xtremweb_client_runs_the_manuals_command_lines(xw: XW, tmp_path: Path) -> None:
    netloc = xw.url.removeprefix("https://")
    rc = tmp_path / "xwrc"
    rc.write_text(
        f"dispatcher.servers={netloc}\nlogin=admin\npassword={xw.admin_password}\nca.file={xw.ca_file}\n"
    )
    app = await xw.insert_app(xw.admin, "tool")
    job = await xw.submit(xw.admin, app["name"], label="from-the-sdk")

    code, out, err = await _run("--help", cwd=tmp_path)
    assert (code, err) == (0, "") and out.startswith("usage: xwclient")

    code, out, err = await _run("--xwconfig", str(rc), "--xwworks", job["uid"], cwd=tmp_path)
    assert code == 0, err
    assert job["uid"] in out and "PENDING" in out

    # the manual's macro invocation: xtremweb.client --xwconfig FILE --xwmacro FILE
    macro = tmp_path / "jobs.macro"
    macro.write_text("# two jobs, as XWHEP's macro files have them\nxwsendwork tool 1\n--xwsendwork tool 2\n")
    code, out, err = await _run("--xwconfig", str(rc), "--xwmacro", str(macro), cwd=tmp_path)
    assert code == 0, err
    uris = out.split()
    assert len(uris) == 2 and all(u.startswith(f"xw://{netloc}/") for u in uris), out
    listed = await xw.ok("GET", "/jobs", token=xw.admin)
    assert sorted(j["args"] for j in listed["jobs"] if j["uid"] != job["uid"]) == [["1"], ["2"]]

    # XWHEP's class name typed after the program name is skipped as well
    code, out, err = await _run("xtremweb.client.Client", "--xwconfig", str(rc), "--xwversion", cwd=tmp_path)
    assert code == 0, err
    assert out.strip()
