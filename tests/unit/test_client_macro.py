"""Macro files: how lines are split and checked, and how they run against the in-process server.

Consecutive xwsendwork lines must go to the server in bulk requests, never one per job; the
requests the client sends are counted on its own transport (a spy that calls the real one).
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any

import pytest

from xwclient import cli
from xwclient.macro import MacroError, load_macro, split_line
from xwclient.sdk import BULK_CHUNK


@pytest.fixture
def backend() -> str:
    """The client's behaviour does not depend on the database: SQLite only."""
    return "sqlite"


def test_lines_split_like_a_shell_with_comments_and_redirections():
    assert split_line("--xwsendwork app 'a b' \"c d\" e\\ f  # comment") == (
        ["--xwsendwork", "app", "a b", "c d", "e f"],
        None,
    )
    assert split_line("xwsendwork app -n 5 < in.txt") == (["--xwsendwork", "app", "-n", "5"], "in.txt")
    assert split_line("xwclient --xwworks <in.txt") == (["--xwworks"], "in.txt")
    assert split_line("--xwsendwork app -- '<' '#x'") == (["--xwsendwork", "app", "--", "<", "#x"], None)
    assert split_line("   # only a comment") == ([], None)
    assert split_line("") == ([], None)


def _load(tmp_path: Path, text: str) -> list[Any]:
    path = tmp_path / "m.macro"
    path.write_text(text)
    return load_macro(path, cli.parse_args, cli.check_invocation)


def test_a_macro_is_checked_whole_and_an_error_names_its_file_and_line(tmp_path):
    lines = _load(tmp_path, "# c\n\n--xwsendwork app 1\nxwworks --xwcompleted\n")
    assert [(line.number, line.cmd.name) for line in lines] == [(3, "sendwork"), (4, "works")]
    assert lines[0].batchable and not lines[1].batchable
    for text, line, what in (
        ("--xwworks\n--xwsendwork app 'unclosed\n", 2, "No closing quotation"),
        ("--xwworks\n\n--xwbogus\n", 3, "unknown option --xwbogus"),
        ("--xwsendwork app --xwconfig other.rc\n", 1, "--xwconfig belongs on the client's command line"),
        ("--xwworks < in.txt\n", 1, "reads none"),
        ("--xwsendwork app < a < b\n", 1, "'<' given twice"),
        ("--xwworks\n--xwworks --xwformat yaml\n", 2, "unknown format 'yaml'"),
    ):
        with pytest.raises(MacroError) as error:
            _load(tmp_path, text)
        assert f"m.macro:{line}: " in error.value.message and what in error.value.message
        assert "nothing was run" in error.value.message


def test_a_macro_file_that_cannot_be_read_is_a_usage_error(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--xwmacro", str(tmp_path / "missing.macro")], out=out, err=err, stdin=None)
    assert code == 2 and "cannot read macro file" in err.getvalue()
    code = cli.main(["--xwmacro", "m", "--xwworks"], out=out, err=err, stdin=None)
    assert code == 2 and "belongs on one of its lines" in err.getvalue()


async def test_sendwork_lines_are_submitted_in_bulk_requests_in_order(xw, tmp_path, monkeypatch):
    await xw.insert_app(xw.admin, "app")
    n = BULK_CHUNK * 2 + 17
    (tmp_path / "in.txt").write_text("shared input")
    macro = tmp_path / "bulk.macro"
    macro.write_text(
        "# many jobs, one input file\n"
        + "".join(f"--xwsendwork app {i} 'x {i}' --xwlabel bulk < in.txt\n" for i in range(n))
    )
    config = tmp_path / "xwrc"
    config.write_text(
        f"dispatcher.servers={xw.url}\nlogin=admin\npassword={xw.admin_password}\nca.file={xw.ca_file}\n"
    )
    calls: list[tuple[str, str]] = []
    from xwcommon.transport import Transport

    real_request, real_upload = Transport.request, Transport.upload

    async def request(self: Transport, method: str, path: str, **kw: Any) -> Any:
        calls.append((method, path))
        return await real_request(self, method, path, **kw)

    async def upload(self: Transport, path: str, source: Any, **kw: Any) -> Any:
        calls.append(("UPLOAD", path))
        return await real_upload(self, path, source, **kw)

    monkeypatch.setattr(Transport, "request", request)
    monkeypatch.setattr(Transport, "upload", upload)
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        cli.main, ["--xwconfig", str(config), "--xwmacro", "bulk.macro"], out=out, err=err, cwd=tmp_path
    )
    assert code == 0, err.getvalue()
    uris = out.getvalue().splitlines()
    assert len(uris) == n
    assert calls.count(("POST", "/jobs/bulk")) == 3 and ("POST", "/jobs") not in calls
    assert calls.count(("UPLOAD", "/data")) == 1  # the shared input is sent once
    jobs = []
    for offset in range(0, n, 1000):
        body = await xw.ok("GET", "/jobs", token=xw.admin, params={"label": "bulk", "offset": offset})
        jobs.extend(body["jobs"])
    by_uid = {j["uid"]: j for j in jobs}
    assert [by_uid[u.rsplit("/", 1)[1]]["args"] for u in uris] == [[str(i), f"x {i}"] for i in range(n)]
    assert len({j["stdin_uid"] for j in jobs}) == 1


async def test_an_unknown_application_is_named_by_its_line_before_anything_runs(xw, tmp_path):
    await xw.insert_app(xw.admin, "app")
    macro = tmp_path / "m.macro"
    macro.write_text(
        "--xwsendwork app --xwlabel first\n"
        "--xwsessions\n"
        "\n"
        "# a comment\n"
        "--xwsendwork nosuchapp --xwlabel fifth\n"
        "--xwsendwork app --xwlabel sixth\n"
    )
    config = tmp_path / "xwrc"
    config.write_text(
        f"dispatcher.servers={xw.url}\nlogin=admin\npassword={xw.admin_password}\nca.file={xw.ca_file}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        cli.main, ["--xwconfig", str(config), "--xwmacro", str(macro)], out=out, err=err, cwd=tmp_path
    )
    assert code == 2 and out.getvalue() == ""
    assert f"{macro}:5: no application 'nosuchapp' visible to you" in err.getvalue()
    assert "nothing was run" in err.getvalue()
    listed = await xw.ok("GET", "/jobs", token=xw.admin)
    assert listed["jobs"] == []


async def test_a_job_refused_in_a_bulk_request_is_named_by_its_own_line(xw, tmp_path):
    await xw.insert_app(xw.admin, "app")
    macro = tmp_path / "m.macro"
    macro.write_text(
        "--xwsendwork app --xwlabel first\n"
        "# a comment\n"
        "--xwsendwork app --xwlabel second\n"
        "--xwsendwork app --xwlabel fourth --xwsession 0f0e0d0c-0b0a-4908-8706-050403020100\n"
        "--xwsendwork app --xwlabel fifth\n"
    )
    config = tmp_path / "xwrc"
    config.write_text(
        f"dispatcher.servers={xw.url}\nlogin=admin\npassword={xw.admin_password}\nca.file={xw.ca_file}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        cli.main, ["--xwconfig", str(config), "--xwmacro", str(macro)], out=out, err=err, cwd=tmp_path
    )
    # the four lines are one bulk request, all or nothing: none of them took effect
    assert code == 4 and out.getvalue() == ""
    assert f"{macro}:4: " in err.getvalue() and "job #" not in err.getvalue()
    assert "no line of the macro took effect" in err.getvalue()
    assert "lines 1-5 are submitted together" in err.getvalue()
    listed = await xw.ok("GET", "/jobs", token=xw.admin)
    assert listed["jobs"] == []


async def test_each_line_gets_its_own_input_and_environment(xw, tmp_path):
    await xw.insert_app(xw.admin, "app")
    lines = []
    for i in range(12):
        (tmp_path / f"in{i}.txt").write_text(f"input {i}")
        (tmp_path / f"env{i}").mkdir()
        (tmp_path / f"env{i}" / "n.txt").write_text(str(i % 3))  # three distinct environments
        lines.append(f"xwsendwork app {i} < in{i}.txt --xwenv env{i}\n")
    (tmp_path / "m.macro").write_text("".join(lines))
    config = tmp_path / "xwrc"
    config.write_text(
        f"dispatcher.servers={xw.url}\nlogin=admin\npassword={xw.admin_password}\nca.file={xw.ca_file}\n"
    )
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        cli.main, ["--xwconfig", str(config), "--xwmacro", "m.macro"], out=out, err=err, cwd=tmp_path
    )
    assert code == 0, err.getvalue()
    jobs = [await xw.job(uri.rsplit("/", 1)[1]) for uri in out.getvalue().splitlines()]
    assert [j["args"] for j in jobs] == [[str(i)] for i in range(12)]
    for i, job in enumerate(jobs):
        got = await xw.call("GET", f"/data/{job['stdin_uid']}/content", token=xw.admin)
        assert got.body == f"input {i}".encode()
    envs = [j["env_uid"] for j in jobs]
    assert len(set(envs)) == 3 and envs[0] == envs[3] == envs[6] and envs[1] != envs[0]
