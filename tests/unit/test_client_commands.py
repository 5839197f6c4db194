"""Command handlers: how a command line becomes SDK calls, and how stdin becomes a job's input.

The SDK is replaced by a recorder here; the real server path is covered by the integration
tests.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from xwclient import cli
from xwclient.commands import COMMANDS, Context, UsageError, stdin_to_file
from xwcommon.errors import NotFound

UID = "5ac06852-c970-4618-b635-afd5c460fe81"
UID2 = "b42d253f-d9fc-4a35-9e53-d6d88c8952db"


class Recorder:
    """Stands in for XWClient: records calls, answers like the wire would."""

    settings = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def submit(self, app, args, stdin_path, label, **kw):
        content = Path(stdin_path).read_bytes() if stdin_path else None
        self.calls.append(("submit", (app, list(args), content, label, kw)))
        return {"uid": UID, "uri": f"xw://h:1/{UID}", "status": "PENDING", "args": list(args)}

    async def get_job(self, uid):
        if uid == UID2:
            raise NotFound(f"no job {uid}")
        return {"uid": uid, "status": "COMPLETED", "result_uid": UID2}

    async def fetch_result(self, uid, dest_dir, extract):
        self.calls.append(("fetch_result", (uid, dest_dir, extract)))
        folder = Path(dest_dir) / f"ResultsOf_{uid}"
        return folder if extract else folder.with_name(folder.name + ".zip")

    async def list_jobs(self, status=None, label=None):
        self.calls.append(("list_jobs", (status, label)))
        return [
            {"uid": UID, "status": "COMPLETED", "result_uid": UID2},
            {"uid": UID2, "status": "ERROR", "result_uid": None},
        ]


async def run(
    argv: list[str], stdin: Any = None, tmp_path: Path | None = None
) -> tuple[int, str, str, Recorder]:
    inv = cli.parse_args(argv)
    cmd = cli.check_invocation(inv)
    rec = Recorder()
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(
        inv=inv,
        client=rec,  # type: ignore[arg-type]
        fmt=inv.value("xwformat") or "text",
        out=out,
        err=err,
        stdin=stdin,
        cwd=tmp_path or Path.cwd(),
        prog="xwtest",
    )
    code = await cmd.run(ctx)
    return code, out.getvalue(), err.getvalue(), rec


async def test_sendwork_passes_job_arguments_verbatim_and_prints_the_uri_alone():
    code, out, err, rec = await run(
        ["--xwsendwork", "app", "-n", "5", "--xwlabel", "L", "--seed=3", "--", "--xwx"]
    )
    assert code == 0 and err == ""
    assert out == f"xw://h:1/{UID}\n"
    assert rec.calls == [
        (
            "submit",
            ("app", ["-n", "5", "--seed=3", "--xwx"], None, "L", {"stdin_uid": None, "stdin_name": None}),
        )
    ]


async def test_sendwork_uploads_piped_stdin_and_removes_its_temporary_copy(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    code, out, _, rec = await run(["--xwsendwork", "app"], stdin=io.BytesIO(b"line 1\nline 2\n"))
    assert code == 0
    _, (app, args, content, label, kw) = rec.calls[0]
    assert (app, args, content, kw["stdin_name"]) == ("app", [], b"line 1\nline 2\n", "stdin")
    assert list(tmp_path.iterdir()) == []


async def test_sendwork_sends_no_stdin_when_stdin_is_empty():
    _, _, _, rec = await run(["--xwsendwork", "app"], stdin=io.BytesIO(b""))
    assert rec.calls[0][1][2] is None


async def test_sendwork_with_xwstdin_uid_does_not_read_stdin():
    stdin = io.BytesIO(b"ignored")
    _, _, _, rec = await run(["--xwsendwork", "app", "--xwstdin", f"xw://h:1/{UID2}"], stdin=stdin)
    assert rec.calls[0][1][2] is None and rec.calls[0][1][4]["stdin_uid"] == UID2
    assert stdin.tell() == 0


async def test_sendwork_with_xwstdin_file_uploads_it(tmp_path):
    (tmp_path / "in.txt").write_bytes(b"from a file")
    _, _, _, rec = await run(["--xwsendwork", "app", "--xwstdin", str(tmp_path / "in.txt")])
    assert rec.calls[0][1][2] == b"from a file"


async def test_sendwork_xwstdin_that_is_neither_file_nor_uid_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        await run(["--xwsendwork", "app", "--xwstdin", str(tmp_path / "missing")])


async def test_sendwork_with_xwnostdin_leaves_stdin_alone():
    stdin = io.BytesIO(b"not for the job")
    _, _, _, rec = await run(["--xwsendwork", "app", "--xwnostdin"], stdin=stdin)
    assert rec.calls[0][1][2] is None and stdin.tell() == 0


async def test_sendwork_in_json_prints_the_job_row():
    _, out, _, _ = await run(["--xwsendwork", "app", "x", "--xwformat", "json"])
    assert json.loads(out)[0]["uid"] == UID


async def test_results_without_uids_fetch_every_finished_job_that_has_a_result(tmp_path):
    code, out, _, rec = await run(["--xwresults"], tmp_path=tmp_path)
    assert code == 0
    assert rec.calls[0] == ("list_jobs", (["COMPLETED", "ERROR"], None))
    assert rec.calls[1:] == [("fetch_result", (UID, tmp_path, True))]
    assert out == f"{tmp_path / ('ResultsOf_' + UID)}\n"


async def test_results_go_on_after_a_failure_and_exit_with_its_code(tmp_path):
    class Failing(Recorder):
        async def fetch_result(self, uid, dest_dir, extract):
            if uid == UID2:
                raise NotFound(f"no job {uid}")
            return await super().fetch_result(uid, dest_dir, extract)

    inv = cli.parse_args(["--xwresult", UID2, UID, "--xwnoextract", "--xwnoerase"])
    rec, out, err = Failing(), io.StringIO(), io.StringIO()
    ctx = Context(inv=inv, client=rec, out=out, err=err, cwd=tmp_path, prog="xwtest")  # type: ignore[arg-type]
    code = await COMMANDS["results"].run(ctx)
    assert code == 4
    assert f"not found: no job {UID2}" in err.getvalue()
    assert out.getvalue() == f"{tmp_path / ('ResultsOf_' + UID + '.zip')}\n"


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
