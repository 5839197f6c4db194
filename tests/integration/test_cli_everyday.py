"""The client as XWHEP users use it every day, against one real server (``xwserver start``,
real TLS): xwrm in bulk and by selection, an app's rights at insertion, listings that fit
a terminal, a new user's config written private.

The CLI runs in this process through ``xwclient.cli.main``; the effects are read back from
the server over the wire (``helpers.api``) and from its access log.
"""

from __future__ import annotations

import io
import json
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.api import ApiError
from helpers.deployment import Deployment, running_deployment, send_windows_only_app
from helpers.waiting import wait_until

from xwclient import cli, formats

#: a real server process: seconds
pytestmark = pytest.mark.slow

#: the server writes its access log in batches, at least this often
ACCESS_LOG_FLUSH_S = 1.5


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with running_deployment(tmp_path_factory.mktemp("everyday")) as d:
        send_windows_only_app(d, "a binary for a platform no worker has: its jobs stay PENDING")
        yield d


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Run(code={self.code}, out={self.out[:1500]!r}, err={self.err[:1500]!r})"


def xw(dep: Deployment, *args: str, config: Path | None = None) -> Run:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--xwconfig", str(config or dep.admin_conf), *args]
    code = cli.main(argv, stdin=None, out=out, err=err, cwd=dep.workdir)
    return Run(code, out.getvalue(), err.getvalue())


def ok(dep: Deployment, *args: str, **kw: Any) -> Run:
    run = xw(dep, *args, **kw)
    assert run.code == 0, f"{args} -> {run}"
    return run


def uid_of(uri: str) -> str:
    assert uri.startswith("xw://"), uri
    return uri.strip().rsplit("/", 1)[1]


def submit(dep: Deployment, n: int, *options: str) -> list[str]:
    macro = dep.workdir / "jobs.macro"
    macro.write_text("".join(f"--xwsendwork winonly {i} {' '.join(options)}\n" for i in range(n)))
    return [uid_of(u) for u in ok(dep, "--xwmacro", str(macro)).out.split()]


def requests(dep: Deployment, request_line: str) -> int:
    try:
        text = (dep.log_dir / "access.log").read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    return text.count(f'"{request_line}')


def new_user(dep: Deployment, login: str, level: str) -> Path:
    """A user made with ``xwsenduser … --xwout FILE``: its config, mode 0600."""
    rc = dep.workdir / f"{login}.xwrc"
    run = ok(dep, "--xwsenduser", login, f"pw-{login}-123456", f"{login}@x.org", level, "--xwout", str(rc))
    assert run.out == ""  # the config (with the password) went to the file only
    assert stat.S_IMODE(rc.stat().st_mode) == 0o600
    assert f"login={login}" in rc.read_text()
    return rc


# -- xwrm --------------------------------------------------------------------------------------------
def test_xwrm_by_selection_removes_the_matching_jobs_only(dep: Deployment) -> None:
    a = submit(dep, 3, "--xwlabel", "sel-a")
    b = submit(dep, 2, "--xwlabel", "sel-b")
    session = uid_of(ok(dep, "--xwsendsession", "sel-session").out)
    s = submit(dep, 2, "--xwsession", session)

    rows = json.loads(ok(dep, "--xwrm", "--xwlabel", "sel-a", "--xwformat", "json").out)
    assert sorted(r["uid"] for r in rows) == sorted(a) and {r["kind"] for r in rows} == {"job"}
    assert dep.api.jobs(label="sel-a") == [] and len(dep.api.jobs(label="sel-b")) == 2

    ok(dep, "--xwrm", "--xwsession", session)
    assert dep.api.jobs(session=session) == []
    assert dep.api.call("GET", f"/sessions/{session}")["uid"] == session  # the session stays

    # status and label together: nothing RUNNING has that label, so nothing goes
    none = ok(dep, "--xwrm", "--xwlabel", "sel-b", "--xwrunning")
    assert "nothing removed" in none.err and len(dep.api.jobs(label="sel-b")) == 2
    ok(dep, "--xwrm", "--xwlabel", "sel-b", "--xwstatus", "PENDING")
    assert dep.api.jobs(label="sel-b") == []
    for uid in [*b, *s]:
        with pytest.raises(ApiError):
            dep.api.call("GET", f"/jobs/{uid}")

    both = xw(dep, "--xwrm", a[0], "--xwlabel", "x")
    assert both.code == 2 and "not both" in both.err


def test_xwrm_of_named_jobs_is_one_bulk_request_not_two_per_job(dep: Deployment, tmp_path: Path) -> None:
    jobs = submit(dep, 300, "--xwlabel", "named")
    data = tmp_path / "d.txt"
    data.write_text("data")
    data_uid = uid_of(ok(dep, "--xwsenddata", str(data)).out)
    time.sleep(ACCESS_LOG_FLUSH_S)
    bulk, single, lookups = (
        requests(dep, "POST /api/v1/jobs/delete"),
        requests(dep, "DELETE /api/v1/jobs/"),
        requests(dep, "GET /api/v1/objects/"),
    )
    started = time.monotonic()
    run = ok(dep, "--xwrm", *jobs, data_uid, "--xwformat", "json")
    took_s = time.monotonic() - started
    rows = json.loads(run.out)
    assert {r["uid"]: r["kind"] for r in rows} == {**dict.fromkeys(jobs, "job"), data_uid: "data"}
    assert dep.api.jobs(label="named") == []
    wait_until(
        lambda: requests(dep, "POST /api/v1/jobs/delete") > bulk,
        timeout_s=15,
        what="the bulk removal in the access log",
    )
    assert requests(dep, "POST /api/v1/jobs/delete") == bulk + 1
    assert requests(dep, "DELETE /api/v1/jobs/") == single
    assert requests(dep, "GET /api/v1/objects/") == lookups + 1  # the data only
    assert took_s < 30, took_s  # 600 requests took 3 s to 8 s here; one takes well under one


def test_xwrm_of_a_job_that_is_not_yours_says_so(dep: Deployment) -> None:
    (job,) = submit(dep, 1, "--xwlabel", "admins")
    bob = new_user(dep, "bob", "STANDARD")
    run = xw(dep, "--xwrm", job, config=bob)
    assert run.code == 3, run
    assert f"{job}: not yours to remove" in run.err
    assert dep.api.call("GET", f"/jobs/{job}")["uid"] == job


# -- an app's rights -------------------------------------------------------------------------------------
def test_sendapp_sets_a_group_apps_rights_within_the_users_level(dep: Deployment) -> None:
    script = dep.workdir / "group.sh"
    script.write_text("#!/bin/sh\necho group\n")
    carol = new_user(dep, "carol", "ADVANCED")
    uri = ok(dep, "--xwsendapp", "group-app", "any", "any", str(script), "--xwrights", "0x750", config=carol)
    app = dep.api.call("GET", f"/apps/{uid_of(uri.out)}")
    assert app["access_rights"] == "0750"

    dave = new_user(dep, "dave", "STANDARD")
    refused = xw(dep, "--xwsendapp", "dave-app", "any", "any", str(script), "--xwrights", "0755", config=dave)
    assert refused.code == 3 and "needs ADVANCED rights" in refused.err
    assert "dave-app" not in {a["name"] for a in dep.api.call("GET", "/apps")["apps"]}
    private = ok(dep, "--xwsendapp", "dave-app", "any", "any", str(script), "--xwrights", "0700", config=dave)
    assert dep.api.call("GET", f"/apps/{uid_of(private.out)}")["access_rights"] == "0700"


# -- listings ----------------------------------------------------------------------------------------------
def test_xwworks_fits_a_terminal_and_fields_choose_the_columns(dep: Deployment) -> None:
    long_label = ("a label much longer than a terminal column would want " * 2).strip()
    (job,) = submit(dep, 1, "--xwlabel", f'"{long_label}"')
    text = ok(dep, "--xwworks", job).out.splitlines()
    assert text[0].split() == ["uid", "status", "exit_code", "app_name", "label", "message"]
    assert all(len(line) <= formats.TEXT_WIDTH for line in text), text
    assert job in text[1] and "…" in text[1]

    every = ok(dep, "--xwworks", job, "--xwlong").out.splitlines()
    assert every[0].split() == list(formats.COLUMNS["job"]) and long_label in every[1]

    for fmt in ("csv", "json", "xml", "html"):
        rows = formats.parse(
            ok(dep, "--xwworks", job, "--xwfields", "uid,status,label", "--xwformat", fmt).out, fmt
        )
        assert rows == [{"uid": job, "status": "PENDING", "label": long_label}], fmt
    chosen = ok(dep, "--xwworks", job, "--xwfields", "status,uid").out.splitlines()
    assert chosen[0].split() == ["status", "uid"] and chosen[1].split() == ["PENDING", job]
    bad = xw(dep, "--xwworks", "--xwfields", "uid,nope")
    assert bad.code == 2 and "job has no field 'nope'" in bad.err and "app_name" in bad.err
