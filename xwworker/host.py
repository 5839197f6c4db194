"""What the worker tells the server about its host at registration."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import psutil

from xwcommon import __version__
from xwcommon.platforms import local_cpu, local_os
from xwcommon.protocol.work import Gpu, Registration

from .settings import WorkerSettings

log = logging.getLogger(__name__)

#: how long ``nvidia-smi`` may take; a driver in a bad state can make it hang for minutes,
#: and registration must not wait for it
GPU_QUERY_TIMEOUT_S = 10.0
NVIDIA_SMI = "nvidia-smi"
NVIDIA_SMI_ARGS = ("--query-gpu=name,memory.total", "--format=csv,noheader,nounits")
MIB = 1024 * 1024


def describe_host(settings: WorkerSettings) -> Registration:
    """The ``POST /work/register`` message: name, os, cpu, cores, memory, free disk, GPUs, tags,
    version. The caller adds what only the worker knows (identity, held tasks, activation)."""
    return Registration(
        name=settings.name,
        os=local_os(),
        cpu=local_cpu(),
        cores=psutil.cpu_count(logical=True) or os.cpu_count() or 1,
        memory_bytes=int(psutil.virtual_memory().total),
        disk_free_bytes=disk_free_bytes(settings.tmpdir),
        gpus=[Gpu(name=g["name"], memory_bytes=g["memory_bytes"]) for g in list_gpus()],
        tags=list(settings.tags),
        version=__version__,
    )


def disk_free_bytes(path: Path) -> int:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent)."""
    probe = Path(path)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return int(psutil.disk_usage(str(probe)).free)
    except OSError as exc:
        log.warning("cannot measure free disk space of %s: %s", probe, exc)
        return 0


def list_gpus(*, timeout_s: float = GPU_QUERY_TIMEOUT_S) -> list[dict[str, Any]]:
    """The NVIDIA GPUs ``nvidia-smi`` reports, as ``{"name", "memory_bytes"}``; [] without it.

    A GPU is an extra the server may match jobs on, never a reason not to register: when
    ``nvidia-smi`` fails, hangs past ``timeout_s`` or prints what we cannot read, the worker
    logs a warning and reports no GPU.
    """
    exe = shutil.which(NVIDIA_SMI)
    if exe is None:
        return []
    try:
        returncode, stdout, stderr = _run_bounded([exe, *NVIDIA_SMI_ARGS], timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("%s did not answer within %.1f s; reporting no GPU", exe, timeout_s)
        return []
    except OSError as exc:
        log.warning("cannot run %s: %s; reporting no GPU", exe, exc)
        return []
    if returncode != 0:
        why = (stderr.strip() or stdout.strip()).splitlines()
        log.warning("%s exited %d (%s); reporting no GPU", exe, returncode, why[0] if why else "no message")
        return []
    try:
        return parse_nvidia_smi(stdout)
    except ValueError as exc:
        log.warning("cannot read the output of %s: %s; reporting no GPU", exe, exc)
        return []


def _run_bounded(argv: list[str], timeout_s: float) -> tuple[int, str, str]:
    """Run ``argv`` to its end or for ``timeout_s`` at most; TimeoutExpired past it.

    The program runs in a session of its own so that, on time-out, what it started goes
    too: a wrapper script's children would otherwise keep its pipes open, and us waiting.
    """
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return proc.returncode, stdout, stderr


def parse_nvidia_smi(text: str) -> list[dict[str, Any]]:
    """GPUs from ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits``.

    One line per GPU, ``NAME, MEMORY`` with the memory in MiB. A GPU whose memory the
    driver does not give (``[N/A]``, ``[Not Supported]``) is listed with 0 bytes. ValueError
    for a line that is not of that form.
    """
    gpus: list[dict[str, Any]] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        # the name comes first and could hold a comma; the memory never does
        name, sep, memory = line.rpartition(",")
        name, memory = name.strip(), memory.strip()
        if not sep or not name:
            raise ValueError(f"expected 'NAME, MEMORY_MIB', got {line.strip()!r}")
        if memory.startswith("[") and memory.endswith("]"):
            memory_bytes = 0
        else:
            try:
                memory_bytes = int(float(memory) * MIB)
            except ValueError:
                raise ValueError(f"memory of {name!r} is not a number of MiB: {memory!r}") from None
        gpus.append({"name": name, "memory_bytes": memory_bytes})
    return gpus
