"""Users, groups, access rights and hosts through the real CLI against a real server.

The admin is the SUPER of ``xwserver init`` (its ``conf/xwrc``); other users get the config
``xwsenduser`` prints, as an administrator would hand it over.

The tests that run no worker share one server (``shared``), each with users, groups and
apps of its own names; those with a worker get one of their own.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.deployment import FAST_LEASES, Deployment, MakeDeployment, python_program, running_deployment
from helpers.waiting import wait_until

#: exit codes of xwclient (xwclient/exitcodes.py)
ERROR, AUTH, NOT_FOUND = 1, 3, 4


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    """One server for the tests without a worker: each uses names of its own."""
    with running_deployment(tmp_path_factory.mktemp("cli-users")) as d:
        yield d


def add_user(dep: Deployment, login: str, rights: str = "STANDARD", *group: str) -> Path:
    """``xwsenduser`` as the admin; the config it prints, saved as the new user's."""
    done = dep.client("--xwsenduser", login, f"pw-of-{login}", f"{login}@example.org", rights, *group)
    conf = dep.root / f"{login}.rc"
    conf.write_text(done.stdout, encoding="utf-8")
    conf.chmod(0o600)
    return conf


def as_json(dep: Deployment, *args: str, config: Path | None = None) -> Any:
    return json.loads(dep.client(*args, "--xwformat", "json", config=config).stdout)


def test_senduser_prints_a_config_with_which_the_new_user_works(shared: Deployment) -> None:
    dep = shared

    conf = add_user(dep, "alice", "STANDARD_USER")

    text = conf.read_text()
    assert "login=alice\n" in text and "password=pw-of-alice\n" in text, text
    assert f"dispatcher.servers={dep.url}\n" in text, text
    assert dep.client("--xwworks", config=conf).returncode == 0
    me = as_json(dep, "--xwusers", config=conf)
    assert [(u["login"], u["rights"], u["email"]) for u in me] == [("alice", "STANDARD", "alice@example.org")]
    everyone = {u["login"]: u for u in as_json(dep, "--xwusers")}
    assert {"admin", "alice"} <= set(everyone)
    assert everyone["alice"]["uid"] == me[0]["uid"]


def test_senduser_in_json_prints_the_user_not_a_config(shared: Deployment) -> None:
    dep = shared
    rows = as_json(dep, "--xwsenduser", "bob", "pw-of-bob", "bob@example.org", "ADVANCED")
    assert [(r["login"], r["rights"]) for r in rows] == [("bob", "ADVANCED")]
    assert "pw-of-bob" not in json.dumps(rows)


def test_a_standard_user_may_neither_insert_users_nor_see_others(shared: Deployment) -> None:
    dep = shared
    conf = add_user(dep, "amy")

    done = dep.client("--xwsenduser", "mallory", "pw", "m@example.org", "SUPER", config=conf, check=False)

    assert done.returncode == AUTH, done
    assert "permission refused" in done.stderr and "SUPER" in done.stderr, done.stderr
    assert done.stdout == ""
    assert "mallory" not in {u["login"] for u in as_json(dep, "--xwusers")}
    assert [u["login"] for u in as_json(dep, "--xwusers", config=conf)] == ["amy"]
    seen = dep.client("--xwusers", "admin", config=conf, check=False)
    assert seen.returncode == NOT_FOUND, seen


def test_works_lists_ones_own_jobs_not_the_public_jobs_of_others(shared: Deployment) -> None:
    dep = shared
    dep.send_app("hello", python_program("print('hello')\n"))  # public: the admin is SUPER
    wendy, walt = add_user(dep, "wendy"), add_user(dep, "walt")
    job = dep.client("--xwsendwork", "hello", config=wendy).stdout.strip().rsplit("/", 1)[1]

    assert [j["uid"] for j in as_json(dep, "--xwworks", config=wendy)] == [job]
    assert as_json(dep, "--xwworks", config=walt) == []
    assert as_json(dep, "--xwworks", job, config=walt)[0]["uid"] == job  # readable when asked for
    assert as_json(dep, "--xwworks") == []  # the admin's own: none


def test_user_groups_are_made_listed_joined_and_removed(shared: Deployment) -> None:
    dep = shared
    uri = dep.client("--xwsendusergroup", "physics").stdout.strip()
    assert uri.startswith("xw://"), uri
    group_uid = uri.rsplit("/", 1)[1]
    groups = {g["label"]: g for g in as_json(dep, "--xwusergroups")}
    assert groups["physics"]["uid"] == group_uid and groups["physics"]["members"] == 0

    conf = add_user(dep, "carol", "STANDARD", "physics")
    carol = as_json(dep, "--xwusers", "carol")[0]
    assert carol["group_uid"] == group_uid
    assert [g["label"] for g in as_json(dep, "--xwusergroups", config=conf)] == ["physics"]

    busy = dep.client("--xwrm", "physics", check=False)
    assert busy.returncode == ERROR and "member" in busy.stderr, busy

    removed = dep.client("--xwrm", "carol", uri)
    assert removed.stdout.splitlines() == ["carol removed (user)", f"{group_uid} removed (usergroup)"]
    assert "carol" not in {u["login"] for u in as_json(dep, "--xwusers")}
    assert "physics" not in {g["label"] for g in as_json(dep, "--xwusergroups")}
    gone = dep.client("--xwworks", config=conf, check=False)
    assert gone.returncode == AUTH, gone


def test_chmod_changes_a_datas_rights_and_never_an_apps(shared: Deployment) -> None:
    dep = shared
    source = dep.workdir / "input.txt"
    source.write_text("42\n")
    data_uid = dep.client("--xwsenddata", str(source)).stdout.strip().rsplit("/", 1)[1]
    assert as_json(dep, "--xwdatas", data_uid)[0]["access_rights"] == "0755"  # data is public by default

    changed = as_json(dep, "--xwchmod", "0x750", data_uid)
    assert [(r["uid"], r["kind"], r["access_rights"]) for r in changed] == [(data_uid, "data", "0750")]
    assert as_json(dep, "--xwdatas", data_uid)[0]["access_rights"] == "0750"
    as_json(dep, "--xwchmod", "o+r", data_uid)
    assert as_json(dep, "--xwdatas", data_uid)[0]["access_rights"] == "0754"

    app_uid = dep.send_app("hello-chmod", python_program("print('hello')\n")).rsplit("/", 1)[1]
    before = as_json(dep, "--xwapps", app_uid)[0]["access_rights"]
    refused = dep.client("--xwchmod", "0700", app_uid, check=False)
    assert refused.returncode != 0 and "app" in refused.stderr.lower(), refused
    assert as_json(dep, "--xwapps", app_uid)[0]["access_rights"] == before

    bad = dep.client("--xwchmod", "rwx", data_uid, check=False)
    assert bad.returncode == 2 and "0755" in bad.stderr, bad


def test_xwrm_removes_any_kind_by_uid(shared: Deployment) -> None:
    dep = shared
    source = dep.workdir / "x.txt"
    source.write_text("x")
    data_uid = dep.client("--xwsenddata", str(source)).stdout.strip().rsplit("/", 1)[1]
    app_uid = dep.send_app("hello-rm", python_program("print('hello')\n")).rsplit("/", 1)[1]
    job_uid = dep.submit("hello-rm")  # no worker: it stays PENDING
    add_user(dep, "dave")
    dave_uid = as_json(dep, "--xwusers", "dave")[0]["uid"]

    rows = as_json(dep, "--xwrm", job_uid, app_uid, data_uid, dave_uid)

    assert [(r["uid"], r["kind"]) for r in rows] == [
        (job_uid, "job"),
        (app_uid, "app"),
        (data_uid, "data"),
        (dave_uid, "user"),
    ]
    for uid in (job_uid, app_uid, data_uid, dave_uid):
        again = dep.client("--xwrm", uid, check=False)
        assert again.returncode == NOT_FOUND, again
    missing = dep.client("--xwrm", "nobody-by-that-name", check=False)
    assert missing.returncode == NOT_FOUND and "nobody-by-that-name" in missing.stderr, missing


def test_a_disabled_worker_stops_asking_for_work_until_it_is_enabled(deployment: MakeDeployment) -> None:
    dep = deployment(**FAST_LEASES)
    worker = dep.start_worker()

    hosts = as_json(dep, "--xwdisable", worker.host_uid)
    assert [(h["uid"], h["enabled"]) for h in hosts] == [(worker.host_uid, False)]
    wait_until(
        lambda: "is disabled on the server" in worker.log_text(),
        timeout_s=15,
        what="the worker to notice it is disabled",
        describe=dep.describe,
    )
    assert worker.alive

    dep.client("--xwenable", worker.host_uid)
    wait_until(
        lambda: "is enabled again" in worker.log_text(),
        timeout_s=15,
        what="the worker to notice it is enabled",
        describe=dep.describe,
    )
    assert [h["enabled"] for h in as_json(dep, "--xwworkers") if h["uid"] == worker.host_uid] == [True]
    assert worker.log_text().count("is disabled on the server") == 1


def test_a_job_whose_input_no_worker_may_read_stays_pending_and_says_why(deployment: MakeDeployment) -> None:
    dep = deployment(**FAST_LEASES)
    dep.send_app("cat", python_program("import sys\nprint(sys.stdin.read())\n"))
    bob, alice = add_user(dep, "bob"), add_user(dep, "alice")
    source = dep.workdir / "shared.txt"
    source.write_text("bob's numbers\n")
    data_uid = dep.client("--xwsenddata", str(source), config=bob).stdout.strip().rsplit("/", 1)[1]
    job = (
        dep.client("--xwsendwork", "cat", "--xwstdin", data_uid, config=alice)
        .stdout.strip()
        .rsplit("/", 1)[1]
    )

    dep.client("--xwchmod", "0700", data_uid, config=bob)  # before any worker fetched it
    worker = dep.start_worker()

    def reason() -> str | None:
        shown = dep.api.call("GET", f"/jobs/{job}")
        assert shown["status"] == "PENDING", shown  # never given to the public worker
        return shown.get("pending_reason")

    why = wait_until(reason, timeout_s=30, what="the job to say why it waits")
    assert why == f"no connected worker may read its stdin (data {data_uid}, access rights 0700)"
    assert worker.alive and "may not read" not in worker.log_text()

    dep.client("--xwchmod", "0744", data_uid, config=bob)  # readable again: it runs
    final = dep.wait_for_jobs([job], timeout_s=60)[job]
    assert final["status"] == "COMPLETED", final


def test_passwd_changes_ones_own_password_and_super_resets_anyones(shared: Deployment) -> None:
    dep = shared
    conf = add_user(dep, "erin")
    renewed = dep.root / "erin-new.rc"
    renewed.write_text(conf.read_text().replace("password=pw-of-erin", "password=n3w-pass"))

    done = dep.client("--xwpasswd", "n3w-pass", config=conf)  # the old one comes from the config

    assert f"update password= in {conf}" in done.stdout, done.stdout
    stale = dep.client("--xwworks", config=conf, check=False)
    assert stale.returncode == AUTH and "authentication refused" in stale.stderr, stale
    assert dep.client("--xwworks", config=renewed).returncode == 0

    dep.client("--xwpasswd", "erin", "pw-of-erin")  # SUPER: no old password needed
    assert dep.client("--xwworks", config=conf).returncode == 0
    other = dep.client("--xwpasswd", "admin", "hijacked", config=conf, check=False)
    assert other.returncode in (AUTH, NOT_FOUND), other
