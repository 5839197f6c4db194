"""``xwserver installer``: the bundles a deployment hands to its volunteers and its users.

::

    OUT/xtremweb-worker-HOST-PORT/        (and OUT/xtremweb-worker-HOST-PORT.tar.gz)
        install.sh  uninstall.sh          a venv with the wheel, the config, the service
        xtremweb.worker.conf              server URL, worker identity, ca.file=ca.pem
        ca.pem  [app-signing.pub]         the deployment's CA (and public signing key)
        wheels/xtremweb_py-*.whl          this project, as the server runs it
        xwworker.service                  systemd unit (Linux, as root)
        org.xtremweb.xwworker.plist       launchd agent (macOS; untested)
        WINDOWS.md                        the Windows path (untested)
    OUT/xtremweb-client-HOST-PORT/
        install.sh  uninstall.sh  xwrc  ca.pem  wheels/...

Every file a config names sits next to it and is named relatively, so a bundle works from
wherever it is installed. The worker's identity is the home's public worker (its
``conf/xtremweb.worker.conf``) unless ``--worker-config`` names another (a group's or a
volunteer's own, as ``xwsenduser --xwout`` writes them); the client's comes from
``--client-config`` (an ``xwrc``), else the bundle carries no credentials and its
install script says where to put them: the admin's own password never leaves the server.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from xwcommon.config import load_properties
from xwcommon.errors import ConfigError

from . import home as homes
from . import packaged
from .settings import ServerSettings
from .signing import public_key_path

WORKER_CONF = "xtremweb.worker.conf"
CLIENT_CONF = "xwrc"
CA_NAME = "ca.pem"
SIGNING_NAME = "app-signing.pub"
DISTRIBUTION = "xtremweb-py"
WHEEL_BUILD_TIMEOUT_S = 600


@dataclass(frozen=True)
class Bundle:
    kind: str
    folder: Path
    archive: Path


def write_bundles(
    settings: ServerSettings,
    out: Path,
    *,
    wheel: Path | None = None,
    worker_config: Path | None = None,
    client_config: Path | None = None,
) -> list[Bundle]:
    """Write the worker and client bundles of this deployment under ``out``."""
    ca = settings.ca_file
    if not ca.is_file():
        raise ConfigError(f"{ca} does not exist: is {settings.home} a server home (xwserver init)?")
    wheel = wheel if wheel is not None else find_or_build_wheel(out)
    if not wheel.is_file() or not wheel.name.startswith("xtremweb_py-") or wheel.suffix != ".whl":
        raise ConfigError(f"--wheel {wheel}: not an xtremweb_py wheel")
    signing_key = public_key_path(settings)
    signing = signing_key if signing_key.is_file() else None
    name = f"{settings.host}-{settings.port}"
    out.mkdir(parents=True, exist_ok=True)

    worker_props = load_properties(worker_config or settings.conf_dir / homes.WORKER_CONF)
    for key in ("login", "password"):
        if not worker_props.get(key):
            raise ConfigError(f"the worker config has no {key}: pass --worker-config FILE")
    worker_text = homes.render_worker_conf(
        settings.url,
        worker_props["login"],
        worker_props["password"],
        Path(CA_NAME),
        signing_key=Path(SIGNING_NAME) if signing else None,
    )
    worker = _bundle(
        out / f"xtremweb-worker-{name}",
        kind="worker",
        name=f"worker-{name}",
        extras="[worker]",
        config=(WORKER_CONF, worker_text),
        ca=ca,
        signing=signing,
        wheel=wheel,
        extra={
            "xwworker.service": packaged.read_text(packaged.SYSTEMD_UNIT),
            "org.xtremweb.xwworker.plist": packaged.read_text(packaged.LAUNCHD_PLIST),
            "WINDOWS.md": packaged.read_text(packaged.WINDOWS_README),
        },
    )

    if client_config is not None:
        props = load_properties(client_config)
        login, password = props.get("login", ""), props.get("password", "")
        if not login:
            raise ConfigError(f"--client-config {client_config}: no login in it")
    else:
        login, password = "CHANGE-ME", "CHANGE-ME"
    client_text = homes.render_client_conf(settings.url, login, password, Path(CA_NAME))
    client = _bundle(
        out / f"xtremweb-client-{name}",
        kind="client",
        name=f"client-{name}",
        extras="",
        config=(CLIENT_CONF, client_text),
        ca=ca,
        signing=None,
        wheel=wheel,
        extra={},
    )
    return [worker, client]


def _bundle(
    folder: Path,
    *,
    kind: str,
    name: str,
    extras: str,
    config: tuple[str, str],
    ca: Path,
    signing: Path | None,
    wheel: Path,
    extra: dict[str, str],
) -> Bundle:
    if folder.exists():
        shutil.rmtree(folder)
    (folder / "wheels").mkdir(parents=True)
    folder.chmod(0o700)  # the config holds a password
    conf_name, conf_text = config
    homes.write_private(folder / conf_name, conf_text)
    shutil.copyfile(ca, folder / CA_NAME)
    files = [CA_NAME]
    if signing is not None:
        shutil.copyfile(signing, folder / SIGNING_NAME)
        files.append(SIGNING_NAME)
    shutil.copyfile(wheel, folder / "wheels" / wheel.name)
    for file_name, text in extra.items():
        (folder / file_name).write_text(text, encoding="utf-8")
    script = packaged.read_text("installers/bundle/install.sh")
    for marker, value in (
        ("@KIND@", kind),
        ("@NAME@", name),
        ("@EXTRAS@", extras),
        ("@CONFIG@", conf_name),
        ("@FILES@", " ".join(files)),
    ):
        script = script.replace(marker, value, 1)
    for file_name, text in (
        ("install.sh", script),
        ("uninstall.sh", packaged.read_text("installers/bundle/uninstall.sh")),
    ):
        (folder / file_name).write_text(text, encoding="utf-8")
        (folder / file_name).chmod(0o755)
    archive = folder.with_name(folder.name + ".tar.gz")
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    archive.chmod(0o600)
    return Bundle(kind, folder, archive)


def find_or_build_wheel(out: Path) -> Path:
    """The project's wheel: built from the source this server runs when that is a checkout
    (an editable install), else an error asking for ``--wheel``."""
    source = _editable_source()
    if source is None:
        raise ConfigError(
            "pass --wheel FILE (the xtremweb_py wheel to put in the bundles): this installation "
            "is not a source checkout to build one from"
        )
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        done = subprocess.run(
            [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", tmp, str(source)],
            capture_output=True,
            text=True,
            timeout=WHEEL_BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise ConfigError(f"building the wheel from {source} failed: {done.stderr.strip()[-2000:]}")
        (built,) = Path(tmp).glob("xtremweb_py-*.whl")
        target = out / built.name
        shutil.move(built, target)
    return target


def _editable_source() -> Path | None:
    try:
        text = metadata.distribution(DISTRIBUTION).read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        return None
    if not text:
        return None
    info = json.loads(text)
    if not info.get("dir_info", {}).get("editable") or not str(info.get("url", "")).startswith("file://"):
        return None
    return Path(info["url"].removeprefix("file://"))
