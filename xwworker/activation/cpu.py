"""Stop computing while the owner uses the CPU (XWHEP's ``CpuActivator``).

The policy samples the load of every process *but the worker's jobs* at each ``allows(now)``:
total CPU use minus what the job process trees use, in percent of the whole machine. It turns
off once that load has stayed above ``cpuload`` percent for ``cpu.window_s`` seconds, and back
on once it has stayed at or below ``cpuload`` for as long. Both directions wait a full window
so that a compiler run does not flap the worker, and so that suspending the jobs (which drops
the total load) cannot by itself resume them a check later.

The load comes from an injected callable ``sample(exclude_pids) -> percent``; the default,
:class:`PsutilLoad`, reads psutil.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import psutil

from ..settings import WorkerSettings
from . import ActivationPolicy

#: load of the processes not in ``exclude_pids``, in percent of the whole machine (0-100)
LoadSampler = Callable[[frozenset[int]], float]


class PsutilLoad:
    """Machine CPU use since the previous call, minus the job process trees', via psutil.

    The first call measures nothing yet and answers 0.
    """

    def __init__(self) -> None:
        self._cpus = psutil.cpu_count() or 1
        self._procs: dict[int, psutil.Process] = {}
        psutil.cpu_percent(None)

    def __call__(self, exclude_pids: frozenset[int]) -> float:
        ps = psutil
        total = float(ps.cpu_percent(None))
        jobs = 0.0
        seen: dict[int, psutil.Process] = {}
        for root in exclude_pids:
            try:
                tree = [ps.Process(root)]
                tree += tree[0].children(recursive=True)
            except ps.Error:
                continue
            for proc in tree:
                # cpu_percent(None) compares with the previous call on the same object
                proc = self._procs.get(proc.pid, proc)
                seen[proc.pid] = proc
                try:
                    jobs += proc.cpu_percent(None) / self._cpus
                except ps.Error:
                    pass
        self._procs = seen
        return max(0.0, total - jobs)


class CpuActivator(ActivationPolicy):
    """Computes unless the owner's load stays above ``cpuload`` percent for a window."""

    names = ("cpu", "cpuactivator", "xtremweb.worker.CpuActivator")

    def __init__(
        self,
        cpuload_percent: float = 50.0,
        window_s: float = 60.0,
        *,
        sample: LoadSampler | None = None,
    ) -> None:
        self.cpuload_percent = cpuload_percent
        self.window_s = window_s
        self.check_interval_s = min(5.0, max(window_s / 4, 0.5))
        self._sample: LoadSampler = sample if sample is not None else PsutilLoad()
        self._job_pids: frozenset[int] = frozenset()
        self.active = True
        self.last_load_percent: float | None = None
        #: since when the load has been on the other side of the threshold, or None
        self._crossed_since: float | None = None

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> CpuActivator:
        return cls(settings.cpuload_percent, settings.cpu_window_s)

    def set_job_pids(self, pids: Iterable[int]) -> None:
        self._job_pids = frozenset(pids)

    def allows(self, now: float) -> bool:
        load = self._sample(self._job_pids)
        self.last_load_percent = load
        busy = load > self.cpuload_percent
        if busy != self.active:
            # the load agrees with the current state: any crossing is over
            self._crossed_since = None
        else:
            if self._crossed_since is None:
                self._crossed_since = now
            if now - self._crossed_since >= self.window_s:
                self.active = not busy
                self._crossed_since = None
        return self.active

    def describe(self) -> str:
        load = "" if self.last_load_percent is None else f", owner load {self.last_load_percent:.0f}%"
        state = "active" if self.active else "inactive"
        return f"cpu <= {self.cpuload_percent:g}% over {self.window_s:g}s: {state}{load}"
