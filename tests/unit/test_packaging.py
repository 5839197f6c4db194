"""The wheel is what a release installs: the sample configs, the service files and the
installer templates as package data, the license, the SDK's type marker, and a description
that starts with what the project is. ``xwserver init`` takes the server config from the
packaged sample, so an installed wheel needs no checkout."""

from __future__ import annotations

import email
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from helpers.wheel import REPO, build_wheel

from xwserver import home as homes
from xwserver import packaged

#: packaged file -> the checkout's file it copies
PACKAGED = {
    "xwserver/share/conf/xwserver.conf.sample": "conf/xwserver.conf.sample",
    "xwserver/share/conf/xtremweb.worker.conf": "conf/xtremweb.worker.conf",
    "xwserver/share/installers/systemd/xwworker.service": "installers/systemd/xwworker.service",
    "xwserver/share/installers/README.md": "installers/README.md",
    "xwserver/share/installers/bundle/install.sh": "installers/bundle/install.sh",
    "xwserver/share/installers/bundle/uninstall.sh": "installers/bundle/uninstall.sh",
    "xwserver/share/installers/launchd/org.xtremweb.xwworker.plist": "installers/launchd/org.xtremweb.xwworker.plist",
    "xwserver/share/installers/windows/README.md": "installers/windows/README.md",
}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("wheel"))


@pytest.mark.slow
def test_the_wheel_carries_the_samples_service_files_license_and_type_markers(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for inside, checkout in PACKAGED.items():
            assert z.read(inside) == (REPO / checkout).read_bytes(), inside
        assert {"xwclient/py.typed", "xwcommon/py.typed"} <= names
        (license_file,) = [n for n in names if n.endswith(".dist-info/licenses/LICENSE")]
        assert z.read(license_file) == (REPO / "LICENSE").read_bytes()
        assert b"Apache License" in z.read(license_file)
        (meta_name,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        meta = email.message_from_bytes(z.read(meta_name))
    assert meta["License-Expression"] == "Apache-2.0"
    versions = [
        c.rsplit(" ", 1)[1]
        for c in meta.get_all("Classifier")
        if c.startswith("Programming Language :: Python :: 3.")
    ]
    assert f"{sys.version_info.major}.{sys.version_info.minor}" in versions
    # the PyPI page begins with what the project is, not with how to run its tests
    description = meta.get_payload()
    assert description.startswith(
        "# XtremWeb-Py\n\n## What it is\n\nA desktop grid (volunteer computing) middleware"
    )
    # no test, benchmark or demo code ships
    assert not [n for n in names if n.split("/")[0] in {"tests", "bench", "demo", "tools"}]


@pytest.mark.slow
def test_an_installed_wheel_reads_its_samples_without_the_checkout(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
        check=True,
        timeout=120,
    )
    probe = (
        "from xwserver import packaged; import sys; "
        "sys.stdout.write(packaged.server_conf('https://grid.example.org:4325'))"
    )
    done = subprocess.run(
        [python, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout == homes.render_server_conf("https://grid.example.org:4325")
    assert (
        str(REPO)
        not in subprocess.run(
            [python, "-c", "import xwserver; print(xwserver.__file__)"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )


@pytest.mark.parametrize("db_url", [None, "postgresql+asyncpg://xw@db.example.org/xw"])
def test_init_writes_the_packaged_sample_with_its_url_and_database(db_url: str | None) -> None:
    url = "https://grid.example.org:4325"
    stamp = "on 2026-12-05 03:40 UTC"
    assert packaged.server_conf(url, db_url, stamp=stamp) == homes.render_server_conf(
        url, db_url, stamp=stamp
    )


def test_the_package_data_globs_name_the_files_the_code_reads() -> None:
    data = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    for name in (
        packaged.SERVER_SAMPLE,
        packaged.WORKER_SAMPLE,
        packaged.SYSTEMD_UNIT,
        packaged.LAUNCHD_PLIST,
        packaged.WINDOWS_README,
        "installers/bundle/install.sh",
        "installers/bundle/uninstall.sh",
    ):
        assert packaged.path(name).is_file(), name
    assert "share/conf/*" in data["xwserver"] and "share/installers/**/*" in data["xwserver"]
    assert data["xwclient"] == ["py.typed"] and data["xwcommon"] == ["py.typed"]
