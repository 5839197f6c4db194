"""``/metrics``: who may read it, what it counts, how often it asks the database."""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families

from xwcommon.errors import ConfigError
from xwserver import metrics

if TYPE_CHECKING:
    from conftest import XW

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def server_conf() -> dict[str, str]:
    return {"metrics.token": TOKEN}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


async def _scrape(xw: XW, token: str | None = TOKEN) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    async with xw.session.get(xw.url + "/metrics", headers=headers) as resp:
        return resp.status, await resp.text()


def test_the_token_opens_metrics_and_nothing_else_does() -> None:
    access = metrics.Access(TOKEN, "")
    assert access.allows("10.1.2.3", f"Bearer {TOKEN}")
    assert not access.allows("10.1.2.3", "Bearer " + TOKEN[:-1])
    assert not access.allows("10.1.2.3", f"Basic {TOKEN}")
    assert not access.allows("10.1.2.3", "")


def test_an_allowed_network_reads_metrics_without_a_token() -> None:
    access = metrics.Access("", "127.0.0.1, 10.0.0.0/8,::1")
    assert access.allows("10.200.0.1", "") and access.allows("::1", "") and access.allows("127.0.0.1", "")
    assert not access.allows("192.168.1.1", "") and not access.allows(None, "")
    assert not metrics.Access("", "").configured


def test_a_malformed_allow_list_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"metrics\.allow"):
        metrics.check_settings("", "10.0.0.0/33")


async def test_metrics_refuse_a_scraper_without_the_token_and_a_users_token(xw: XW) -> None:
    assert (await _scrape(xw, None))[0] == 403
    assert (await _scrape(xw, xw.admin))[0] == 403  # the admin's token is not the metrics token
    status, text = await _scrape(xw)
    assert status == 200
    assert any(f.name == "xw_jobs" for f in text_string_to_metric_families(text))


async def test_requests_are_counted_by_route_template_not_by_path(xw: XW) -> None:
    missing = [str(uuid.uuid4()) for _ in range(3)]
    for uid in missing:
        assert (await xw.call("GET", f"/jobs/{uid}", token=xw.admin)).status == 404
    await xw.call("GET", "/no/such/route/" + missing[0], token=xw.admin)
    got = _samples((await _scrape(xw))[1])
    key = ("xw_http_requests_total", (("code", "404"), ("method", "GET"), ("route", "/api/v1/jobs/{uid}")))
    assert got[key] >= 3
    routes = {dict(labels)["route"] for name, labels in got if name == "xw_http_requests_total"}
    assert "other" in routes
    assert not any(uid in route for route in routes for uid in missing)


async def test_counts_of_jobs_come_from_the_database_at_most_once_per_period(xw: XW) -> None:
    await xw.insert_app(xw.admin, "counted")
    before = _samples((await _scrape(xw))[1])[("xw_jobs", (("status", "PENDING"),))]
    await xw.submit(xw.admin, "counted")
    cached = _samples((await _scrape(xw))[1])[("xw_jobs", (("status", "PENDING"),))]
    assert cached == before  # within COUNTS_TTL_S: the cached counts, no new query

    counts = metrics.DatabaseCounts(xw.srv, ttl_s=metrics.COUNTS_TTL_S)
    await counts.refresh()
    fresh = {s.labels["status"]: s.value for f in counts.collect() if f.name == "xw_jobs" for s in f.samples}
    assert fresh["PENDING"] == before + 1
    queried_at = counts._at
    await counts.refresh(now=time.monotonic())
    assert counts._at == queried_at  # asked again at once: not counted again


async def test_a_failed_login_is_counted(xw: XW) -> None:
    before = _samples((await _scrape(xw))[1]).get(("xw_login_failures_total", ()), 0.0)
    r = await xw.call("POST", "/login", json={"login": "admin", "password": "not-the-password"})
    assert r.status == 401
    assert _samples((await _scrape(xw))[1])[("xw_login_failures_total", ())] == before + 1
