"""The security tests run against the in-process HTTPS server of tests/unit/conftest.py.

That harness is loaded here under its own module name (two folders' ``conftest`` modules
must not shadow each other) and its fixtures re-exported. The server gets small body
limits so the limits can be tested without sending megabytes. Tests run on SQLite unless
they ask for every backend with ``@pytest.mark.parametrize("backend", BACKENDS)``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_NAME = "xw_server_harness"
if _NAME not in sys.modules:
    _spec = importlib.util.spec_from_file_location(
        _NAME, Path(__file__).parent.parent / "unit" / "conftest.py"
    )
    assert _spec is not None and _spec.loader is not None
    _module = importlib.util.module_from_spec(_spec)
    sys.modules[_NAME] = _module
    _spec.loader.exec_module(_module)

from xw_server_harness import BACKENDS, XW, db_templates, xw  # noqa: E402

__all__ = ["BACKENDS", "XW", "db_templates", "xw", "MAX_JSON_BYTES", "MAX_BODY_BYTES"]

MAX_JSON_BYTES = 128 * 1024  # above the 64 KiB of arguments a job may have
MAX_BODY_BYTES = 256 * 1024


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture
def server_conf() -> dict[str, str]:
    return {"max_json_bytes": str(MAX_JSON_BYTES), "max_body_bytes": str(MAX_BODY_BYTES)}
