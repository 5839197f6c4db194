"""The client's words for replication, priorities and aborts, against one real server
(``xwserver start``, real TLS): xwsendwork --xwquorum/--xwreplicas/--xwpriority/
--xwdelaybound, and xwrm --xwabort by UID and by selection."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from helpers.deployment import Deployment, running_deployment, send_windows_only_app

from xwclient import cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dep(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with running_deployment(tmp_path_factory.mktemp("replication")) as d:
        send_windows_only_app(d, "a binary for a platform no worker has: its jobs stay PENDING")
        yield d


def xw(dep: Deployment, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--xwconfig", str(dep.admin_conf), *args], stdin=None, out=out, err=err, cwd=dep.workdir)
    return code, out.getvalue(), err.getvalue()


def job_of(dep: Deployment, uid: str) -> dict[str, Any]:
    code, out, err = xw(dep, "--xwworks", uid, "--xwformat", "json")
    assert code == 0, err
    [job] = json.loads(out)
    return dict(job)


def test_sendwork_asks_for_a_quorum_copies_a_priority_and_a_delay_bound(dep: Deployment) -> None:
    code, out, err = xw(
        dep,
        "--xwsendwork",
        "winonly",
        "--xwquorum",
        "2",
        "--xwreplicas",
        "3",
        "--xwpriority",
        "-3",
        "--xwdelaybound",
        "3600",
        "--xwnostdin",
        "--xwformat",
        "json",
    )
    assert code == 0, err
    [job] = json.loads(out)
    assert (job["min_quorum"], job["target_results"], job["priority"], job["delay_bound_s"]) == (
        2,
        3,
        -3,
        3600,
    )


@pytest.mark.parametrize(
    ("option", "value", "said"),
    [("--xwquorum", "two", "how many results must agree"), ("--xwquorum", "0", "min_quorum")],
)
def test_a_bad_replication_option_is_refused_with_what_to_give(
    dep: Deployment, option: str, value: str, said: str
) -> None:
    code, _out, err = xw(dep, "--xwsendwork", "winonly", option, value, "--xwnostdin")
    assert code != 0 and said in err, err


def test_xwrm_abort_keeps_the_jobs_listed_as_aborted_by_uid_and_by_selection(dep: Deployment) -> None:
    uids = []
    for label in ("abort-me", "abort-me", "keep-me"):
        code, out, err = xw(dep, "--xwsendwork", "winonly", "--xwlabel", label, "--xwnostdin")
        assert code == 0, err
        uids.append(out.strip().rsplit("/", 1)[1])
    code, out, err = xw(dep, "--xwrm", "--xwabort", uids[0])
    assert code == 0 and f"{uids[0]} aborted" in out, err
    assert job_of(dep, uids[0])["status"] == "ABORTED"
    code, out, err = xw(dep, "--xwrm", "--xwabort", "--xwlabel", "abort-me", "--xwpending")
    assert code == 0 and f"{uids[1]} aborted" in out, err
    assert [job_of(dep, u)["status"] for u in uids] == ["ABORTED", "ABORTED", "PENDING"]
    code, _out, err = xw(dep, "--xwrm", "--xwabort", uids[0])
    assert code != 0 and "ABORTED already" in err
