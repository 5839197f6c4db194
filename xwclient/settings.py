"""The client's typed settings, loaded from its config file.

Where the file is looked for, first match wins:

1. ``--xwconfig FILE`` on the command line (or ``config=`` in the SDK);
2. the ``XWCONFIG`` environment variable;
3. ``~/.xtremweb/xwrc`` (XWHEP's place).

Keys (XWHEP's properties: ``key=value`` or ``key: value``, ``#`` comments):

- ``dispatcher.servers``  space-separated list of servers (``https://HOST:PORT`` or
  ``HOST[:PORT]``); the first is used, the next ones on failure (failover)
- ``port.https``          XWHEP's server port, for the servers above that name none
  (default 4325)
- ``login``               the user's login
- ``password``            the user's password (keep the file mode 0600)
- ``ca.file``             the deployment's CA certificate, the only one trusted; a relative
  path is relative to the config file's folder. XWHEP's ``path.certfile`` is an alias.
- ``retry_for_s``         how long to keep retrying an unreachable server before giving up
  (default 30)
- ``request_timeout_s``   how long one request may take (default 60)
- ``cache.dir``           the client's cache (:mod:`xwclient.cache`; ``--xwclean`` empties
  it); default ``xwclient.cache`` in the config file's folder; relative to that folder

Any other key is ignored with a warning that names it and the nearest known key
(``xwclient --xwcheckconfig`` exits 1 on it); XWHEP's keys that mean nothing here
(``port.tcp``...) are ignored without one.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from xwcommon.config import (
    as_float,
    https_port,
    load_properties,
    resolve_path,
    unknown_key_warnings,
    with_https_port,
)
from xwcommon.errors import ConfigError
from xwcommon.servers import normalize_server

log = logging.getLogger(__name__)

#: the environment variable naming the config file
CONFIG_ENV = "XWCONFIG"
#: XWHEP's per-user config file, relative to the home folder
USER_CONFIG = Path(".xtremweb") / "xwrc"

#: the cache folder's default name, in the config file's folder
CACHE_DIR = "xwclient.cache"

DEFAULT_RETRY_FOR_S = 30.0
DEFAULT_REQUEST_TIMEOUT_S = 60.0

_CA_KEYS = ("ca.file", "path.certfile")
#: every key the client reads
KNOWN_KEYS = (
    "dispatcher.servers",
    "port.https",
    "login",
    "password",
    *_CA_KEYS,
    "retry_for_s",
    "request_timeout_s",
    "cache.dir",
)


@dataclass
class ClientSettings:
    """Everything the client needs to reach and authenticate against one deployment."""

    config_file: Path
    servers: list[str]
    login: str
    password: str = field(repr=False)
    ca_file: Path
    retry_for_s: float = DEFAULT_RETRY_FOR_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    #: the client's cache folder (``None``: nothing is cached between runs)
    cache_dir: Path | None = None
    #: every key of the file, for the commands that read more than the above
    extra: dict[str, str] = field(default_factory=dict, repr=False)
    #: what is wrong but not fatal in the file (unknown keys), one message each
    warnings: list[str] = field(default_factory=list, repr=False)


def find_config_file(
    explicit: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
) -> Path:
    """The config file to use: ``explicit``, else ``$XWCONFIG``, else ``~/.xtremweb/xwrc``.

    The file is not required to exist here; :func:`load_settings` says clearly when it does not.
    """
    environ = os.environ if env is None else env
    if explicit:
        return Path(os.path.expanduser(os.fspath(explicit)))
    from_env = environ.get(CONFIG_ENV, "").strip()
    if from_env:
        return Path(os.path.expanduser(from_env))
    base = Path(home) if home is not None else Path(os.path.expanduser("~"))
    return base / USER_CONFIG


def load_settings(
    explicit: str | os.PathLike[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    home: str | os.PathLike[str] | None = None,
) -> ClientSettings:
    """Find, read and validate the client config; errors name the file and the key."""
    path = find_config_file(explicit, env=env, home=home)
    if not path.is_file():
        how = _how_found(explicit, env)
        raise ConfigError(
            f"client config file {path} ({how}) does not exist; give one with --xwconfig FILE, "
            f"set ${CONFIG_ENV}, or create ~/{USER_CONFIG.as_posix()} (xwserver init writes one in conf/xwrc)"
        )
    return settings_from_properties(load_properties(path), path)


def settings_from_properties(values: dict[str, str], path: Path) -> ClientSettings:
    """Validate already-parsed properties read from ``path``."""
    servers = values.get("dispatcher.servers", "").split()
    if not servers:
        raise ConfigError(
            f"{path}: key dispatcher.servers is missing or empty; set it to the server, "
            "e.g. dispatcher.servers=https://xw.example.org:4325"
        )
    try:
        port = https_port(values, key="port.https")
    except ConfigError as exc:
        raise ConfigError(f"{path}: key {exc.message}") from None
    servers = with_https_port(servers, port)
    for server in servers:
        try:
            normalize_server(server)
        except ConfigError as exc:
            raise ConfigError(f"{path}: key dispatcher.servers: {exc.message}") from None
    login = values.get("login", "").strip()
    if not login:
        raise ConfigError(f"{path}: key login is missing or empty; set it to your XtremWeb login")
    if "password" not in values:
        raise ConfigError(f"{path}: key password is missing; set it to your XtremWeb password")
    ca_value = next((values[k].strip() for k in _CA_KEYS if values.get(k, "").strip()), "")
    if not ca_value:
        raise ConfigError(
            f"{path}: key ca.file (or XWHEP's path.certfile) is missing; set it to the deployment's "
            "CA certificate (ca.pem), relative to this file's folder or absolute"
        )
    ca_file = resolve_path(ca_value, path.resolve().parent)
    if not ca_file.is_file():
        raise ConfigError(
            f"{path}: key ca.file points at {ca_file}, which does not exist; copy the deployment's "
            "ca.pem there or fix the key"
        )
    retry_for_s = DEFAULT_RETRY_FOR_S
    if values.get("retry_for_s", "").strip():
        retry_for_s = as_float(values["retry_for_s"], key=f"{path}: retry_for_s", minimum=0.0)
    request_timeout_s = DEFAULT_REQUEST_TIMEOUT_S
    if values.get("request_timeout_s", "").strip():
        request_timeout_s = as_float(
            values["request_timeout_s"], key=f"{path}: request_timeout_s", minimum=0.1
        )
    cache_dir = resolve_path(values.get("cache.dir", "").strip() or CACHE_DIR, path.resolve().parent)
    warnings = unknown_key_warnings(values, KNOWN_KEYS, source=str(path))
    for warning in warnings:
        log.warning("%s", warning)
    return ClientSettings(
        warnings=warnings,
        config_file=path,
        cache_dir=cache_dir,
        servers=servers,
        login=login,
        password=values["password"],
        ca_file=ca_file,
        retry_for_s=retry_for_s,
        request_timeout_s=request_timeout_s,
        extra=dict(values),
    )


def _how_found(explicit: object, env: Mapping[str, str] | None) -> str:
    if explicit:
        return "from --xwconfig"
    if (os.environ if env is None else env).get(CONFIG_ENV, "").strip():
        return f"from ${CONFIG_ENV}"
    return "the default place"


def render_config(servers: list[str], login: str, password: str, ca_file: Path, *, note: str = "") -> str:
    """A client config file for ``login``: the keys :func:`load_settings` reads, in XWHEP's form."""
    lines = [f"# XtremWeb-Py client configuration for {login}{note}."]
    lines += [
        "# It holds a password: keep it private (mode 0600). Use it with",
        "#   xwclient --xwconfig THIS_FILE ...   or   export XWCONFIG=THIS_FILE",
        "# or copy it to ~/.xtremweb/xwrc. ca.file must name the deployment's CA certificate",
        "# where the file is used (relative paths are relative to the file's folder).",
        f"dispatcher.servers={' '.join(servers)}",
        f"login={login}",
        f"password={password}",
        f"ca.file={ca_file}",
    ]
    return "\n".join(lines) + "\n"
