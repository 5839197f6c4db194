"""The project's wheel, built as a release would build it, from a copy of the checkout.

The copy (the files git tracks, and new ones it does not ignore) keeps the build's
``build/`` folder and egg-info out of the checkout, where another test could build at
the same time. The build fetches its backend (setuptools) from the package index.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILD_TIMEOUT_S = 300


def source_files() -> list[str]:
    """Paths of the checkout a release holds: tracked, or new and not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return sorted({p for p in listed.split("\0") if p and ((REPO / p).is_symlink() or (REPO / p).is_file())})


def copy_source(dest: Path) -> Path:
    """A copy of the checkout's release files in ``dest`` (symbolic links kept as links)."""
    for rel in source_files():
        src, dst = REPO / rel, dest / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(src.readlink())
        else:
            shutil.copy2(src, dst)
    return dest


def build_wheel(workdir: Path) -> Path:
    """Build the project's wheel under ``workdir``; its path."""
    src = copy_source(workdir / "src")
    out = workdir / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--wheel-dir", str(out), str(src)],
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (wheel,) = out.glob("xtremweb_py-*.whl")
    return wheel
