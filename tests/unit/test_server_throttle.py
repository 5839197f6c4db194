"""The login throttle, on its own, with injected time."""

from __future__ import annotations

import pytest

from xwcommon.errors import LOGIN_BUSY, TooManyRequests
from xwserver.throttle import LoginThrottle

ADDR = "192.0.2.1"


def fail(t: LoginThrottle, login: str, now: float, address: str = ADDR) -> None:
    t.admit(login, address, now=now)
    t.record(login, address, False, now=now)


def wait_of(t: LoginThrottle, login: str, now: float, address: str = ADDR) -> int:
    with pytest.raises(TooManyRequests) as info:
        t.admit(login, address, now=now)
    assert info.value.http_status == 429 and info.value.code == "too_many_requests"
    assert info.value.retry_after_s is not None
    return info.value.retry_after_s


def test_failures_past_the_allowance_wait_twice_as_long_each_time_up_to_the_cap() -> None:
    t = LoginThrottle(failures_allowed=3, backoff_cap_s=10, backoff_start_s=1)
    for _ in range(2):
        fail(t, "alice", now=0)
    t.admit("alice", ADDR, now=0)  # the third attempt is still let through
    t.record("alice", ADDR, False, now=0)
    assert wait_of(t, "alice", now=0) == 1
    waits, now = [], 0.0
    for _ in range(6):
        now += wait_of(t, "alice", now)
        fail(t, "alice", now)
        waits.append(wait_of(t, "alice", now))
    assert waits == [2, 4, 8, 10, 10, 10]


def test_a_blocked_attempt_is_not_counted_so_hammering_does_not_prolong_the_wait() -> None:
    t = LoginThrottle(failures_allowed=2, backoff_cap_s=900, backoff_start_s=4)
    fail(t, "alice", 0)
    fail(t, "alice", 0)
    for second in range(4):
        assert wait_of(t, "alice", now=second + 0.5) == 4 - second
    t.admit("alice", ADDR, now=4.0)  # the wait is over, however many refused attempts came
    t.record("alice", ADDR, True, now=4.0)


def test_a_success_resets_the_login_but_not_the_address() -> None:
    t = LoginThrottle(failures_allowed=2, backoff_cap_s=900, backoff_start_s=1, address_factor=2)
    fail(t, "alice", 0)
    t.admit("alice", ADDR, now=1)
    t.record("alice", ADDR, True, now=1)
    fail(t, "alice", 2)  # one failure again: the count started over
    t.admit("alice", ADDR, now=2)
    t.record("alice", ADDR, True, now=2)
    # the address has 2 failures of its 4; two more on other logins block it for everyone
    fail(t, "bob", 3)
    fail(t, "carol", 3)
    assert wait_of(t, "dave", now=3) == 1
    t.admit("dave", "198.51.100.7", now=3)  # another address is not concerned


def test_an_address_trying_many_logins_is_blocked_after_its_larger_allowance() -> None:
    t = LoginThrottle(failures_allowed=5, backoff_cap_s=900, backoff_start_s=1, address_factor=4)
    for i in range(20):
        fail(t, f"user{i}", now=0)
    assert wait_of(t, "someone-new", now=0) == 1
    t.admit("someone-new", "203.0.113.9", now=0)


def test_parallel_attempts_get_no_more_tries_than_sequential_ones() -> None:
    t = LoginThrottle(failures_allowed=3, backoff_cap_s=900)
    for _ in range(3):
        t.admit("alice", ADDR, now=0)  # three in flight, none finished
    with pytest.raises(TooManyRequests) as info:
        t.admit("alice", ADDR, now=0)
    # not a failure: a client with the right password comes back a second later
    assert info.value.code == LOGIN_BUSY and "in progress" in info.value.message
    assert info.value.retry_after_s == 1
    t.record("alice", ADDR, None, now=0)  # no verdict (e.g. the database failed): not counted
    t.admit("alice", ADDR, now=0)


def test_failures_are_forgotten_after_the_cap_and_the_table_stays_bounded() -> None:
    t = LoginThrottle(failures_allowed=5, backoff_cap_s=60, max_entries=100)
    for i in range(1000):
        fail(t, f"made-up-{i}", now=0, address=f"10.0.{i // 250}.{i % 250}")
    assert len(t) <= 100
    fail(t, "alice", now=0)
    t.admit("nobody", "10.9.9.9", now=61)  # sweeps what is older than the cap
    assert len(t) == 2  # only the attempt in flight remains
    t.record("nobody", "10.9.9.9", True, now=61)
    assert len(t) == 0


def test_a_zero_cap_turns_throttling_off() -> None:
    t = LoginThrottle(failures_allowed=1, backoff_cap_s=0)
    for second in range(10):
        fail(t, "alice", now=float(second))
