"""The worker's config as XWHEP users write it: ``port.https``, misspelled keys, and a state
folder of its own for each deployment and identity."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xwcommon.errors import ConfigError
from xwworker.settings import WorkerSettings


def load(folder: Path, text: str) -> WorkerSettings:
    (folder / "ca.pem").write_text("not checked here\n")
    conf = folder / "xtremweb.worker.conf"
    conf.write_text(f"login=worker\npassword=pw\nca.file=ca.pem\n{text}")
    return WorkerSettings.load(conf, environ={})


def test_port_https_applies_to_the_servers_that_name_no_port(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        "dispatcher.servers: 127.0.0.1 https://b.example [::1] c.example:4400\nport.https: 54075\n",
    )
    assert s.servers == ["127.0.0.1:54075", "https://b.example:54075", "[::1]:54075", "c.example:4400"]
    assert s.warnings == []


@pytest.mark.parametrize("value", ["0", "70000", "https"])
def test_a_bad_port_https_is_named(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="port.https"):
        load(tmp_path, f"dispatcher.servers=a.example\nport.https={value}\n")


def test_misspelled_keys_are_warned_with_the_nearest_known_key(tmp_path: Path) -> None:
    s = load(
        tmp_path,
        "dispatcher.servers=a.example\nactivator.clas=date\nworkpool.sise=1\nzzz.qqq=1\n"
        "port.tcp=4321\ntracer.enable=false\n",
    )
    assert (s.activator, s.workpool_size) == ("always", os.cpu_count() or 1)  # ignored: defaults
    assert len(s.warnings) == 3, s.warnings
    assert "unknown key 'activator.clas' is ignored; did you mean 'activator.class'?" in s.warnings[0]
    assert "unknown key 'workpool.sise' is ignored; did you mean 'workpool.size'?" in s.warnings[1]
    assert s.warnings[2].endswith("unknown key 'zzz.qqq' is ignored")
    assert all(str(tmp_path / "xtremweb.worker.conf") in w for w in s.warnings)


def test_each_deployment_and_identity_has_its_own_default_state_folder(tmp_path: Path) -> None:
    folders = {
        load(tmp_path, f"dispatcher.servers={servers}\n{more}").tmpdir
        for servers, more in (
            ("a.example", ""),
            ("a.example:4326", ""),
            ("b.example", ""),
            ("a.example", "login=other\n"),
        )
    }
    assert len(folders) == 4
    same = load(tmp_path, "dispatcher.servers=https://a.example:4325\n")
    assert same.tmpdir == load(tmp_path, "dispatcher.servers=a.example\n").tmpdir
    assert same.deployment == "worker@https://a.example:4325"
    # an explicit folder is kept as given
    assert load(tmp_path, "dispatcher.servers=a.example\npath.tmpdir=w\n").tmpdir == tmp_path / "w"
