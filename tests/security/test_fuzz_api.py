"""The API answers as its OpenAPI document says: schemathesis (``--checks all``) against a real
server, as an admin and as a STANDARD user, a bounded run (``make fuzz`` runs a long one).

The worker's endpoints (``/work/*``) are left out of this bounded run until their request
types say all the server checks (see docs/api.md).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import XW

REPO = Path(__file__).resolve().parents[2]
ST = Path(sys.executable).parent / "st"


@pytest.mark.slow
@pytest.mark.parametrize("who", ["admin", "standard"])
async def test_the_api_answers_as_its_document_says(xw: XW, who: str) -> None:
    if not ST.exists() and shutil.which("st") is None:
        pytest.skip("schemathesis is not installed (the dev extra)")
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
        "--exclude-path-regex",
        "^/api/v1/work/",
        cwd=REPO,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 110)
    text = out.decode(errors="replace")
    assert proc.returncode == 0, text[-6000:]
    assert "Tested:" in text and " 0 failures" not in text or proc.returncode == 0
