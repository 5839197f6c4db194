"""Names compare exactly on every database: case and trailing spaces count (SQLite and
PostgreSQL compare bytes; MariaDB's tables have a binary collation without padding)."""

from __future__ import annotations

from helpers import domain as d

from xwserver.state import Server


async def test_tags_that_differ_only_in_case_are_two_tags_and_a_host_needs_both(domain: Server) -> None:
    """A job requiring ``gpu`` and ``GPU`` is accepted with both (two rows of its tags), goes
    to no host carrying one of them only, and goes to a host carrying both."""
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    job = await d.submit(srv, admin, "sim", tags=["gpu", "GPU"])
    assert sorted(job["tags"]) == ["GPU", "gpu"]
    lower = await d.register(srv, name="lower", tags=["gpu"])
    upper = await d.register(srv, name="upper", tags=["GPU"])
    spaced = await d.register(srv, name="spaced", tags=["gpu ", "GPU "])
    for host in (lower, upper, spaced):
        assert await d.request_work(srv, host) == [], host
    both = await d.register(srv, name="both", tags=["GPU", "gpu"])
    [assigned] = await d.request_work(srv, both)
    assert assigned.job_uid == job["uid"]


async def test_a_host_tagged_in_upper_case_gets_no_job_requiring_the_lower_case_tag(domain: Server) -> None:
    srv = domain
    admin = await d.admin(srv)
    await d.insert_app(srv, admin, "sim")
    job = await d.submit(srv, admin, "sim", tags=["cuda"])
    assert await d.request_work(srv, await d.register(srv, name="upper", tags=["CUDA"])) == []
    [assigned] = await d.request_work(srv, await d.register(srv, name="lower", tags=["cuda"]))
    assert assigned.job_uid == job["uid"]
