"""``xwserver``: create a server home, run the server, manage it in the background.

::

    xwserver init    --home DIR [--url https://HOST:PORT] [--db URL]
                     [--admin-login L] [--admin-password P] [--force [--new-keys]]
                     (the admin password may come from $XWSERVER_ADMIN_PASSWORD instead)
    xwserver console --home DIR      run in the foreground (logs to stderr and var/log)
    xwserver start   --home DIR      run in the background, return once it answers
    xwserver stop    --home DIR      graceful stop (SIGTERM), SIGKILL after --timeout
    xwserver restart --home DIR
    xwserver status  --home DIR      exit status 0 if running, 3 if not (LSB)
    xwserver check-config --home DIR  exit status 1 if the config holds unknown keys
    xwserver diagnostics  --home DIR [--format text|json]  version, config, database, keys,
                     disk, address, counts; exit status 1 if a check failed
    xwserver bridge slurm --home DIR --workers N [--partition P] [--time T] [--account A]
                     [--cpus-per-task C] [--max-idle-s S] [--watch [--poll-s S]]
                     pilot workers in Slurm

``--home`` defaults to ``$XWSERVER_HOME``. Errors are one line on stderr: exit status 2
for configuration errors, 1 for the others; never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import logging.handlers
import os
import secrets
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

from xwcommon import __version__, daemon
from xwcommon.errors import ConfigError, XWError
from xwcommon.servers import normalize_server

from . import home as homes
from . import packaged
from .settings import ServerSettings

log = logging.getLogger(__name__)

HOME_ENV = "XWSERVER_HOME"
DEFAULT_URL = "https://localhost:4325"
DEFAULT_ADMIN = "admin"
#: the admin's password for init, kept off the command line (where `ps` shows it)
ADMIN_PASSWORD_ENV = "XWSERVER_ADMIN_PASSWORD"
#: LSB exit status of ``status`` when the program is not running
EXIT_NOT_RUNNING = 3
#: the server's logs in HOME/var/log: reopened when moved away, so logrotate needs no
#: copytruncate (installers/logrotate/xwserver)
LOG_NAME = "xwserver.log"
ACCESS_LOG_NAME = "access.log"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"xwserver: {exc.message}", file=sys.stderr)
        return 2
    except XWError as exc:
        print(f"xwserver: {exc.message}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into e.g. head: nothing more to say
        return 1
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"xwserver: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- init ------------------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    home = _home(args)
    conf = homes.conf_file(home)
    if conf.exists() and not args.force:
        raise ConfigError(
            f"{home} is already a server home ({conf} exists); pass --force to re-create its "
            "configuration (keys are kept unless --new-keys is given too)"
        )
    if args.new_keys and not args.force:
        raise ConfigError("--new-keys only makes sense with --force")
    url = _check_url(args.url)
    host = urlsplit(url).hostname or "localhost"

    settings = ServerSettings(home=home, url=url)
    homes.make_dirs(settings)
    made_keys = _ensure_keys(settings, host, new_keys=args.new_keys)

    stamp = homes.now_stamp()
    # from the packaged sample: an installed wheel carries it (xwserver/packaged.py)
    homes.write_private(conf, packaged.server_conf(url, args.db, stamp=stamp))
    settings = ServerSettings.load(home)  # what the server will read, validated

    given = args.admin_password or os.environ.get(ADMIN_PASSWORD_ENV)
    generated = not given
    admin_password = given or secrets.token_urlsafe(18)
    import asyncio

    from .bootstrap import bootstrap  # the server's dependencies are needed from here on

    boot = asyncio.run(bootstrap(settings, args.admin_login, admin_password))

    ca_file = settings.ca_file
    client_conf = settings.conf_dir / homes.CLIENT_CONF
    worker_conf = settings.conf_dir / homes.WORKER_CONF
    homes.write_private(
        client_conf,
        homes.render_client_conf(url, boot.admin_login, boot.admin_password, ca_file, stamp=stamp),
    )
    homes.write_private(
        worker_conf,
        homes.render_worker_conf(
            url,
            boot.worker_login,
            boot.worker_password,
            ca_file,
            stamp=stamp,
            signing_key=_signing_key(settings),
        ),
    )

    rows = [
        ("server config", str(conf)),
        (
            f"keystore ({'new' if made_keys else 'kept'})",
            f"{settings.keystore_dir}  (give {ca_file.name} to workers and clients)",
        ),
        ("database", _safe_db_url(settings.db_url)),
        ("admin config", f"{client_conf}  (login {boot.admin_login})"),
        ("worker config", f"{worker_conf}  (public worker, login {boot.worker_login})"),
    ]
    if generated:
        rows.append(("admin password", f"{boot.admin_password}  (generated; also in {client_conf.name})"))
    print(f"XtremWeb-Py server home ready in {home}")
    for label, value in rows:
        print(f"  {label:<17}{value}")
    if _signing_warning(settings) is not None:
        print(
            "Applications are accepted unsigned until you make the deployment's signing key: "
            f"xwserver keys signing --home {home}"
        )
    print(f"Start it with: xwserver start --home {home}")
    return 0


def _ensure_keys(settings: ServerSettings, host: str, *, new_keys: bool) -> bool:
    """Make the keystore unless keys are there and not to be replaced; True if made."""
    from . import keystore  # cryptography: for the commands that make or read keys only

    paths = keystore.KeystorePaths.of(settings.keystore_dir)
    present = [p for p in paths.all() if p.exists()]
    if present and not new_keys:
        if len(present) != len(paths.all()):
            missing = ", ".join(p.name for p in paths.all() if not p.exists())
            raise ConfigError(
                f"keystore {settings.keystore_dir} is incomplete (missing {missing}); "
                "pass --force --new-keys to make new keys"
            )
        if not keystore.covers_host(paths.server_cert, host):
            raise ConfigError(
                f"the server certificate {paths.server_cert} does not name {host} (it names "
                f"{', '.join(keystore.certificate_hosts(paths.server_cert))}); pass --new-keys to make "
                "new keys for the new URL"
            )
        return False
    keystore.init_keystore(settings.keystore_dir, [host], force=new_keys)
    return True


def _check_url(url: str) -> str:
    text = url.strip()
    if not text.startswith("https://"):
        raise ConfigError(f"--url: the server URL must start with https://, got {url!r}")
    normalised = normalize_server(text)
    if not urlsplit(normalised).hostname:
        raise ConfigError(f"--url: no host in {url!r}")
    return normalised


def _safe_db_url(url: str) -> str:
    """The database URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


# -- keys -------------------------------------------------------------------------------------------
def cmd_keys_signing(args: argparse.Namespace) -> int:
    from .signing import make_signing_key

    settings = _load(args)
    default_name = f"app-signing-{settings.host}-{settings.port}.key"
    out = Path(args.out or default_name).expanduser().resolve()
    made = make_signing_key(settings, out, force=args.force)
    print(f"Application-signing key made for {settings.url} (fingerprint {made.fingerprint})")
    print(f"  private key      {made.private_key}  (mode 0600)")
    print(f"  public key       {made.public_key}")
    if made.worker_conf is not None:
        print(f"  worker config    {made.worker_conf}  (signing.key set: workers run signed binaries only)")
    print(
        "The private key must not stay on the server: move it to the machine where applications are\n"
        "signed (xwsendapp NAME OS CPU FILE --xwsign KEYFILE) and keep a copy offline. Whoever holds it\n"
        "can make every worker of this deployment run a program."
    )
    if settings.app_signatures == "required":
        print("From now on the server refuses binaries without a valid signature (apps.signatures=required).")
    return 0


# -- installers -------------------------------------------------------------------------------------
def cmd_installer(args: argparse.Namespace) -> int:
    from .installer import write_bundles

    settings = _load(args)
    out = Path(args.out).expanduser().resolve()
    bundles = write_bundles(
        settings,
        out,
        wheel=Path(args.wheel).expanduser().resolve() if args.wheel else None,
        worker_config=Path(args.worker_config).expanduser() if args.worker_config else None,
        client_config=Path(args.client_config).expanduser() if args.client_config else None,
    )
    print(f"Bundles for {settings.url} in {out}:")
    for b in bundles:
        print(f"  {b.kind:<7} {b.folder}  ({b.archive.name}); install with: sh install.sh")
    print(
        "They hold passwords (the worker identity, and the client's if given): hand them over a "
        "channel you trust."
    )
    if not args.client_config:
        print("The client bundle carries no credentials: its users set login and password in etc/xwrc.")
    return 0


# -- Slurm pilots ----------------------------------------------------------------------------------
def cmd_bridge_slurm(args: argparse.Namespace) -> int:
    from .bridge import SlurmOptions, main_slurm, slurm_time_s

    if args.workers < 1 or args.cpus_per_task < 1 or args.max_idle_s <= 0 or args.poll_s <= 0:
        raise ConfigError(
            "--workers and --cpus-per-task must be 1 or more, --max-idle-s and --poll-s greater than 0"
        )
    if args.time is not None:
        slurm_time_s(args.time)  # a clear error before anything is submitted
    options = SlurmOptions(
        args.workers,
        args.partition,
        args.time,
        args.account,
        cpus_per_task=args.cpus_per_task,
        max_idle_s=args.max_idle_s,
        poll_s=args.poll_s,
    )
    return main_slurm(_load(args), options, watch=args.watch)


# -- run and manage -----------------------------------------------------------------------------------
def _load(args: argparse.Namespace, *, warn: bool = True) -> ServerSettings:
    """The home's settings; their warnings (unknown keys) on stderr unless ``warn`` is false."""
    settings = ServerSettings.load(_home(args))
    if warn:
        for warning in settings.warnings:
            print(f"xwserver: warning: {warning}", file=sys.stderr)
    return settings


def bind_address(settings: ServerSettings) -> str:
    """``HOST:PORT`` the server binds (``server.listen``, else the URL's host)."""
    host = settings.listen if settings.listen is not None else settings.host
    host = host.strip("[]") or "0.0.0.0"
    return f"[{host}]:{settings.port}" if ":" in host else f"{host}:{settings.port}"


def loopback_warning(settings: ServerSettings) -> str | None:
    """Why no other machine can reach the server, when it binds only loopback addresses while
    its URL names another host (a host name that resolves to 127.0.1.1, as Debian's
    /etc/hosts makes it, or ``server.listen=127.0.0.1``); else None."""
    if _all_loopback(settings.host):
        return None  # a deployment on this machine only: loopback is what was asked for
    listen = settings.listen if settings.listen is not None else settings.host
    if not _all_loopback(listen.strip("[]")):
        return None
    return (
        f"the server binds {bind_address(settings)}, a loopback address, while server.url names "
        f"{settings.host}: workers and clients on other machines cannot reach it; set "
        "server.listen=0.0.0.0 (or this machine's address) in conf/xwserver.conf"
    )


def _signing_key(settings: ServerSettings) -> Path | None:
    """The home's public signing key, if it has one (the worker config names it)."""
    from .signing import public_key_path

    path = public_key_path(settings)
    return path if path.is_file() else None


def _signing_warning(settings: ServerSettings) -> str | None:
    from .signing import SigningPolicy

    return SigningPolicy.of(settings).warning()


def _all_loopback(host: str) -> bool:
    if host in {"", "0.0.0.0", "::"}:
        return False
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False  # unresolvable: the bind itself will say so
    addresses = {str(info[4][0]).split("%", 1)[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _load(args, warn=False)
    for unknown in settings.warnings:
        print(f"xwserver: {unknown}", file=sys.stderr)
    print(
        f"{settings.conf_file}: url {settings.url}, binds {bind_address(settings)}, "
        f"database {_safe_db_url(settings.db_url)}"
    )
    if warning := loopback_warning(settings):
        print(f"xwserver: warning: {warning}", file=sys.stderr)
    if unsigned := _signing_warning(settings):
        print(f"note: {unsigned}")  # a choice of the deployment, not a fault of the file
    if settings.warnings:
        print(f"xwserver: {len(settings.warnings)} unknown key(s) in {settings.conf_file}", file=sys.stderr)
        return 1
    return 0


def cmd_diagnostics(args: argparse.Namespace) -> int:
    from .diagnostics import run

    return run(_home(args), fmt=args.format)


def cmd_console(args: argparse.Namespace) -> int:
    settings = _load(args, warn=not args.detached)
    _configure_logging(settings, args.log_level, to_stderr=not args.detached)
    import asyncio

    import xwcommon.programs  # noqa: F401 - first: aiohttp without reading the system's CAs

    from . import processes
    from .app import serve  # the server's dependencies are needed from here on

    processes.check(settings)
    if args.child:  # one of several: the supervisor holds the pid file
        processes.die_with_parent()
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(serve(settings, reuse_port=True))
        return 0
    if settings.processes > 1:
        with daemon.PidFile(settings.pid_file, "xwserver"):
            log.info(
                "xwserver %s starting %d processes at %s, binding %s (home %s), logging to %s",
                __version__,
                settings.processes,
                settings.url,
                bind_address(settings),
                settings.home,
                settings.log_dir / LOG_NAME,
            )
            return processes.supervise(settings, args.log_level)

    with daemon.PidFile(settings.pid_file, "xwserver"):
        log.info(
            "xwserver %s starting at %s, binding %s (home %s), logging to %s (requests: %s)",
            __version__,
            settings.url,
            bind_address(settings),
            settings.home,
            settings.log_dir / LOG_NAME,
            settings.log_dir / ACCESS_LOG_NAME,
        )
        for unknown in settings.warnings:
            log.warning("%s", unknown)
        if loopback := loopback_warning(settings):
            log.warning("%s", loopback)
        if unsigned := _signing_warning(settings):
            log.warning("%s", unsigned)
        try:
            asyncio.run(serve(settings))
        except KeyboardInterrupt:
            pass
        log.info("xwserver stopped")
    # everything is closed (connections, database, pid file): skip the interpreter's teardown
    # of a server's thousands of modules and objects, most of a second of CPU at every stop
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cmd_start(args: argparse.Namespace) -> int:
    from . import daemon as server_daemon

    settings = _load(args)
    from .processes import check

    check(settings)  # before detaching: the refusal is said here, not in a log
    pid = server_daemon.start(settings, timeout_s=args.timeout, log_level=args.log_level)
    print(f"xwserver is running (pid {pid}) at {settings.url}, bound to {bind_address(settings)}")
    if warning := loopback_warning(settings):
        print(f"xwserver: warning: {warning}", file=sys.stderr)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from . import daemon as server_daemon

    settings = _load(args)
    pid = server_daemon.stop(settings, timeout_s=args.timeout)
    print("xwserver was not running" if pid is None else f"xwserver stopped (pid {pid})")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    cmd_stop(args)
    return cmd_start(args)


def cmd_status(args: argparse.Namespace) -> int:
    from . import daemon as server_daemon

    settings = _load(args)
    st = server_daemon.status(settings)
    if st.running:
        print(f"xwserver is running (pid {st.pid}) at {settings.url}, bound to {bind_address(settings)}")
        if warning := loopback_warning(settings):
            print(f"xwserver: warning: {warning}", file=sys.stderr)
        return 0
    note = f" (stale pid file names pid {st.pid})" if st.stale and st.pid else ""
    print(f"xwserver is not running{note}")
    return EXIT_NOT_RUNNING


def _configure_logging(settings: ServerSettings, level: str, *, to_stderr: bool) -> None:
    """The server's log goes to var/log/xwserver.log (reopened if rotated) and, in the
    foreground, to stderr too."""
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers: list[logging.Handler] = [
        logging.handlers.WatchedFileHandler(settings.log_dir / LOG_NAME, encoding="utf-8")
    ]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    root = logging.getLogger()
    for h in handlers:
        h.setFormatter(fmt)
        root.addHandler(h)
    root.setLevel(level)
    if level != "DEBUG":
        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # one line per plugin


# -- argument parsing -------------------------------------------------------------------------------
def _home(args: argparse.Namespace) -> Path:
    value = args.home or os.environ.get(HOME_ENV)
    if not value:
        raise ConfigError(f"no server home: pass --home DIR or set {HOME_ENV}")
    return Path(value).expanduser().resolve()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xwserver", description="XtremWeb-Py server: set up, run and manage a deployment's server."
    )
    parser.add_argument("--version", action="version", version=f"xwserver {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", metavar="DIR", help=f"the server home (default: ${HOME_ENV})")

    p = sub.add_parser("init", parents=[common], help="create a server home: config, keys, database, admin")
    p.add_argument(
        "--url",
        default=DEFAULT_URL,
        help=f"https://HOST:PORT the server is reached at (default {DEFAULT_URL})",
    )
    p.add_argument("--db", metavar="URL", help="SQLAlchemy database URL (default: SQLite in HOME/var)")
    p.add_argument(
        "--admin-login", default=DEFAULT_ADMIN, help=f"login of the SUPER admin (default {DEFAULT_ADMIN})"
    )
    p.add_argument(
        "--admin-password",
        help=f"the admin's password (default: ${ADMIN_PASSWORD_ENV}, else a generated one, printed)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="re-create the configuration of an existing home (resets the admin and worker passwords; "
        "keeps the keys)",
    )
    p.add_argument(
        "--new-keys",
        action="store_true",
        help="with --force: also replace the CA and server keys (every worker and client needs the new ca.pem)",
    )
    p.set_defaults(func=cmd_init)

    log_level = argparse.ArgumentParser(add_help=False)
    log_level.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO"
    )

    p = sub.add_parser("console", parents=[common, log_level], help="run the server in the foreground")
    p.add_argument("--detached", action="store_true", help=argparse.SUPPRESS)  # set by start: no stderr log
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one of server.processes
    p.set_defaults(func=cmd_console)

    for name, func, what, default_s in (
        ("start", cmd_start, "start the server in the background", daemon.START_TIMEOUT_S),
        ("stop", cmd_stop, "stop the background server", daemon.STOP_TIMEOUT_S),
        ("restart", cmd_restart, "stop, then start the server", daemon.START_TIMEOUT_S),
    ):
        parents = [common] if name == "stop" else [common, log_level]
        p = sub.add_parser(name, parents=parents, help=what)
        p.add_argument(
            "--timeout",
            type=float,
            default=default_s,
            metavar="SECONDS",
            help=f"how long to wait (default {default_s:.0f}; stop sends SIGKILL after it)",
        )
        p.set_defaults(func=func)

    p = sub.add_parser("status", parents=[common], help="tell whether the server runs (exit status 3 if not)")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser(
        "check-config",
        parents=[common],
        help="read the server config; exit status 1 if it holds unknown keys, 2 if it is invalid",
    )
    p.set_defaults(func=cmd_check_config)
    p = sub.add_parser(
        "diagnostics",
        parents=[common],
        help="check the home, its keys, database, disk and address; exit status 1 if a check failed",
    )
    p.add_argument("--format", choices=["text", "json"], default="text", help="default text")
    p.set_defaults(func=cmd_diagnostics)

    keys = sub.add_parser("keys", help="make a deployment's keys (signing: the application-signing key)")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="KIND")
    p = keys_sub.add_parser(
        "signing",
        parents=[common],
        help="make the Ed25519 key pair that signs applications; the private key goes to --out, "
        "to be kept off the server",
    )
    p.add_argument(
        "--out",
        metavar="FILE",
        help="where to write the private key (default: app-signing-HOST-PORT.key in the current folder); "
        "never an existing file",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace the deployment's signing key (every app must be signed again)",
    )
    p.set_defaults(func=cmd_keys_signing)

    p = sub.add_parser(
        "installer",
        parents=[common],
        help="write this deployment's worker and client bundles (venv install script, config, CA, wheel, "
        "service units)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="where to write the bundles")
    p.add_argument(
        "--wheel",
        metavar="FILE",
        help="the xtremweb_py wheel to ship (default: built from this installation's source checkout)",
    )
    p.add_argument(
        "--worker-config",
        metavar="FILE",
        help="the worker identity to ship (default: the home's public worker, conf/xtremweb.worker.conf)",
    )
    p.add_argument(
        "--client-config",
        metavar="FILE",
        help="the client identity to ship, an xwrc (xwsenduser --xwout writes one); default: none",
    )
    p.set_defaults(func=cmd_installer)

    bridge = sub.add_parser("bridge", help="run pilot workers in a batch system (slurm)")
    bridge_sub = bridge.add_subparsers(dest="bridge_command", required=True, metavar="SYSTEM")
    p = bridge_sub.add_parser(
        "slurm", parents=[common], help="submit pilot workers (xwworker console --pilot) to Slurm with sbatch"
    )
    p.add_argument(
        "--workers", type=int, required=True, metavar="N", help="how many pilots to submit or keep up"
    )
    p.add_argument("--partition", metavar="P", help="sbatch --partition")
    p.add_argument("--time", metavar="T", help="sbatch --time; pilots hand work back a minute before it")
    p.add_argument("--account", metavar="A", help="sbatch --account")
    p.add_argument(
        "--cpus-per-task",
        type=int,
        default=1,
        metavar="C",
        help="sbatch --cpus-per-task; a pilot runs that many jobs at once (default 1)",
    )
    p.add_argument(
        "--max-idle-s",
        type=float,
        default=120.0,
        metavar="SECONDS",
        help="a pilot exits after this long idle (default 120)",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep N pilots queued or running while jobs are PENDING, until SIGTERM or SIGINT",
    )
    p.add_argument(
        "--poll-s",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="with --watch: how often to look (default 10)",
    )
    p.set_defaults(func=cmd_bridge_slurm)
    return parser
