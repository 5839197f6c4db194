"""A cheap password-hash cost for the servers the tests run in their own process.

scrypt at the production cost takes ~50 ms a hash; a server's bootstrap makes two, and every
user made and every login one more: about a fifth of the contract tests' time. Inside
:func:`cheap_password_hashes` new hashes use :data:`TEST_SCRYPT_N`. A hash carries its own
cost, so verifying runs the production code unchanged; only the work factor is smaller.
tests/unit/test_password_cost.py holds the production cost. Real server processes (the
end-to-end tier) keep the production cost.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

#: scrypt's N inside the tests' in-process servers: ~0.1 ms a hash
TEST_SCRYPT_N = 2**4


@contextlib.contextmanager
def cheap_password_hashes() -> Iterator[None]:
    """Hash new passwords at :data:`TEST_SCRYPT_N` while inside; the cost before, after."""
    from xwserver import passwords

    saved = passwords._N
    passwords._N = TEST_SCRYPT_N
    try:
        yield
    finally:
        passwords._N = saved
