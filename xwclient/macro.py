"""Macro files (``--xwmacro FILE``): many client commands in one run, one per line.

As XWHEP has them, each line is one command line of the client, written as after
``xwclient`` (``--xwsendwork app -n 5``) or as its script (``xwsendwork app -n 5``). Beyond
XWHEP's:

- ``#`` starts a comment and blank lines are skipped (XWHEP stopped at the first blank line);
- words are split as a POSIX shell splits them (:func:`shlex.split`): quotes keep spaces
  (``--xwlabel "run 1"``), a backslash escapes;
- ``< FILE`` (or ``<FILE``) gives an ``xwsendwork`` line its standard input, as in a shell;
  relative paths are relative to the folder the client runs in;
- ``--xwconfig``, ``--xwmacro`` and ``--xwclean`` belong on the client's own command line,
  not on a macro's lines.

The whole file is read and every line checked before the first one runs, so a usage error
anywhere runs nothing; that check includes the application of every ``xwsendwork`` line
(one listing of the applications the user sees), so a misspelled one runs nothing either. Lines then run in order, all with one login and one connection;
consecutive ``xwsendwork`` lines (without ``--xwwait``) are submitted together, in
``POST /jobs/bulk`` requests of :data:`xwclient.sdk.BULK_CHUNK` jobs, and their URIs are
printed in the lines' order (one document per batch of lines in the other formats). Each
file a batch reads (standard input, environment) is uploaded once, however many lines use it.

The first line that fails stops the macro. Its message names the file and the line and says
what took effect: the lines before it did, it and the lines after it did not (a batch of
``xwsendwork`` lines is all or nothing per request, so the message says which of its lines
were submitted).
"""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xwcommon.errors import BadRequest, XWError
from xwcommon.uri import is_uid, parse_uid

from .commands import COMMANDS, Command, Context, Invocation, UsageError, sendwork_spec, warn_unrunnable
from .exitcodes import describe_error, exit_code_for
from .formats import check_format
from .sdk import BULK_CHUNK

log = logging.getLogger(__name__)

#: options that belong on the client's command line, not on a macro's lines
NOT_ON_A_LINE = ("xwconfig", "xwmacro", "xwclean")


class MacroError(UsageError):
    """Raised when a macro file cannot be read or one of its lines is not a valid command."""

    code = "macro"


@dataclass
class MacroLine:
    """One command of a macro file."""

    number: int
    inv: Invocation
    cmd: Command

    @property
    def batchable(self) -> bool:
        return self.cmd.name == "sendwork" and not self.inv.flag("xwwait")


def split_line(text: str) -> tuple[list[str], str | None]:
    """The words of a line (``#`` comments removed) and its ``< FILE``, if any."""
    words = shlex.split(text, comments=True)
    stdin: str | None = None
    kept: list[str] = []
    i = 0
    while i < len(words):
        word = words[i]
        if word == "--":  # after it, even '<' is an argument
            kept.extend(words[i:])
            break
        if word.startswith("<"):
            if stdin is not None:
                raise ValueError("'<' given twice")
            name = word[1:]
            if not name:
                i += 1
                if i >= len(words):
                    raise ValueError("'<' without a file after it")
                name = words[i]
            stdin = name
        else:
            kept.append(word)
        i += 1
    if kept and not kept[0].startswith("-"):
        first = kept[0]
        if first in ("xwclient", "xtremweb.client"):
            kept = kept[1:]
        elif first.lower().startswith("xw") and first[2:].lower() in COMMANDS:
            kept[0] = "--" + first  # the script's name: xwsendwork … is --xwsendwork …
    return kept, stdin


def load_macro(
    path: Path,
    parse: Callable[[list[str]], Invocation],
    check: Callable[[Invocation], Command],
) -> list[MacroLine]:
    """Every command of ``path``, checked; :class:`MacroError` naming the line otherwise."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise MacroError(f"macro file {path} is not UTF-8 text ({exc.reason}); nothing was run") from None
    except OSError as exc:
        raise MacroError(f"cannot read macro file {path}: {exc.strerror or exc}") from None
    lines: list[MacroLine] = []
    for number, raw in enumerate(text.splitlines(), 1):
        try:
            words, stdin = split_line(raw)
            if not words and stdin is None:
                continue
            inv = parse(words)
            inv.stdin_file = stdin
            for name in NOT_ON_A_LINE:
                if name in inv.options:
                    raise UsageError(f"--{name} belongs on the client's command line, not on a macro line")
            cmd = check(inv)
            if (fmt := inv.value("xwformat")) is not None:
                check_format(fmt)
            if stdin is not None and cmd.name != "sendwork":
                raise UsageError(f"'<' gives a job its standard input; --xw{cmd.name} reads none")
        except (ValueError, BadRequest) as exc:
            message = exc.message if isinstance(exc, BadRequest) else str(exc)
            raise MacroError(
                f"{path}:{number}: {message}; nothing was run (a macro is checked whole before it runs)"
            ) from None
        lines.append(MacroLine(number, inv, cmd))
    return lines


#: how the server names one job of a bulk submission in an error (0-based in the request)
_JOB_INDEX = re.compile(r"\bjob #(\d+): ")


async def check_apps(path: Path, lines: list[MacroLine], ctx: Context) -> None:
    """:class:`MacroError` naming the first ``xwsendwork`` line whose application the user
    cannot see (by name or UID), before any line runs."""
    wanted = [line for line in lines if line.cmd.name == "sendwork" and line.inv.args]
    if not wanted:
        return
    apps = await ctx.client.list_apps()
    names = {str(a.get("name")) for a in apps}
    uids = {str(a.get("uid")) for a in apps}
    for line in wanted:
        app = line.inv.args[0]
        if (parse_uid(app) in uids) if is_uid(app) else (app in names):
            continue
        raise MacroError(
            f"{path}:{line.number}: no application {app!r} visible to you (xwapps lists them); "
            "nothing was run (a macro is checked whole before it runs)"
        )


async def run_macro(path: Path, lines: list[MacroLine], make_context: Callable[[Invocation], Context]) -> int:
    """Check the applications, then run the lines in order; stop at the first failure;
    return its exit code."""
    if lines:
        await check_apps(path, lines, _context(lines[0], make_context))
    first = lines[0].number if lines else 0
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.batchable:
            j = i
            while j < len(lines) and lines[j].batchable:
                j += 1
            code = await _run_batch(path, lines[i:j], make_context, first)
            i = j
        else:
            ctx = _context(line, make_context)
            try:
                code = await line.cmd.run(ctx)
            except (XWError, OSError) as exc:
                _report(ctx, path, line.number, describe_error(exc, ctx.client.settings), first)
                return exit_code_for(exc)
            if code != 0:
                _report(ctx, path, line.number, f"--xw{line.cmd.name} failed (exit code {code})", first)
            i += 1
        if code != 0:
            return code
    return 0


def _context(line: MacroLine, make_context: Callable[[Invocation], Context]) -> Context:
    ctx = make_context(line.inv)
    ctx.stdin = None  # a macro's lines read their input from '<' or --xwstdin, never the client's
    if (fmt := line.inv.value("xwformat")) is not None:
        ctx.fmt = check_format(fmt)
    return ctx


def _report(
    ctx: Context, path: Path, number: int, message: str, first: int, done_until: int | None = None
) -> None:
    """The failure of line ``number``, and what took effect: the lines before ``done_until``
    (default: before the failed line), nothing from it on."""
    until = number if done_until is None else done_until
    if until <= first:
        effect = "no line of the macro took effect"
    elif until == number:
        effect = "the lines before it took effect"
    else:
        effect = f"the lines before line {until} took effect"
    ctx.warn(f"error: {path}:{number}: {message}; {effect}; nothing from line {until} on was run")


async def _run_batch(
    path: Path, batch: list[MacroLine], make_context: Callable[[Invocation], Context], first: int
) -> int:
    """Consecutive xwsendwork lines: their jobs in bulk requests, their URIs in order."""
    contexts = [_context(line, make_context) for line in batch]
    lead = contexts[0]
    specs: list[dict[str, Any]] = []
    for line, ctx in zip(batch, contexts, strict=True):
        try:
            spec, _ = sendwork_spec(ctx, read_stdin=False)
        except BadRequest as exc:
            # nothing of the batch is submitted yet: its first line is where the macro stopped
            _report(ctx, path, line.number, exc.message, first, done_until=batch[0].number)
            return exit_code_for(exc)
        specs.append(spec)
    with lead.progress("submitting", len(specs), unit="jobs") as bar:
        for start in range(0, len(specs), BULK_CHUNK):
            chunk = specs[start : start + BULK_CHUNK]
            try:
                jobs = await lead.client.submit_many(chunk, chunk=len(chunk))
            except (XWError, OSError) as exc:
                bar.close()
                last = batch[start + len(chunk) - 1].number
                message = describe_error(exc, lead.client.settings)
                number = batch[start].number
                if found := _JOB_INDEX.search(message):
                    # the server names the job by its index in the request: name its line
                    index = int(found.group(1))
                    if 0 <= index < len(chunk):
                        number = batch[start + index].number
                        message = message[: found.start()] + message[found.end() :]
                if len(chunk) > 1:
                    message += (
                        f" (the jobs of lines {batch[start].number}-{last} are submitted together: "
                        "none of them was)"
                    )
                _report(lead, path, number, message, first, done_until=batch[start].number)
                return exit_code_for(exc)
            bar.close()
            warn_unrunnable(lead, jobs)
            _emit_jobs(lead, jobs)
            bar.advance(len(jobs))
    return 0


def _emit_jobs(ctx: Context, jobs: list[dict[str, Any]]) -> None:
    if ctx.fmt == "text":
        ctx.out.write("".join(f"{j['uri']}\n" for j in jobs))
        ctx.out.flush()
    else:
        ctx.emit(jobs, "job")
