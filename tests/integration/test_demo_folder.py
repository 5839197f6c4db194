"""``make demo`` names a folder only if it is still there when the demo ends.

The demo works in a temporary folder and removes it after a good run; it used to print
"results fetched into <folder>" all the same. Now the folder is named only with ``--keep``,
which keeps it (server home, workers, the fetched results).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "demo" / "run_demo.py"


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(DEMO), *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout + done.stderr


def _demo_folders(text: str) -> list[Path]:
    return [Path(m) for m in re.findall(r"(/\S*xwdemo-[^/\s)]+)", text)]


@pytest.mark.slow
def test_the_demo_names_no_folder_it_removes() -> None:
    out = _run()
    assert "[6/6] 50 results fetched\n" in out, out
    server_home = re.search(r"home (\S+)\)", out)
    assert server_home, out
    assert not Path(server_home.group(1)).exists()  # the demo's folder is gone...
    assert "results" not in " ".join(str(p) for p in _demo_folders(out))  # ...and no results folder was shown


@pytest.mark.slow
def test_the_demo_keeps_its_folder_and_its_results_with_keep() -> None:
    out = _run("--keep")
    shown = re.search(r"\[6/6\] 50 results fetched into (\S+)\n", out)
    assert shown, out
    results = Path(shown.group(1))
    try:
        assert f"the demo's files are kept in {results.parent} (results in {results})" in out
        folders = sorted(p for p in results.iterdir() if p.is_dir())
        assert len(folders) == 50 and all(p.name.startswith("ResultsOf_") for p in folders)
        assert all((p / "stdout.txt").is_file() for p in folders)
    finally:
        shutil.rmtree(results.parent, ignore_errors=True)
