"""Progress bars for uploads, downloads, macro submission and waits.

Drawn on standard error, and only when both standard output and standard error are
terminals: a script that reads the client's output, or a log that keeps it, never sees one.
A bar redraws at most :data:`REDRAW_S` apart and is erased when it ends, so what stays on the
screen is the command's own output.

A hand-written bar rather than a dependency: one line of text redrawn with ``\\r`` is all
the client needs, and the client keeps its dependencies to the transport's.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import IO

from .formats import human_size

#: seconds between two redraws
REDRAW_S = 0.1
BAR_WIDTH = 24


def is_terminal(stream: IO[str] | None) -> bool:
    try:
        return stream is not None and os.isatty(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False


class Progress:
    """One bar: ``advance(n)`` adds ``n`` to what is done; ``close()`` erases it.

    A bar that is not ``enabled`` does nothing at all.
    """

    def __init__(
        self,
        stream: IO[str] | None,
        label: str,
        total: int | None,
        *,
        unit: str = "bytes",
        enabled: bool = True,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stream = stream
        self.label = label
        self.total = total
        self.unit = unit
        self.enabled = enabled and stream is not None
        self.done = 0
        self._now = now
        self._last = float("-inf")  # the first advance draws at once
        self._width = 0

    def advance(self, n: int) -> None:
        self.done += n
        if self.enabled and (self._now() - self._last >= REDRAW_S or self.done == self.total):
            self._draw()

    def _amount(self, n: float) -> str:
        return human_size(int(n)) if self.unit == "bytes" else f"{int(n)}"

    def _draw(self) -> None:
        assert self.stream is not None
        self._last = self._now()
        if self.total:
            frac = min(1.0, self.done / self.total)
            filled = int(frac * BAR_WIDTH)
            bar = "#" * filled + "-" * (BAR_WIDTH - filled)
            text = f"{self.label} [{bar}] {frac * 100:3.0f}% {self._amount(self.done)}/{self._amount(self.total)}"
        else:
            text = f"{self.label} {self._amount(self.done)}"
        if self.unit != "bytes":
            text += f" {self.unit}"
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self._width:
            assert self.stream is not None
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
