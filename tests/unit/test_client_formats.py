"""Output formats: the same fields in each, in a fixed order, and json/xml/csv/html parse back."""

from __future__ import annotations

import json

import pytest

from xwclient import formats

UID = "5ac06852-c970-4618-b635-afd5c460fe81"

# Values chosen to break naive writers: separators, quotes, markup, newlines, unicode,
# nulls, booleans, numbers, lists with spaces.
SAMPLES: dict[str, list[dict]] = {
    "job": [
        {
            "uid": UID,
            "uri": f"xw://127.0.0.1:4325/{UID}",
            "app_uid": "b42d253f-d9fc-4a35-9e53-d6d88c8952db",
            "app_name": "hello, world",
            "owner_uid": "fed72e8c-f17b-4aeb-a564-62b16e265c42",
            "label": 'a "quoted" <label> & more',
            "args": ["-n", "5", "--seed=3", "two words", "é"],
            "stdin_uid": None,
            "env_uid": None,
            "status": "ERROR",
            "retry": 1,
            "max_retry": 3,
            "exit_code": -9,
            "message": "line one\nline two, with a comma\ttab",
            "result_uid": None,
            "result_sha256": None,
            "created_at": "2026-11-22T02:47:27.600741Z",
            "started_at": None,
            "completed_at": None,
            "access_rights": "0755",
            "extra_field_from_a_newer_server": "dropped",
        },
        {"uid": UID, "status": "PENDING", "args": []},  # fields missing: shown empty
    ],
    "data": [
        {
            "uid": UID, "uri": "xw://h/x", "name": "in put.txt", "size": 12345678901, "sha256": "ab" * 32,
            "status": "AVAILABLE", "owner_uid": UID, "access_rights": "0700", "created_at": "2026-01-01T00:00:00Z",
        },
    ],
    "app": [
        {
            "uid": UID, "uri": "xw://h/x", "name": "hello", "owner_uid": UID, "access_rights": "0755",
            "created_at": "2026-01-01T00:00:00Z",
            "binaries": [
                {"os": "linux", "cpu": "x86_64", "data_uid": UID, "sha256": "cd" * 32, "size": 78},
                {"os": "any", "cpu": "any", "data_uid": UID, "sha256": "ef" * 32, "size": 1},
            ],
        },
    ],
    "task": [
        {
            "uid": UID, "uri": "xw://h/x", "job_uid": UID, "host_uid": UID, "status": "LOST",
            "started_at": "2026-01-01T00:00:00Z", "ended_at": None, "lease_expires_at": "2026-01-01T00:01:00Z",
            "exit_code": None,
        },
    ],
    "host": [
        {
            "uid": UID, "uri": "xw://h/x", "name": "vm", "os": "linux", "cpu": "x86_64", "cores": 2,
            "memory_bytes": 25276502016, "disk_free_bytes": 0, "tags": ["gpu", "big mem"],
            "last_seen_at": "2026-01-01T00:00:00Z", "owner_uid": UID, "enabled": False, "access_rights": "0700",
            "version": "0.1.0", "registered_at": "2026-01-01T00:00:00Z",
        },
    ],
    "user": [
        {"uid": UID, "uri": "xw://h/x", "login": "admin", "rights": "SUPER", "group_uid": None, "email": "a@b.c"},
    ],
    "usergroup": [
        {"uid": UID, "uri": "xw://h/x", "label": "physics, \"HEP\" <lab>", "members": 3, "created_at": "2026-01-01T00:00:00Z"},
        {"uid": UID, "label": "empty", "members": 0},
    ],
    "rights": [
        {"uid": UID, "uri": "xw://h/x", "kind": "data", "access_rights": "0750", "owner_uid": UID, "name": "dropped"},
    ],
    "session": [
        {"uid": UID, "uri": "xw://h/x", "name": "scan, \"1\" <a>", "owner_uid": UID, "access_rights": "0700",
         "created_at": "2026-01-01T00:00:00Z", "job_counts": {"PENDING": 3, "COMPLETED": 1}},
    ],
    "group": [
        {"uid": UID, "uri": "xw://h/x", "name": "g", "owner_uid": UID, "access_rights": "0755",
         "created_at": "2026-01-01T00:00:00Z", "job_counts": {}},
    ],
}  # fmt: skip

ACCOUNTED_TASK = {
    **SAMPLES["task"][0],
    "status": "COMPLETED",
    "accounting": {"cpu_user_s": 1.25, "cpu_system_s": 0.5, "wall_s": 3.0, "max_rss_bytes": 10485760},
}
ACTIVE_HOST = {
    **SAMPLES["host"][0],
    "activation": {"state": "suspended", "detail": "the owner is typing", "since": "2026-01-01T00:00:05Z"},
    "gpus": [{"name": "NVIDIA A100", "memory_bytes": 42949672960}],
}


@pytest.mark.parametrize("fmt", ["json", "xml", "csv", "html"])
def test_accounting_and_activation_are_columns_of_their_own_in_every_format(fmt):
    task = formats.parse(formats.render([ACCOUNTED_TASK], "task", fmt), fmt)[0]
    host = formats.parse(formats.render([ACTIVE_HOST], "host", fmt), fmt)[0]
    conv = (lambda v: v) if fmt == "json" else formats.cell
    for column in ("cpu_user_s", "cpu_system_s", "wall_s", "max_rss_bytes"):
        assert task[column] == conv(ACCOUNTED_TASK["accounting"][column])
    assert "accounting" not in task and "activation" not in host
    assert host["activation_state"] == "suspended"
    assert host["activation_detail"] == "the owner is typing"
    assert host["activation_since"] == "2026-01-01T00:00:05Z"
    assert host["gpus"] == conv(ACTIVE_HOST["gpus"])


def test_a_task_not_accounted_yet_has_empty_accounting_columns():
    row = formats.project([{**ACCOUNTED_TASK, "accounting": None}], "task")[0]
    assert [row[c] for c in ("cpu_user_s", "cpu_system_s", "wall_s", "max_rss_bytes")] == [None] * 4


def test_text_shows_gpus_with_their_memory_and_job_counts_by_status():
    host_line = formats.render([ACTIVE_HOST], "host", "text", long=True).splitlines()[1]
    assert "NVIDIA A100 (40.0 GiB)" in host_line and "suspended" in host_line
    session_line = formats.render(SAMPLES["session"], "session", "text").splitlines()[1]
    assert "COMPLETED=1 PENDING=3" in session_line


@pytest.mark.parametrize("kind", sorted(SAMPLES))
@pytest.mark.parametrize("fmt", ["xml", "csv", "html"])
def test_text_formats_parse_back_field_by_field(kind, fmt):
    rows = SAMPLES[kind]
    parsed = formats.parse(formats.render(rows, kind, fmt), fmt)
    assert len(parsed) == len(rows)
    for original, back in zip(rows, parsed, strict=True):
        assert list(back) == list(formats.COLUMNS[kind])  # same fields, same order
        for field in formats.COLUMNS[kind]:
            assert back[field] == formats.cell(original.get(field)), (kind, fmt, field)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_json_parses_back_with_the_wire_types(kind):
    rows = SAMPLES[kind]
    parsed = formats.parse(formats.render(rows, kind, "json"), "json")
    for original, back in zip(rows, parsed, strict=True):
        assert list(back) == list(formats.COLUMNS[kind])
        for field in formats.COLUMNS[kind]:
            assert back[field] == original.get(field), (kind, field)


def test_cells_of_structured_values_are_lossless_json():
    job = SAMPLES["job"][0]
    back = formats.parse(formats.render([job], "job", "csv"), "csv")[0]
    assert json.loads(back["args"]) == job["args"]
    assert back["exit_code"] == "-9" and back["stdin_uid"] == "" and back["label"] == job["label"]


def test_fields_unknown_to_the_kind_are_left_out_of_every_format():
    for fmt in ("json", "xml", "csv", "html"):
        out = formats.render(SAMPLES["job"], "job", fmt)
        assert "extra_field_from_a_newer_server" not in out


def test_text_is_an_aligned_table_with_a_header():
    out = formats.render(SAMPLES["host"] * 2, "host", "text", long=True)
    lines = out.splitlines()
    assert lines[0].split() == list(formats.COLUMNS["host"])
    assert len(lines) == 3
    # every column starts at the same offset on every line
    starts = [lines[0].index(c) for c in ("name", "os", "cores", "tags")]
    for line in lines[1:]:
        assert [line[s - 2 : s] for s in starts] == ["  "] * len(starts)
    assert "gpu big mem" in lines[1] and "false" in lines[1]


def test_text_shows_args_as_a_shell_line_and_binaries_as_platforms():
    job_line = formats.render(SAMPLES["job"][:1], "job", "text", long=True).splitlines()[1]
    assert "-n 5 --seed=3 'two words' 'é'" in job_line
    assert "line one\\nline two, with a comma\\ttab" in job_line  # one row per line, whatever the message
    app_line = formats.render(SAMPLES["app"], "app", "text").splitlines()[1]
    assert "linux/x86_64 any/any" in app_line


def test_an_empty_list_still_has_its_header():
    assert formats.render([], "data", "text").split() == list(formats.COLUMNS["data"])
    assert formats.parse(formats.render([], "data", "csv"), "csv") == []
    assert formats.parse(formats.render([], "data", "xml"), "xml") == []
    assert formats.parse(formats.render([], "data", "json"), "json") == []


def test_xml_uses_one_element_per_row_named_after_its_kind():
    out = formats.render(SAMPLES["task"], "task", "xml")
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<xtremweb kind="task" count="1">')
    assert "<task uid=" in out


def test_characters_xml_cannot_carry_are_replaced_not_fatal():
    job = {"uid": UID, "message": "bell\x07 and nul\x00"}
    back = formats.parse(formats.render([job], "job", "xml"), "xml")[0]
    assert back["message"] == "bell\ufffd and nul\ufffd"


def test_format_names_are_checked_and_accept_xwhep_capitals():
    assert formats.check_format("XML") == "xml"
    with pytest.raises(Exception, match="unknown format"):
        formats.render([], "job", "yaml")
    with pytest.raises(ValueError, match="does not parse back"):
        formats.parse("", "text")


def test_text_shows_sizes_for_people_and_the_other_formats_in_bytes():
    line = formats.render(SAMPLES["data"], "data", "text").splitlines()[1]
    assert "11.5 GiB" in line and "12345678901" not in line
    assert formats.parse(formats.render(SAMPLES["data"], "data", "csv"), "csv")[0]["size"] == "12345678901"
