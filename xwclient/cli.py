"""The client's command line, in XWHEP's spelling.

::

    xwclient --xwsendwork APP [JOB ARGUMENTS…] [--xwlabel L] [< FILE]
    xwsendwork APP [JOB ARGUMENTS…]           (one script per command, see xwclient.scripts)

One ``--xw<command>`` per line; ``--xw`` options may appear anywhere on it. Every other
word is an argument of the command; for ``--xwsendwork``, every word after the
application's name is the job's, passed verbatim (``-n 5``, ``--seed=3``); after ``--``
every word is an argument, even one spelled ``--xw…``.

``--xwwait`` after ``--xwsendwork`` is that command's option (wait for the job's end);
alone it is the command ``xwwait``. ``--xwenv`` may be given several times.

Common options: ``--xwconfig FILE``, ``--xwformat text|json|xml|csv|html`` (the fields
of each kind: :mod:`xwclient.formats`), ``--xwverbose``, ``--xwnoverbose``, ``--xwclean``
(empty the client's cache, :mod:`xwclient.cache`; alone, only that), ``--xwhelp`` (``-h``
or ``--help`` as a command's first argument too). ``--xwcheckconfig`` alone reads the
config file and exits 1 when it holds unknown keys (every command warns of them).

XWHEP's spellings work: its ``--xwget…`` command names, its comma-separated lists of UIDs
(``xwworks A,B``), and a leading ``xtremweb.client`` or ``xtremweb.client.Client`` word (as
in ``java -jar xtremweb.jar xtremweb.client.Client --xwworks``), which is skipped.
``--xwmacro FILE`` runs the commands of a file instead (:mod:`xwclient.macro`); only the
common options may go with it.

Progress bars (uploads, downloads, results, macro submission, waits) are drawn on
standard error when standard output and standard error are both terminals, never
otherwise (:mod:`xwclient.progress`).

Exit codes (:mod:`xwclient.exitcodes`): 0 ok, 1 generic error, 2 usage error (command
line or config), 3 authentication or permission refused, 4 not found, 5 server
unreachable, 6 TLS refused (certificate not signed by the deployment CA), 130
interrupted. Errors are one message on stderr, never a traceback (``--xwverbose`` adds
the details of an unexpected one).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Literal

import xwcommon.programs  # noqa: F401 - first: aiohttp without reading the system's CAs
from xwcommon.errors import BadRequest, XWError

from . import exitcodes, formats
from .cache import UploadCache
from .commands import COMMANDS, ORDERED, Command, Context, Invocation, UsageError
from .exitcodes import describe_error, exit_code_for
from .macro import MacroLine, load_macro, run_macro
from .sdk import XWClient
from .settings import ClientSettings, load_settings

log = logging.getLogger(__name__)

#: options every command accepts
COMMON_OPTIONS = frozenset(
    {
        "xwconfig",
        "xwformat",
        "xwhelp",
        "xwverbose",
        "xwnoverbose",
        "xwclean",
        "xwcheckconfig",
        "xwfields",
        "xwlong",
        "xwout",
    }
)
#: words that ask for help when they come first among a command's arguments
HELP_WORDS = ("-h", "--help")
#: XWHEP's names of its client program, which its users may type before the options
XWHEP_CLIENT_WORDS = frozenset({"xtremweb.client", "xtremweb.client.client"})
#: options followed by a value (``--xwlabel L`` or ``--xwlabel=L``)
VALUE_OPTIONS = frozenset(
    {
        "xwconfig",
        "xwformat",
        "xwlabel",
        "xwstdin",
        "xwstatus",
        "xwtimeout",
        "xwname",
        "xwenv",
        "xwsession",
        "xwgroup",
        "xwexpectedhost",
        "xwminmemory",
        "xwmindisk",
        "xwmacro",
        "xwrights",
        "xwout",
        "xwfields",
        "xwsince",
        "xwuntil",
        "xwsign",
        "xwsha256",
        "xwsize",
        "xwpriority",
        "xwquorum",
        "xwreplicas",
        "xwdelaybound",
        "xwmincores",
        "xwmingpus",
        "xwtags",
        "xwjob",
        "xwhost",
    }
)
#: value options that may be given several times (their values are kept in order, as a list)
REPEATABLE_OPTIONS = frozenset({"xwenv"})
#: options without a value
FLAG_OPTIONS = frozenset(
    {
        "xwhelp",
        "xwverbose",
        "xwnoverbose",
        "xwnoerase",
        "xwnoextract",
        "xwrmzip",
        "xwoverride",
        "xwnostdin",
        "xwclean",
        "xwnetwork",
        "xwpending",
        "xwrunning",
        "xwcompleted",
        "xwerror",
        "xwcheckconfig",
        "xwlong",
        "xwabort",
    }
)
#: with --xwmacro, the only other options (the macro's lines carry the rest)
MACRO_OPTIONS = frozenset({"xwmacro", "xwconfig", "xwformat", "xwverbose", "xwnoverbose", "xwclean"})


def parse_args(argv: Sequence[str]) -> Invocation:
    """Split a command line into its command, its ``--xw`` options and its other words.

    Raises :class:`UsageError` for an unknown ``--xw`` word, a missing option value or
    two commands.
    """
    inv = Invocation()
    i = 0
    if argv and argv[0].lower() in XWHEP_CLIENT_WORDS:
        i = 1  # XWHEP's program name, typed as its manual shows
    while i < len(argv):
        word = argv[i]
        i += 1
        if word == "--":
            inv.args.extend(argv[i:])
            break
        if not word.lower().startswith("--xw"):
            inv.args.append(word)
            continue
        name, has_value, value = word[2:].partition("=")
        name = name.lower()
        if name[2:] in COMMANDS:
            if has_value:
                raise UsageError(f"{word}: a command takes no '='; give its arguments after it")
            cmd = COMMANDS[name[2:]]
            if inv.command is not None and inv.command != cmd.name:
                pair = {inv.command, cmd.name}
                if pair == {"sendwork", "wait"}:
                    # --xwwait after (or before) --xwsendwork: wait for the new job's end
                    inv.command = "sendwork"
                    inv.options["xwwait"] = True
                    continue
                raise UsageError(f"two commands given (--xw{inv.command} and {word}); give one per line")
            inv.command = cmd.name
        elif name in VALUE_OPTIONS:
            if not has_value:
                if i >= len(argv):
                    raise UsageError(f"--{name} needs a value")
                value = argv[i]
                i += 1
            if name in REPEATABLE_OPTIONS:
                previous = inv.options.get(name)
                inv.options[name] = [*(previous if isinstance(previous, list) else []), value]
            elif name in inv.options and inv.options[name] != value:
                raise UsageError(f"--{name} given twice ({inv.options[name]} and {value}); give it once")
            else:
                inv.options[name] = value
        elif name in FLAG_OPTIONS:
            if has_value:
                raise UsageError(f"--{name} takes no value")
            inv.options[name] = True
        else:
            raise UsageError(
                f"unknown option {word}; to pass it to the job, put it after '--' "
                "(e.g. xwsendwork APP -- --xwlike-argument)"
            )
    return inv


def check_invocation(inv: Invocation) -> Command:
    """The command to run; :class:`UsageError` if the options or arguments do not fit it."""
    if inv.command is None:
        raise UsageError("no command given (e.g. --xwsendwork, --xwworks, --xwresults)")
    cmd = COMMANDS[inv.command]
    for name in inv.options:
        if name not in COMMON_OPTIONS and name not in cmd.options:
            raise UsageError(f"--{name} does not apply to --xw{cmd.name}; usage: {cmd.usage}")
    n = len(inv.args)
    if n < cmd.min_args or (cmd.max_args is not None and n > cmd.max_args):
        raise UsageError(f"wrong number of arguments; usage: {cmd.usage}")
    return cmd


def help_text(cmd: Command | None = None) -> str:
    if cmd is not None:
        aliases = "".join(f", --xw{a}" for a in cmd.aliases)
        return (
            f"usage: xwclient {cmd.usage}\n"
            f"   or: xw{cmd.name} {cmd.usage.split(' ', 1)[1] if ' ' in cmd.usage else ''}\n\n"
            f"{cmd.summary}\n\n"
            f"also spelled: --xw{cmd.name}{aliases}\n\n" + _COMMON_HELP
        )
    lines = [
        "usage: xwclient --xwCOMMAND [ARGUMENTS…] [OPTIONS…]",
        "   or: xwCOMMAND [ARGUMENTS…] [OPTIONS…]   (xwsendwork, xwresults, xwworks…)",
        "",
        "commands:",
    ]
    for c in ORDERED:
        lines.append(f"  {c.usage}")
        lines.append(f"      {c.summary}")
    return "\n".join(lines) + "\n\n" + _COMMON_HELP


_COMMON_HELP = """\
common options (anywhere on the line):
  --xwconfig FILE      client config (default: $XWCONFIG, else ~/.xtremweb/xwrc)
  --xwformat FORMAT    text (default), json, xml, csv or html (the fields of each kind: see
                       xwclient.formats; dates are ISO 8601 UTC)
  --xwout FILE         write the output to FILE, readable by its owner only (0600): e.g.
                       xwsenduser … --xwout alice.xwrc, a config that holds a password
  --xwfields A,B,C     show these fields, in this order, in every format (as condor_q -af)
  --xwlong             every field in text too (text shows the main ones in 120 columns)
  --xwverbose          log what the client does (--xwnoverbose: errors only)
  --xwclean            empty the client's cache of uploads first (alone: only that)
  --xwmacro FILE       run the commands of FILE, one per line (see xwclient.macro)
  --xwcheckconfig      read the config file only; exit code 1 if it holds unknown keys
  --xwhelp, -h, --help this help (after a command: that command's)
  --                   every word after it is an argument, even --xw…

exit codes: 0 ok, 1 error, 2 usage or config, 3 authentication or permission refused,
            4 not found, 5 server unreachable, 6 TLS certificate refused, 130 interrupted
"""


def _prog() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("xw") and not name.endswith(".py") else "xwclient"


class _FirstRetryOnly(logging.Filter):
    """Lets one "server unreachable; retrying" line through, not one per retry: a user whose
    server is down reads one line, then the error (``--xwverbose`` shows every retry)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "xwcommon.transport" or "unreachable" not in str(record.msg):
            return True
        if self.seen:
            return False
        self.seen = True
        return True


def _configure_logging(inv: Invocation, err: IO[str]) -> None:
    level = logging.WARNING
    if inv.flag("xwverbose"):
        level = logging.DEBUG
    elif inv.flag("xwnoverbose"):
        level = logging.ERROR
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(name)s: %(levelname)s: %(message)s"))
    if level > logging.DEBUG:
        handler.addFilter(_FirstRetryOnly())
    for name in ("xwclient", "xwcommon"):
        logger = logging.getLogger(name)
        logger.setLevel(level)
        for old in [h for h in logger.handlers if getattr(h, "xwclient_cli", False)]:
            logger.removeHandler(old)
        handler.xwclient_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def _default_stdin() -> IO[bytes] | None:
    stream = sys.stdin
    if stream is None:
        return None
    return getattr(stream, "buffer", None)


async def _execute(
    cmd: Command, settings: ClientSettings, make_context: Callable[[XWClient], Context]
) -> int:
    async with XWClient(settings) as client:
        return await cmd.run(make_context(client))


async def _execute_macro(
    path: Path,
    lines: list[MacroLine],
    settings: ClientSettings,
    make_context: Callable[[XWClient, Invocation], Context],
) -> int:
    async with XWClient(settings) as client:
        return await run_macro(path, lines, lambda inv: make_context(client, inv))


def main(
    argv: Sequence[str] | None = None,
    *,
    stdin: IO[bytes] | None | Literal["process"] = "process",
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> int:
    """Run one client command line; return its exit code (see the module docstring).

    ``stdin``, ``out``, ``err`` and ``cwd`` default to the process's; tests and embedding
    programs pass their own.
    """
    words = list(sys.argv[1:] if argv is None else argv)
    out = out or sys.stdout
    err = err or sys.stderr
    prog = _prog()
    settings: ClientSettings | None = None
    try:
        inv = parse_args(words)
        if inv.flag("xwhelp") or (inv.args[:1] and inv.args[0] in HELP_WORDS):
            out.write(help_text(COMMANDS[inv.command] if inv.command else None))
            return exitcodes.OK
        if inv.flag("xwcheckconfig"):
            return _check_config(inv, out, err)
        macro = inv.value("xwmacro")
        alone_clean = inv.flag("xwclean") and inv.command is None and not inv.args and macro is None
        if inv.command is None and not inv.args and macro is None and not alone_clean:
            err.write(help_text())
            return exitcodes.USAGE
        if macro is not None:
            extra = sorted(set(inv.options) - MACRO_OPTIONS)
            if inv.command is not None or inv.args or extra:
                given = f"--xw{inv.command}" if inv.command else (f"--{extra[0]}" if extra else inv.args[0])
                raise UsageError(
                    f"--xwmacro runs the commands of its file; {given} belongs on one of its lines"
                )
        cmd = None if macro is not None or alone_clean else check_invocation(inv)
        fmt = formats.check_format(inv.value("xwformat") or "text")
        chosen = inv.value("xwfields")
        fields = None if chosen is None else tuple(f.strip() for f in chosen.split(",") if f.strip())
        _configure_logging(inv, err)
        folder = Path(cwd) if cwd is not None else Path.cwd()
        macro_file = None if macro is None else Path(macro) if Path(macro).is_absolute() else folder / macro
        # the whole macro is read and checked before anything else: a usage error in it runs nothing
        lines = None if macro_file is None else load_macro(macro_file, parse_args, check_invocation)
        settings = load_settings(inv.value("xwconfig"))
        if inv.flag("xwclean"):
            removed = UploadCache(settings.cache_dir).clean()
            log.info("client cache %s emptied (%d file(s))", settings.cache_dir, removed)
            if alone_clean:
                print(f"client cache {settings.cache_dir} emptied", file=out)
                return exitcodes.OK
        in_stream = _default_stdin() if isinstance(stdin, str) else stdin

        target = out
        if (out_name := inv.value("xwout")) is not None:
            target = _private_output(Path(out_name) if Path(out_name).is_absolute() else folder / out_name)

        def make_context(client: XWClient, line_inv: Invocation | None = None) -> Context:
            return Context(
                inv=line_inv or inv,
                client=client,
                fmt=fmt,
                out=target,
                err=err,
                stdin=in_stream,
                cwd=folder,
                prog=prog,
                fields=fields,
                long=inv.flag("xwlong"),
            )

        try:
            if macro_file is not None and lines is not None:
                return asyncio.run(_execute_macro(macro_file, lines, settings, make_context))
            assert cmd is not None
            return asyncio.run(_execute(cmd, settings, make_context))
        finally:
            if target is not out:
                target.close()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=err)
        return exitcodes.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (xwworks | head): not an error of ours.
        _silence_stdout()
        return exitcodes.OK
    except (BadRequest, XWError, OSError) as exc:
        message = describe_error(exc, settings)
        if isinstance(exc, UsageError) or (isinstance(exc, BadRequest) and settings is None):
            message += f"\n{prog}: see {prog} --xwhelp"
        print(f"{prog}: error: {message}", file=err)
        return exit_code_for(exc)
    except Exception as exc:  # never a traceback for users; the details with --xwverbose
        log.debug("unexpected error", exc_info=True)
        print(
            f"{prog}: error: unexpected {type(exc).__name__}: {exc}; run again with --xwverbose "
            "for the details and report it",
            file=err,
        )
        return exitcodes.ERROR


def _private_output(path: Path) -> IO[str]:
    """``--xwout FILE``: the command's output in a file only its owner may read (0600), as
    xwsenduser's client config holds a password; an existing file is made 0600 first."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def _check_config(inv: Invocation, out: IO[str], err: IO[str]) -> int:
    """``--xwcheckconfig``: read the config file, say what it sets; 1 if it holds unknown keys."""
    if inv.command is not None or inv.args or set(inv.options) - {"xwcheckconfig", "xwconfig"}:
        raise UsageError("--xwcheckconfig goes alone (with --xwconfig FILE at most)")
    logging.getLogger("xwclient.settings").disabled = True  # the warnings are printed below
    try:
        settings = load_settings(inv.value("xwconfig"))
    finally:
        logging.getLogger("xwclient.settings").disabled = False
    prog = _prog()
    for warning in settings.warnings:
        print(f"{prog}: {warning}", file=err)
    print(
        f"{settings.config_file}: servers {' '.join(settings.servers)}, login {settings.login}, "
        f"CA {settings.ca_file}",
        file=out,
    )
    if settings.warnings:
        print(f"{prog}: {len(settings.warnings)} unknown key(s) in {settings.config_file}", file=err)
        return exitcodes.ERROR
    return exitcodes.OK


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
