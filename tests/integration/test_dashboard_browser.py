"""The web dashboard in a real browser: Playwright driving the system's Chromium through a
real server, a real worker and a real job.

It logs in, submits a job through the form, watches it reach COMPLETED on its page,
downloads its result and checks the archive, visits every page and logs out. A screenshot
of each page is kept under the folder the test prints (``$XW_TEST_ARTEFACTS`` if set, else
the test's temporary folder).

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it when missing), started
through ``executable_path``: ``playwright install`` (a download) is never run. The
deployment's CA is not in that browser's trust store, so the browser context is told to
accept the server's certificate (``ignore_https_errors``); the TLS is the real server's.
"""

from __future__ import annotations

import io
import os
import shutil
import time
import zipfile
from pathlib import Path

import pytest
from helpers.deployment import MakeDeployment, python_program

pytestmark = pytest.mark.slow

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
#: the job: the sum of the squares of 1..n, n from its argument, a greeting from its stdin
SQUARES = python_program(
    """
import sys

n = int(sys.argv[1])
print(sum(i * i for i in range(1, n + 1)))
print("hello", sys.stdin.read().strip())
"""
)
COMPLETED_WITHIN_S = 90.0


def _chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs Debian's chromium package")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return CHROMIUM


@pytest.fixture
def screenshots(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    root = Path(os.environ.get("XW_TEST_ARTEFACTS") or tmp_path)
    folder = root / "dashboard-screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    print(f"dashboard screenshots in {folder}")
    request.node.user_properties.append(("screenshots", str(folder)))
    return folder


def test_a_user_logs_in_submits_a_job_a_worker_runs_and_downloads_its_result(
    deployment: MakeDeployment, screenshots: Path
) -> None:
    dep = deployment()
    dep.start_worker()
    dep.send_app("squares", SQUARES)
    executable = _chromium()

    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            context = browser.new_context(ignore_https_errors=True, accept_downloads=True)
            page = context.new_page()
            page.set_default_timeout(30_000)
            shot = _shooter(page, screenshots)

            page.goto(f"{dep.url}/jobs")
            assert page.url.startswith(f"{dep.url}/login?next=")
            shot("01-login")
            page.fill("#login", "admin")
            page.fill("#password", "not-the-password")
            page.click("#submit-login")
            assert (
                "wrong" in page.inner_text(".error").lower()
                or "password" in page.inner_text(".error").lower()
            )
            page.fill("#login", "admin")
            page.fill("#password", dep.admin_password)
            page.click("#submit-login")
            assert page.url == f"{dep.url}/jobs"
            assert "COMPLETED" in page.inner_text("#counts")
            shot("02-jobs-empty")

            page.click("text=Submit")
            page.select_option("#app", "squares")
            page.fill("#args", "10")
            page.fill("#stdin-text", "browser")
            page.fill("#label", "from-the-browser")
            shot("03-submit")
            page.click("#submit-job")
            assert "/jobs/" in page.url
            uid = page.url.rsplit("/", 1)[1]
            shot("04-job-submitted")

            deadline = time.monotonic() + COMPLETED_WITHIN_S
            while page.inner_text("#job-status") != "COMPLETED":
                assert page.inner_text("#job-status") in {"PENDING", "RUNNING", "WAITING"}, page.content()
                assert time.monotonic() < deadline, f"job {uid} not COMPLETED after {COMPLETED_WITHIN_S} s"
                time.sleep(0.5)
                page.reload()
            assert "from-the-browser" in page.inner_text("dl.facts")
            assert "COMPLETED" in page.inner_text("#tasks")
            shot("05-job-completed")

            with page.expect_download() as started:
                page.click("#download")
            download = started.value
            assert download.suggested_filename == f"ResultsOf_{uid}.zip"
            saved = screenshots / download.suggested_filename
            download.save_as(saved)
            with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as archive:
                assert archive.read("stdout.txt").decode() == "385\nhello browser\n"

            page.click("text=Jobs")
            assert uid in page.inner_text("#jobs")
            assert "COMPLETED 1" in " ".join(page.inner_text("#counts").split())
            shot("06-jobs")
            page.select_option("#filter-status", "PENDING")
            page.click("#filter")
            assert uid not in page.inner_text("#jobs")
            shot("07-jobs-pending-filter")

            page.click("text=Workers")
            assert "active" in page.inner_text("#workers")
            assert (
                page.inner_text("#workers tbody tr td:nth-child(9)") == "1"
            )  # tasks done, next to its credit
            shot("08-workers")
            page.click("text=Users")
            assert "admin" in page.inner_text("#users")
            shot("09-users")
            page.click("text=Groups")
            shot("10-groups")

            page.click("#logout")
            assert page.url.startswith(f"{dep.url}/login")
            page.goto(f"{dep.url}/jobs")
            assert "/login" in page.url  # the session ended
            shot("11-logged-out")
        finally:
            browser.close()
    assert sorted(p.name for p in screenshots.glob("*.png"))[0] == "01-login.png"
    assert len(list(screenshots.glob("*.png"))) == 11


def _shooter(page: object, folder: Path):  # type: ignore[no-untyped-def]
    def shot(name: str) -> None:
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]

    return shot
