"""The API answers as its OpenAPI document says: schemathesis (``--checks all``) against a real
server, as an admin and as a STANDARD user over every route, and as the deployment's public
worker (a WORKER identity) over the worker's own routes (``/work/*``): a bounded run (``make
fuzz`` runs a long one).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from xwserver.api.routes import ROUTES

if TYPE_CHECKING:
    from conftest import XW

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
from fuzz import SETTINGS  # noqa: E402

ST = Path(sys.executable).parent / "st"


@pytest.fixture
def server_conf(server_conf: dict[str, str]) -> dict[str, str]:
    """The security tests' settings, and make fuzz's (no long-poll: answers at once)."""
    return {**server_conf, **SETTINGS}


#: who runs, and the routes it runs over (a WORKER identity may call /work/* alone)
WHO = {
    "admin": ("--include-path-regex", "^/api/v1/"),
    "standard": ("--include-path-regex", "^/api/v1/"),
    "worker": ("--include-path-regex", "^/api/v1/work/"),
}


@pytest.mark.slow
@pytest.mark.parametrize("who", list(WHO))
async def test_the_api_answers_as_its_document_says(xw: XW, who: str) -> None:
    if not ST.exists() and shutil.which("st") is None:
        pytest.skip("schemathesis is not installed (the dev extra)")
    if who == "worker":
        token = xw.worker
        await xw.register()  # a real host, whose UID the run may come across
    else:
        token = xw.admin if who == "admin" else await xw.add_user("fuzzer")
    env = {**os.environ, "XW_FUZZ_CA": str(xw.ca_file), "XW_FUZZ_TOKEN": token}
    proc = await asyncio.create_subprocess_exec(
        str(ST) if ST.exists() else "st",
        "run",
        f"{xw.api}/openapi.json",
        "--checks",
        "all",
        "--max-examples",
        "3",
        "--phases",
        "examples,fuzzing",
        "--seed",
        "1",
        *WHO[who],
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 110)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    # every operation of the run was tested: the worker's six, or all but the two that would
    # revoke the run's own token (schemathesis.toml)
    work = sum(r.path.startswith("/work/") for r in ROUTES)
    tested = re.search(r"Tested: (\d+)", text)
    assert tested and int(tested.group(1)) == (work if who == "worker" else len(ROUTES) - 2), text[-3000:]
