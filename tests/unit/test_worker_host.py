"""The host description a worker registers with: GPUs from nvidia-smi, tags from its config."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from xwcommon.protocol.work import Gpu, Registration
from xwworker.host import describe_host, list_gpus, parse_nvidia_smi
from xwworker.settings import WorkerSettings

MIB = 1024 * 1024

#: what ``nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`` prints
#: on real machines (memory in MiB)
DGX_A100 = "NVIDIA A100-SXM4-40GB, 40960\nNVIDIA A100-SXM4-40GB, 40960\n"
MIXED_WORKSTATION = "NVIDIA GeForce RTX 3090, 24576\nNVIDIA GeForce GTX 1080 Ti, 11178\n"
OLD_CLUSTER_NODE = "Tesla K80, 11441\r\nTesla V100-SXM2-16GB, 16160\r\n"
NO_MEMORY_FIGURE = "NVIDIA Jetson AGX Orin, [N/A]\nNVIDIA GeForce GT 710, [Not Supported]\n"
DRIVER_DOWN = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
    "Make sure that the latest NVIDIA driver is installed and running.\n"
)


def test_nvidia_smi_lines_become_gpus_with_memory_in_bytes() -> None:
    assert parse_nvidia_smi(DGX_A100) == [{"name": "NVIDIA A100-SXM4-40GB", "memory_bytes": 40960 * MIB}] * 2
    assert parse_nvidia_smi(MIXED_WORKSTATION) == [
        {"name": "NVIDIA GeForce RTX 3090", "memory_bytes": 24576 * MIB},
        {"name": "NVIDIA GeForce GTX 1080 Ti", "memory_bytes": 11178 * MIB},
    ]
    assert parse_nvidia_smi(OLD_CLUSTER_NODE) == [
        {"name": "Tesla K80", "memory_bytes": 11441 * MIB},
        {"name": "Tesla V100-SXM2-16GB", "memory_bytes": 16160 * MIB},
    ]


def test_a_gpu_without_a_memory_figure_is_listed_with_zero_bytes() -> None:
    assert parse_nvidia_smi(NO_MEMORY_FIGURE) == [
        {"name": "NVIDIA Jetson AGX Orin", "memory_bytes": 0},
        {"name": "NVIDIA GeForce GT 710", "memory_bytes": 0},
    ]


def test_no_output_is_no_gpu_and_garbage_is_an_error() -> None:
    assert parse_nvidia_smi("") == []
    assert parse_nvidia_smi("\n\n") == []
    with pytest.raises(ValueError, match="NAME, MEMORY_MIB"):
        parse_nvidia_smi("No devices were found\n")
    with pytest.raises(ValueError, match="not a number of MiB"):
        parse_nvidia_smi("Tesla T4, lots\n")


# -- a real nvidia-smi program, first on PATH --------------------------------------------------------
@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder first on PATH, where tests write their own ``nvidia-smi``."""
    folder = tmp_path / "bin"
    folder.mkdir()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")
    return folder


def write_nvidia_smi(folder: Path, body: str) -> Path:
    exe = folder / "nvidia-smi"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(0o755)
    return exe


def test_the_gpus_nvidia_smi_prints_are_read(fake_bin: Path) -> None:
    calls = fake_bin / "calls.txt"
    write_nvidia_smi(fake_bin, f'echo "$@" > {calls}\nprintf "%s" "{MIXED_WORKSTATION}"\n')
    assert list_gpus() == parse_nvidia_smi(MIXED_WORKSTATION)
    assert calls.read_text().split() == [
        "--query-gpu=name,memory.total",
        "--format=csv,noheader,nounits",
    ]


def test_a_failing_nvidia_smi_gives_no_gpu_and_a_warning(
    fake_bin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_nvidia_smi(fake_bin, f'echo "{DRIVER_DOWN}"\nexit 9\n')
    with caplog.at_level(logging.WARNING, logger="xwworker.host"):
        assert list_gpus() == []
    assert "exited 9" in caplog.text and "couldn't communicate" in caplog.text


def test_unreadable_nvidia_smi_output_gives_no_gpu(fake_bin: Path, caplog: pytest.LogCaptureFixture) -> None:
    write_nvidia_smi(fake_bin, 'echo "No devices were found"\n')
    with caplog.at_level(logging.WARNING, logger="xwworker.host"):
        assert list_gpus() == []
    assert "cannot read the output" in caplog.text


def test_a_hanging_nvidia_smi_gives_no_gpu_within_the_timeout(
    fake_bin: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a shell that waits on a child: the child holds the pipes, and must be ended too
    write_nvidia_smi(fake_bin, "sleep 60\necho 'Tesla T4, 15360'\n")
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="xwworker.host"):
        assert list_gpus(timeout_s=0.5) == []
    assert time.monotonic() - t0 < 5
    assert "did not answer within 0.5 s" in caplog.text


def test_without_nvidia_smi_there_is_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert list_gpus() == []


def test_the_registration_body_carries_gpus_and_the_configured_tags(tmp_path: Path, fake_bin: Path) -> None:
    write_nvidia_smi(fake_bin, f'printf "%s" "{DGX_A100}"\n')
    settings = WorkerSettings(
        servers=["https://grid.example:4325"],
        login="w",
        password="p",
        ca_file=tmp_path / "ca.pem",
        tmpdir=tmp_path / "work",
        tags=["cuda", "big-memory"],
        name="node-7",
    )
    registration = describe_host(settings)
    assert registration.gpus == [Gpu(**g) for g in parse_nvidia_smi(DGX_A100)]
    assert registration.tags == ["cuda", "big-memory"]
    assert registration.name == "node-7"
    assert registration.cores >= 1 and registration.memory_bytes > 0 and registration.disk_free_bytes > 0
    # what the server parses: every field within the protocol's bounds
    assert Registration.from_wire(registration.to_wire()) == registration
