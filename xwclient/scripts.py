"""One console script per client command, as XWHEP shipped them in ``bin/``.

Each is ``xwclient --xw<name> …``: ``xwsendwork APP ARGS…`` is ``xwclient --xwsendwork APP ARGS…``.
``pyproject.toml`` maps the script names to these functions (``xwsendwork = "xwclient.scripts:xwsendwork"``).
"""

from __future__ import annotations

import sys

from .cli import main


def xwusage() -> None:
    """``xwusage``: ``xwclient --xwusage`` with this script's arguments."""
    raise SystemExit(main(["--xwusage", *sys.argv[1:]]))


def xwevents() -> None:
    """``xwevents``: ``xwclient --xwevents`` with this script's arguments."""
    raise SystemExit(main(["--xwevents", *sys.argv[1:]]))


def xwsendapp() -> None:
    """``xwsendapp``: ``xwclient --xwsendapp`` with this script's arguments."""
    raise SystemExit(main(["--xwsendapp", *sys.argv[1:]]))


def xwapps() -> None:
    """``xwapps``: ``xwclient --xwapps`` with this script's arguments."""
    raise SystemExit(main(["--xwapps", *sys.argv[1:]]))


def xwsenddata() -> None:
    """``xwsenddata``: ``xwclient --xwsenddata`` with this script's arguments."""
    raise SystemExit(main(["--xwsenddata", *sys.argv[1:]]))


def xwdatas() -> None:
    """``xwdatas``: ``xwclient --xwdatas`` with this script's arguments."""
    raise SystemExit(main(["--xwdatas", *sys.argv[1:]]))


def xwdownload() -> None:
    """``xwdownload``: ``xwclient --xwdownload`` with this script's arguments."""
    raise SystemExit(main(["--xwdownload", *sys.argv[1:]]))


def xwsendwork() -> None:
    """``xwsendwork``: ``xwclient --xwsendwork`` with this script's arguments."""
    raise SystemExit(main(["--xwsendwork", *sys.argv[1:]]))


def xwworks() -> None:
    """``xwworks``: ``xwclient --xwworks`` with this script's arguments."""
    raise SystemExit(main(["--xwworks", *sys.argv[1:]]))


def xwtasks() -> None:
    """``xwtasks``: ``xwclient --xwtasks`` with this script's arguments."""
    raise SystemExit(main(["--xwtasks", *sys.argv[1:]]))


def xwresults() -> None:
    """``xwresults``: ``xwclient --xwresults`` with this script's arguments."""
    raise SystemExit(main(["--xwresults", *sys.argv[1:]]))


def xwresult() -> None:
    """``xwresult`` (an alias of xwresults): ``xwclient --xwresult`` with this script's arguments."""
    raise SystemExit(main(["--xwresult", *sys.argv[1:]]))


def xwrm() -> None:
    """``xwrm``: ``xwclient --xwrm`` with this script's arguments."""
    raise SystemExit(main(["--xwrm", *sys.argv[1:]]))


def xwworkers() -> None:
    """``xwworkers``: ``xwclient --xwworkers`` with this script's arguments."""
    raise SystemExit(main(["--xwworkers", *sys.argv[1:]]))


def xwping() -> None:
    """``xwping``: ``xwclient --xwping`` with this script's arguments."""
    raise SystemExit(main(["--xwping", *sys.argv[1:]]))


def xwversion() -> None:
    """``xwversion``: ``xwclient --xwversion`` with this script's arguments."""
    raise SystemExit(main(["--xwversion", *sys.argv[1:]]))


def xwwait() -> None:
    """``xwwait``: ``xwclient --xwwait`` with this script's arguments."""
    raise SystemExit(main(["--xwwait", *sys.argv[1:]]))


def xwchmod() -> None:
    """``xwchmod``: ``xwclient --xwchmod`` with this script's arguments."""
    raise SystemExit(main(["--xwchmod", *sys.argv[1:]]))


def xwsenduser() -> None:
    """``xwsenduser``: ``xwclient --xwsenduser`` with this script's arguments."""
    raise SystemExit(main(["--xwsenduser", *sys.argv[1:]]))


def xwusers() -> None:
    """``xwusers``: ``xwclient --xwusers`` with this script's arguments."""
    raise SystemExit(main(["--xwusers", *sys.argv[1:]]))


def xwpasswd() -> None:
    """``xwpasswd``: ``xwclient --xwpasswd`` with this script's arguments."""
    raise SystemExit(main(["--xwpasswd", *sys.argv[1:]]))


def xwsendusergroup() -> None:
    """``xwsendusergroup``: ``xwclient --xwsendusergroup`` with this script's arguments."""
    raise SystemExit(main(["--xwsendusergroup", *sys.argv[1:]]))


def xwusergroups() -> None:
    """``xwusergroups``: ``xwclient --xwusergroups`` with this script's arguments."""
    raise SystemExit(main(["--xwusergroups", *sys.argv[1:]]))


def xwdisable() -> None:
    """``xwdisable``: ``xwclient --xwdisable`` with this script's arguments."""
    raise SystemExit(main(["--xwdisable", *sys.argv[1:]]))


def xwenable() -> None:
    """``xwenable``: ``xwclient --xwenable`` with this script's arguments."""
    raise SystemExit(main(["--xwenable", *sys.argv[1:]]))


def xwsendsession() -> None:
    """``xwsendsession``: ``xwclient --xwsendsession`` with this script's arguments."""
    raise SystemExit(main(["--xwsendsession", *sys.argv[1:]]))


def xwsessions() -> None:
    """``xwsessions``: ``xwclient --xwsessions`` with this script's arguments."""
    raise SystemExit(main(["--xwsessions", *sys.argv[1:]]))


def xwsendgroup() -> None:
    """``xwsendgroup``: ``xwclient --xwsendgroup`` with this script's arguments."""
    raise SystemExit(main(["--xwsendgroup", *sys.argv[1:]]))


def xwgroups() -> None:
    """``xwgroups``: ``xwclient --xwgroups`` with this script's arguments."""
    raise SystemExit(main(["--xwgroups", *sys.argv[1:]]))


#: script name -> entry point, for packaging and tests
SCRIPTS = {
    name: f"xwclient.scripts:{name}"
    for name in (
        "xwsendapp",
        "xwapps",
        "xwsenddata",
        "xwdatas",
        "xwdownload",
        "xwsendwork",
        "xwworks",
        "xwtasks",
        "xwresults",
        "xwresult",
        "xwrm",
        "xwworkers",
        "xwping",
        "xwversion",
        "xwwait",
        "xwchmod",
        "xwsenduser",
        "xwusers",
        "xwpasswd",
        "xwsendusergroup",
        "xwusergroups",
        "xwdisable",
        "xwenable",
        "xwsendsession",
        "xwsessions",
        "xwsendgroup",
        "xwgroups",
        "xwusage",
        "xwevents",
    )
}
