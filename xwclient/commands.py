"""The client's commands: one async handler each, registered with :func:`command`.

A handler gets a :class:`Context` (the parsed command line, the SDK client, the output
streams) and returns an exit code. Adding a command is one decorated function here; the
parser, the help and the scripts pick it up from :data:`COMMANDS`.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from xwcommon.errors import BadRequest, Forbidden, NotFound, XWError
from xwcommon.levels import UserLevel
from xwcommon.platforms import normalize_cpu, normalize_os
from xwcommon.status import FINAL_JOB_STATUSES, JobStatus
from xwcommon.transport import sha256_file
from xwcommon.uri import is_uid, parse_uid
from xwcommon.urlfetch import is_url

from . import formats
from .exitcodes import describe_error, exit_code_for
from .progress import Progress, is_terminal
from .sdk import XWClient, normalize_rights, safe_file_name
from .settings import render_config

log = logging.getLogger(__name__)

#: results downloaded at once by xwresults
RESULTS_CONCURRENCY = 8


class UsageError(BadRequest):
    """Raised when the command line is wrong (exit code 2)."""

    code = "usage"


@dataclass
class Invocation:
    """A parsed command line."""

    command: str | None = None
    #: the positional arguments, in order (for xwsendwork: the app, then the job's arguments)
    args: list[str] = field(default_factory=list)
    #: ``--xw`` options by name without dashes (``"xwlabel"``); flags are ``True``; repeatable
    #: options (``--xwenv``) a list of their values in order
    options: dict[str, str | bool | list[str]] = field(default_factory=dict)
    #: ``< FILE`` on a macro line: the job's standard input
    stdin_file: str | None = None

    def value(self, name: str) -> str | None:
        v = self.options.get(name)
        return v if isinstance(v, str) else None

    def values(self, name: str) -> list[str]:
        v = self.options.get(name)
        if isinstance(v, list):
            return list(v)
        return [v] if isinstance(v, str) else []

    def flag(self, name: str) -> bool:
        return self.options.get(name) is True


@dataclass
class Context:
    """What a command handler works with."""

    inv: Invocation
    client: XWClient
    fmt: str = "text"
    out: IO[str] = field(default_factory=lambda: sys.stdout)
    err: IO[str] = field(default_factory=lambda: sys.stderr)
    #: the process's standard input (binary), or None when there is none
    stdin: IO[bytes] | None = None
    cwd: Path = field(default_factory=Path.cwd)
    prog: str = "xwclient"
    #: ``--xwfields``: the fields to show, in every format (None: the format's default)
    fields: tuple[str, ...] | None = None
    #: ``--xwlong``: every field in ``text`` too
    long: bool = False

    def emit(
        self, rows: Iterable[dict[str, Any]], kind: str, text_lines: Iterable[str] | None = None
    ) -> None:
        """Rows in the chosen format; in ``text``, ``text_lines`` instead when given (unless
        fields were chosen)."""
        if self.fmt == "text" and text_lines is not None and self.fields is None:
            for line in text_lines:
                print(line, file=self.out)
        else:
            self.out.write(formats.render(rows, kind, self.fmt, fields=self.fields, long=self.long))
        self.out.flush()

    def emit_unless_failed(self, rows: list[dict[str, Any]], kind: str, code: int) -> None:
        """Rows, but no empty table after every item failed (the errors said it all)."""
        if rows or code == 0:
            self.emit(rows, kind)

    def warn(self, message: str) -> None:
        print(f"{self.prog}: {message}", file=self.err)

    @property
    def interactive(self) -> bool:
        """Whether progress bars may be drawn: standard output and error are terminals."""
        return is_terminal(self.out) and is_terminal(self.err)

    def progress(self, label: str, total: int | None, unit: str = "bytes") -> Progress:
        """A progress bar on standard error, drawn only when :attr:`interactive`."""
        return Progress(self.err, label, total, unit=unit, enabled=self.interactive)


Handler = Callable[[Context], Awaitable[int]]


@dataclass(frozen=True)
class Command:
    """One client command, ``--xw<name>`` on the command line and a script ``xw<name>``."""

    name: str
    usage: str
    summary: str
    run: Handler
    aliases: tuple[str, ...] = ()
    #: the options this command accepts, beside the common ones
    options: frozenset[str] = frozenset()
    min_args: int = 0
    max_args: int | None = None


#: every command by name and alias (``"sendwork"``, ``"submit"`` …)
COMMANDS: dict[str, Command] = {}
#: commands in registration order, for the help
ORDERED: list[Command] = []


def command(
    name: str,
    usage: str,
    summary: str,
    *,
    aliases: tuple[str, ...] = (),
    options: Iterable[str] = (),
    min_args: int = 0,
    max_args: int | None = None,
) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        cmd = Command(name, usage, summary, fn, aliases, frozenset(options), min_args, max_args)
        for key in (name, *aliases):
            if key in COMMANDS:
                raise ValueError(f"command {key!r} registered twice")
            COMMANDS[key] = cmd
        ORDERED.append(cmd)
        return fn

    return register


# -- helpers --------------------------------------------------------------------------------------
def _uid_arg(text: str) -> str:
    try:
        return parse_uid(text)
    except BadRequest as exc:
        raise UsageError(exc.message) from None


def _listed(args: list[str]) -> list[str]:
    """The arguments with XWHEP's comma-separated UID lists (``A,B`` or ``A, B``) split; a word
    whose pieces are not all UIDs or URIs is kept whole."""
    out: list[str] = []
    for arg in args:
        pieces = [p.strip() for p in arg.split(",")]
        if "," in arg and all(is_uid(p) for p in pieces if p):
            out.extend(p for p in pieces if p)
        elif arg.strip(", "):
            out.append(arg)
    return out


async def _each(
    ctx: Context, items: list[str], action: Callable[[str], Awaitable[None]], *, concurrency: int = 1
) -> int:
    """Run ``action`` on each item, ``concurrency`` at a time; report failures on stderr and go
    on; return the first failure's exit code (0 if none)."""
    codes: list[int] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(item: str) -> None:
        async with gate:
            try:
                await action(item)
            except (XWError, OSError) as exc:
                ctx.warn(f"error: {describe_error(exc, ctx.client.settings)}")
                codes.append(exit_code_for(exc))

    if concurrency == 1:
        for item in items:
            await one(item)
    else:
        await asyncio.gather(*(one(item) for item in items))
    return codes[0] if codes else 0


def stdin_to_file(stream: IO[bytes] | None, directory: str | None = None) -> Path | None:
    """Copy a piped or redirected standard input to a temporary file; ``None`` when there is none.

    No input is: no stream, a closed one, a terminal, a character device such as
    ``/dev/null``, or an empty stream. The caller removes the file.
    """
    if stream is None:
        return None
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):
        fd = None  # an in-memory stream (tests, embedding): read it
    if fd is not None:
        try:
            if os.isatty(fd) or stat.S_ISCHR(os.fstat(fd).st_mode):
                return None
        except OSError:
            return None
    fd_out, name = tempfile.mkstemp(prefix="xwstdin.", dir=directory)
    path = Path(name)
    try:
        with open(fd_out, "wb") as fh:
            shutil.copyfileobj(stream, fh, 1024 * 1024)
    except (OSError, ValueError):
        path.unlink(missing_ok=True)  # a stream that cannot be read (closed, captured): none
        return None
    if path.stat().st_size == 0:
        path.unlink()
        return None
    return path


# -- applications -------------------------------------------------------------------------------------
@command(
    "sendapp",
    "--xwsendapp NAME CPU OS FILE|URI|URL [--xwnetwork] [--xwrights 0755|0750|0700] [--xwsign KEYFILE] "
    "[--xwsha256 HEX --xwsize BYTES]",
    "insert an application binary for one platform (CPU/OS any for scripts); again with the same "
    "name to add another platform; --xwnetwork: its jobs need the network; --xwrights: its "
    "access rights, set at insertion for good (ADVANCED and up; default public 0755, 0750 for "
    "your user group's jobs and workers; below ADVANCED an app is private, 0700); --xwsign: sign "
    "it with the deployment's signing key (xwserver keys signing); an http(s) URL stays where it "
    "is (workers fetch it), with its digest and size given or learned by the server",
    options=("xwnetwork", "xwrights", "xwsign", "xwsha256", "xwsize"),
    min_args=4,
    max_args=4,
)
async def cmd_sendapp(ctx: Context) -> int:
    name, cpu, os_name, source = ctx.inv.args
    rights = ctx.inv.value("xwrights")
    try:
        normalize_cpu(cpu)
        normalize_os(os_name)
        if rights is not None:
            rights = normalize_rights(rights)
    except BadRequest as exc:
        raise UsageError(exc.message) from None
    local = _local_file(ctx, source)
    network = True if ctx.inv.flag("xwnetwork") else None
    sign = ctx.inv.value("xwsign")
    sign_key = _local_file(ctx, sign) if sign is not None else None
    if sign is not None and sign_key is None:
        raise UsageError(f"--xwsign {sign}: no such key file")
    sha256, size = _digest_options(ctx)
    if local is not None:
        with ctx.progress(f"uploading {local.name}", local.stat().st_size) as bar:
            app = await ctx.client.send_app(
                name,
                cpu,
                os_name,
                local,
                needs_network=network,
                progress=bar.advance,
                access_rights=rights,
                sign_key=sign_key,
            )
    else:
        app = await ctx.client.send_app(
            name,
            cpu,
            os_name,
            source,
            needs_network=network,
            access_rights=rights,
            sign_key=sign_key,
            sha256=sha256,
            size=size,
        )
    ctx.emit([app], "app", [app["uri"]])
    return 0


@command("apps", "--xwapps [UID|NAME…]", "list applications", aliases=("getapps",))
async def cmd_apps(ctx: Context) -> int:
    if not ctx.inv.args:
        ctx.emit(await ctx.client.list_apps(), "app")
        return 0
    apps: list[dict[str, Any]] = []

    async def get(key: str) -> None:
        apps.append(await ctx.client.get_app(key))

    code = await _each(ctx, ctx.inv.args, get)
    ctx.emit_unless_failed(apps, "app", code)
    return code


# -- data -----------------------------------------------------------------------------------------
@command(
    "senddata",
    "--xwsenddata FILE|URL… [--xwname NAME] [--xwsha256 HEX --xwsize BYTES]",
    "upload files as data (XWHEP's NAME CPU OS FILE form is accepted too); an http(s) URL is "
    "inserted as data by URL (nothing uploaded: workers fetch it and check its sha256), with "
    "--xwsha256 and --xwsize, or without them where the server may fetch it once to learn them; "
    "prints each URI",
    options=("xwname", "xwsha256", "xwsize"),
    min_args=1,
)
async def cmd_senddata(ctx: Context) -> int:
    files = ctx.inv.args
    name = ctx.inv.value("xwname")
    if len(files) == 4 and _local_file(ctx, files[0]) is None and _is_platform(files[1], files[2]):
        name, files = name or files[0], [files[3]]  # XWHEP: --xwsenddata NAME CPU OS URI
    if name is not None and len(files) > 1:
        raise UsageError("--xwname names one file; send the files one by one to name each")
    sent: list[dict[str, Any]] = []

    sha256, size = _digest_options(ctx)
    if sha256 is not None and len(files) > 1:
        raise UsageError("--xwsha256 and --xwsize describe one URL; send the URLs one by one")

    async def send(path: str) -> None:
        if is_url(path):
            sent.append(await ctx.client.send_data_url(path, name, sha256=sha256, size=size))
            return
        local = _local_file(ctx, path)
        if local is None or not local.is_file():
            raise BadRequest(f"no such file {path}")
        with ctx.progress(f"uploading {local.name}", local.stat().st_size) as bar:
            sent.append(await ctx.client.send_data(local, name, progress=bar.advance))

    code = await _each(ctx, files, send)
    ctx.emit(sent, "data", [d["uri"] for d in sent])
    return code


def _digest_options(ctx: Context) -> tuple[str | None, int | None]:
    """``--xwsha256`` and ``--xwsize``, given together or not at all."""
    sha256, size = ctx.inv.value("xwsha256"), ctx.inv.value("xwsize")
    if (sha256 is None) != (size is None):
        raise UsageError("give --xwsha256 and --xwsize together")
    if sha256 is not None and not re.fullmatch("[0-9a-fA-F]{64}", sha256):
        raise UsageError(f"--xwsha256 {sha256}: expected 64 hexadecimal digits")
    return (sha256.lower() if sha256 else None), (parse_size(size, "xwsize") if size is not None else None)


def _local_file(ctx: Context, text: str) -> Path | None:
    """The local file or folder ``text`` names (a path relative to the command's folder, or a
    ``file://`` URI), or ``None`` when it names nothing here."""
    if text.startswith("file://"):
        p = Path(unquote(urlsplit(text).path))
    elif "://" in text:
        return None
    else:
        p = Path(text).expanduser()
    p = p if p.is_absolute() else ctx.cwd / p
    return p if p.exists() else None


def _is_platform(cpu: str, os_name: str) -> bool:
    try:
        normalize_cpu(cpu)
        normalize_os(os_name)
    except BadRequest:
        return False
    return True


@command("datas", "--xwdatas [UID…]", "list data", aliases=("getdatas", "data"))
async def cmd_datas(ctx: Context) -> int:
    if not ctx.inv.args:
        ctx.emit(await ctx.client.list_data(), "data")
        return 0
    rows: list[dict[str, Any]] = []

    async def get(uid: str) -> None:
        rows.append(await ctx.client.get_data(uid))

    code = await _each(ctx, [_uid_arg(u) for u in _listed(ctx.inv.args)], get)
    ctx.emit_unless_failed(rows, "data", code)
    return code


@command(
    "download",
    "--xwdownload UID… [--xwoverride]",
    "download data into the current folder under their names (sha256 verified); a file already "
    "there with the same content is kept unless --xwoverride",
    aliases=("getdata",),
    options=("xwoverride",),
    min_args=1,
)
async def cmd_download(ctx: Context) -> int:
    async def fetch(uid: str) -> None:
        data = await ctx.client.get_data(uid)
        target = ctx.cwd / safe_file_name(data.get("name"), data["uid"])
        same = target.is_file() and (await asyncio.to_thread(sha256_file, target))[0] == data.get("sha256")
        if same and not ctx.inv.flag("xwoverride"):
            log.info("%s already holds data %s; kept", target, data["uid"])
        else:
            with ctx.progress(f"downloading {target.name}", data.get("size")) as bar:
                await ctx.client.download_data(data["uid"], target, progress=bar.advance)
        print(target, file=ctx.out)

    code = await _each(ctx, [_uid_arg(u) for u in _listed(ctx.inv.args)], fetch)
    ctx.out.flush()
    return code


# -- jobs -------------------------------------------------------------------------------------------
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?$", re.IGNORECASE)


def parse_size(text: str, option: str = "size") -> int:
    """Bytes from ``512M``, ``2G``, ``1.5GiB``, ``4096`` (K, M, G, T, P are powers of 1024)."""
    m = _SIZE.match(text.strip())
    if m is None:
        raise UsageError(f"--{option} {text}: expected a size such as 512M, 2G or 1048576 (bytes)")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * (1024 ** ("kmgtp".index(unit) + 1) if unit else 1))


SENDWORK_OPTIONS = (
    "xwlabel",
    "xwstdin",
    "xwnostdin",
    "xwenv",
    "xwsession",
    "xwgroup",
    "xwexpectedhost",
    "xwminmemory",
    "xwmindisk",
    "xwwait",
    "xwpriority",
    "xwquorum",
    "xwreplicas",
    "xwdelaybound",
    "xwmincores",
    "xwmingpus",
    "xwtags",
)

#: xwsendwork's number options: (option, job field, type, what it is)
NUMBER_OPTIONS = (
    ("xwpriority", "priority", int, "a priority: an integer, higher runs first"),
    ("xwquorum", "min_quorum", int, "how many results must agree: an integer from 1 to 10"),
    ("xwreplicas", "target_results", int, "how many copies to send at first: an integer from 1 to 100"),
    ("xwdelaybound", "delay_bound_s", float, "seconds after which a running copy is sent again elsewhere"),
    ("xwmincores", "min_cores", int, "a number of cores: an integer"),
    ("xwmingpus", "min_gpus", int, "a number of GPUs: an integer"),
)


def sendwork_spec(ctx: Context, *, read_stdin: bool = True) -> tuple[dict[str, Any], Path | None]:
    """The job an ``xwsendwork`` line asks for, as a spec for :meth:`XWClient.submit_many`
    (``stdin_path`` and ``env`` still local), and the temporary copy of the process's standard
    input it made, which the caller removes."""
    inv = ctx.inv
    app, *job_args = inv.args
    spec: dict[str, Any] = {"app": app, "args": job_args, "label": inv.value("xwlabel")}
    for option, key in (
        ("xwsession", "session_uid"),
        ("xwgroup", "group_uid"),
        ("xwexpectedhost", "expected_host_uid"),
    ):
        if (given := inv.value(option)) is not None:
            spec[key] = _uid_arg(given)
    for option, key in (("xwminmemory", "min_memory_bytes"), ("xwmindisk", "min_disk_bytes")):
        if (given := inv.value(option)) is not None:
            spec[key] = parse_size(given, option)
    if (given := inv.value("xwtags")) is not None:
        spec["tags"] = [t.strip() for t in given.split(",") if t.strip()]
    for option, key, kind, what in NUMBER_OPTIONS:
        if (given := inv.value(option)) is not None:
            try:
                spec[key] = kind(given)
            except ValueError:
                raise UsageError(f"--{option} {given}: expected {what}") from None
    envs = inv.values("xwenv")
    if envs:
        locals_ = [_local_file(ctx, e) for e in envs]
        if len(envs) == 1 and locals_[0] is None and is_uid(envs[0]):
            spec["env_uid"] = parse_uid(envs[0])
        elif len(envs) == 1 and is_url(envs[0]):
            spec["env_url"] = envs[0]  # a zip archive by URL: workers fetch it
        else:
            for given, local in zip(envs, locals_, strict=True):
                if local is None:
                    raise UsageError(
                        f"--xwenv {given}: no such zip file, folder or file (a data UID or URI must be "
                        "the only --xwenv)"
                    )
            spec["env"] = locals_
    given = inv.value("xwstdin")
    if given is not None and inv.stdin_file is not None:
        raise UsageError("give the job's standard input once: --xwstdin or '<', not both")
    given = given if given is not None else inv.stdin_file
    temp: Path | None = None
    if given is not None:
        local = _local_file(ctx, given)
        if local is not None and local.is_file():
            spec["stdin_path"] = local
        elif is_uid(given):
            spec["stdin_uid"] = parse_uid(given)
        elif is_url(given):
            spec["stdin_url"] = given
        else:
            raise UsageError(
                f"standard input {given}: no such file, and not a data UID, xw:// URI or http(s) URL"
            )
    elif read_stdin and not inv.flag("xwnostdin"):
        temp = stdin_to_file(ctx.stdin)
        if temp is not None:
            spec["stdin_path"] = temp
            spec["stdin_name"] = "stdin"
    return spec, temp


@command(
    "sendwork",
    "--xwsendwork APP [JOB ARGUMENTS…] [--xwlabel L] [--xwenv ZIP|DIR|FILE|URL…] [--xwstdin FILE|URI|URL] "
    "[--xwnostdin] [--xwsession UID] [--xwgroup UID] [--xwexpectedhost HOST_UID] [--xwminmemory SIZE] "
    "[--xwmindisk SIZE] [--xwmincores N] [--xwmingpus N] [--xwtags T1,T2] [--xwpriority N] [--xwquorum N] "
    "[--xwreplicas N] [--xwdelaybound SECONDS] "
    "[--xwwait] [< FILE]",
    "submit a job; every argument that is not an --xw option is the job's (use -- to pass --xw… "
    "ones too); a piped or redirected standard input becomes the job's; --xwenv (repeatable) packs "
    "zip files, folders (their contents) and files into one archive expanded in the job's scratch "
    "directory; SIZE as 512M or 2G; prints the job's URI; with --xwwait, then waits for the job's end "
    "and prints its status (exit code 1 unless COMPLETED)",
    aliases=("submit",),
    options=SENDWORK_OPTIONS,
    min_args=1,
)
async def cmd_sendwork(ctx: Context) -> int:
    spec, temp = sendwork_spec(ctx)
    try:
        stdin_path, stdin_name = spec.pop("stdin_path", None), spec.pop("stdin_name", None)
        app, args, label = spec.pop("app"), spec.pop("args"), spec.pop("label")
        job = await ctx.client.submit(app, args, stdin_path, label, stdin_name=stdin_name, **spec)
    finally:
        if temp is not None:
            temp.unlink(missing_ok=True)
    warn_unrunnable(ctx, [job])
    if not ctx.inv.flag("xwwait"):
        ctx.emit([job], "job", [job["uri"]])
        return 0
    if ctx.fmt == "text":
        print(job["uri"], file=ctx.out)
        ctx.out.flush()
    with ctx.progress("waiting", 1, unit="job") as bar:
        [final] = await ctx.client.wait([job["uid"]], progress=bar.advance)
    ctx.emit([final], "job", [_status_line(final)])
    return 0 if final["status"] == JobStatus.COMPLETED else 1


def _status_line(job: dict[str, Any]) -> str:
    line = str(job["status"])
    if job.get("exit_code") is not None:
        line += f" (exit code {job['exit_code']})"
    if job.get("message"):
        line += f": {job['message']}"
    return line


#: the status flags of xwworks, and what they select
STATUS_FLAGS = {
    "xwpending": ("PENDING", "WAITING"),
    "xwrunning": ("RUNNING",),
    "xwcompleted": ("COMPLETED",),
    "xwerror": ("ERROR", "ABORTED"),
}


def _statuses(ctx: Context) -> str | None:
    raw = ctx.inv.value("xwstatus")
    names = [s.strip().upper() for s in (raw or "").replace(" ", ",").split(",") if s.strip()]
    known = {s.value for s in JobStatus}
    for n in names:
        if n not in known:
            raise UsageError(f"--xwstatus: unknown status {n!r}; use some of {', '.join(sorted(known))}")
    for flag, statuses in STATUS_FLAGS.items():
        if ctx.inv.flag(flag):
            names.extend(s for s in statuses if s not in names)
    return ",".join(names) if names else None


@command(
    "works",
    "--xwworks [UID…] [--xwpending] [--xwrunning] [--xwcompleted] [--xwerror] [--xwstatus S1,S2] "
    "[--xwlabel L] [--xwsession UID] [--xwgroup UID]",
    "list your jobs, or the given ones; the status flags (any of them: their union) keep the "
    "pending (and waiting), running, completed, or error (and aborted) ones",
    aliases=("getworks", "jobs"),
    options=("xwstatus", "xwlabel", "xwsession", "xwgroup", *STATUS_FLAGS),
)
async def cmd_works(ctx: Context) -> int:
    status = _statuses(ctx)
    session, group = ctx.inv.value("xwsession"), ctx.inv.value("xwgroup")
    if not ctx.inv.args:
        jobs = await ctx.client.list_jobs(
            status=status,
            label=ctx.inv.value("xwlabel"),
            session=_uid_arg(session) if session else None,
            group=_uid_arg(group) if group else None,
        )
        ctx.emit(_with_reasons(ctx, jobs), "job")
        return 0
    found: dict[str, dict[str, Any]] = {}

    async def get(uid: str) -> None:
        found[uid] = await ctx.client.get_job(uid)

    uids = [_uid_arg(u) for u in _listed(ctx.inv.args)]
    code = await _each(ctx, uids, get, concurrency=RESULTS_CONCURRENCY)
    # the given jobs, kept by the same filters as a listing
    wanted = set(status.split(",")) if status else None
    fields = {
        "label": ctx.inv.value("xwlabel"),
        "session_uid": _uid_arg(session) if session else None,
        "group_uid": _uid_arg(group) if group else None,
    }
    jobs = [
        found[u]
        for u in uids
        if u in found
        and (wanted is None or found[u]["status"] in wanted)
        and all(v is None or found[u].get(k) == v for k, v in fields.items())
    ]
    ctx.emit_unless_failed(_with_reasons(ctx, jobs), "job", code)
    return code


def _with_reasons(ctx: Context, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The text format's message column tells why a PENDING job cannot run (the other
    formats carry ``pending_reason`` as a field of its own)."""
    if ctx.fmt != "text":
        return jobs
    return [
        {**j, "message": f"cannot run: {j['pending_reason']}"}
        if j.get("pending_reason") and not j.get("message")
        else j
        for j in jobs
    ]


def warn_unrunnable(ctx: Context, jobs: list[dict[str, Any]]) -> None:
    """At submission: one warning per reason that keeps jobs from every connected worker
    (none with --xwnoverbose: errors only)."""
    if ctx.inv.flag("xwnoverbose"):
        return
    reasons: dict[str, list[str]] = {}
    for j in jobs:
        if j.get("pending_reason"):
            reasons.setdefault(str(j["pending_reason"]), []).append(str(j["uid"]))
    for why, uids in reasons.items():
        which = f"job {uids[0]}" if len(uids) == 1 else f"{len(uids)} jobs (the first {uids[0]})"
        ctx.warn(f"warning: {which} cannot run now: {why}")


@command(
    "tasks",
    "--xwtasks [JOB_UID…]",
    "list tasks (one per attempt of a job on a host) with what each used: CPU user and system "
    "seconds, wall seconds, peak memory",
    aliases=("gettasks",),
)
async def cmd_tasks(ctx: Context) -> int:
    if not ctx.inv.args:
        ctx.emit(await ctx.client.list_tasks(), "task")
        return 0
    tasks: list[dict[str, Any]] = []

    async def get(uid: str) -> None:
        tasks.extend(await ctx.client.list_tasks(job=uid))

    code = await _each(ctx, [_uid_arg(u) for u in _listed(ctx.inv.args)], get)
    ctx.emit_unless_failed(tasks, "task", code)
    return code


@command(
    "wait",
    "--xwwait [UID…] [--xwtimeout SECONDS]",
    "wait until the jobs (default: all your unfinished ones) are COMPLETED, ERROR or ABORTED; "
    "lists them; exit code 1 on timeout",
    options=("xwtimeout",),
)
async def cmd_wait(ctx: Context) -> int:
    timeout_s: float | None = None
    if (raw := ctx.inv.value("xwtimeout")) is not None:
        try:
            timeout_s = float(raw)
        except ValueError:
            raise UsageError(f"--xwtimeout {raw}: expected a number of seconds") from None
    uids = [_uid_arg(u) for u in _listed(ctx.inv.args)]
    if not uids:
        unfinished = [s.value for s in JobStatus if s not in FINAL_JOB_STATUSES]
        uids = [j["uid"] for j in await ctx.client.list_jobs(status=unfinished)]
    with ctx.progress("waiting", len(uids), unit="jobs") as bar:
        jobs = await ctx.client.wait(uids, timeout_s=timeout_s, progress=bar.advance)
    ctx.emit(jobs, "job")
    return 0


# -- results ---------------------------------------------------------------------------------------
@command(
    "results",
    "--xwresults [UID…] [--xwnoextract] [--xwrmzip] [--xwnoerase] [--xwoverride]",
    "download results into ResultsOf_<UID>.zip (sha256 verified) and extract them into "
    "ResultsOf_<UID>/ (default: all your finished jobs that have one); then each job is removed "
    "from the server unless --xwnoerase; --xwrmzip removes the zip once extracted; a zip already "
    "here with the result's sha256 is not downloaded again unless --xwoverride",
    aliases=("result", "getresults"),
    options=("xwnoextract", "xwrmzip", "xwnoerase", "xwoverride"),
)
async def cmd_results(ctx: Context) -> int:
    extract = not ctx.inv.flag("xwnoextract")
    erase = not ctx.inv.flag("xwnoerase")
    uids = [_uid_arg(u) for u in _listed(ctx.inv.args)]
    known: dict[str, dict[str, Any]] = {}
    if not uids:
        finished = await ctx.client.list_jobs(status=[JobStatus.COMPLETED, JobStatus.ERROR])
        known = {j["uid"]: j for j in finished if j.get("result_uid")}
        uids = list(known)
        if not uids:
            ctx.warn("no finished job of yours has a result to download")
    rows: dict[str, dict[str, Any]] = {}
    bar = ctx.progress("results", len(uids), unit="jobs")

    async def fetch(uid: str) -> None:
        job = known.get(uid) or await ctx.client.get_job(uid)
        path = await ctx.client.fetch_result(
            uid, ctx.cwd, extract, override=ctx.inv.flag("xwoverride"), job=job
        )
        if extract and ctx.inv.flag("xwrmzip"):
            path.with_name(path.name + ".zip").unlink(missing_ok=True)
        rows[uid] = {
            "job_uid": job["uid"],
            "path": str(path),
            "result_uid": job.get("result_uid"),
            "sha256": job.get("result_sha256"),
            "erased": False,
        }
        bar.advance(1)
        if ctx.fmt == "text":
            bar.close()
            print(path, file=ctx.out)
            ctx.out.flush()

    try:
        code = await _each(ctx, uids, fetch, concurrency=RESULTS_CONCURRENCY)
    finally:
        bar.close()
    if erase and rows:
        # only what is safely here: downloaded, sha256 verified and, unless --xwnoextract, extracted
        deleted, _missing = await ctx.client.delete_jobs([r["job_uid"] for r in rows.values()])
        gone = set(deleted)
        for r in rows.values():
            r["erased"] = r["job_uid"] in gone
    if ctx.fmt != "text":
        ctx.emit([rows[u] for u in uids if u in rows], "result")
    return code


# -- any object -------------------------------------------------------------------------------------
#: the options of xwrm that select jobs instead of naming objects
RM_SELECTION = ("xwstatus", "xwlabel", "xwsession", "xwgroup", *STATUS_FLAGS)


@command(
    "rm",
    "--xwrm UID|URI|LOGIN|LABEL… | --xwrm [--xwlabel L] [--xwstatus S1,S2] [--xwsession UID] "
    "[--xwgroup UID] [--xwpending] [--xwrunning] [--xwcompleted] [--xwerror]",
    "delete jobs, data, applications, sessions and groups of jobs (with their jobs), users or user "
    "groups (a running job is aborted first); a name that is not a UID is tried as a user's login, "
    "then as a user group's label. With a selection instead (as condor_rm -constraint): every job "
    "of yours with that label, status, session and group (all that are given). With --xwabort, "
    "jobs are aborted instead: they end ABORTED and stay listed, their running copies stop",
    aliases=("remove", "delete"),
    options=(*RM_SELECTION, "xwabort"),
)
async def cmd_rm(ctx: Context) -> int:
    if ctx.inv.flag("xwabort"):
        return await _abort(ctx)
    selection = [name for name in RM_SELECTION if name in ctx.inv.options]
    keys = [_key_arg(k) for k in _listed(ctx.inv.args)]
    if selection and keys:
        raise UsageError(
            f"give the objects to remove or a selection (--{selection[0]}), not both; "
            "xwworks with the same selection lists what it would remove"
        )
    if not selection and not keys:
        raise UsageError(f"nothing to remove; usage: {COMMANDS['rm'].usage}")
    rows: list[dict[str, Any]] = []
    if selection:
        code = await _rm_selection(ctx, rows)
    else:
        code = await _rm_keys(ctx, keys, rows)
    if rows or code == 0:
        ctx.emit(rows, "removed", [f"{r['uid']} removed ({r['kind']})" for r in rows])
    return code


async def _abort(ctx: Context) -> int:
    """``xwrm --xwabort``: jobs named, or selected as xwrm selects them, end ABORTED."""
    selection = [name for name in RM_SELECTION if name in ctx.inv.options]
    keys = _listed(ctx.inv.args)
    if selection and keys:
        raise UsageError(f"give the jobs to abort or a selection (--{selection[0]}), not both")
    if selection:
        session, group = ctx.inv.value("xwsession"), ctx.inv.value("xwgroup")
        listed = await ctx.client.list_jobs(
            status=_statuses(ctx),
            label=ctx.inv.value("xwlabel"),
            session=_uid_arg(session) if session else None,
            group=_uid_arg(group) if group else None,
        )
        uids = [j["uid"] for j in listed]
    elif keys:
        uids = [_uid_arg(k) for k in keys]
    else:
        raise UsageError(f"nothing to abort; usage: {COMMANDS['rm'].usage}")
    aborted, missing = await ctx.client.abort_jobs(uids)
    for item in missing:
        ctx.warn(f"error: {item.get('uid')}: {item.get('reason')}")
    ctx.emit(
        [{"uid": uid, "kind": "job"} for uid in aborted], "aborted", [f"{uid} aborted" for uid in aborted]
    )
    return exit_code_for(NotFound("")) if missing else 0


async def _rm_selection(ctx: Context, rows: list[dict[str, Any]]) -> int:
    session, group = ctx.inv.value("xwsession"), ctx.inv.value("xwgroup")
    deleted, _gone = await ctx.client.delete_jobs_where(
        status=_statuses(ctx),
        label=ctx.inv.value("xwlabel"),
        session=_uid_arg(session) if session else None,
        group=_uid_arg(group) if group else None,
    )
    if not deleted:
        ctx.warn("no job of yours matches the selection; nothing removed")
    rows.extend({"uid": uid, "kind": "job"} for uid in deleted)
    return 0


async def _rm_keys(ctx: Context, keys: list[str], rows: list[dict[str, Any]]) -> int:
    """Jobs in bulk requests (a few thousand per request, not two requests each); what is not
    a job (data, apps, sessions, users…) one by one, as the server says its kind."""
    uids = list(dict.fromkeys(parse_uid(k) for k in keys if is_uid(k)))
    jobs: set[str] = set()
    refused: dict[str, str] = {}
    if uids:
        deleted, missing = await ctx.client.delete_jobs(uids)
        jobs = set(deleted)
        for item in missing:
            if isinstance(item, dict) and item.get("reason") not in (None, "no such job"):
                refused[str(item["uid"])] = str(item["reason"])  # a job, not the caller's to remove
    rest: list[str] = []
    for key in keys:
        uid = parse_uid(key) if is_uid(key) else None
        if uid is None or (uid not in jobs and uid not in refused):
            rest.append(key)  # a name, or no job: another kind of object, or nothing
        elif uid in jobs:
            jobs.discard(uid)  # once, even when given twice
            rows.append({"uid": uid, "kind": "job"})
    for uid, reason in refused.items():
        ctx.warn(f"error: {uid}: {reason}")

    async def remove(key: str) -> None:
        kind = await ctx.client.remove(key)
        rows.append({"uid": parse_uid(key) if is_uid(key) else key, "kind": kind})

    code = await _each(ctx, rest, remove)
    return exit_code_for(Forbidden("")) if refused else code


def _key_arg(text: str) -> str:
    """A UID, URI or name as given; a string that starts like a URI must be a valid one."""
    if text.startswith("xw://") or not text.strip():
        return _uid_arg(text)
    return text


@command(
    "chmod",
    "--xwchmod RIGHTS UID|URI…",
    "change the access rights of data or hosts you own (any, as SUPER): 0750, XWHEP's 0x750, or "
    "u+r, g-w, o+x, a+r (comma-separated); an application's and a job's rights never change",
    min_args=2,
)
async def cmd_chmod(ctx: Context) -> int:
    raw, *keys = ctx.inv.args
    try:
        rights = normalize_rights(raw)
    except BadRequest as exc:
        raise UsageError(exc.message) from None
    rows: list[dict[str, Any]] = []

    async def change(uid: str) -> None:
        kind, obj = await ctx.client.chmod(uid, rights)
        rows.append({**obj, "kind": kind})

    code = await _each(ctx, [_uid_arg(k) for k in keys], change)
    ctx.emit_unless_failed(rows, "rights", code)
    return code


# -- sessions and groups of jobs -------------------------------------------------------------------
@command(
    "sendsession",
    "--xwsendsession NAME",
    "create a session (jobs one works on together; submit into it with xwsendwork --xwsession UID); "
    "prints its URI; xwrm removes it with its jobs",
    min_args=1,
    max_args=1,
)
async def cmd_sendsession(ctx: Context) -> int:
    session = await ctx.client.create_session(ctx.inv.args[0])
    ctx.emit([session], "session", [session["uri"]])
    return 0


@command(
    "sessions",
    "--xwsessions [UID…]",
    "list your sessions, or the given ones, with how many of their jobs are in each status",
    aliases=("getsessions",),
)
async def cmd_sessions(ctx: Context) -> int:
    return await _list_or_get(ctx, "session", ctx.client.list_sessions, ctx.client.get_session)


@command(
    "sendgroup",
    "--xwsendgroup NAME",
    "create a group of jobs (submit into it with xwsendwork --xwgroup UID); prints its URI; xwrm "
    "removes it with its jobs",
    min_args=1,
    max_args=1,
)
async def cmd_sendgroup(ctx: Context) -> int:
    group = await ctx.client.create_group(ctx.inv.args[0])
    ctx.emit([group], "group", [group["uri"]])
    return 0


@command(
    "groups",
    "--xwgroups [UID…]",
    "list your groups of jobs, or the given ones, with how many of their jobs are in each status",
    aliases=("getgroups",),
)
async def cmd_groups(ctx: Context) -> int:
    return await _list_or_get(ctx, "group", ctx.client.list_groups, ctx.client.get_group)


async def _list_or_get(
    ctx: Context,
    kind: str,
    list_all: Callable[[], Awaitable[list[dict[str, Any]]]],
    get_one: Callable[[str], Awaitable[dict[str, Any]]],
) -> int:
    if not ctx.inv.args:
        ctx.emit(await list_all(), kind)
        return 0
    found: dict[str, dict[str, Any]] = {}

    async def get(uid: str) -> None:
        found[uid] = await get_one(uid)

    uids = [_uid_arg(u) for u in _listed(ctx.inv.args)]
    code = await _each(ctx, uids, get)
    ctx.emit_unless_failed([found[u] for u in uids if u in found], kind, code)
    return code


# -- users and user groups ------------------------------------------------------------------------------
@command(
    "senduser",
    "--xwsenduser LOGIN PASSWORD EMAIL RIGHTS [USERGROUP]",
    "insert a user (SUPER only); RIGHTS is STANDARD, ADVANCED, SUPER or WORKER (XWHEP's "
    "STANDARD_USER… too); prints a client config for the new user to hand over (other formats: "
    "the user)",
    min_args=4,
    max_args=5,
)
async def cmd_senduser(ctx: Context) -> int:
    login, password, email, rights, *group = ctx.inv.args
    try:
        level = UserLevel.parse(rights)
    except BadRequest as exc:
        raise UsageError(exc.message) from None
    if password != password.strip() or "\n" in password or "\r" in password or not password:
        raise UsageError("the password must not be empty, hold a line break, or start or end with spaces")
    user = await ctx.client.create_user(
        login, password, email or None, level.name, group[0] if group else None
    )
    if ctx.fmt != "text":
        ctx.emit([user], "user")
        return 0
    s = ctx.client.settings
    if s is None:  # an embedding program's client without a config: the user alone
        ctx.emit([user], "user")
        return 0
    note = f" ({level.name}, {user.get('uri', user.get('uid'))})"
    ctx.out.write(
        render_config(s.servers, user.get("login", login), password, s.ca_file.resolve(), note=note)
    )
    ctx.out.flush()
    return 0


@command(
    "users",
    "--xwusers [UID|LOGIN…]",
    "list users: all of them for SUPER, only yourself otherwise",
    aliases=("getusers",),
)
async def cmd_users(ctx: Context) -> int:
    if not ctx.inv.args:
        ctx.emit(await ctx.client.list_users(), "user")
        return 0
    rows: list[dict[str, Any]] = []

    async def get(key: str) -> None:
        rows.append(await ctx.client.get_user(key))

    code = await _each(ctx, [_key_arg(k) for k in ctx.inv.args], get)
    ctx.emit_unless_failed(rows, "user", code)
    return code


@command(
    "passwd",
    "--xwpasswd [LOGIN] [NEWPASSWORD|-]",
    "change your password (the old one comes from your config, else a prompt), or, as SUPER, "
    "anyone's; without NEWPASSWORD, or with -, it is asked for without echo (standard input must "
    "be a terminal); your config's password= must then be updated",
    aliases=("password", "chpasswd"),
    max_args=2,
)
async def cmd_passwd(ctx: Context) -> int:
    args = list(ctx.inv.args)
    s = ctx.client.settings
    me = s.login if s is not None else ctx.client.transport.login_name
    login = args.pop(0) if len(args) == 2 else me
    new = args[0] if args else "-"
    if new == "-":
        new = _ask_new_password(ctx, login)
    mine = login == me
    old: str | None = None
    if mine:
        old = s.password if s is not None and s.password else None
        if old is None:
            old = read_secret(ctx, f"current password of {login}: ")
    await ctx.client.change_password(login, new, old)
    if ctx.fmt == "text":
        print(f"password of {login} changed; every session of {login} was logged out", file=ctx.out)
        if mine and s is not None:
            print(f"update password= in {s.config_file}", file=ctx.out)
    else:
        ctx.emit([{"login": login, "changed": True}], "password")
    ctx.out.flush()
    return 0


def _ask_new_password(ctx: Context, login: str) -> str:
    first = read_secret(ctx, f"new password of {login}: ")
    if not first:
        raise UsageError("the new password is empty")
    if read_secret(ctx, f"new password of {login} again: ") != first:
        raise UsageError("the two passwords differ; nothing changed")
    return first


def read_secret(ctx: Context, prompt: str) -> str:
    """A secret typed at the terminal without echo; :class:`UsageError` if there is no terminal."""
    if not _is_tty(ctx.stdin):
        raise UsageError(
            f"{prompt.rstrip(': ')}: give it on the command line (standard input is not a terminal)"
        )
    return getpass.getpass(prompt)


def _is_tty(stream: IO[bytes] | None) -> bool:
    try:
        return stream is not None and os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


@command(
    "sendusergroup", "--xwsendusergroup LABEL", "insert a user group (SUPER only)", min_args=1, max_args=1
)
async def cmd_sendusergroup(ctx: Context) -> int:
    group = await ctx.client.create_usergroup(ctx.inv.args[0])
    ctx.emit([group], "usergroup", [group.get("uri", group["uid"])])
    return 0


@command(
    "usergroups",
    "--xwusergroups [UID|LABEL…]",
    "list user groups: all of them for SUPER, your own otherwise",
    aliases=("getusergroups",),
)
async def cmd_usergroups(ctx: Context) -> int:
    if not ctx.inv.args:
        ctx.emit(await ctx.client.list_usergroups(), "usergroup")
        return 0
    rows: list[dict[str, Any]] = []

    async def get(key: str) -> None:
        rows.append(await ctx.client.get_usergroup(key))

    code = await _each(ctx, [_key_arg(k) for k in ctx.inv.args], get)
    ctx.emit_unless_failed(rows, "usergroup", code)
    return code


# -- hosts and server --------------------------------------------------------------------------------
@command(
    "workers",
    "--xwworkers",
    "list volunteer hosts: platform, resources, GPUs, and whether their owner's activation policy "
    "lets them compute now",
    aliases=("getworkers", "hosts"),
    max_args=0,
)
async def cmd_workers(ctx: Context) -> int:
    ctx.emit(await ctx.client.list_hosts(), "host")
    return 0


@command(
    "disable",
    "--xwdisable HOST_UID…",
    "disable hosts (ADVANCED and above): their running jobs go to other workers, and their "
    "requests are refused until --xwenable",
    aliases=("disablehost",),
    min_args=1,
)
async def cmd_disable(ctx: Context) -> int:
    return await _hosts(ctx, ctx.client.disable_host)


@command(
    "enable",
    "--xwenable HOST_UID…",
    "enable disabled hosts again (ADVANCED and above)",
    aliases=("enablehost",),
    min_args=1,
)
async def cmd_enable(ctx: Context) -> int:
    return await _hosts(ctx, ctx.client.enable_host)


@command(
    "rmhost",
    "--xwrmhost HOST_UID…",
    "remove hosts (ADVANCED and above): their running jobs go back to the queue first; a worker "
    "still running there registers as a new host (to keep a machine out, --xwdisable it)",
    aliases=("removehost", "rmworker"),
    min_args=1,
)
async def cmd_rmhost(ctx: Context) -> int:
    rows: list[dict[str, Any]] = []

    async def one(uid: str) -> None:
        await ctx.client.remove_host(uid)
        rows.append({"uid": uid, "kind": "host"})

    code = await _each(ctx, [_uid_arg(u) for u in _listed(ctx.inv.args)], one)
    ctx.emit_unless_failed(rows, "removed", code)
    return code


async def _hosts(ctx: Context, action: Callable[[str], Awaitable[dict[str, Any]]]) -> int:
    rows: list[dict[str, Any]] = []

    async def one(uid: str) -> None:
        rows.append(await action(uid))

    code = await _each(ctx, [_uid_arg(u) for u in _listed(ctx.inv.args)], one)
    ctx.emit_unless_failed(rows, "host", code)
    return code


@command(
    "usage",
    "--xwusage [--xwsince T] [--xwuntil T]",
    "jobs, tasks, CPU and wall seconds, bytes up and down per user and user group over a period "
    "(T: an ISO 8601 date or time, or an age such as 7d, 12h, 30m); a SUPER user sees everyone, "
    "any other user itself",
    options=("xwsince", "xwuntil"),
    max_args=0,
)
async def cmd_usage(ctx: Context) -> int:
    now = datetime.now(UTC)
    since, until = (_moment(ctx.inv.value(name), name, now) for name in ("xwsince", "xwuntil"))
    report = await ctx.client.usage(since, until)
    rows = [{**row, "since": report.get("since"), "until": report.get("until")} for row in report["usage"]]
    ctx.emit(rows, "usage")
    return 0


@command(
    "events",
    "--xwevents [--xwjob UID] [--xwhost UID] [--xwsince T]",
    "the history of changes, oldest first (who, when, from where, why): of one job and its tasks, "
    "of one host, or of your objects and what you did (T: an ISO 8601 date or time, or an age such "
    "as 7d, 12h); a SUPER user sees everyone's",
    options=("xwjob", "xwhost", "xwsince"),
    max_args=0,
)
async def cmd_events(ctx: Context) -> int:
    since = _moment(ctx.inv.value("xwsince"), "xwsince", datetime.now(UTC))
    job, host = ctx.inv.value("xwjob"), ctx.inv.value("xwhost")
    rows = await ctx.client.events(
        job=_uid_arg(job) if job else None, host=_uid_arg(host) if host else None, since=since
    )
    ctx.emit(rows, "event")
    return 0


_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_AGE_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def _moment(text: str | None, option: str, now: datetime) -> str | None:
    """``--xwsince``/``--xwuntil``: an ISO 8601 date or time as given, or an age (``7d``: seven
    days before now) as the ISO 8601 time it means."""
    if text is None:
        return None
    age = _AGE.match(text.strip().lower())
    if age:
        return (now - timedelta(seconds=float(age.group(1)) * _AGE_S[age.group(2)])).isoformat()
    try:
        given = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"--{option}: {text!r} is neither an ISO 8601 date or time (2026-12-01, 2026-12-01T08:00Z) "
            "nor an age (7d, 12h, 30m)"
        ) from None
    return given.isoformat()  # 2026-12-01 08:00 as 2026-12-01T08:00:00, the server's spelling


@command("ping", "--xwping", "check that the server answers, and how fast", max_args=0)
async def cmd_ping(ctx: Context) -> int:
    p = await ctx.client.ping()
    ctx.emit(
        [p],
        "ping",
        [
            f"{p['server']} answered: XtremWeb-Py {p['version']} (api {p['api']}); round trip "
            f"{p['rtt_ms']:.1f} ms (first request, TLS set-up included: {p['connect_ms']:.1f} ms)"
        ],
    )
    return 0


@command("version", "--xwversion", "show the client's and the server's versions", max_args=0)
async def cmd_version(ctx: Context) -> int:
    v = await ctx.client.version()
    ctx.emit(
        [v],
        "version",
        [f"client {v['client_version']}", f"server {v['server_version']} (api {v['api']}) at {v['server']}"],
    )
    return 0


__all__ = ["COMMANDS", "ORDERED", "Command", "Context", "Invocation", "UsageError", "command"]
