"""Compute only while nobody uses the keyboard or mouse (XWHEP's ``MouseKbdActivator``).

Active once ``idle.seconds`` (default 30, as XWHEP) have passed since the last input. The idle
time comes from an injected source ``source(now) -> seconds since the last input``; at start,
:func:`detect_idle_source` picks the first one that works on this machine:

1. X11: ``xprintidle`` on the PATH with ``$DISPLAY`` set (the X server's own idle counter).
2. Input devices: the ``/dev/input/event*`` nodes this user may read. At each check the policy
   drains the events queued since the previous one; any event means input at that check.
3. logind: ``loginctl show-session`` of the local (non-remote) sessions, ``IdleHint`` and
   ``IdleSinceHint`` (kept by desktops, and by logind from the tty for text consoles). With no
   local session at all, nobody is at the machine: it is idle.

When none works (a headless box without logind, a sandbox), ``unavailable`` says why, the
worker logs it at start, and the policy never allows computing: it cannot tell that the owner
is away, and it does not pretend to.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from collections.abc import Callable

from ..settings import WorkerSettings
from . import ActivationPolicy

#: seconds since the last keyboard or mouse input, at wall-clock time ``now``
IdleSource = Callable[[float], float]
#: finds a working source: (source, its name) or (None, why there is none)
IdleDetector = Callable[[], tuple[IdleSource | None, str]]

_COMMAND_TIMEOUT_S = 5.0


def _run(*argv: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S)
    if done.returncode != 0:
        why = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise OSError(f"{' '.join(argv[:2])}: {why}")
    return done.stdout


def xprintidle_source(now: float) -> float:
    return int(_run("xprintidle").strip()) / 1000.0


class InputDevices:
    """Idle time from ``/dev/input/event*``: events queued since the previous call mean input."""

    def __init__(self, paths: list[str]) -> None:
        self.fds: list[int] = []
        for path in paths:
            try:
                self.fds.append(os.open(path, os.O_RDONLY | os.O_NONBLOCK))
            except OSError:
                continue
        self._last_input: float | None = None

    def __call__(self, now: float) -> float:
        if self._last_input is None:
            self._last_input = now  # what came before we opened the devices is unknown
        for fd in self.fds:
            try:
                while os.read(fd, 4096):
                    self._last_input = now
            except BlockingIOError:
                pass
            except OSError:
                continue
        return now - self._last_input

    def close(self) -> None:
        for fd in self.fds:
            os.close(fd)
        self.fds = []


def logind_source(now: float) -> float:
    """Smallest idle time over the local sessions; infinite when there is none."""
    idle = float("inf")
    for line in _run("loginctl", "list-sessions", "--no-legend").splitlines():
        if not line.split():
            continue
        props = dict(
            kv.split("=", 1)
            for kv in _run(
                "loginctl", "show-session", line.split()[0],
                "-p", "Remote", "-p", "IdleHint", "-p", "IdleSinceHint",
            ).splitlines()
            if "=" in kv
        )  # fmt: skip
        if props.get("Remote") == "yes":
            continue
        if props.get("IdleHint") != "yes":
            return 0.0
        since_us = int(props.get("IdleSinceHint", "0") or 0)
        idle = min(idle, max(0.0, now - since_us / 1e6))
    return idle


def detect_idle_source() -> tuple[IdleSource | None, str]:
    """The first idle-time source that works here, or None and why none does."""
    tried: list[str] = []
    if shutil.which("xprintidle") and os.environ.get("DISPLAY"):
        try:
            xprintidle_source(0.0)
            return xprintidle_source, "X11 (xprintidle)"
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            tried.append(f"xprintidle failed ({exc})")
    else:
        tried.append("no X11 idle time (xprintidle not installed or no $DISPLAY)")
    paths = sorted(glob.glob("/dev/input/event*"))
    devices = InputDevices(paths)
    if devices.fds:
        return devices, f"input devices ({len(devices.fds)} of /dev/input/event*)"
    tried.append(
        "no readable /dev/input/event* (join the 'input' group)" if paths else "no /dev/input/event* devices"
    )
    if shutil.which("loginctl"):
        try:
            logind_source(0.0)
            return logind_source, "logind (IdleSinceHint)"
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            tried.append(f"loginctl failed ({exc})")
    else:
        tried.append("no loginctl")
    return None, "; ".join(tried)


class IdleActivator(ActivationPolicy):
    """Computes after ``idle_s`` seconds without keyboard or mouse input."""

    names = ("idle", "mousekbdactivator", "xtremweb.worker.MouseKbdActivator")
    check_interval_s = 2.0

    def __init__(
        self,
        idle_s: float = 30.0,
        source: IdleSource | None = None,
        *,
        detect: IdleDetector | None = None,
    ) -> None:
        self.idle_s = idle_s
        if source is not None:
            self.source: IdleSource | None = source
            self.source_name = "injected"
        else:
            self.source, self.source_name = (detect or detect_idle_source)()
        if self.source is None:
            self.unavailable = f"cannot tell keyboard/mouse idle time: {self.source_name}"
        self.last_idle_s: float | None = None
        self._error: str | None = None

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> IdleActivator:
        return cls(settings.idle_s)

    def allows(self, now: float) -> bool:
        if self.source is None:
            return False
        try:
            self.last_idle_s = self.source(now)
            self._error = None
        except (OSError, ValueError, subprocess.SubprocessError) as exc:
            # a source that worked at start and fails now: assume the owner may be there
            self.last_idle_s, self._error = None, str(exc)
            return False
        return self.last_idle_s >= self.idle_s

    def close(self) -> None:
        close = getattr(self.source, "close", None)
        if callable(close):
            close()

    def describe(self) -> str:
        head = f"idle >= {self.idle_s:g}s"
        if self.source is None:
            return f"{head}: unavailable, never computing"
        if self._error is not None:
            return f"{head} ({self.source_name}): idle time unreadable ({self._error})"
        if self.last_idle_s is None:
            return f"{head} ({self.source_name})"
        state = "active" if self.last_idle_s >= self.idle_s else "inactive"
        return f"{head} ({self.source_name}): {state}, idle {self.last_idle_s:.0f}s"
