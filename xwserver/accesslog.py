"""The access log, in Common Log Format, written in batches.

One ``write`` per request through ``logging`` cost about an eighth of the server's time
on the hot path (measured with py-spy under ``bench/dispatch.py``); lines are instead
formatted cheaply, kept in memory and appended to ``var/log/access.log`` by a periodic
flush (and at shutdown). A crash loses at most one flush interval of log lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import Any

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

from .api.http import CALLER_KEY

FLUSH_INTERVAL_S = 1.0
#: lines kept in memory while the file cannot be written; beyond, the oldest are dropped
MAX_KEPT_LINES = 100_000

log = logging.getLogger(__name__)


class AccessLogFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lines: list[str] = []
        #: lines dropped since the file could last be written
        self.dropped = 0
        self._stamp_second = -1
        self._stamp = ""

    def stamp(self) -> str:
        """``[22/Nov/2026:10:00:00 +0000]``, formatted once per second."""
        now = int(time.time())
        if now != self._stamp_second:
            self._stamp_second = now
            self._stamp = time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(now))
        return self._stamp

    def flush(self) -> None:
        """Append the lines kept; raise OSError if the file cannot be written (the lines are
        kept for the next flush, up to MAX_KEPT_LINES: the oldest go first)."""
        if not self.lines:
            return
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write("".join(self.lines))
        except OSError:
            if len(self.lines) > MAX_KEPT_LINES:
                self.dropped += len(self.lines) - MAX_KEPT_LINES
                del self.lines[:-MAX_KEPT_LINES]
            raise
        self.lines = []

    async def run(self) -> None:
        """Flush periodically until cancelled, then once more. A failed flush (no file
        descriptor left, a full disk, a removed folder) is logged once until a flush works
        again, and never ends the flushing: the log resumes when the file can be written."""
        failing = False
        try:
            while True:
                await asyncio.sleep(FLUSH_INTERVAL_S)
                try:
                    self.flush()
                except OSError as exc:
                    if not failing:
                        log.error(
                            "cannot write the access log %s (%s); lines are kept meanwhile", self.path, exc
                        )
                    failing = True
                    continue
                if failing:
                    log.info(
                        "the access log %s is written again (%d lines dropped meanwhile)",
                        self.path,
                        self.dropped,
                    )
                    failing, self.dropped = False, 0
        finally:
            with contextlib.suppress(OSError):
                self.flush()


def access_logger_class(log_file: AccessLogFile) -> type[AbstractAccessLogger]:
    class ClfAccessLogger(AbstractAccessLogger):
        def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
            caller: Any = request.get(CALLER_KEY)
            user = caller.login.replace(" ", "%20") if caller is not None else "-"
            version = request.version
            log_file.lines.append(
                f"{request.remote or '-'} - {user} {log_file.stamp()} "
                f'"{request.method} {request.path_qs} HTTP/{version.major}.{version.minor}" '
                f"{response.status} {response.body_length}\n"
            )

    return ClfAccessLogger
