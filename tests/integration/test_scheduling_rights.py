"""Who runs what: public, group and private workers (real processes) against public, group and
private jobs.

The rules (XWHEP manual v5.7.5, "Usage levels" and 8.2.4; DESIGN "Identity, rights
and access"):

- a public worker (a WORKER identity without a group) runs public jobs ("Public jobs can
  only be run on public workers"; a public job is a job on a public app, 0755);
- a group worker (a WORKER identity in a group) runs its group's jobs (jobs on a group app,
  0750, whose owner is in its group) and "any public job as soon as it is the same user
  group of the job owner";
- a private worker (a STANDARD identity running a worker with its own credentials) "will
  execute jobs of its owner only: private, group or public jobs";
- a job no worker may run stays PENDING ("The scheduler never hands a job to a worker that
  may not run it").

Group jobs: an ADVANCED user of the group inserts the app with ``access_rights=0750`` (only
ADVANCED and above choose an app's rights); a job's rights are its app's, so a member's job
on it is a group job.

Each test starts its own deployment (``xwserver`` process) and real ``xwworker`` processes;
what ran where is read from the tasks API (each task names its host, each worker its host
in its state file). Every wait has a deadline. SQLite only: the scheduler's eligibility is
one SQL statement that the unit contract suite already runs on every backend, and three
backends would triple the minute these real processes take.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from helpers.api import API_PREFIX, Api, ApiError
from helpers.deployment import Deployment, MakeDeployment, WorkerProcess, python_program

#: real processes: seconds each
pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

#: the deadline of any one wait for jobs to finish
RUN_TIMEOUT_S = 40.0
#: how long a worker keeps asking for work, after it ran all it may, before we check that it
#: took nothing else (all jobs are PENDING before it starts: it would take them at once)
SETTLE_S = 0.8
#: the workers' long-poll: shorter than SETTLE_S
WAIT_S = 0.5

# -- the expected table ----------------------------------------------------------------------------------
# Users: alice and bob, STANDARD in G1; carol, STANDARD without a group; dave, STANDARD in G2.
# Apps: "public" (0755, an ADVANCED user's), "g1" (0750, an ADVANCED user in G1),
# "g2" (0750, an ADVANCED user in G2), and each submitter's own private app (0700).
# Workers: "public" (the deployment's WORKER identity, no group), "group" (a WORKER identity
# in G1), "private" (alice's own credentials).
#
#: job -> (submitter, app, the worker kinds that may run it)
JOBS: dict[str, tuple[str, str, frozenset[str]]] = {
    # alice's jobs: her private worker runs all of them ("jobs of its owner only: private,
    # group or public"); the group worker her group and public ones; the public worker the public one
    "alice-private": ("alice", "private", frozenset({"private"})),
    "alice-group": ("alice", "g1", frozenset({"private", "group"})),
    "alice-public": ("alice", "public", frozenset({"private", "group", "public"})),
    # bob is in G1 too but runs no worker: his private job has no worker that may run it
    "bob-private": ("bob", "private", frozenset()),
    "bob-group": ("bob", "g1", frozenset({"group"})),
    "bob-public": ("bob", "public", frozenset({"group", "public"})),
    # carol has no group: only public workers run her public job
    "carol-private": ("carol", "private", frozenset()),
    "carol-public": ("carol", "public", frozenset({"public"})),
    # dave is in G2, which has no worker: G1's group worker runs none of his jobs
    "dave-group": ("dave", "g2", frozenset()),
    "dave-public": ("dave", "public", frozenset({"public"})),
}
WORKER_KINDS = ("private", "group", "public")

#: an application: says who ran it
PROGRAM = python_program(
    """
import os, sys
print("ran", " ".join(sys.argv[1:]), "in", os.getcwd())
"""
)


# -- users and their calls ----------------------------------------------------------------------------------
class UserApi(Api):
    """:class:`helpers.api.Api` plus a raw upload (``POST /data`` takes the bytes as the body)."""

    def upload(self, content: bytes, name: str) -> dict[str, Any]:
        if self._token is None:
            self.login()
        query = urlencode({"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)})
        conn = http.client.HTTPSConnection(self.host, self.port, context=self.ssl, timeout=self.timeout_s)
        try:
            conn.request(
                "POST",
                f"{API_PREFIX}/data?{query}",
                body=content,
                headers={
                    "Authorization": f"Bearer {self._token}",
                    "Content-Type": "application/octet-stream",
                },
            )
            resp = conn.getresponse()
            payload = resp.read()
        finally:
            conn.close()
        if resp.status >= 400:
            raise ApiError("POST", "/data", resp.status, payload)
        return dict(json.loads(payload))

    def insert_app(self, name: str, access_rights: str | None = None) -> dict[str, Any]:
        binary = self.upload(PROGRAM.encode(), name)
        body: dict[str, Any] = {
            "name": name,
            "binaries": [{"os": "any", "cpu": "any", "data_uid": binary["uid"]}],
        }
        if access_rights is not None:
            body["access_rights"] = access_rights
        return dict(self.call("POST", "/apps", body))


@dataclass
class User:
    login: str
    password: str
    api: UserApi


@dataclass
class World:
    dep: Deployment
    users: dict[str, User]
    #: app key ("public", "g1", "g2", or a login for its private app) -> app uid
    apps: dict[str, str]

    def submit_all(self, tag: str) -> dict[str, str]:
        """One job of each row of JOBS, labelled with ``tag``: name -> job uid."""
        uids = {}
        for name, (login, app, _kinds) in JOBS.items():
            app_uid = self.apps[login if app == "private" else app]
            job = self.users[login].api.call("POST", "/jobs", {"app": app_uid, "args": [name], "label": tag})
            rights = {"private": "0700", "g1": "0750", "g2": "0750", "public": "0755"}[app]
            assert job["access_rights"] == rights, f"{name}: a job's rights are its app's: {job}"
            uids[name] = job["uid"]
        return uids

    def start_worker(self, kind: str, *, wait_registered: bool = True) -> WorkerProcess:
        credentials = {}
        if kind == "group":
            credentials = {"login": self.users["gworker"].login, "password": self.users["gworker"].password}
        elif kind == "private":
            credentials = {"login": self.users["alice"].login, "password": self.users["alice"].password}
        # work_request_wait_s: a worker idle for that long asks again (the long-poll's length);
        # SETTLE_S spans one such round, so every worker claims again after the last submission
        return self.dep.start_worker(
            workpool_size=2, wait_registered=wait_registered, work_request_wait_s=WAIT_S, **credentials
        )


def _world(dep: Deployment) -> World:
    admin = dep.api
    g1 = admin.call("POST", "/usergroups", {"label": "G1"})["uid"]
    g2 = admin.call("POST", "/usergroups", {"label": "G2"})["uid"]
    users: dict[str, User] = {}
    for login, rights, group in (
        ("adv1", "ADVANCED", g1),
        ("adv2", "ADVANCED", g2),
        ("alice", "STANDARD", g1),
        ("bob", "STANDARD", g1),
        ("carol", "STANDARD", None),
        ("dave", "STANDARD", g2),
        ("gworker", "WORKER", g1),
    ):
        password = "pw-" + secrets.token_hex(8)
        made = admin.call(
            "POST",
            "/users",
            {
                "login": login,
                "password": password,
                "email": f"{login}@example.org",
                "rights": rights,
                "group": group,
            },
        )
        assert made["rights"] == rights and made["group_uid"] == group, made
        users[login] = User(login, password, UserApi(dep.url, dep.ca_file, login, password))
    apps = {}
    for key, owner, rights in (("public", "adv1", None), ("g1", "adv1", "0750"), ("g2", "adv2", "0750")):
        app = users[owner].api.insert_app(f"app-{key}", rights)
        assert app["access_rights"] == (rights or "0755"), app
        apps[key] = app["uid"]
    for login in ("alice", "bob", "carol", "dave"):
        app = users[login].api.insert_app(f"app-{login}")
        assert app["access_rights"] == "0700", f"a STANDARD user's app is private: {app}"
        apps[login] = app["uid"]
    return World(dep, users, apps)


# -- observing ---------------------------------------------------------------------------------------------------
def _hosts_of(dep: Deployment, uid: str) -> list[str]:
    return [t["host_uid"] for t in dep.api.tasks(uid)]


def _assert_not_run(dep: Deployment, jobs: dict[str, str], names: set[str], note: str) -> None:
    for name in sorted(names):
        job = dep.api.job(jobs[name])
        hosts = _hosts_of(dep, jobs[name])
        assert job["status"] == "PENDING" and not hosts, (
            f"{name} must not have run ({note}) but is {job['status']} with tasks on {hosts}\n{dep.describe()}"
        )


def _settle(worker: WorkerProcess, seconds: float) -> None:
    """Let the worker go on asking for work for a while; it must stay alive meanwhile."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert worker.alive, f"{worker.name} died:\n{worker.log_text()}"
        time.sleep(0.1)


# -- the tests -------------------------------------------------------------------------------------------------------
def test_each_worker_kind_alone_runs_exactly_the_jobs_it_may(deployment: MakeDeployment) -> None:
    """One kind of worker at a time, facing one job of every kind: it runs all it may, nothing else."""
    dep = deployment()
    world = _world(dep)
    for kind in WORKER_KINDS:
        jobs = world.submit_all(f"alone-{kind}")
        may = {name for name, (_, _, kinds) in JOBS.items() if kind in kinds}
        worker = world.start_worker(kind)

        finished = dep.wait_for_jobs([jobs[n] for n in may], timeout_s=RUN_TIMEOUT_S)
        for name in sorted(may):
            job = finished[jobs[name]]
            assert job["status"] == "COMPLETED" and job["exit_code"] == 0, f"{kind} worker, {name}: {job}"
            assert _hosts_of(dep, jobs[name]) == [worker.host_uid], (
                f"{name} ran elsewhere than the {kind} worker"
            )
        _settle(worker, SETTLE_S)
        _assert_not_run(dep, jobs, set(JOBS) - may, f"only a {kind} worker runs")

        assert worker.stop() == 0, worker.log_text()
        for name in set(JOBS) - may:  # the next worker faces a fresh set only
            dep.api.call("DELETE", f"/jobs/{jobs[name]}")


def test_all_worker_kinds_together_share_the_jobs_by_rights(deployment: MakeDeployment) -> None:
    """The three kinds at once, jobs submitted while they wait: every job runs once, on a worker that
    may run it; the jobs no worker may run stay PENDING."""
    dep = deployment()
    world = _world(dep)
    # the three start side by side; all are registered (and long-polling) before the submissions
    workers = {kind: world.start_worker(kind, wait_registered=False) for kind in WORKER_KINDS}
    for w in workers.values():
        dep.wait_registered(w)
    kind_of_host = {w.host_uid: kind for kind, w in workers.items()}

    jobs = world.submit_all("together")  # the workers are long-polling: each submission wakes them
    runnable = {name for name, (_, _, kinds) in JOBS.items() if kinds}
    finished = dep.wait_for_jobs([jobs[n] for n in runnable], timeout_s=RUN_TIMEOUT_S)
    ran_on = {}
    for name in sorted(runnable):
        job = finished[jobs[name]]
        assert job["status"] == "COMPLETED" and job["exit_code"] == 0, f"{name}: {job}"
        hosts = _hosts_of(dep, jobs[name])
        assert len(hosts) == 1, f"{name} ran {len(hosts)} times: {hosts}"
        ran_on[name] = kind_of_host.get(hosts[0], f"unknown host {hosts[0]}")
        assert ran_on[name] in JOBS[name][2], (
            f"{name} ran on the {ran_on[name]} worker; only {sorted(JOBS[name][2])} may run it"
        )
    # the jobs only one kind may run went there (so each kind did run something)
    assert {ran_on[n] for n in runnable if len(JOBS[n][2]) == 1} == set(WORKER_KINDS), ran_on

    for w in workers.values():
        _settle(w, SETTLE_S / len(workers))
    _assert_not_run(dep, jobs, set(JOBS) - runnable, "no worker may run it")
