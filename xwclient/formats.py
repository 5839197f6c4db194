"""Output formats of the client: ``text``, ``json``, ``xml``, ``csv``, ``html``.

Every format shows the same fields, in one fixed order per kind of object
(:data:`COLUMNS`), so a script may switch formats without surprises, and every format
but ``text`` parses back with :func:`parse`.

Cell values: ``json`` keeps the wire's types (numbers, ``null``, lists). The other formats
are text: ``None`` is the empty string, booleans are ``true``/``false``, lists and objects
are compact JSON (``["-n","5"]``), so nothing is lost; :func:`cell` is that conversion.
``text`` is for people: an aligned table, sizes in KiB/MiB/GiB, lists of words joined by
spaces, an app's binaries shown as ``os/cpu``, a host's GPUs as ``name (8.0 GiB)``, a session's job counts as
``COMPLETED=3 PENDING=1``; it does not parse back.

The schema of each kind is :data:`COLUMNS`, the same in every format; dates are ISO 8601 UTC
(``2026-11-22T10:00:00.123456Z``) as the server gives them, sizes are in bytes, times in
seconds. Nested wire objects are flattened into columns of their own so that csv and xml
carry them like any field:

- ``task``: the worker's accounting of the attempt (``accounting`` on the wire) is
  ``cpu_user_s``, ``cpu_system_s``, ``wall_s`` and ``max_rss_bytes`` (peak memory); all empty
  while the task runs or when the worker could not measure them;
- ``host``: ``state`` is ``active``, ``suspended`` (by its activation policy), ``lost``
  (silent for several heartbeat intervals) or ``disabled`` (by an administrator); its
  activation (``activation`` on the wire) is ``activation_state`` (``active`` or
  ``suspended``: whether its owner's policy lets it compute now), ``activation_detail`` (why)
  and ``activation_since``; ``gpus`` is the list of ``{"name", "memory_bytes"}``;
- ``session`` and ``group`` (of jobs): ``job_counts`` is ``{status: number of jobs}``.

``text`` shows fewer fields of the wide kinds (:data:`TEXT_COLUMNS`: what people look at,
in 120 columns, long cells cut with ``…``); ``--xwlong`` shows every field uncut, and
``--xwfields a,b,c`` chooses the fields, in that order, in every format (as
``condor_q -af``).

The client's own reports: ``result`` (one row per job whose result ``xwresults`` fetched:
``path`` is the folder, or the zip with ``--xwnoextract``; ``erased`` whether the job was then
removed from the server), ``removed``, ``rights``, ``password``, ``ping`` (milliseconds) and
``version``.

``usage`` (``xwusage``): one row per user (``scope`` user) and, for a SUPER user, per user
group (``scope`` group): ``jobs`` submitted in the period, ``tasks`` (attempts) ended in it with
their ``cpu_s`` (user + system) and ``wall_s``, ``bytes_up`` (data stored) and ``bytes_down``
(results computed for the user's jobs), over ``since``..``until``.
"""

from __future__ import annotations

import csv
import html
import io
import json
import re
import shlex
from collections.abc import Iterable, Mapping
from html.parser import HTMLParser
from typing import Any
from xml.etree import ElementTree

from xwcommon.errors import BadRequest

FORMATS = ("text", "json", "xml", "csv", "html")

#: the fields of each kind of row, most useful first; the XML element of a row is its kind
COLUMNS: dict[str, tuple[str, ...]] = {
    "data": (
        "uid",
        "name",
        "size",
        "sha256",
        "status",
        "owner_uid",
        "access_rights",
        "created_at",
        "uri",
        "url",
    ),
    "usage": (
        "scope",
        "name",
        "group",
        "users",
        "jobs",
        "tasks",
        "cpu_s",
        "wall_s",
        "bytes_up",
        "bytes_down",
        "since",
        "until",
    ),
    "event": (
        "id",
        "at",
        "kind",
        "object_uid",
        "action",
        "actor_uid",
        "address",
        "job_uid",
        "host_uid",
        "detail",
    ),
    "app": ("uid", "name", "binaries", "needs_network", "owner_uid", "access_rights", "created_at", "uri"),
    "job": (
        "uid",
        "status",
        "app_name",
        "label",
        "args",
        "exit_code",
        "message",
        "retry",
        "max_retry",
        "result_uid",
        "result_sha256",
        "stdin_uid",
        "env_uid",
        "session_uid",
        "group_uid",
        "expected_host_uid",
        "min_memory_bytes",
        "min_disk_bytes",
        "needs_network",
        "priority",
        "min_quorum",
        "target_results",
        "max_error_results",
        "max_total_results",
        "delay_bound_s",
        "copies_sent",
        "results",
        "trusted",
        "tags",
        "min_cores",
        "min_gpus",
        "pending_reason",
        "app_uid",
        "owner_uid",
        "access_rights",
        "created_at",
        "started_at",
        "completed_at",
        "uri",
    ),
    "task": (
        "uid",
        "job_uid",
        "host_uid",
        "status",
        "exit_code",
        "validity",
        "cpu_user_s",
        "cpu_system_s",
        "wall_s",
        "max_rss_bytes",
        "started_at",
        "ended_at",
        "lease_expires_at",
        "uri",
    ),
    "host": (
        "uid",
        "name",
        "os",
        "cpu",
        "cores",
        "memory_bytes",
        "disk_free_bytes",
        "gpus",
        "tags",
        "version",
        "enabled",
        "state",
        "activation_state",
        "activation_detail",
        "activation_since",
        "credit_cpu_s",
        "valid_results",
        "invalid_results",
        "valid_streak",
        "access_rights",
        "owner_uid",
        "registered_at",
        "last_seen_at",
        "uri",
    ),
    "user": (
        "uid",
        "login",
        "rights",
        "group_uid",
        "email",
        "credit_cpu_s",
        "valid_results",
        "invalid_results",
        "uri",
    ),
    "usergroup": ("uid", "label", "members", "created_at", "uri"),
    "session": ("uid", "name", "job_counts", "owner_uid", "access_rights", "created_at", "uri"),
    "group": ("uid", "name", "job_counts", "owner_uid", "access_rights", "created_at", "uri"),
    # what the client itself reports
    "rights": ("uid", "kind", "access_rights", "owner_uid", "uri"),
    "result": ("job_uid", "path", "result_uid", "sha256", "erased"),
    "removed": ("uid", "kind"),
    "password": ("login", "changed"),
    "ping": ("server", "version", "api", "connect_ms", "rtt_ms"),
    "version": ("client_version", "server_version", "api", "server"),
}

#: the fields ``text`` shows by default for the wide kinds, each with its widest cell (None:
#: never cut); a row then fits in :data:`TEXT_WIDTH` columns
TEXT_COLUMNS: dict[str, tuple[tuple[str, int | None], ...]] = {
    "event": (
        ("at", None),
        ("kind", None),
        ("object_uid", None),
        ("action", 10),
        ("actor_uid", 8),
        ("detail", 30),
    ),
    "job": (
        ("uid", None),
        ("status", None),
        ("exit_code", None),
        ("app_name", 14),
        ("label", 16),
        ("message", 26),
    ),
    "host": (
        ("uid", None),
        ("name", 14),
        ("os", 8),
        ("cpu", 8),
        ("cores", None),
        ("memory_bytes", 10),
        ("state", None),
        ("activation_state", None),
        ("credit_cpu_s", 10),
    ),
    "task": (  # what xwtasks is for: each attempt's accounting (--xwlong adds its job and host)
        ("uid", None),
        ("status", None),
        ("exit_code", None),
        ("cpu_user_s", 10),
        ("cpu_system_s", 12),
        ("wall_s", 10),
        ("max_rss_bytes", 13),
    ),
}
#: the terminal width the default ``text`` columns are made for
TEXT_WIDTH = 120

#: the XML root element
XML_ROOT = "xtremweb"


def check_format(name: str) -> str:
    """Normalise a format name (XWHEP wrote them in capitals); :class:`BadRequest` if unknown."""
    fmt = name.strip().lower()
    if fmt not in FORMATS:
        raise BadRequest(f"unknown format {name!r}; use one of {', '.join(FORMATS)}")
    return fmt


def columns_of(kind: str) -> tuple[str, ...]:
    try:
        return COLUMNS[kind]
    except KeyError:
        raise ValueError(f"unknown kind of row {kind!r}") from None


def cell(value: Any) -> str:
    """One value as text, losslessly for the wire's types (see the module docstring)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


#: one row per line and aligned columns, whatever a job wrote in its message
_HUMAN_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def _human_cell(field: str, value: Any) -> str:
    if field == "binaries" and isinstance(value, list):
        return " ".join(f"{b.get('os', '?')}/{b.get('cpu', '?')}" for b in value if isinstance(b, Mapping))
    if field == "gpus" and isinstance(value, list):
        return ", ".join(
            f"{g.get('name', '?')} ({_gib(g.get('memory_bytes'))})" for g in value if isinstance(g, Mapping)
        )
    if (
        (field == "size" or field.endswith("_bytes"))
        and isinstance(value, int)
        and not isinstance(value, bool)
    ):
        return human_size(value)
    if field == "job_counts" and isinstance(value, Mapping):
        return " ".join(f"{k}={v}" for k, v in sorted(value.items()) if v)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return shlex.join(value) if field == "args" else " ".join(value)
    return cell(value).translate(_HUMAN_ESCAPES)


def human_size(n: int) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB``, ``40.0 GiB``."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{n} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _gib(n: Any) -> str:
    return f"{n / 1024**3:.1f} GiB" if isinstance(n, (int, float)) else "?"


#: nested wire objects whose fields become columns: kind -> (wire field, {column: its field})
FLATTENED: dict[str, tuple[str, dict[str, str]]] = {
    "task": (
        "accounting",
        {
            "cpu_user_s": "cpu_user_s",
            "cpu_system_s": "cpu_system_s",
            "wall_s": "wall_s",
            "max_rss_bytes": "max_rss_bytes",
        },
    ),
    "host": (
        "activation",
        {"activation_state": "state", "activation_detail": "detail", "activation_since": "since"},
    ),
}


def check_fields(kind: str, fields: Iterable[str]) -> tuple[str, ...]:
    """``fields`` of ``kind`` as given (comma-separated words allowed); :class:`BadRequest`
    naming the known ones when one is not a field of that kind."""
    known = columns_of(kind)
    chosen = tuple(f.strip().lower() for text in fields for f in text.split(",") if f.strip())
    for f in chosen:
        if f not in known:
            raise BadRequest(f"--xwfields: {kind} has no field {f!r}; its fields: {', '.join(known)}")
    if not chosen:
        raise BadRequest(f"--xwfields: no field given; the fields of {kind}: {', '.join(known)}")
    return chosen


def project(
    rows: Iterable[Mapping[str, Any]], kind: str, cols: tuple[str, ...] | None = None
) -> list[dict[str, Any]]:
    """Keep the kind's fields (or ``cols``), in order; a missing field is ``None``; nested wire
    objects are flattened (:data:`FLATTENED`)."""
    cols = cols or columns_of(kind)
    nested, fields = FLATTENED.get(kind, ("", {}))
    out = []
    for row in rows:
        flat = dict(row)
        inner = row.get(nested) if nested else None
        for column, name in fields.items():
            if column not in flat or flat[column] is None:
                flat[column] = inner.get(name) if isinstance(inner, Mapping) else None
        out.append({c: flat.get(c) for c in cols})
    return out


def render(
    rows: Iterable[Mapping[str, Any]],
    kind: str,
    fmt: str = "text",
    *,
    fields: Iterable[str] | None = None,
    long: bool = False,
) -> str:
    """Render rows of one kind in one format; the result ends with a newline.

    ``fields`` chooses the fields in every format; else ``text`` shows :data:`TEXT_COLUMNS`
    of the wide kinds unless ``long``, and the other formats every field.
    """
    fmt = check_format(fmt)
    cuts: dict[str, int | None] = {}
    if fields is not None:
        cols = check_fields(kind, fields)
    elif fmt == "text" and not long and kind in TEXT_COLUMNS:
        cuts = dict(TEXT_COLUMNS[kind])
        cols = tuple(cuts)
    else:
        cols = columns_of(kind)
    data = project(rows, kind, cols)
    if fmt == "json":
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(cols)
        writer.writerows([cell(r[c]) for c in cols] for r in data)
        return buf.getvalue()
    if fmt == "xml":
        root = ElementTree.Element(XML_ROOT, {"kind": kind, "count": str(len(data))})
        for r in data:
            ElementTree.SubElement(root, kind, {c: _xml_safe(cell(r[c])) for c in cols})
        ElementTree.indent(root)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n' + ElementTree.tostring(root, encoding="unicode") + "\n"
        )
    if fmt == "html":
        return _render_html(data, kind, cols)
    return _render_text(data, cols, cuts)


# Characters XML 1.0 cannot carry at all, even escaped (control characters but tab, CR, LF).
_XML_INVALID = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _xml_safe(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def _render_text(
    data: list[dict[str, Any]], cols: tuple[str, ...], cuts: Mapping[str, int | None] | None = None
) -> str:
    cuts = cuts or {}
    table = [list(cols)] + [[_cut(_human_cell(c, r[c]), cuts.get(c)) for c in cols] for r in data]
    widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
    return "".join(
        "  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip() + "\n" for line in table
    )


def _cut(text: str, width: int | None) -> str:
    return text if width is None or len(text) <= width else text[: width - 1] + "…"


def _render_html(data: list[dict[str, Any]], kind: str, cols: tuple[str, ...]) -> str:
    esc = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"><title>XtremWeb-Py: ' + esc(kind) + "</title></head><body>",
        f'<table class="xw-{esc(kind)}">',
        "<thead><tr>" + "".join(f"<th>{esc(c)}</th>" for c in cols) + "</tr></thead>",
        "<tbody>",
    ]
    out += ["<tr>" + "".join(f"<td>{esc(cell(r[c]))}</td>" for c in cols) + "</tr>" for r in data]
    out += ["</tbody>", "</table>", "</body></html>"]
    return "\n".join(out) + "\n"


# -- parsing back ---------------------------------------------------------------------------------
def parse(text: str, fmt: str) -> list[dict[str, Any]]:
    """Rows back from ``json``, ``xml``, ``csv`` or ``html`` output.

    ``json`` gives the wire's types back; the others give the :func:`cell` strings.
    """
    fmt = check_format(fmt)
    if fmt == "json":
        rows = json.loads(text)
        if not isinstance(rows, list):
            raise ValueError("JSON output is a list of rows")
        return [dict(r) for r in rows]
    if fmt == "csv":
        return [dict(r) for r in csv.DictReader(io.StringIO(text))]
    if fmt == "xml":
        root = ElementTree.fromstring(text)
        return [dict(child.attrib) for child in root]
    if fmt == "html":
        parser = _TableParser()
        parser.feed(text)
        parser.close()
        header, *body = parser.rows
        return [dict(zip(header, r, strict=True)) for r in body]
    raise ValueError("text output is for people and does not parse back; use json, xml, csv or html")


class _TableParser(HTMLParser):
    """Collects the cells of the one table the ``html`` format writes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
