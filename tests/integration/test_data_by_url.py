"""Data by URL with real processes: the client inserts an app binary, a standard input and an
environment archive by https URL (a web server on loopback with a CA of its own, which the
server and the worker are told to trust); the server fetches each once to learn its digest,
the worker fetches them from the web server (never through the XtremWeb server), and a
document that changed since its insertion fails its job with that reason."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest
from helpers.deployment import MakeDeployment, python_program
from helpers.webserver import WebServer

pytestmark = pytest.mark.slow

#: sum of the numbers on standard input, times the factor in factor.txt (from the env archive)
SUM = python_program(
    """
import sys
factor = int(open("factor.txt").read())
print(factor * sum(int(w) for w in sys.stdin.read().split()))
"""
)


def _zip(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        for name, content in files.items():
            z.writestr(name, content)
    return out.getvalue()


def test_jobs_run_on_binaries_and_inputs_fetched_from_their_urls_and_fail_when_a_document_changed(
    deployment: MakeDeployment, tmp_path: Path
) -> None:
    with WebServer(tmp_path / "www", tls_dir=tmp_path / "tls") as web:
        assert web.ca_file is not None
        dep = deployment(
            **{"data.url_fetch": "true", "data.url_fetch_private": "true", "data.url_ca_file": web.ca_file}
        )
        app_url = web.put("sum.py", SUM.encode())
        numbers_url = web.put("numbers.txt", b"1 2 3 4\n")
        env_url = web.put("env.zip", _zip({"factor.txt": b"10"}))

        dep.client("--xwsendapp", "sum", "any", "any", app_url)
        [binary] = dep.client_json("--xwapps", "sum")[0]["binaries"]
        assert binary["sha256"] == hashlib.sha256(SUM.encode()).hexdigest()
        [data] = dep.client_json("--xwsenddata", numbers_url)
        assert data["url"] == numbers_url and data["size"] == 8
        assert data["sha256"] == hashlib.sha256(b"1 2 3 4\n").hexdigest()

        dep.start_worker(**{"data.ca_file": web.ca_file})
        ok = dep.submit("sum", "--xwstdin", numbers_url, "--xwenv", env_url)
        job = dep.wait_for_jobs([ok])[ok]
        assert job["status"] == "COMPLETED", job
        assert (dep.results(ok) / "stdout.txt").read_text().strip() == "100"
        # the content came from the web server, not through the XtremWeb server's store
        stored = {p.name for p in dep.store_files()}
        assert binary["sha256"] not in stored and data["sha256"] not in stored
        assert "/sum.py" in web.requests and "/env.zip" in web.requests
        # xwdownload fetches data by URL from its URL (https: the CAs of SSL_CERT_FILE here)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("SSL_CERT_FILE", str(web.ca_file))
            dep.client("--xwdownload", data["uid"])
        assert (dep.workdir / "numbers.txt").read_bytes() == b"1 2 3 4\n"

        # a document that changes after its insertion: the job fails, saying so
        changing_url = web.put("changing.txt", b"5 6\n")
        [changing] = dep.client_json("--xwsenddata", changing_url)
        web.put("changing.txt", b"5 7\n")
        failed = dep.submit("sum", "--xwstdin", changing["uid"], "--xwenv", env_url)
        job = dep.wait_for_jobs([failed])[failed]
        assert job["status"] == "ERROR", job
        assert "changed since it was inserted" in (job.get("message") or ""), job

    # without the administrator's leave the server fetches nothing: the digest must be given
    strict = deployment()
    refused = strict.client("--xwsenddata", "https://data.example.org/x.txt", check=False)
    assert refused.returncode != 0 and "data.url_fetch" in refused.stderr
    sha = hashlib.sha256(b"x").hexdigest()
    given = strict.client_json(
        "--xwsenddata", "https://data.example.org/x.txt", "--xwsha256", sha, "--xwsize", "1"
    )
    assert given[0]["sha256"] == sha and given[0]["url"] == "https://data.example.org/x.txt"
