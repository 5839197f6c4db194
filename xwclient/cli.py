"""The client's command line, in XWHEP's spelling.

::

    xwclient --xwsendwork APP [JOB ARGUMENTS…] [--xwlabel L] [< FILE]
    xwsendwork APP [JOB ARGUMENTS…]           (one script per command, see xwclient.scripts)

One ``--xw<command>`` per line; ``--xw`` options may appear anywhere on it. Every other
word is an argument of the command; for ``--xwsendwork``, every word after the
application's name is the job's, passed verbatim (``-n 5``, ``--seed=3``); after ``--``
every word is an argument, even one spelled ``--xw…``.

Common options: ``--xwconfig FILE``, ``--xwformat text|json|xml|csv|html``,
``--xwverbose``, ``--xwnoverbose``, ``--xwhelp``.

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

from xwcommon.errors import BadRequest, XWError

from . import exitcodes, formats
from .commands import COMMANDS, ORDERED, Command, Context, Invocation, UsageError
from .exitcodes import describe_error, exit_code_for
from .sdk import XWClient
from .settings import ClientSettings, load_settings

log = logging.getLogger(__name__)

#: options every command accepts
COMMON_OPTIONS = frozenset({"xwconfig", "xwformat", "xwhelp", "xwverbose", "xwnoverbose"})
#: options followed by a value (``--xwlabel L`` or ``--xwlabel=L``)
VALUE_OPTIONS = frozenset({"xwconfig", "xwformat", "xwlabel", "xwstdin", "xwstatus", "xwtimeout", "xwname"})
#: options without a value
FLAG_OPTIONS = frozenset(
    {"xwhelp", "xwverbose", "xwnoverbose", "xwnoerase", "xwnoextract", "xwrmzip", "xwoverride", "xwnostdin"}
)


def parse_args(argv: Sequence[str]) -> Invocation:
    """Split a command line into its command, its ``--xw`` options and its other words.

    Raises :class:`UsageError` for an unknown ``--xw`` word, a missing option value or
    two commands.
    """
    inv = Invocation()
    i = 0
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
                raise UsageError(f"two commands given (--xw{inv.command} and {word}); give one per line")
            inv.command = cmd.name
        elif name in VALUE_OPTIONS:
            if not has_value:
                if i >= len(argv):
                    raise UsageError(f"--{name} needs a value")
                value = argv[i]
                i += 1
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
  --xwformat FORMAT    text (default), json, xml, csv or html
  --xwverbose          log what the client does (--xwnoverbose: errors only)
  --xwhelp             this help (after a command: that command's)
  --                   every word after it is an argument, even --xw…

exit codes: 0 ok, 1 error, 2 usage or config, 3 authentication or permission refused,
            4 not found, 5 server unreachable, 6 TLS certificate refused
"""


def _prog() -> str:
    name = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else ""
    return name if name.startswith("xw") and not name.endswith(".py") else "xwclient"


def _configure_logging(inv: Invocation) -> None:
    level = logging.WARNING
    if inv.flag("xwverbose"):
        level = logging.DEBUG
    elif inv.flag("xwnoverbose"):
        level = logging.ERROR
    logging.basicConfig(format="%(name)s: %(levelname)s: %(message)s", stream=sys.stderr)
    for name in ("xwclient", "xwcommon"):
        logging.getLogger(name).setLevel(level)


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
        if inv.flag("xwhelp") or (inv.command is None and inv.args in (["-h"], ["--help"])):
            out.write(help_text(COMMANDS[inv.command] if inv.command else None))
            return exitcodes.OK
        if inv.command is None and not inv.args:
            err.write(help_text())
            return exitcodes.USAGE
        cmd = check_invocation(inv)
        fmt = formats.check_format(inv.value("xwformat") or "text")
        _configure_logging(inv)
        settings = load_settings(inv.value("xwconfig"))
        in_stream = _default_stdin() if isinstance(stdin, str) else stdin
        folder = Path(cwd) if cwd is not None else Path.cwd()

        def make_context(client: XWClient) -> Context:
            return Context(
                inv=inv,
                client=client,
                fmt=fmt,
                out=out,
                err=err,
                stdin=in_stream,
                cwd=folder,
                prog=prog,
            )

        return asyncio.run(_execute(cmd, settings, make_context))
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


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
