"""Passwords are hashed at the production cost outside the tests' in-process servers.

Those servers hash at a cheap scrypt cost (tests/helpers/password_cost.py);
this holds what production stores, and that the tests' cheap hashes go through the same
verification.
"""

from __future__ import annotations

from helpers.password_cost import TEST_SCRYPT_N, cheap_password_hashes

from xwserver import passwords

#: scrypt's (N, r, p) in production: ~40 ms a hash on the reference machine
PRODUCTION_COST = (2**14, 8, 1)


def _cost(stored: str) -> tuple[int, int, int]:
    scheme, n, r, p, _salt, _digest = stored.split("$")
    assert scheme == "scrypt", stored
    return int(n), int(r), int(p)


def test_a_password_is_hashed_with_scrypt_at_the_production_cost() -> None:
    stored = passwords.hash_password("correct horse battery staple")
    assert _cost(stored) == PRODUCTION_COST
    assert passwords.verify_password("correct horse battery staple", stored)
    assert not passwords.verify_password("correct horse battery stapler", stored)


def test_the_tests_cheap_hashes_end_with_their_block_and_verify_as_production_ones() -> None:
    with cheap_password_hashes():
        cheap = passwords.hash_password("pw")
    assert _cost(cheap) == (TEST_SCRYPT_N, *PRODUCTION_COST[1:])
    assert passwords.verify_password("pw", cheap) and not passwords.verify_password("px", cheap)
    assert _cost(passwords.hash_password("pw")) == PRODUCTION_COST
