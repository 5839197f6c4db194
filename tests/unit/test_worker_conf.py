"""xtremweb.worker.conf documents every key the worker reads, in the sample and as written
by ``xwserver init``, and what it says are defaults are the worker's defaults.

The keys the worker reads are taken from its code (the settings' known keys, the
``limit.*`` fields, and every key looked up in ``xwworker/``), never from a copy here, so a
key added to the worker without a line in the template fails these tests.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import shutil
from pathlib import Path

import xwworker
from xwcommon.config import parse_properties
from xwserver import home as homes
from xwworker import settings as worker_settings
from xwworker.sandbox import ResourceLimits
from xwworker.settings import WorkerSettings

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "conf" / "xtremweb.worker.conf"
URL = "https://grid.example.org:4325"
KEY_SHAPE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*$")
#: the names under which the worker's code holds a parsed config file
PROPERTY_MAPS = ("props", "extra")
#: helpers of ``WorkerSettings.from_properties`` whose string arguments are keys
KEY_HELPERS = ("required", "integer", "_positive")


# -- the keys, from the code ------------------------------------------------------------------------
def keys_looked_up(source: str, *, key_helpers: tuple[str, ...] = KEY_HELPERS) -> set[str]:
    """Config keys a module reads: ``props.get("k")``, ``props["k"]``, ``settings.extra.get("k")``,
    ``key="k"`` arguments (how ``as_int`` and friends name the key in errors), and the
    string arguments of the settings' own key helpers."""
    found: set[str] = set()

    def is_map(node: ast.expr) -> bool:
        return ast.unparse(node).rsplit(".", 1)[-1] in PROPERTY_MAPS

    for node in ast.walk(ast.parse(source)):
        candidates: list[ast.expr] = []
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr == "get" and is_map(func.value):
                candidates += node.args[:1]
            if isinstance(func, ast.Name) and func.id in key_helpers:
                candidates += node.args
            candidates += [kw.value for kw in node.keywords if kw.arg == "key"]
        elif isinstance(node, ast.Subscript) and is_map(node.value):
            candidates.append(node.slice)
        found |= {
            c.value
            for c in candidates
            if isinstance(c, ast.Constant) and isinstance(c.value, str) and KEY_SHAPE.match(c.value)
        }
    return found


def keys_the_worker_reads() -> set[str]:
    package = Path(xwworker.__file__).parent
    keys = set(worker_settings._KNOWN_KEYS)
    keys |= {f"limit.{f.name}" for f in dataclasses.fields(ResourceLimits)}
    for module in sorted(package.rglob("*.py")):
        keys |= keys_looked_up(module.read_text(encoding="utf-8"))
    return keys


def documented_keys(text: str) -> dict[str, str]:
    """``key -> value`` of every ``key=value`` or ``#key=value`` line that follows a comment."""
    keys: dict[str, str] = {}
    lines = text.splitlines()
    for before, line in zip(lines, lines[1:], strict=False):
        m = re.match(r"^#?([a-z][a-z0-9_.]*)=(.*)$", line)
        if m and before.startswith("# "):
            keys[m.group(1)] = m.group(2)
    return keys


def test_the_key_finder_sees_new_lookups_of_every_kind() -> None:
    source = (
        'a = props.get("new.key", "")\n'
        'b = props["other_key"]\n'
        'c = settings.extra.get("policy.knob")\n'
        'd = as_float(v, key="some.seconds_s")\n'
        'e = _positive(v, "helper.key")\n'
        'f = log.warning("not a key: %s", "spaced words")\n'
    )
    assert keys_looked_up(source) == {"new.key", "other_key", "policy.knob", "some.seconds_s", "helper.key"}


def test_the_key_finder_finds_what_the_settings_read() -> None:
    read = keys_looked_up(Path(worker_settings.__file__).read_text(encoding="utf-8"))
    # the finder really reads the code: every known key is looked up there by name
    assert set(worker_settings._KNOWN_KEYS) <= read, set(worker_settings._KNOWN_KEYS) - read
    # and a key read but not known could not be overridden from the environment
    assert read <= set(worker_settings._KNOWN_KEYS), read - set(worker_settings._KNOWN_KEYS)


# -- the template, the sample and the written file -----------------------------------------------------
def rendered(ca_file: Path) -> str:
    return homes.render_worker_conf(URL, "worker-1a2b", "pw-" + "x" * 20, ca_file, stamp="on 2026-01-01")


def test_every_key_the_worker_reads_is_documented_in_the_sample_and_the_written_file(
    tmp_path: Path,
) -> None:
    wanted = keys_the_worker_reads()
    for name, text in (("conf/xtremweb.worker.conf", SAMPLE.read_text()), ("render", rendered(tmp_path))):
        documented = documented_keys(text)
        assert wanted - documented.keys() == set(), f"keys the worker reads missing from {name}"
        assert documented.keys() - wanted == set(), f"{name} documents keys the worker does not read"


def test_each_key_is_explained() -> None:
    for _, keys in homes.WORKER_SECTIONS:
        for key, _, doc in keys:
            assert len(doc) >= 30, f"{key}: say what it means, its unit and its default"


def test_the_sample_is_the_template_with_placeholders() -> None:
    assert SAMPLE.read_text() == homes.sample_worker_conf(), (
        "regenerate it: .venv/bin/python -c 'from xwserver.home import sample_worker_conf; "
        'print(sample_worker_conf(), end="")\' > conf/xtremweb.worker.conf'
    )


def test_the_written_file_loads_with_the_deployment_values_and_no_unknown_key(tmp_path: Path) -> None:
    ca = tmp_path / "keystore" / "ca.pem"
    ca.parent.mkdir()
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    conf = tmp_path / "conf" / "xtremweb.worker.conf"
    conf.parent.mkdir()
    conf.write_text(rendered(ca))
    s = WorkerSettings.load(conf, environ={})
    assert (s.servers, s.login, s.password, s.ca_file) == ([URL], "worker-1a2b", "pw-" + "x" * 20, ca)
    assert s.extra == {}
    same = WorkerSettings.from_properties(parse_properties(conf.read_text()), base=conf.parent)
    assert dataclasses.asdict(same) == dataclasses.asdict(dataclasses.replace(s, config_file=None))


def test_the_sample_loads_once_its_ca_file_is_beside_it(tmp_path: Path) -> None:
    conf = tmp_path / "xtremweb.worker.conf"
    shutil.copy(SAMPLE, conf)
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    s = WorkerSettings.load(conf, environ={})
    assert (s.login, s.password, s.ca_file) == ("worker", "CHANGE-ME", tmp_path / "ca.pem")


def test_the_defaults_written_are_the_worker_defaults(tmp_path: Path) -> None:
    """Uncommenting every ``#key=default`` line changes nothing: the text tells the truth."""
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    text = rendered(ca)
    as_written = WorkerSettings.from_properties(parse_properties(text), base=tmp_path)
    uncommented = re.sub(r"(?m)^#([a-z][a-z0-9_.]*=)", r"\1", text)
    assert uncommented != text
    every_key = parse_properties(uncommented)
    assert keys_the_worker_reads() <= every_key.keys()
    with_defaults = WorkerSettings.from_properties(every_key, base=tmp_path)
    assert with_defaults.extra == {}
    assert dataclasses.asdict(with_defaults) == dataclasses.asdict(as_written)


def test_the_environment_override_the_header_names_works(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    conf = tmp_path / "xtremweb.worker.conf"
    conf.write_text(rendered(ca))
    assert "XWWORKER_WORKPOOL_SIZE=2" in conf.read_text()
    assert WorkerSettings.load(conf, environ={"XWWORKER_WORKPOOL_SIZE": "2"}).workpool_size == 2
