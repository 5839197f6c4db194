"""What a job needs of its host beyond memory and disk: tags, cores and GPUs.

Hosts carry tags from their config (``worker.tags``: OMERO.grid's roles, "gpu", "bigmem",
a site name), their cores and their GPUs (from their registration). An application may
require some (its jobs need them all), and a job may add its own. The claim honours them
in its one statement (:func:`xwserver.hot.claim_select`): a job's cores and GPUs against the
host's, and its tags (rows of ``job_tags``, counted in ``jobs.tag_count``) all among the
host's.
"""

from __future__ import annotations

import json
import re
from typing import Any

from xwcommon.errors import BadRequest

MAX_TAGS = 64
MAX_COUNT = 1 << 20
_TAG = re.compile(r"^[\x21-\x7e]{1,127}$")


def tags(value: Any, where: str = "tags") -> list[str]:
    """Required tags as given: a list of at most MAX_TAGS printable words, sorted, unique."""
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_TAGS:
        raise BadRequest(f'"{where}" must be a list of at most {MAX_TAGS} tags')
    for tag in value:
        if not isinstance(tag, str) or not _TAG.match(tag):
            raise BadRequest(
                f'"{where}": {str(tag)[:40]!r} is not a tag (1-127 printable characters, no spaces)'
            )
    return sorted(set(value))


def count(spec: dict[str, Any], key: str) -> int:
    value = spec.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_COUNT:
        raise BadRequest(f'"{key}" must be an integer from 0 to {MAX_COUNT}')
    return value


def parse_tags(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [t for t in value if isinstance(t, str)] if isinstance(value, list) else []


def of_app(body: dict[str, Any]) -> dict[str, Any]:
    """An application's requirements as stored (``tags`` is stored as ``required_tags``)."""
    return {
        "required_tags": json.dumps(tags(body.get("tags"))),
        "min_cores": count(body, "min_cores"),
        "min_gpus": count(body, "min_gpus"),
    }


def of_job(spec: dict[str, Any], app: Any) -> tuple[dict[str, Any], list[str]]:
    """A job's requirements (its app's and its own): the columns, and its tags."""
    wanted = sorted(set(parse_tags(app.required_tags)) | set(tags(spec.get("tags"))))
    columns = {
        "min_cores": max(app.min_cores, count(spec, "min_cores")),
        "min_gpus": max(app.min_gpus, count(spec, "min_gpus")),
        "tag_count": len(wanted),
    }
    return columns, wanted
