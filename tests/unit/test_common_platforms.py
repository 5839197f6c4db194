"""OS and CPU names: Python's names, XWHEP's accepted as aliases, in any case."""

from __future__ import annotations

import pytest

from xwcommon.errors import BadRequest
from xwcommon.platforms import ANY, local_cpu, local_os, normalize_cpu, normalize_os


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("linux", "linux"),
        ("LINUX", "linux"),
        ("Linux", "linux"),
        ("darwin", "darwin"),
        ("MACOSX", "darwin"),
        ("MacOSX", "darwin"),
        ("macos", "darwin"),
        ("Mac_OS_X", "darwin"),
        ("windows", "windows"),
        ("WIN32", "windows"),
        ("Win32", "windows"),
        ("WIN64", "windows"),
        ("any", ANY),
        ("ANY", ANY),
        ("  linux \n", "linux"),
    ],
)
def test_os_names_and_xwhep_aliases_are_normalised(given: str, expected: str) -> None:
    assert normalize_os(given) == expected


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("x86_64", "x86_64"),
        ("AMD64", "x86_64"),
        ("amd64", "x86_64"),
        ("X86-64", "x86_64"),
        ("IX86", "i686"),
        ("ix86", "i686"),
        ("i386", "i686"),
        ("I686", "i686"),
        ("x86", "i686"),
        ("aarch64", "aarch64"),
        ("ARM64", "aarch64"),
        ("ppc64le", "ppc64le"),
        ("armv7l", "armv7l"),
        ("any", ANY),
        ("Any", ANY),
    ],
)
def test_cpu_names_and_xwhep_aliases_are_normalised(given: str, expected: str) -> None:
    assert normalize_cpu(given) == expected


@pytest.mark.parametrize("name", ["linux", "MACOSX", "WIN32", "any"])
def test_normalising_twice_changes_nothing(name: str) -> None:
    assert normalize_os(normalize_os(name)) == normalize_os(name)


@pytest.mark.parametrize("name", ["AMD64", "IX86", "arm64", "any"])
def test_normalising_a_cpu_twice_changes_nothing(name: str) -> None:
    assert normalize_cpu(normalize_cpu(name)) == normalize_cpu(name)


@pytest.mark.parametrize("name", ["", "   ", "beos", "linux2", "l i n u x", "linux\0", "../linux"])
def test_an_unknown_os_is_a_bad_request_naming_it(name: str) -> None:
    with pytest.raises(BadRequest, match="unknown OS") as err:
        normalize_os(name)
    assert repr(name) in err.value.message
    assert err.value.http_status == 400


@pytest.mark.parametrize("name", ["", "z80", "x86_65", "sparc", "amd 64"])
def test_an_unknown_cpu_is_a_bad_request_naming_it(name: str) -> None:
    with pytest.raises(BadRequest, match="unknown CPU") as err:
        normalize_cpu(name)
    assert repr(name) in err.value.message


def test_this_machine_has_a_normalised_platform() -> None:
    assert local_os() in {"linux", "darwin", "windows"}
    assert normalize_cpu(local_cpu()) == local_cpu() != ANY
