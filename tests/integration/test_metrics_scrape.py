"""``/metrics`` scraped during a real run: a real server, a real worker, a job, parsed with
``prometheus_client``'s own parser."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

import pytest
from helpers.api import ApiError
from helpers.deployment import MakeDeployment, python_program
from prometheus_client.parser import text_string_to_metric_families

pytestmark = pytest.mark.slow

METRICS_TOKEN = "scraper-secret-0123456789"
ECHO = python_program("print('metrics')")


def _scrape(url: str, ca_file: str, token: str | None) -> tuple[int, str]:
    request = urllib.request.Request(f"{url}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    context = ssl.create_default_context(cafile=ca_file)
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_scrape_during_a_run_shows_the_job_the_worker_and_the_requests(deployment: MakeDeployment) -> None:
    dep = deployment(**{"metrics.token": METRICS_TOKEN})
    dep.start_worker()
    dep.send_app("echo", ECHO)
    uid = dep.submit("echo")
    dep.wait_for_status(uid, "COMPLETED")
    with pytest.raises(ApiError):
        dep.api._raw("POST", "/login", {"login": "admin", "password": "wrong-password"}, auth=False)
    dep.api.login()

    status, _ = _scrape(dep.url, str(dep.ca_file), None)
    assert status == 403
    status, _ = _scrape(dep.url, str(dep.ca_file), dep.api._token)  # the admin's token is no metrics token
    assert status == 403
    status, text = _scrape(dep.url, str(dep.ca_file), METRICS_TOKEN)
    assert status == 200, text
    got = _samples(text)

    assert got[("xw_jobs", (("status", "COMPLETED"),))] >= 1
    assert got[("xw_hosts", (("state", "active"),))] == 1
    assert got[("xw_hosts", (("state", "lost"),))] == 0
    assert got[("xw_tasks_assigned_total", ())] >= 1
    assert got[("xw_tasks_completed_total", ())] >= 1
    assert (
        got[("xw_report_seconds_count", ())]
        + got[("xw_work_request_seconds_count", (("outcome", "assigned"),))]
        >= 1
    )
    assert got[("xw_data_stored_bytes", ())] > 0
    assert got[("xw_login_failures_total", ())] >= 1
    assert got[("xw_http_bytes_total", (("direction", "in"),))] > 0
    assert got[("xw_db_pool_wait_seconds_count", ())] > 0
    # requests are counted by route template, never by raw path
    routes = {dict(labels)["route"] for name, labels in got if name == "xw_http_requests_total"}
    assert "/api/v1/work/request" in routes
    assert "/api/v1/jobs/{uid}" in routes
    assert not any(uid in r for r in routes)
    assert (
        got[("xw_http_requests_total", (("code", "201"), ("method", "POST"), ("route", "/api/v1/jobs")))] >= 1
    )


@pytest.mark.parametrize("database", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_with_two_server_processes_every_scrape_counts_the_requests_of_both(
    deployment: MakeDeployment, database: str | None
) -> None:
    dep = deployment(database, **{"server.processes": 2, "metrics.token": METRICS_TOKEN})
    assert (dep.home / "var" / "metrics").is_dir()
    n_calls = 40
    for _ in range(n_calls):  # a new connection each: the kernel spreads them over both processes
        dep.api.version()
    seen = []
    for _ in range(6):
        status, text = _scrape(dep.url, str(dep.ca_file), METRICS_TOKEN)
        assert status == 200, text
        got = _samples(text)
        seen.append(
            got[
                ("xw_http_requests_total", (("code", "200"), ("method", "GET"), ("route", "/api/v1/version")))
            ]
        )
    # whichever process answered, it added up both: never fewer than all the calls made
    assert min(seen) >= n_calls
    writers = {p.name.rsplit("_", 1)[-1] for p in (dep.home / "var" / "metrics").glob("counter_*.db")}
    assert len(writers) >= 2, writers
