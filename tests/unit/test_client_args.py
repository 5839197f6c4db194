"""The client's command line: XWHEP spelling, job arguments passed verbatim, --xw options anywhere."""

from __future__ import annotations

import io
import sys

import pytest

from xwclient import cli, scripts
from xwclient.commands import COMMANDS, UsageError


def test_job_arguments_pass_through_verbatim():
    inv = cli.parse_args(["--xwsendwork", "app", "-n", "5", "--seed=3", "-x", "--long", "a b"])
    assert inv.command == "sendwork"
    assert inv.args == ["app", "-n", "5", "--seed=3", "-x", "--long", "a b"]
    assert inv.options == {}


def test_xw_options_may_appear_anywhere_on_the_line():
    inv = cli.parse_args(
        ["--xwlabel", "L1", "--xwsendwork", "app", "-n", "--xwformat=json", "5", "--xwconfig", "my.rc"]
    )
    assert inv.command == "sendwork"
    assert inv.args == ["app", "-n", "5"]
    assert inv.options == {"xwlabel": "L1", "xwformat": "json", "xwconfig": "my.rc"}


def test_double_dash_ends_option_parsing():
    inv = cli.parse_args(["--xwsendwork", "app", "-v", "--", "--xwlabel", "x", "--", "--xwhelp"])
    assert inv.args == ["app", "-v", "--xwlabel", "x", "--", "--xwhelp"]
    assert inv.options == {}


def test_options_and_commands_are_case_insensitive_like_xwhep():
    inv = cli.parse_args(["--xwSendWork", "app", "--XWLABEL", "L"])
    assert inv.command == "sendwork"
    assert inv.options == {"xwlabel": "L"}


def test_a_value_may_look_like_an_option():
    inv = cli.parse_args(["--xwsendwork", "app", "--xwlabel", "-n"])
    assert inv.options["xwlabel"] == "-n"
    assert inv.args == ["app"]


def test_aliases_name_the_same_command():
    assert cli.parse_args(["--xwgetworks"]).command == "works"
    assert cli.parse_args(["--xwresult", "u"]).command == "results"
    assert cli.parse_args(["--xwremove", "u"]).command == "rm"
    # the same command twice (e.g. a script plus its own option) is not two commands
    assert cli.parse_args(["--xwresults", "--xwresult"]).command == "results"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--xwworks", "--xwapps"], "two commands"),
        (["--xwworks", "--xwbogus"], "unknown option --xwbogus"),
        (["--xwsendwork", "app", "--xwlabel"], "--xwlabel needs a value"),
        (["--xwworks", "--xwverbose=1"], "takes no value"),
        (["--xwsendwork=app"], "takes no '='"),
    ],
)
def test_malformed_lines_are_usage_errors(argv, message):
    with pytest.raises(UsageError, match=message):
        cli.parse_args(argv)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["app"], "no command"),
        (["--xwsendwork"], "wrong number of arguments"),
        (["--xwsendapp", "name", "any", "any"], "wrong number of arguments"),
        (["--xwping", "extra"], "wrong number of arguments"),
        (["--xwworks", "--xwstdin", "f"], "--xwstdin does not apply to --xwworks"),
    ],
)
def test_invocations_that_do_not_fit_their_command_are_refused(argv, message):
    with pytest.raises(UsageError, match=message):
        cli.check_invocation(cli.parse_args(argv))


def test_common_options_apply_to_every_command():
    for name in {c.name for c in COMMANDS.values()}:
        cmd = COMMANDS[name]
        argv = [f"--xw{name}", *["x"] * cmd.min_args, "--xwformat", "csv", "--xwverbose", "--xwconfig", "c"]
        assert cli.check_invocation(cli.parse_args(argv)) is cmd


def test_every_script_runs_its_command(monkeypatch):
    seen: list[list[str]] = []

    def record(argv: list[str]) -> int:
        seen.append(argv)
        return 0

    monkeypatch.setattr(scripts, "main", record)
    monkeypatch.setattr(sys, "argv", ["xwsomething", "a", "-n", "5"])
    for name in scripts.SCRIPTS:
        with pytest.raises(SystemExit) as stop:
            getattr(scripts, name)()
        assert stop.value.code == 0
        assert seen[-1] == [f"--{name}", "a", "-n", "5"]
        assert cli.parse_args(seen[-1]).command == COMMANDS[name[2:]].name
    assert set(scripts.SCRIPTS) >= {
        "xwsendapp", "xwapps", "xwsenddata", "xwdatas", "xwdownload", "xwsendwork", "xwworks", "xwtasks",
        "xwresults", "xwresult", "xwrm", "xwworkers", "xwping", "xwversion", "xwwait",
    }  # fmt: skip


def run(argv: list[str], **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(argv, out=out, err=err, stdin=None, **kw)
    return code, out.getvalue(), err.getvalue()


def test_help_lists_every_command_and_exits_zero():
    code, out, err = run(["--xwhelp"])
    assert code == 0 and err == ""
    for cmd in COMMANDS.values():
        assert cmd.usage in out


def test_help_of_one_command():
    code, out, _ = run(["--xwsendwork", "--xwhelp"])
    assert code == 0
    assert out.startswith("usage: xwclient --xwsendwork APP")


def test_no_command_is_a_usage_error_with_help_on_stderr():
    code, out, err = run([])
    assert code == 2 and out == "" and "commands:" in err


def test_usage_errors_exit_2_with_a_message_and_no_traceback():
    code, out, err = run(["--xwworks", "--xwbogus"])
    assert code == 2 and out == ""
    assert "error: unknown option --xwbogus" in err and "--xwhelp" in err
    assert "Traceback" not in err


def test_an_unknown_format_is_a_usage_error():
    code, _, err = run(["--xwworks", "--xwformat", "yaml"])
    assert code == 2 and "unknown format 'yaml'" in err


def test_a_missing_config_is_reported_with_its_path_and_exit_code_2(tmp_path, monkeypatch):
    monkeypatch.delenv("XWCONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    code, out, err = run(["--xwworks"])
    assert code == 2 and out == ""
    assert str(tmp_path / ".xtremweb" / "xwrc") in err and "--xwconfig" in err


def test_a_bad_uid_is_a_usage_error_before_any_request(unreachable_rc):
    # the server is unreachable: a request would have failed with exit code 5, not 2
    code, _, err = run(["--xwworks", "not-a-uid", "--xwconfig", str(unreachable_rc)])
    assert code == 2 and "neither a UID nor an xw:// URI" in err


def test_an_unreachable_server_exits_5(unreachable_rc):
    code, out, err = run(["--xwping", "--xwconfig", str(unreachable_rc), "--xwnoverbose"])
    assert code == 5 and out == ""
    assert "no server answered" in err and "Traceback" not in err


@pytest.fixture
def unreachable_rc(tmp_path):
    """A client config naming a port where nothing listens, with a real (throw-away) CA."""
    (tmp_path / "ca.pem").write_bytes(_self_signed_pem())
    rc = tmp_path / "xwrc"
    rc.write_text(
        "dispatcher.servers=https://127.0.0.1:9\nlogin=u\npassword=p\nca.file=ca.pem\nretry_for_s=0\n"
    )
    return rc


def _self_signed_pem() -> bytes:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "client unit tests")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_xwenv_may_be_repeated_and_other_value_options_may_not():
    inv = cli.parse_args(["--xwsendwork", "app", "--xwenv", "a", "--xwenv=b.zip", "x"])
    assert inv.values("xwenv") == ["a", "b.zip"] and inv.args == ["app", "x"]
    with pytest.raises(UsageError, match="--xwlabel given twice"):
        cli.parse_args(["--xwsendwork", "app", "--xwlabel", "a", "--xwlabel", "b"])


def test_xwwait_with_xwsendwork_is_an_option_and_alone_a_command():
    for argv in (["--xwsendwork", "app", "--xwwait"], ["--xwwait", "--xwsendwork", "app"]):
        inv = cli.parse_args(argv)
        assert inv.command == "sendwork" and inv.flag("xwwait") and inv.args == ["app"]
        assert cli.check_invocation(inv).name == "sendwork"
    assert cli.parse_args(["--xwwait", UID_ARG]).command == "wait"


def test_status_flags_belong_to_xwworks():
    inv = cli.parse_args(["--xwworks", "--xwpending", "--xwerror"])
    assert cli.check_invocation(inv).name == "works"
    with pytest.raises(UsageError, match="does not apply"):
        cli.check_invocation(cli.parse_args(["--xwdatas", "--xwpending"]))


UID_ARG = "5ac06852-c970-4618-b635-afd5c460fe81"
