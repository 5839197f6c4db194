"""Users, groups, rights and hosts on the command line: what each command asks of the SDK, and
how the SDK turns that into requests. The server path is covered by tests/integration/test_cli_users.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from xwclient import cli, commands, formats
from xwclient.commands import Context, UsageError
from xwclient.sdk import XWClient, normalize_rights
from xwclient.settings import ClientSettings, settings_from_properties
from xwcommon.config import parse_properties
from xwcommon.errors import BadRequest, Forbidden, NotFound

UID = "5ac06852-c970-4618-b635-afd5c460fe81"
UID2 = "b42d253f-d9fc-4a35-9e53-d6d88c8952db"


def user(login: str = "alice", rights: str = "STANDARD") -> dict[str, Any]:
    return {"uid": UID, "uri": f"xw://h:1/{UID}", "login": login, "rights": rights, "group_uid": None, "email": "a@b.c"}  # fmt: skip


class Recorder:
    """Stands in for XWClient: records calls, answers like the wire would."""

    def __init__(self, settings: ClientSettings | None) -> None:
        self.settings = settings
        self.calls: list[tuple[str, Any]] = []

    async def create_user(self, login, password, email, rights, group):
        self.calls.append(("create_user", (login, password, email, rights, group)))
        return user(login, rights)

    async def list_users(self):
        return [user()]

    async def get_user(self, key):
        if key == "ghost":
            raise NotFound("no user ghost")
        return user(key)

    async def change_password(self, login, new, old):
        self.calls.append(("change_password", (login, new, old)))

    async def chmod(self, uid, rights):
        self.calls.append(("chmod", (uid, rights)))
        if uid == UID2:
            raise Forbidden("the rights of an application never change")
        return "data", {"uid": uid, "uri": f"xw://h:1/{uid}", "access_rights": "0750", "owner_uid": UID2}

    async def delete_jobs(self, uids):
        self.calls.append(("delete_jobs", list(uids)))
        return [], [{"uid": u, "reason": "no such job"} for u in uids]  # no job: another kind

    async def remove(self, key):
        self.calls.append(("remove", key))
        return "user" if key == "bob" else "data"

    async def create_usergroup(self, label):
        return {"uid": UID, "uri": f"xw://h:1/{UID}", "label": label, "members": 0}

    async def disable_host(self, uid):
        self.calls.append(("disable_host", uid))
        return {"uid": uid, "name": "vm", "enabled": False}

    async def enable_host(self, uid):
        self.calls.append(("enable_host", uid))
        return {"uid": uid, "name": "vm", "enabled": True}


@pytest.fixture
def settings(tmp_path: Path) -> ClientSettings:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    return ClientSettings(
        config_file=tmp_path / "xwrc",
        servers=["https://xw.example.org:4325", "https://backup.example.org:4325"],
        login="admin",
        password="secret",
        ca_file=ca,
    )


async def run(
    argv: list[str], settings: ClientSettings | None, stdin: Any = None
) -> tuple[int, str, str, Recorder]:
    inv = cli.parse_args(argv)
    cmd = cli.check_invocation(inv)
    rec = Recorder(settings)
    out, err = io.StringIO(), io.StringIO()
    ctx = Context(
        inv=inv,
        client=rec,  # type: ignore[arg-type]
        fmt=inv.value("xwformat") or "text",
        out=out,
        err=err,
        stdin=stdin,
        prog="xwtest",
    )
    code = await cmd.run(ctx)
    return code, out.getvalue(), err.getvalue(), rec


# -- xwsenduser -----------------------------------------------------------------------------------
async def test_senduser_prints_a_config_the_new_user_can_use_as_is(settings, tmp_path):
    code, out, _, rec = await run(
        ["--xwsenduser", "alice", "pw of alice", "a@b.c", "STANDARD_USER", "physics"], settings
    )
    assert code == 0
    assert rec.calls == [("create_user", ("alice", "pw of alice", "a@b.c", "STANDARD", "physics"))]
    handed = settings_from_properties(parse_properties(out), tmp_path / "alice.rc")
    assert handed.login == "alice" and handed.password == "pw of alice"
    assert handed.servers == settings.servers
    assert handed.ca_file == settings.ca_file.resolve()


async def test_senduser_in_json_prints_the_user_and_no_password(settings):
    code, out, _, _ = await run(
        ["--xwsenduser", "alice", "pw", "a@b.c", "advanced", "--xwformat", "json"], settings
    )
    assert code == 0
    assert json.loads(out) == [formats.project([user("alice", "ADVANCED")], "user")[0]]
    assert "pw" not in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--xwsenduser", "a", "pw", "e", "ROOT"], "unknown user rights 'ROOT'"),
        (["--xwsenduser", "a", " pw", "e", "STANDARD"], "start or end with spaces"),
        (["--xwsenduser", "a", "", "e", "STANDARD"], "must not be empty"),
        (["--xwsenduser", "a", "pw", "e"], "wrong number of arguments"),
        (["--xwsenduser", "a", "pw", "e", "STANDARD", "g", "extra"], "wrong number of arguments"),
    ],
)
async def test_senduser_refuses_bad_lines_before_any_request(settings, argv, message):
    with pytest.raises(UsageError, match=message):
        await run(argv, settings)


# -- xwusers, xwsendusergroup --------------------------------------------------------------------------
async def test_users_lists_or_gets_each_and_goes_on_after_a_missing_one(settings):
    code, out, err, _ = await run(["--xwusers", "alice", "ghost", "--xwformat", "csv"], settings)
    assert code == 4
    assert "not found: no user ghost" in err
    assert [r["login"] for r in formats.parse(out, "csv")] == ["alice"]


async def test_sendusergroup_prints_the_groups_uri(settings):
    code, out, _, _ = await run(["--xwsendusergroup", "physics"], settings)
    assert (code, out) == (0, f"xw://h:1/{UID}\n")


# -- xwpasswd --------------------------------------------------------------------------------------
async def test_passwd_for_oneself_sends_the_old_password_from_the_config(settings):
    code, out, _, rec = await run(["--xwpasswd", "n3w"], settings)
    assert code == 0
    assert rec.calls == [("change_password", ("admin", "n3w", "secret"))]
    assert f"update password= in {settings.config_file}" in out


async def test_passwd_of_another_user_sends_no_old_password(settings):
    code, _, _, rec = await run(["--xwpasswd", "bob", "n3w"], settings)
    assert code == 0
    assert rec.calls == [("change_password", ("bob", "n3w", None))]


async def test_passwd_without_a_terminal_asks_for_the_password_on_the_line(settings):
    with pytest.raises(UsageError, match="standard input is not a terminal"):
        await run(["--xwpasswd"], settings, stdin=io.BytesIO(b"n3w\n"))


async def test_passwd_reads_the_new_password_twice_without_echo(settings, monkeypatch):
    typed = iter(["n3w", "n3w"])
    monkeypatch.setattr(commands, "_is_tty", lambda stream: True)
    monkeypatch.setattr(commands.getpass, "getpass", lambda prompt: next(typed))
    code, _, _, rec = await run(["--xwpasswd", "bob", "-"], settings)
    assert code == 0
    assert rec.calls == [("change_password", ("bob", "n3w", None))]


async def test_passwd_that_differs_the_second_time_changes_nothing(settings, monkeypatch):
    typed = iter(["n3w", "other"])
    monkeypatch.setattr(commands, "_is_tty", lambda stream: True)
    monkeypatch.setattr(commands.getpass, "getpass", lambda prompt: next(typed))
    with pytest.raises(UsageError, match="differ"):
        await run(["--xwpasswd"], settings)


# -- xwchmod ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "given, sent",
    [
        ("755", "0755"),
        ("0x750", "0750"),
        ("0700", "0700"),
        ("u+r", "u+r"),
        ("g-w, o+x", "g-w,o+x"),
        ("a+r", "a+r"),
    ],
)
def test_rights_are_sent_in_one_spelling(given, sent):
    assert normalize_rights(given) == sent


@pytest.mark.parametrize("given", ["", "0999", "rwx", "u+q", "750x"])
def test_invalid_rights_are_refused_with_an_example(given):
    with pytest.raises(BadRequest, match="0755"):
        normalize_rights(given)


async def test_chmod_changes_each_object_and_reports_the_refused_ones(settings):
    code, out, err, rec = await run(
        ["--xwchmod", "0x750", UID, f"xw://h:1/{UID2}", "--xwformat", "json"], settings
    )
    assert code == 3
    assert rec.calls == [("chmod", (UID, "0750")), ("chmod", (UID2, "0750"))]
    assert "permission refused: the rights of an application never change" in err
    assert json.loads(out) == [
        {"uid": UID, "kind": "data", "access_rights": "0750", "owner_uid": UID2, "uri": f"xw://h:1/{UID}"}
    ]


async def test_chmod_with_bad_rights_or_uid_is_a_usage_error(settings):
    with pytest.raises(UsageError, match="access rights"):
        await run(["--xwchmod", "rwx", UID], settings)
    with pytest.raises(UsageError, match="neither a UID"):
        await run(["--xwchmod", "0750", "not-a-uid"], settings)


# -- xwrm, xwdisable, xwenable ------------------------------------------------------------------------
async def test_rm_takes_uids_uris_and_names(settings):
    code, out, _, rec = await run(["--xwrm", f"xw://h:1/{UID}", "bob"], settings)
    assert code == 0
    assert rec.calls == [("delete_jobs", [UID]), ("remove", UID), ("remove", "bob")]
    assert out == f"{UID} removed (data)\nbob removed (user)\n"


async def test_disable_and_enable_hosts(settings):
    code, out, _, rec = await run(["--xwdisable", UID, "--xwformat", "csv"], settings)
    assert code == 0 and formats.parse(out, "csv")[0]["enabled"] == "false"
    code, out, _, rec2 = await run(["--xwenable", UID], settings)
    assert code == 0
    assert rec.calls + rec2.calls == [("disable_host", UID), ("enable_host", UID)]


# -- the SDK's requests ----------------------------------------------------------------------------
class FakeTransport:
    """Answers requests from a table of (method, path) -> reply or error; records them."""

    login_name = "admin"
    user: dict[str, Any] = {"uid": UID2}

    def __init__(self, replies: dict[tuple[str, str], Any]) -> None:
        self.replies = replies
        self.requests: list[tuple[str, str, Any]] = []
        self._password = "old"

    async def request(self, method: str, path: str, *, json: Any = None, **kw: Any) -> Any:
        self.requests.append((method, path, json))
        reply = self.replies.get((method, path), NotFound(f"no {path}"))
        if isinstance(reply, Exception):
            raise reply
        return reply

    def use_password(self, password: str) -> None:
        self._password = password

    async def close(self) -> None:
        pass


def sdk(replies: dict[tuple[str, str], Any]) -> tuple[XWClient, FakeTransport]:
    t = FakeTransport(replies)
    return XWClient(transport=t), t  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kind, path",
    [("job", "/jobs"), ("data", "/data"), ("app", "/apps"), ("user", "/users"), ("usergroup", "/usergroups")],
)
async def test_remove_asks_the_kind_then_deletes_on_its_path(kind, path):
    client, t = sdk(
        {("GET", f"/objects/{UID}"): {"kind": kind, "object": {}}, ("DELETE", f"{path}/{UID}"): {"ok": True}}
    )
    assert await client.remove(f"xw://h:1/{UID}") == kind
    assert [(m, p) for m, p, _ in t.requests] == [("GET", f"/objects/{UID}"), ("DELETE", f"{path}/{UID}")]


async def test_remove_refuses_tasks_and_hosts_without_deleting():
    client, t = sdk({("GET", f"/objects/{UID}"): {"kind": "host", "object": {}}})
    with pytest.raises(BadRequest, match="is a host, which cannot be removed; disable it"):
        await client.remove(UID)
    assert [m for m, _, _ in t.requests] == ["GET"]


async def test_remove_by_name_tries_a_user_then_a_group():
    client, t = sdk({("DELETE", "/usergroups/physics"): {"ok": True}})
    assert await client.remove("physics") == "usergroup"
    assert [p for _, p, _ in t.requests] == ["/users/physics", "/usergroups/physics"]
    client, _ = sdk({})
    with pytest.raises(NotFound, match="no user or user group 'nobody'"):
        await client.remove("nobody")


async def test_names_are_quoted_in_paths_and_rights_normalized_in_bodies():
    client, t = sdk(
        {
            ("POST", "/users"): user(),
            ("GET", "/users/a%2F..%2Fb"): user(),
            ("POST", f"/objects/{UID}/chmod"): {"kind": "data", "object": {"uid": UID}},
        }
    )
    await client.create_user("alice", "pw", "a@b.c", "standard_user", "physics")
    await client.get_user("a/../b")
    assert await client.chmod(UID, "0x750") == ("data", {"uid": UID})
    assert t.requests[0][2] == {"login": "alice", "password": "pw", "email": "a@b.c", "rights": "STANDARD", "group": "physics"}  # fmt: skip
    assert t.requests[2][2] == {"rights": "0750"}


async def test_changing_ones_own_password_makes_the_client_log_in_with_the_new_one():
    client, t = sdk(
        {("POST", "/users/admin/password"): {"ok": True}, ("POST", "/users/bob/password"): {"ok": True}}
    )
    await client.change_password("bob", "b0b")
    assert t._password == "old"
    await client.change_password("admin", "n3w", "old")
    assert t.requests[-1][2] == {"password": "n3w", "old_password": "old"}
    assert t._password == "n3w"


async def test_listing_jobs_asks_for_ones_own_unless_told_otherwise():
    seen: list[Any] = []

    class Pages(FakeTransport):
        async def request(self, method: str, path: str, *, json: Any = None, **kw: Any) -> Any:
            seen.append(kw.get("params", {}).get("owner"))
            return {"jobs": []}

    client = XWClient(transport=Pages({}))  # type: ignore[arg-type]
    await client.list_jobs()
    await client.list_jobs(owner=None)
    await client.list_jobs(owner=f"xw://h:1/{UID}")
    assert seen == ["me", None, UID]
