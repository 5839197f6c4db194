"""Command handlers through the CLI's entry point (``cli.main``) against the in-process server.

``xw`` is a real server over real HTTPS (tests/unit/conftest.py); the CLI runs in a thread
with its own event loop, as a user's process would, and every test looks at what changed on
the server. A worker is played through the wire (register, claim, upload a result, report)
where a job must finish. The same commands against real processes: tests/integration.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from xwclient import cli
from xwclient.commands import parse_size, stdin_to_file

UID = "5ac06852-c970-4618-b635-afd5c460fe81"


@pytest.fixture
def backend() -> str:
    """The client's behaviour does not depend on the database: SQLite only."""
    return "sqlite"


class Cli:
    """``xwclient ARGS`` as the admin of the ``xw`` server, in ``folder``."""

    def __init__(self, xw: Any, folder: Path) -> None:
        self.xw = xw
        self.folder = folder
        self.config = folder / "xwrc"
        self.config.write_text(
            f"dispatcher.servers={xw.url}\nlogin=admin\npassword={xw.admin_password}\n"
            f"ca.file={xw.ca_file}\ncache.dir={folder / 'cache'}\n"
        )

    async def __call__(self, *args: str, stdin: Any = None) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        argv = ["--xwconfig", str(self.config), *args]
        code = await asyncio.to_thread(cli.main, argv, stdin=stdin, out=out, err=err, cwd=self.folder)
        return code, out.getvalue(), err.getvalue()


async def _cli(xw: Any, tmp_path: Path) -> Cli:
    await xw.insert_app(xw.admin, "app")
    return Cli(xw, tmp_path)


def _uid(out: str) -> str:
    lines = out.splitlines()
    assert len(lines) == 1 and lines[0].startswith("xw://"), out
    return lines[0].rsplit("/", 1)[1]


async def _stdin_of(xw: Any, job: dict[str, Any]) -> bytes | None:
    if job["stdin_uid"] is None:
        return None
    got = await xw.call("GET", f"/data/{job['stdin_uid']}/content", token=xw.admin)
    return bytes(got.body)


async def test_sendwork_passes_job_arguments_verbatim_and_prints_the_uri_alone(xw, tmp_path):
    run = await _cli(xw, tmp_path)
    code, out, err = await run("--xwsendwork", "app", "-n", "5", "--xwlabel", "L", "--seed=3", "--", "--xwx")
    # the URI alone on stdout; on stderr only the warning that no worker could run it now
    assert code == 0 and err == f"xwclient: warning: job {_uid(out)} cannot run now: no worker is connected\n"
    job = await xw.job(_uid(out))
    assert (job["app_name"], job["args"], job["label"], job["stdin_uid"]) == (
        "app",
        ["-n", "5", "--seed=3", "--xwx"],
        "L",
        None,
    )


async def test_sendwork_uploads_piped_stdin_and_removes_its_temporary_copy(xw, tmp_path, monkeypatch):
    run = await _cli(xw, tmp_path)
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(spool))
    code, out, _ = await run("--xwsendwork", "app", stdin=io.BytesIO(b"line 1\nline 2\n"))
    assert code == 0
    job = await xw.job(_uid(out))
    assert await _stdin_of(xw, job) == b"line 1\nline 2\n"
    assert list(spool.iterdir()) == []


async def test_sendwork_sends_no_stdin_when_stdin_is_empty_or_xwnostdin(xw, tmp_path):
    run = await _cli(xw, tmp_path)
    _, empty, _ = await run("--xwsendwork", "app", stdin=io.BytesIO(b""))
    stream = io.BytesIO(b"not for the job")
    _, refused, _ = await run("--xwsendwork", "app", "--xwnostdin", stdin=stream)
    assert (await xw.job(_uid(empty)))["stdin_uid"] is None
    assert (await xw.job(_uid(refused)))["stdin_uid"] is None
    assert stream.tell() == 0


async def test_sendwork_with_xwstdin_uid_or_file(xw, tmp_path):
    run = await _cli(xw, tmp_path)
    data = await xw.upload(xw.admin, b"already there", name="in")
    stream = io.BytesIO(b"ignored")
    _, by_uri, _ = await run("--xwsendwork", "app", "--xwstdin", data["uri"], stdin=stream)
    assert (await xw.job(_uid(by_uri)))["stdin_uid"] == data["uid"] and stream.tell() == 0
    (tmp_path / "in.txt").write_bytes(b"from a file")
    _, by_file, _ = await run("--xwsendwork", "app", "--xwstdin", "in.txt")  # relative to the folder
    assert await _stdin_of(xw, await xw.job(_uid(by_file))) == b"from a file"
    code, out, err = await run("--xwsendwork", "app", "--xwstdin", "missing.txt")
    assert code == 2 and out == "" and "no such file" in err


async def test_sendwork_in_json_prints_the_job_row(xw, tmp_path):
    run = await _cli(xw, tmp_path)
    _, out, _ = await run("--xwsendwork", "app", "x", "--xwformat", "json")
    [row] = json.loads(out)
    on_server = await xw.job(row["uid"])
    assert row == {c: on_server.get(c) for c in row}
    assert row["args"] == ["x"] and row["status"] == "PENDING"


async def _finish(xw: Any, job_uid: str, stdout: bytes) -> str:
    """Play a worker: claim the job, upload a result archive, report it COMPLETED."""
    host = await xw.register(os_name="linux", cpu="x86_64")
    [a] = await xw.request_work(host)
    assert a["job_uid"] == job_uid
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("stdout.txt", stdout)
        zf.writestr("stderr.txt", b"")
    archive = buf.getvalue()
    up = await xw.ok(
        "POST",
        f"/work/tasks/{a['task_uid']}/result",
        token=xw.worker,
        data=archive,
        params={"sha256": hashlib.sha256(archive).hexdigest(), "size": len(archive)},
    )
    await xw.ok(
        "POST",
        f"/work/tasks/{a['task_uid']}/report",
        token=xw.worker,
        json={"status": "COMPLETED", "exit_code": 0, "result_uid": up["result_uid"]},
    )
    return str(up["result_uid"])


async def test_results_without_uids_fetch_every_finished_job_and_erase_it(xw, tmp_path):
    run = await _cli(xw, tmp_path)
    uid = _uid((await run("--xwsendwork", "app"))[1])
    await _finish(xw, uid, b"42\n")
    code, out, _ = await run("--xwresults")
    assert code == 0 and out == f"{tmp_path / ('ResultsOf_' + uid)}\n"
    assert (tmp_path / f"ResultsOf_{uid}" / "stdout.txt").read_bytes() == b"42\n"
    assert (await xw.call("GET", f"/jobs/{uid}", token=xw.admin)).status == 404


async def test_results_go_on_after_a_failure_and_exit_with_its_code(xw, tmp_path):
    run = await _cli(xw, tmp_path)
    uid = _uid((await run("--xwsendwork", "app"))[1])
    result = await _finish(xw, uid, b"out\n")
    code, out, err = await run("--xwresult", UID, uid, "--xwnoextract", "--xwnoerase", "--xwformat", "csv")
    assert code == 4 and f"not found: no job {UID}" in err
    assert out.splitlines() == [
        "job_uid,path,result_uid,sha256,erased",
        f"{uid},{tmp_path / ('ResultsOf_' + uid + '.zip')},{result},{(await xw.job(uid))['result_sha256']},false",
    ]


def test_sizes_are_read_in_powers_of_1024():
    assert parse_size("512M") == 512 << 20
    assert parse_size("2G") == 2 << 30
    assert parse_size("1.5GiB") == 3 << 29
    assert parse_size("4096") == 4096
    assert parse_size("8kb") == 8192


def test_stdin_absent_closed_or_empty_is_no_stdin(tmp_path):
    assert stdin_to_file(None) is None
    assert stdin_to_file(io.BytesIO(b""), str(tmp_path)) is None
    closed = io.BytesIO(b"x")
    closed.close()
    assert stdin_to_file(closed, str(tmp_path)) is None
    assert list(tmp_path.iterdir()) == []


def test_dev_null_and_terminals_are_no_stdin(tmp_path):
    with open(os.devnull, "rb") as null:
        assert stdin_to_file(null, str(tmp_path)) is None
    leader, follower = os.openpty()
    try:
        with open(follower, "rb", closefd=False) as tty:
            assert stdin_to_file(tty, str(tmp_path)) is None
    finally:
        os.close(leader)
        os.close(follower)


def test_a_redirected_file_or_a_pipe_is_copied(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"\x00binary\xff" * 1000)
    with open(src, "rb") as fh:
        copy = stdin_to_file(fh, str(tmp_path))
    assert copy is not None and copy.read_bytes() == src.read_bytes()
    r, w = os.pipe()
    os.write(w, b"piped")
    os.close(w)
    with open(r, "rb") as pipe:
        copy = stdin_to_file(pipe, str(tmp_path))
    assert copy is not None and copy.read_bytes() == b"piped"
    r, w = os.pipe()
    os.close(w)
    with open(r, "rb") as pipe:  # a pipe closed without data: no stdin
        assert stdin_to_file(pipe, str(tmp_path)) is None


async def test_xwenv_sends_one_zip_as_it_is_and_names_a_data_by_uri(xw, tmp_path):
    run = await _cli(xw, tmp_path)
    packed = tmp_path / "env.zip"
    with zipfile.ZipFile(packed, "w") as zf:
        zf.writestr("in/data.txt", "x")
    _, out, _ = await run("--xwsendwork", "app", "--xwenv", "env.zip")
    env_uid = (await xw.job(_uid(out)))["env_uid"]
    env = await xw.ok("GET", f"/data/{env_uid}", token=xw.admin)
    assert env["sha256"] == hashlib.sha256(packed.read_bytes()).hexdigest()
    _, again, _ = await run("--xwsendwork", "app", "--xwenv", env["uri"])
    assert (await xw.job(_uid(again)))["env_uid"] == env_uid
    code, _, err = await run("--xwsendwork", "app", "--xwenv", env["uri"], "--xwenv", "env.zip")
    assert code == 2 and "must be the only --xwenv" in err


async def test_the_same_env_folder_is_packed_and_sent_once(xw, tmp_path):
    run = await _cli(xw, tmp_path)
    (tmp_path / "inputs").mkdir()
    (tmp_path / "inputs" / "a.txt").write_text("a")
    _, first, _ = await run("--xwsendwork", "app", "--xwenv", "inputs")
    _, second, _ = await run("--xwsendwork", "app", "--xwenv", "inputs/")
    envs = {(await xw.job(_uid(o)))["env_uid"] for o in (first, second)}
    assert len(envs) == 1  # the second run found it in the client's cache
    data = await xw.ok("GET", "/data", token=xw.admin)
    assert [d["name"] for d in data["data"]].count("env.zip") == 1
