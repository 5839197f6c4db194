"""The worker's config file: XWHEP keys, defaults, and errors that name the key."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from xwcommon.errors import ConfigError
from xwworker.activation import ActivationPolicy, available_policies, load_policy
from xwworker.activation.always import AlwaysActive
from xwworker.settings import WorkerSettings


def write_conf(folder: Path, text: str, *, ca: str = "ca.pem") -> Path:
    (folder / ca).parent.mkdir(parents=True, exist_ok=True)
    (folder / ca).write_text("not checked here\n")
    conf = folder / "xtremweb.worker.conf"
    conf.write_text(text)
    return conf


MINIMAL = (
    "dispatcher.servers=https://a.example:4325 b.example\nlogin=worker\npassword=secret\nca.file=ca.pem\n"
)


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    s = WorkerSettings.load(write_conf(tmp_path, MINIMAL), environ={})
    assert s.servers == ["https://a.example:4325", "b.example"]
    assert (s.login, s.password) == ("worker", "secret")
    assert s.ca_file == tmp_path / "ca.pem"
    assert s.workpool_size == (os.cpu_count() or 1)
    assert s.tmpdir.parent.parent == Path(tempfile.gettempdir())
    assert s.tmpdir.parent.name.startswith("xwworker-")
    assert s.tmpdir.name.startswith("a.example_4325-worker-")
    assert s.heartbeat_interval_s is None  # the server's value is used
    assert s.tags == []
    assert s.name
    assert s.log_file == s.tmpdir / "xwworker.log"
    assert s.pid_file == s.tmpdir / "xwworker.pid"
    assert s.shutdown_grace_s == 30.0
    assert s.activator == "always"


def test_every_key_is_read_and_paths_are_relative_to_the_config_folder(tmp_path: Path) -> None:
    text = (
        "# a worker\n"
        "dispatcher.servers: grid.example:4325\n"
        "login: w1\n"
        "password: p:w=d\n"
        "path.certfile: keys/ca.pem\n"
        "workpool.size: 3\n"
        "path.tmpdir: var/work\n"
        "heartbeat_interval_s: 2.5\n"
        "tags: gpu, big-memory ,,linux\n"
        "worker.name: node-7\n"
        "log.file: logs/w.log\n"
        "pid.file: /run/xw/w.pid\n"
        "shutdown_grace_s: 0\n"
        "port.tcp: 4321\n"
    )
    s = WorkerSettings.load(write_conf(tmp_path, text, ca="keys/ca.pem"), environ={})
    assert s.password == "p:w=d"
    assert s.ca_file == tmp_path / "keys" / "ca.pem"
    assert s.workpool_size == 3
    assert s.tmpdir == tmp_path / "var" / "work"
    assert s.heartbeat_interval_s == 2.5
    assert s.tags == ["gpu", "big-memory", "linux"]
    assert s.name == "node-7"
    assert s.log_file == tmp_path / "logs" / "w.log"
    assert s.pid_file == Path("/run/xw/w.pid")
    assert s.shutdown_grace_s == 0.0
    assert s.extra == {"port.tcp": "4321"}
    assert s.cache_dir == s.tmpdir / "cache"


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, MINIMAL + "workpool.size=4\n")
    s = WorkerSettings.load(conf, environ={"XWWORKER_WORKPOOL_SIZE": "2", "XWWORKER_LOGIN": "other"})
    assert s.workpool_size == 2
    assert s.login == "other"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("login=w\npassword=p\nca.file=ca.pem\n", "dispatcher.servers"),
        ("dispatcher.servers=a\npassword=p\nca.file=ca.pem\n", "login"),
        ("dispatcher.servers=a\nlogin=w\nca.file=ca.pem\n", "password"),
        ("dispatcher.servers=a\nlogin=w\npassword=p\n", "ca.file"),
        (MINIMAL.replace("ca.file=ca.pem", "ca.file=missing.pem"), "ca.file"),
        (MINIMAL.replace("ca.file=ca.pem", "path.certfile=missing.pem"), "path.certfile"),
        (MINIMAL + "workpool.size=many\n", "workpool.size"),
        (MINIMAL + "workpool.size=0\n", "workpool.size"),
        (MINIMAL + "heartbeat_interval_s=0\n", "heartbeat_interval_s"),
        (MINIMAL + "shutdown_grace_s=-1\n", "shutdown_grace_s"),
    ],
)
def test_a_bad_or_missing_key_is_named_in_the_error(tmp_path: Path, text: str, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        WorkerSettings.load(write_conf(tmp_path, text), environ={})
    assert info.value.message.startswith(f"{key}:")


def test_a_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        WorkerSettings.load(tmp_path / "nope.conf", environ={})


def test_a_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, MINIMAL + "this line has no separator\n")
    with pytest.raises(ConfigError, match=r"xtremweb\.worker\.conf:5"):
        WorkerSettings.load(conf, environ={})


def test_activation_policy_is_chosen_by_activator_class(tmp_path: Path) -> None:
    s = WorkerSettings.load(
        write_conf(tmp_path, MINIMAL + "activator.class=xtremweb.worker.AlwaysActive\n"), environ={}
    )
    policy = load_policy(s)
    assert isinstance(policy, AlwaysActive)
    assert policy.allows(0.0)
    assert "always" in available_policies()


def test_an_unknown_activation_policy_names_the_key(tmp_path: Path) -> None:
    s = WorkerSettings.load(write_conf(tmp_path, MINIMAL + "activator.class=Telepathy\n"), environ={})
    with pytest.raises(ConfigError, match=r"^activator\.class: unknown activation policy 'Telepathy'"):
        load_policy(s)


def test_a_policy_subclass_registers_its_names() -> None:
    class NightOnly(ActivationPolicy):
        names = ("test-night-only",)

        def allows(self, now: float) -> bool:
            return False

    assert "test-night-only" in available_policies()
    ActivationPolicy._registry.pop("test-night-only")
