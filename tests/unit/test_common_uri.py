"""Object identifiers: a bare UID or an xw:// URI is accepted, anything else refused."""

from __future__ import annotations

import uuid

import pytest

from xwcommon.errors import BadRequest
from xwcommon.uri import is_uid, make_uri, new_uid, parse_uid

UID = "0b6f7a5e-3c2d-4e1f-8a9b-1c2d3e4f5a6b"


def test_new_uids_are_distinct_time_ordered_uuid7_strings() -> None:
    import time

    before = time.time_ns() // 1_000_000
    made = [new_uid() for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    assert len(set(made)) == 1000
    parsed = [uuid.UUID(u) for u in made]
    assert all(
        p.version == 7 and p.variant == uuid.RFC_4122 and str(p) == u
        for p, u in zip(parsed, made, strict=True)
    )
    stamps = [p.int >> 80 for p in parsed]  # the 48-bit millisecond time in front
    assert before <= stamps[0] and stamps[-1] <= after and stamps == sorted(stamps)
    later = new_uid()
    time.sleep(0.002)
    assert new_uid() > later  # a later millisecond sorts after, as text too
    assert all(is_uid(u) for u in made)


@pytest.mark.parametrize(
    "server", ["xw.example.org:4325", "https://xw.example.org:4325", "https://xw.example.org:4325/"]
)
def test_a_uri_names_the_server_and_the_uid(server: str) -> None:
    assert make_uri(server, UID) == f"xw://xw.example.org:4325/{UID}"


@pytest.mark.parametrize(
    "text",
    [
        UID,
        UID.upper(),
        f"  {UID}\n",
        f"xw://xw.example.org:4325/{UID}",
        f"xw://xw.example.org:4325/{UID}/",
        f"xw://[::1]:4325/{UID}",
        make_uri("localhost:4325", UID),
    ],
)
def test_a_bare_uid_or_an_xw_uri_gives_the_canonical_uid(text: str) -> None:
    assert parse_uid(text) == UID
    assert is_uid(text)


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "not-a-uid",
        "12345",
        UID + "0",
        UID[:-1],
        "xw://",
        "xw://xw.example.org:4325/",
        "xw://xw.example.org:4325/garbage",
        f"https://xw.example.org:4325/{UID}x",
        "../../etc/passwd",
        f"{UID}\0",
        "'; DROP TABLE jobs; --",
        "x" * 10_000,
    ],
)
def test_garbage_is_refused_with_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest, match="neither a UID nor an xw:// URI") as err:
        parse_uid(text)
    assert err.value.http_status == 400
    assert not is_uid(text)


def test_the_round_trip_through_a_uri_is_lossless() -> None:
    uid = new_uid()
    assert parse_uid(make_uri("https://127.0.0.1:4325", uid)) == uid
