"""Every client command and option through the CLI against one real deployment.

One server (``xwserver start``) and one worker (``xwworker console``), real processes over
real TLS, are shared by the whole module; each test makes its own objects and looks at their
effect on the server through the wire (``helpers.api``), not only at the exit code. The CLI
runs in this process through its entry point ``xwclient.cli.main`` (fast), and as its own
process (``python -m xwclient``) where the process matters: ``< FILE``, exit codes, scripts.

Listings are parsed back from json, xml, csv and html and compared field by field with what
the server answers for the same objects.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.api import ApiError
from helpers.deployment import (
    Deployment,
    python_program,
    running_deployment,
    send_windows_only_app,
    write_config,
)
from helpers.waiting import wait_until

from xwclient import cli, formats

#: real processes: seconds each
pytestmark = pytest.mark.slow

#: prints its standard input, then each file named by its arguments, as ``name=content``
SHOW = python_program(
    """
import sys

print("stdin=" + sys.stdin.read().strip())
for name in sys.argv[1:]:
    with open(name) as fh:
        print(name + "=" + fh.read().strip())
"""
)


#: prints its arguments, one per line, then its standard input
ECHO = python_program(
    """
import sys

for arg in sys.argv[1:]:
    print("arg=" + arg)
print("stdin=" + sys.stdin.read().strip())
"""
)


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with running_deployment(tmp_path_factory.mktemp("client")) as d:
        d.start_worker(workpool_size=2)
        d.send_app("show", SHOW)
        d.send_app("echo", ECHO)
        send_windows_only_app(d, "a binary for a platform no worker of these tests has")
        yield d


class Run:
    """The outcome of one command line."""

    def __init__(self, code: int, out: str, err: str) -> None:
        self.code, self.out, self.err = code, out, err

    def __repr__(self) -> str:
        return f"Run(code={self.code}, out={self.out[:2000]!r}, err={self.err[:2000]!r})"


def xw(
    dep: Deployment, *args: str, config: Path | None = None, cwd: Path | None = None, stdin: Any = None
) -> Run:
    """``xwclient ARGS --xwconfig CONFIG`` through ``cli.main`` in this process."""
    out, err = io.StringIO(), io.StringIO()
    argv = ["--xwconfig", str(config or dep.admin_conf), *args]
    code = cli.main(argv, stdin=stdin, out=out, err=err, cwd=cwd or dep.workdir)
    return Run(code, out.getvalue(), err.getvalue())


def ok(dep: Deployment, *args: str, **kw: Any) -> Run:
    run = xw(dep, *args, **kw)
    assert run.code == 0, f"{args} -> {run}\n{dep.describe()}"
    return run


def uid_of(uri: str) -> str:
    assert uri.startswith("xw://"), uri
    return uri.strip().rsplit("/", 1)[1]


def listing(dep: Deployment, kind: str, *args: str, **kw: Any) -> dict[str, list[dict[str, Any]]]:
    """The same listing in every parseable format, parsed back."""
    parsed = {}
    for fmt in ("json", "xml", "csv", "html"):
        parsed[fmt] = formats.parse(ok(dep, *args, "--xwformat", fmt, **kw).out, fmt)
    return parsed


def assert_same_rows(
    parsed: dict[str, list[dict[str, Any]]],
    kind: str,
    expected: list[dict[str, Any]],
    skip: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Each format holds the expected wire objects, field by field (json with their types)."""
    want = formats.project(expected, kind)
    for fmt, rows in parsed.items():
        assert len(rows) == len(want), (fmt, rows)
        for got, exp in zip(rows, want, strict=True):
            assert list(got) == list(formats.COLUMNS[kind]), fmt
            for column in formats.COLUMNS[kind]:
                if column in skip:
                    continue
                wanted = exp[column] if fmt == "json" else formats.cell(exp[column])
                assert got[column] == wanted, (fmt, column, got[column], wanted)


def wait_done(dep: Deployment, *uids: str) -> dict[str, dict[str, Any]]:
    return dep.wait_for_jobs(uids, timeout_s=60)


# -- data ----------------------------------------------------------------------------------------
def test_senddata_uploads_a_file_that_datas_lists_and_download_fetches(
    dep: Deployment, tmp_path: Path
) -> None:
    src = tmp_path / "input.bin"
    src.write_bytes(os.urandom(3000))
    uid = uid_of(ok(dep, "--xwsenddata", str(src)).out)
    on_server = dep.api.call("GET", f"/data/{uid}")
    assert (on_server["name"], on_server["size"], on_server["status"]) == ("input.bin", 3000, "AVAILABLE")

    assert_same_rows(listing(dep, "data", "--xwdatas", uid), "data", [on_server])
    every = listing(dep, "data", "--xwdatas")
    assert uid in {r["uid"] for r in every["json"]} and uid in {r["uid"] for r in every["csv"]}

    target = tmp_path / "down"
    target.mkdir()
    run = ok(dep, "--xwdownload", f"xw://127.0.0.1:{dep.port}/{uid}", cwd=target)
    assert Path(run.out.strip()) == target / "input.bin"
    assert (target / "input.bin").read_bytes() == src.read_bytes()
    os.utime(target / "input.bin", (1_000_000_000, 1_000_000_000))
    ok(dep, "--xwdownload", uid, cwd=target)
    assert (target / "input.bin").stat().st_mtime == 1_000_000_000  # the same content is kept
    ok(dep, "--xwdownload", uid, "--xwoverride", cwd=target)
    assert (target / "input.bin").stat().st_mtime > 1_000_000_000
    assert (target / "input.bin").read_bytes() == src.read_bytes()
    assert on_server["created_at"].endswith("Z")  # ISO 8601 UTC, as every format shows it
    assert every["json"][0]["created_at"] == every["xml"][0]["created_at"]


def test_senddata_of_a_file_uri_and_of_a_missing_file(dep: Deployment, tmp_path: Path) -> None:
    src = tmp_path / "named.txt"
    src.write_text("hello\n")
    uid = uid_of(ok(dep, "--xwsenddata", src.as_uri(), "--xwname", "other.txt").out)
    assert dep.api.call("GET", f"/data/{uid}")["name"] == "other.txt"
    run = xw(dep, "--xwsenddata", str(tmp_path / "missing.txt"))
    assert run.code == 2 and "no such file" in run.err


# -- applications --------------------------------------------------------------------------------------
def test_sendapp_adds_one_binary_per_platform_and_apps_lists_them(dep: Deployment, tmp_path: Path) -> None:
    for os_name, cpu in (("linux", "x86_64"), ("linux", "aarch64"), ("windows", "x86_64")):
        binary = tmp_path / f"multi-{os_name}-{cpu}"
        binary.write_text(f"#!/bin/sh\necho {os_name} {cpu}\n")
        ok(dep, "--xwsendapp", "multi", cpu, os_name, str(binary))
    app = dep.api.call("GET", "/apps/multi")
    assert sorted((b["os"], b["cpu"]) for b in app["binaries"]) == [
        ("linux", "aarch64"),
        ("linux", "x86_64"),
        ("windows", "x86_64"),
    ]
    assert_same_rows(listing(dep, "app", "--xwapps", app["uid"]), "app", [app])
    text = ok(dep, "--xwapps", "multi").out
    assert "linux/aarch64" in text and "windows/x86_64" in text


def test_sendapp_with_xwnetwork_marks_the_app_as_needing_the_network(dep: Deployment, tmp_path: Path) -> None:
    script = tmp_path / "fetcher.sh"
    script.write_text("#!/bin/sh\necho fetch\n")
    ok(dep, "--xwsendapp", "fetcher", "any", "any", str(script), "--xwnetwork")
    ok(dep, "--xwsendapp", "offline", "any", "any", str(script))
    assert dep.api.call("GET", "/apps/fetcher")["needs_network"] is True
    assert dep.api.call("GET", "/apps/offline")["needs_network"] is False


# -- jobs ----------------------------------------------------------------------------------------------
def test_sendwork_options_reach_the_server(dep: Deployment) -> None:
    host = dep.workers[0].host_uid
    session = uid_of(ok(dep, "--xwsendsession", "opts").out)
    group = uid_of(ok(dep, "--xwsendgroup", "opts").out)
    uri = ok(
        dep,
        "--xwsendwork", "show", "-n", "5", "--seed=3", "two words",
        "--xwlabel", "options", "--xwsession", session, "--xwgroup", group,
        "--xwexpectedhost", host, "--xwminmemory", "512M", "--xwmindisk", "2G", "--xwnostdin",
    ).out  # fmt: skip
    assert uri.count("\n") == 1
    job = dep.api.job(uid_of(uri))
    assert job["args"] == ["-n", "5", "--seed=3", "two words"]
    assert job["label"] == "options"
    assert (job["session_uid"], job["group_uid"], job["expected_host_uid"]) == (session, group, host)
    assert (job["min_memory_bytes"], job["min_disk_bytes"]) == (512 << 20, 2 << 30)
    assert job["stdin_uid"] is None
    run = xw(dep, "--xwsendwork", "show", "--xwminmemory", "lots")
    assert run.code == 2 and "512M" in run.err


def test_xwenv_folder_and_file_land_in_the_jobs_scratch_directory(dep: Deployment, tmp_path: Path) -> None:
    folder = tmp_path / "inputs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.txt").write_text("beta")
    extra = tmp_path / "extra.txt"
    extra.write_text("gamma")
    packed = tmp_path / "packed.zip"
    with zipfile.ZipFile(packed, "w") as zf:
        zf.writestr("z/inside.txt", "zeta")
    uid = uid_of(
        ok(dep, "--xwsendwork", "show", "a.txt", "sub/b.txt", "extra.txt", "z/inside.txt",
           "--xwenv", str(folder), "--xwenv", str(extra), "--xwenv", str(packed), "--xwnostdin").out
    )  # fmt: skip
    job = wait_done(dep, uid)[uid]
    assert job["status"] == "COMPLETED", job
    assert job["env_uid"]
    env = dep.api.call("GET", f"/data/{job['env_uid']}")
    assert env["name"] == "env.zip"
    out = (dep.results(uid) / "stdout.txt").read_text()
    assert out == "stdin=\na.txt=alpha\nsub/b.txt=beta\nextra.txt=gamma\nz/inside.txt=zeta\n"


def test_xwstdin_and_a_redirection_give_the_job_the_same_standard_input(
    dep: Deployment, tmp_path: Path
) -> None:
    given = tmp_path / "in.txt"
    given.write_text("the same input\n")
    by_option = uid_of(ok(dep, "--xwsendwork", "show", "--xwstdin", str(given)).out)
    by_redirection = dep.submit("show", stdin=given)  # python -m xwclient --xwsendwork show < in.txt
    with open(given, "rb") as fh:  # and an open file as the entry point's standard input
        by_stream = uid_of(ok(dep, "--xwsendwork", "show", stdin=fh).out)
    jobs = wait_done(dep, by_option, by_redirection, by_stream)
    assert all(j["status"] == "COMPLETED" for j in jobs.values()), jobs
    outs = {u: (dep.results(u) / "stdout.txt").read_text() for u in jobs}
    assert set(outs.values()) == {"stdin=the same input\n"}
    contents = {dep.api.call("GET", f"/data/{jobs[u]['stdin_uid']}")["sha256"] for u in jobs}
    assert len(contents) == 1


def test_sendwork_xwwait_prints_the_uri_then_the_final_status(dep: Deployment) -> None:
    run = ok(dep, "--xwsendwork", "show", "--xwwait", "--xwnostdin")
    uri, status = run.out.splitlines()
    assert status == "COMPLETED (exit code 0)"
    assert dep.api.job(uid_of(uri))["status"] == "COMPLETED"
    as_json = json.loads(ok(dep, "--xwwait", "--xwsendwork", "show", "--xwformat", "json", "--xwnostdin").out)
    assert as_json[0]["status"] == "COMPLETED" and dep.api.job(as_json[0]["uid"])["status"] == "COMPLETED"


def test_works_lists_and_filters_by_status_label_session_and_group(dep: Deployment, tmp_path: Path) -> None:
    session = uid_of(ok(dep, "--xwsendsession", "filters").out)
    group = uid_of(ok(dep, "--xwsendgroup", "filters").out)
    done = uid_of(
        ok(dep, "--xwsendwork", "show", "--xwlabel", "filters", "--xwsession", session, "--xwnostdin").out
    )
    pending = uid_of(ok(dep, "--xwsendwork", "winonly", "--xwlabel", "filters", "--xwgroup", group).out)
    wait_done(dep, done)

    def uids(*args: str) -> list[str]:
        return [r["uid"] for r in json.loads(ok(dep, "--xwworks", *args, "--xwformat", "json").out)]

    assert sorted(uids("--xwlabel", "filters")) == sorted([done, pending])
    assert uids("--xwlabel", "filters", "--xwcompleted") == [done]
    assert uids("--xwlabel", "filters", "--xwpending") == [pending]
    assert uids("--xwlabel", "filters", "--xwrunning") == []
    assert uids("--xwlabel", "filters", "--xwerror") == []
    assert uids("--xwlabel", "filters", "--xwstatus", "pending,completed") != []
    assert uids("--xwsession", session) == [done]
    assert uids("--xwgroup", group) == [pending]
    assert uids(done, pending, "--xwpending") == [pending]
    assert uids(done, pending, "--xwsession", session) == [done]
    assert uids(pending, done, "--xwlabel", "filters") == [pending, done]
    expected = [dep.api.job(done), dep.api.job(pending)]
    assert_same_rows(listing(dep, "job", "--xwworks", done, pending), "job", expected)
    run = xw(dep, "--xwworks", "--xwstatus", "sleeping")
    assert run.code == 2 and "unknown status" in run.err


def test_tasks_show_each_attempts_accounting(dep: Deployment) -> None:
    uid = uid_of(ok(dep, "--xwsendwork", "show", "--xwnostdin").out)
    wait_done(dep, uid)
    tasks = dep.api.tasks(uid)
    assert len(tasks) == 1 and tasks[0]["accounting"] is not None, tasks
    parsed = listing(dep, "task", "--xwtasks", uid)
    assert_same_rows(parsed, "task", tasks)
    row, acc = parsed["json"][0], tasks[0]["accounting"]
    assert (row["cpu_user_s"], row["cpu_system_s"], row["wall_s"], row["max_rss_bytes"]) == (
        acc["cpu_user_s"],
        acc["cpu_system_s"],
        acc["wall_s"],
        acc["max_rss_bytes"],
    )
    assert row["wall_s"] > 0
    # a job too short for the worker to see its peak memory has none rather than a wrong one
    assert row["max_rss_bytes"] is None or row["max_rss_bytes"] > 0
    assert "max_rss_bytes" in ok(dep, "--xwtasks", uid).out.splitlines()[0]


def test_wait_returns_once_the_jobs_are_finished(dep: Deployment) -> None:
    a = uid_of(ok(dep, "--xwsendwork", "show", "--xwnostdin").out)
    b = uid_of(ok(dep, "--xwsendwork", "show", "--xwnostdin").out)
    rows = json.loads(ok(dep, "--xwwait", a, b, "--xwformat", "json", "--xwtimeout", "60").out)
    assert [(r["uid"], r["status"]) for r in rows] == [(a, "COMPLETED"), (b, "COMPLETED")]
    assert dep.api.job(a)["status"] == dep.api.job(b)["status"] == "COMPLETED"


# -- results ---------------------------------------------------------------------------------------
def _finished_job(dep: Deployment, text: str) -> str:
    uid = uid_of(ok(dep, "--xwsendwork", "show", "--xwstdin", _input(dep, text)).out)
    wait_done(dep, uid)
    return uid


def _input(dep: Deployment, text: str) -> str:
    path = dep.workdir / f"in-{text.replace(' ', '_')}.txt"
    path.write_text(text)
    return str(path)


def test_results_erase_the_job_once_downloaded_and_verified_unless_noerase(
    dep: Deployment, tmp_path: Path
) -> None:
    kept, erased = _finished_job(dep, "kept"), _finished_job(dep, "erased")
    ok(dep, "--xwresults", kept, "--xwnoerase", cwd=tmp_path)
    assert dep.api.job(kept)["status"] == "COMPLETED"
    rows = json.loads(ok(dep, "--xwresults", erased, "--xwformat", "json", cwd=tmp_path).out)
    assert rows[0]["erased"] is True and rows[0]["job_uid"] == erased
    with pytest.raises(ApiError) as gone:
        dep.api.job(erased)
    assert gone.value.status == 404
    for uid, text in ((kept, "kept"), (erased, "erased")):
        assert (tmp_path / f"ResultsOf_{uid}" / "stdout.txt").read_text() == f"stdin={text}\n"
        assert (tmp_path / f"ResultsOf_{uid}.zip").is_file()


def test_results_noextract_rmzip_and_override(dep: Deployment, tmp_path: Path) -> None:
    uid = _finished_job(dep, "zip")
    zip_path, folder = tmp_path / f"ResultsOf_{uid}.zip", tmp_path / f"ResultsOf_{uid}"
    run = ok(dep, "--xwresults", uid, "--xwnoextract", "--xwnoerase", cwd=tmp_path)
    assert Path(run.out.strip()) == zip_path and zip_path.is_file() and not folder.exists()
    os.utime(zip_path, (1_000_000_000, 1_000_000_000))
    ok(dep, "--xwresults", uid, "--xwnoextract", "--xwnoerase", cwd=tmp_path)
    assert zip_path.stat().st_mtime == 1_000_000_000  # the same content is not downloaded again
    ok(dep, "--xwresults", uid, "--xwnoextract", "--xwnoerase", "--xwoverride", cwd=tmp_path)
    assert zip_path.stat().st_mtime > 1_000_000_000  # --xwoverride downloads it anyway
    ok(dep, "--xwresults", uid, "--xwrmzip", "--xwnoerase", cwd=tmp_path)
    assert not zip_path.exists() and (folder / "stdout.txt").read_text() == "stdin=zip\n"
    assert dep.api.job(uid)["status"] == "COMPLETED"


def test_results_without_uids_fetch_and_erase_every_finished_job_of_the_caller(
    dep: Deployment, tmp_path: Path
) -> None:
    config = _new_user(dep, "resultsuser", tmp_path)
    mine = [uid_of(ok(dep, "--xwsendwork", "show", "--xwnostdin", config=config).out) for _ in range(2)]
    others = _finished_job(dep, "not theirs")
    wait_done(dep, *mine)
    rows = json.loads(ok(dep, "--xwresults", "--xwformat", "json", config=config, cwd=tmp_path).out)
    assert sorted(r["job_uid"] for r in rows) == sorted(mine) and all(r["erased"] for r in rows)
    assert all((tmp_path / f"ResultsOf_{u}" / "stdout.txt").is_file() for u in mine)
    assert dep.api.jobs(owner=_user_uid(dep, "resultsuser")) == []
    assert dep.api.job(others)["status"] == "COMPLETED"


def _new_user(dep: Deployment, login: str, folder: Path) -> Path:
    config = ok(dep, "--xwsenduser", login, f"pw-{login}", "", "STANDARD").out
    path = folder / f"{login}.rc"
    path.write_text(config)
    return path


def _user_uid(dep: Deployment, login: str) -> str:
    return str(dep.api.call("GET", f"/users/{login}")["uid"])


# -- sessions and groups ---------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["session", "group"])
def test_sessions_and_groups_are_created_listed_and_removed_with_their_jobs(
    dep: Deployment, kind: str
) -> None:
    uid = uid_of(ok(dep, f"--xwsend{kind}", f"my {kind}").out)
    on_server = dep.api.call("GET", f"/{kind}s/{uid}")
    assert on_server["name"] == f"my {kind}"
    jobs = [uid_of(ok(dep, "--xwsendwork", "winonly", f"--xw{kind}", uid).out) for _ in range(3)]
    on_server = dep.api.call("GET", f"/{kind}s/{uid}")
    assert on_server["job_counts"].get("PENDING") == 3
    assert_same_rows(listing(dep, kind, f"--xw{kind}s", uid), kind, [on_server])
    every = listing(dep, kind, f"--xw{kind}s")
    assert uid in {r["uid"] for r in every["xml"]}
    assert "PENDING=3" in ok(dep, f"--xw{kind}s", uid).out

    rows = json.loads(ok(dep, "--xwrm", uid, "--xwformat", "json").out)
    assert rows == [{"uid": uid, "kind": kind}]
    for job in [uid, *jobs]:
        with pytest.raises(ApiError) as gone:
            dep.api.call("GET", f"/objects/{job}")
        assert gone.value.status == 404


# -- any object, hosts, server ----------------------------------------------------------------------------
def test_rm_and_chmod_change_the_server(dep: Deployment, tmp_path: Path) -> None:
    src = tmp_path / "d.txt"
    src.write_text("d")
    a, b = (uid_of(ok(dep, "--xwsenddata", str(src)).out) for _ in range(2))
    rows = json.loads(ok(dep, "--xwchmod", "0750", a, "--xwformat", "json").out)
    assert rows[0]["access_rights"] == "0750" == dep.api.call("GET", f"/data/{a}")["access_rights"]
    ok(dep, "--xwchmod", "o+r", a)
    assert dep.api.call("GET", f"/data/{a}")["access_rights"] == "0754"
    ok(dep, "--xwrm", a, f"xw://127.0.0.1:{dep.port}/{b}")
    for uid in (a, b):
        with pytest.raises(ApiError) as gone:
            dep.api.call("GET", f"/data/{uid}")
        assert gone.value.status == 404


def test_workers_show_each_hosts_activation_and_gpus(dep: Deployment) -> None:
    hosts = dep.api.hosts()
    mine = next(h for h in hosts if h["uid"] == dep.workers[0].host_uid)
    assert mine["activation"]["state"] == "active"
    parsed = listing(dep, "host", "--xwworkers")
    volatile = {"last_seen_at", "disk_free_bytes", "memory_bytes", "activation_since", "activation_detail"}
    assert_same_rows(parsed, "host", dep.api.hosts(), skip=volatile)
    row = next(r for r in parsed["csv"] if r["uid"] == mine["uid"])
    assert row["activation_state"] == "active"
    assert json.loads(row["gpus"]) == mine["gpus"]
    assert "activation_state" in ok(dep, "--xwworkers").out


def test_ping_and_version_talk_to_the_server(dep: Deployment) -> None:
    ping = json.loads(ok(dep, "--xwping", "--xwformat", "json").out)[0]
    assert ping["rtt_ms"] > 0 and ping["server"] == dep.url
    version = json.loads(ok(dep, "--xwversion", "--xwformat", "json").out)[0]
    assert version["server_version"] == dep.api.version()["version"]
    assert "round trip" in ok(dep, "--xwping").out


# -- common options --------------------------------------------------------------------------------
def test_clean_empties_the_clients_cache_of_uploads(dep: Deployment, tmp_path: Path) -> None:
    config = write_config(tmp_path / "xwrc", dep.admin_conf, {"cache.dir": tmp_path / "cache"})
    given = tmp_path / "in.txt"
    given.write_text("cached")
    first = uid_of(ok(dep, "--xwsendwork", "winonly", "--xwstdin", str(given), config=config).out)
    second = uid_of(ok(dep, "--xwsendwork", "winonly", "--xwstdin", str(given), config=config).out)
    stdin_of = {u: dep.api.job(u)["stdin_uid"] for u in (first, second)}
    assert stdin_of[first] == stdin_of[second]  # uploaded once, reused from the cache
    assert (tmp_path / "cache" / "uploads.json").is_file()
    assert "emptied" in ok(dep, "--xwclean", config=config).out
    assert not (tmp_path / "cache").exists()
    third = uid_of(ok(dep, "--xwsendwork", "winonly", "--xwstdin", str(given), config=config).out)
    assert dep.api.job(third)["stdin_uid"] != stdin_of[first]  # sent again after --xwclean


def test_progress_bars_only_on_a_terminal(dep: Deployment, tmp_path: Path) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 << 20))
    piped = xw(dep, "--xwsenddata", str(big))
    assert piped.code == 0 and piped.err == "" and "\r" not in piped.out
    leader, follower = os.openpty()
    try:
        with open(follower, "w", closefd=False) as tty:
            code = cli.main(
                ["--xwsenddata", str(big), "--xwconfig", str(dep.admin_conf)], stdin=None, out=tty, err=tty
            )
        assert code == 0
        drawn = os.read(leader, 65536).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert "uploading big.bin [" in drawn and "100%" in drawn


def test_exit_codes_and_messages(dep: Deployment, tmp_path: Path) -> None:
    usage = xw(dep, "--xwsendwork")
    assert usage.code == 2 and "usage" in usage.err
    missing = xw(dep, "--xwworks", "5ac06852-c970-4618-b635-afd5c460fe81")
    assert missing.code == 4 and "not found" in missing.err
    wrong = write_config(tmp_path / "wrong.rc", dep.admin_conf, {"password": "not-it"})
    auth = xw(dep, "--xwworks", config=wrong)
    assert auth.code == 3 and "check login and password" in auth.err
    closed = write_config(
        tmp_path / "closed.rc",
        dep.admin_conf,
        {"dispatcher.servers": "https://127.0.0.1:9", "retry_for_s": 0},
    )
    unreachable = xw(dep, "--xwping", config=closed)
    assert unreachable.code == 5 and unreachable.err
    proc = subprocess.run(
        [sys.executable, "-m", "xwclient", "--xwrm", "nosuchlogin"],
        capture_output=True, text=True, env={**os.environ, "XWCONFIG": str(dep.admin_conf)}, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 4 and "no user or user group" in proc.stderr


# -- macros -------------------------------------------------------------------------------------------
def test_a_macro_with_comments_blank_lines_quotes_and_redirections(dep: Deployment, tmp_path: Path) -> None:
    (tmp_path / "n.txt").write_text("from a file\n")
    macro = tmp_path / "jobs.macro"
    macro.write_text(
        "# a macro file\n"
        "\n"
        "--xwsendwork echo 'one arg' \"two words\" --xwlabel macro   # a trailing comment\n"
        "   \n"
        "xwsendwork echo --xwlabel macro < n.txt\n"
        "--xwsendwork echo 'it''s' a\\ b --xwlabel macro --xwstdin n.txt\n"
        "--xwworks --xwlabel nothing-has-this-label\n"
        "--xwsendwork echo --xwlabel macro -- --xwlike '#not a comment'\n"
    )
    run = ok(dep, "--xwmacro", str(macro), cwd=tmp_path)
    uris = [line for line in run.out.splitlines() if line.startswith("xw://")]
    assert len(uris) == 4
    jobs = [dep.api.job(uid_of(u)) for u in uris]
    expected_args = [["one arg", "two words"], [], ["its", "a b"], ["--xwlike", "#not a comment"]]
    assert [j["args"] for j in jobs] == expected_args
    assert {j["label"] for j in jobs} == {"macro"}
    finished = wait_done(dep, *(j["uid"] for j in jobs))
    assert all(finished[j["uid"]]["status"] == "COMPLETED" for j in jobs), finished
    outs = [(dep.results(j["uid"]) / "stdout.txt").read_text() for j in jobs]
    stdins = ["", "from a file", "from a file", ""]
    for out, args, stdin in zip(outs, expected_args, stdins, strict=True):
        assert out == "".join(f"arg={a}\n" for a in args) + f"stdin={stdin}\n"


def test_a_macro_error_names_the_line_and_what_took_effect(dep: Deployment, tmp_path: Path) -> None:
    bad = tmp_path / "bad.macro"
    bad.write_text("--xwsendwork show --xwlabel never\n\n--xwsendwork show --xwbogus\n")
    run = xw(dep, "--xwmacro", str(bad), cwd=tmp_path)
    assert run.code == 2 and f"{bad}:3:" in run.err and "nothing was run" in run.err
    assert dep.api.jobs(label="never") == []

    half = tmp_path / "half.macro"
    half.write_text(
        "--xwsendwork show --xwlabel half --xwnostdin\n"
        "# the next line fails: no such job\n"
        "--xwworks 5ac06852-c970-4618-b635-afd5c460fe81\n"
        "--xwsendwork show --xwlabel half-after\n"
    )
    run = xw(dep, "--xwmacro", str(half), cwd=tmp_path)
    assert run.code == 4
    assert f"{half}:3:" in run.err and "the lines before it took effect" in run.err
    assert "nothing from line 3 on was run" in run.err
    assert len(dep.api.jobs(label="half")) == 1 and dep.api.jobs(label="half-after") == []


#: the server writes its access log in batches, at least this often
ACCESS_LOG_FLUSH_S = 1.5


def _requests(dep: Deployment, request_line: str) -> int:
    """How many requests the server's access log shows with this ``METHOD /path``."""
    try:
        text = (dep.log_dir / "access.log").read_text(encoding="utf-8")
    except FileNotFoundError:
        return 0
    return text.count(f'"{request_line} HTTP/')


def test_a_macro_of_ten_thousand_jobs_is_submitted_in_a_few_bulk_requests(
    dep: Deployment, tmp_path: Path
) -> None:
    """How fast it goes is bench/macro.py's business; this checks how it is done."""
    session = uid_of(ok(dep, "--xwsendsession", "bulk").out)
    macro = tmp_path / "bulk.macro"
    macro.write_text(
        "".join(f"--xwsendwork winonly {i} --xwlabel bulk --xwsession {session}\n" for i in range(10_000))
    )
    # what earlier tests sent reaches the log within a flush interval (1 s)
    time.sleep(ACCESS_LOG_FLUSH_S)
    bulk_before = _requests(dep, "POST /api/v1/jobs/bulk")
    single_before = _requests(dep, "POST /api/v1/jobs")
    run = ok(dep, "--xwmacro", str(macro), cwd=tmp_path)
    uris = run.out.splitlines()
    assert len(uris) == 10_000
    jobs = {j["uid"]: j for page in (0, 5000) for j in dep.api.jobs(session=session, offset=page)}
    assert [jobs[uid_of(u)]["args"] for u in uris] == [[str(i)] for i in range(10_000)]
    # the access log is written in batches: wait for the macro's requests to show
    wait_until(
        lambda: _requests(dep, "POST /api/v1/jobs/bulk") - bulk_before >= 5,
        timeout_s=15,
        what="the bulk requests in the access log",
    )
    assert _requests(dep, "POST /api/v1/jobs/bulk") - bulk_before == 5  # 2,000 jobs per request
    assert _requests(dep, "POST /api/v1/jobs") == single_before  # never one request per job
    ok(dep, "--xwrm", session)
    assert dep.api.jobs(session=session) == []


def _process(
    dep: Deployment, program: list[str], *args: str, stdin: Path | None = None
) -> subprocess.CompletedProcess[str]:
    with open(stdin or os.devnull, "rb") as given:
        return subprocess.run(
            [*program, *args],
            stdin=given,
            capture_output=True,
            text=True,
            env={**os.environ, "XWCONFIG": str(dep.admin_conf)},
            cwd=dep.workdir,
            timeout=60,
        )


def test_the_installed_script_is_the_command(dep: Deployment, tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "xwsendwork"
    assert script.is_file(), "pip install -e . installs one script per command"
    given = tmp_path / "in.txt"
    given.write_text("through the script")
    proc = _process(dep, [str(script)], "echo", "a b", "--xwlabel", "script", stdin=given)
    assert proc.returncode == 0, proc.stderr
    uid = uid_of(proc.stdout)
    job = dep.api.job(uid)
    assert (job["args"], job["label"]) == (["a b"], "script")
    wait_done(dep, uid)
    assert (dep.results(uid) / "stdout.txt").read_text() == "arg=a b\nstdin=through the script\n"


def test_verbose_says_what_the_client_does_and_noverbose_only_errors(dep: Deployment, tmp_path: Path) -> None:
    given = tmp_path / "in.txt"
    given.write_text("logged")
    client = [sys.executable, "-m", "xwclient"]
    verbose = _process(dep, client, "--xwsendwork", "winonly", "--xwstdin", str(given), "--xwverbose")
    assert verbose.returncode == 0 and "xwclient.sdk: INFO: uploaded" in verbose.stderr
    assert "xwclient.sdk: INFO: submitted job" in verbose.stderr
    quiet = _process(dep, client, "--xwsendwork", "winonly", "--xwstdin", str(given))
    # no log lines; only the warning that no connected worker can run a windows-only job
    assert quiet.returncode == 0 and quiet.stderr.splitlines() == [
        f"xwclient: warning: job {quiet.stdout.strip().rsplit('/', 1)[1]} cannot run now: "
        "no connected worker's platform has a binary of its application"
    ], quiet.stderr
    cache = dep.home / "conf" / "xwclient.cache"
    (cache / "uploads.json").write_text("{damaged")
    warned = _process(dep, client, "--xwsendwork", "winonly", "--xwstdin", str(given))
    assert warned.returncode == 0 and "unreadable" in warned.stderr
    (cache / "uploads.json").write_text("{damaged")
    silent = _process(dep, client, "--xwsendwork", "winonly", "--xwstdin", str(given), "--xwnoverbose")
    assert silent.returncode == 0 and silent.stderr == ""


def test_users_and_user_groups_listings_match_the_server(dep: Deployment, tmp_path: Path) -> None:
    ok(dep, "--xwsendusergroup", "listed")
    _new_user(dep, "listeduser", tmp_path)
    users = dep.api.call("GET", "/users")["users"]
    assert_same_rows(listing(dep, "user", "--xwusers"), "user", users)
    groups = dep.api.call("GET", "/usergroups")["usergroups"]
    assert_same_rows(listing(dep, "usergroup", "--xwusergroups"), "usergroup", groups)
    assert "listed" in {g["label"] for g in groups} and "listeduser" in {u["login"] for u in users}
