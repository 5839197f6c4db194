"""The command-line programs import aiohttp without its default contexts reading the system's
CA bundle (xwcommon/programs.py); a program using the SDK keeps aiohttp as it is."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

PROBE = """
import json, ssl, sys
{imports}
import aiohttp.connector
print(json.dumps({{
    "aiohttp_default": aiohttp.connector._SSL_CONTEXT_VERIFIED.cert_store_stats()["x509_ca"],
    "default_after": ssl.create_default_context().cert_store_stats()["x509_ca"],
}}))
"""


def _probe(imports: str) -> dict[str, int]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(imports=imports)], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def test_the_system_has_certificate_authorities_to_leave_out() -> None:
    assert _probe("")["aiohttp_default"] > 0, "nothing to compare with: the system has no CA bundle"


@pytest.mark.parametrize("program", ["xwclient.cli", "xwclient.scripts", "xwworker.cli", "xwcommon.programs"])
def test_a_program_makes_aiohttp_trust_no_default_authority_and_leaves_ssl_as_it_was(program: str) -> None:
    """Its verifying default context trusts no one (a connection without its own context
    fails closed); a default context made afterwards has the system's authorities again."""
    found = _probe(f"import {program}")
    assert found["aiohttp_default"] == 0
    assert found["default_after"] > 0


def test_a_program_using_the_sdk_keeps_aiohttp_as_aiohttp_makes_itself() -> None:
    found = _probe("import xwclient\nxwclient.XWClient")
    assert found["aiohttp_default"] > 0
