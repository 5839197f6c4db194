"""The client SDK: every client action as one documented call.

:class:`XWClient` is asynchronous and is what the CLI uses::

    async with XWClient.from_config() as xw:            # --xwconfig, $XWCONFIG, ~/.xtremweb/xwrc
        app = await xw.send_app("hello", "any", "any", "hello.sh")
        job = await xw.submit("hello", ["-n", "5"], label="try")
        await xw.wait([job["uid"]])
        folder = await xw.fetch_result(job["uid"])      # ResultsOf_<UID>/stdout.txt …

Many jobs, sessions and groups of jobs, environments::

        session = await xw.create_session("scan")
        jobs = await xw.submit_many(                    # POST /jobs/bulk, a few thousand a request
            [{"app": "hello", "args": [str(i)], "session_uid": session["uid"],
              "env": ["inputs/"], "min_memory_bytes": 2 << 30} for i in range(10_000)]
        )                                               # inputs/ is packed and uploaded once
        await xw.wait([j["uid"] for j in jobs])
        for j in jobs:
            await xw.fetch_result(j["uid"], "out")      # erase=True removes the job afterwards
        await xw.delete_session(session["uid"])         # with its jobs

:class:`Client` is the same API for synchronous code (scripts, notebooks without a running
loop)::

    with Client() as xw:
        print(xw.list_jobs(status="COMPLETED"))

Administration is the same API (the server checks the caller's rights)::

    with Client() as xw:                                 # a SUPER user's config
        xw.create_usergroup("physics")
        xw.create_user("alice", "s3cret", "alice@example.org", "STANDARD", group="physics")
        xw.chmod(data_uid, "0750")                       # or "0x750", "g-w,o-r"
        kind, obj = xw.get_object(uid)                   # ("data", {...}), ("user", {...})…
        xw.remove("alice")                               # any kind, by UID; users/groups by name

Objects are the wire's JSON objects (``docs/api.md``) as dicts. Wherever a UID is
expected, an ``xw://`` URI is accepted too. Errors are :class:`xwcommon.errors.XWError`
subclasses: ``NotFound``, ``AuthenticationError``, ``ServerUnreachable``, ``TLSError``…
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import ssl
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

import xwcommon
from xwcommon import defaults, signing, urlfetch
from xwcommon.errors import (
    BadRequest,
    ConfigError,
    Conflict,
    Forbidden,
    IntegrityError,
    NotFound,
    XWError,
)
from xwcommon.levels import UserLevel, format_access_rights, parse_access_rights
from xwcommon.platforms import normalize_cpu, normalize_os
from xwcommon.status import FINAL_JOB_STATUSES
from xwcommon.transport import Transport, sha256_file
from xwcommon.uri import is_uid, parse_uid

from .archive import build_env_archive, extract_replacing
from .cache import UploadCache
from .settings import ClientSettings, load_settings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the client's version, shown by ``xwversion``
CLIENT_VERSION = xwcommon.__version__
#: page size of the paginated lists (``GET /jobs``, ``GET /tasks``)
PAGE_SIZE = 1000
#: jobs per ``POST /jobs/bulk`` request
BULK_CHUNK = 2000
#: inputs uploaded at once by :meth:`XWClient.submit_many`
UPLOAD_CONCURRENCY = 4
#: up to this many UIDs, :meth:`XWClient.wait` polls each job; beyond, it lists them all
WAIT_SINGLE_POLL_MAX = 50
#: how many requests :meth:`XWClient.wait` keeps in flight
WAIT_CONCURRENCY = 16

RESULT_PREFIX = "ResultsOf_"


class NoResult(Conflict):
    """Raised when a job has no result to download (not finished, or finished without one)."""

    code = "no_result"


class WaitTimeout(XWError):
    """Raised when :meth:`XWClient.wait` gives up before every job has finished."""

    code = "timeout"
    http_status = 408


def result_paths(job_uid: str, dest_dir: str | os.PathLike[str] = ".") -> tuple[Path, Path]:
    """``(ResultsOf_<UID>.zip, ResultsOf_<UID>/)`` under ``dest_dir``."""
    base = Path(dest_dir)
    return base / f"{RESULT_PREFIX}{job_uid}.zip", base / f"{RESULT_PREFIX}{job_uid}"


def _uid_path(uid: str) -> str:
    return quote(parse_uid(uid), safe="")


def _local_path(text: str | os.PathLike[str]) -> Path | None:
    """A local file named by a path or a ``file://`` URI, or ``None`` if ``text`` names none."""
    s = os.fspath(text)
    if s.startswith("file://"):
        return Path(unquote(urlsplit(s).path))
    if "://" in s and not s.startswith("xw://"):
        return None
    p = Path(os.path.expanduser(s))
    return p if p.exists() else None


class XWClient:
    """An asynchronous, authenticated client of one XtremWeb-Py deployment.

    Use it as an async context manager (or call :meth:`close`). It logs in lazily, on the
    first call that needs it, and keeps its HTTPS connections alive between calls.
    """

    def __init__(
        self,
        settings: ClientSettings | None = None,
        *,
        transport: Transport | None = None,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
        now: Callable[[], float] = time.monotonic,
    ) -> None:
        if transport is None:
            if settings is None:
                settings = load_settings()
            try:
                transport = Transport(
                    settings.servers,
                    settings.ca_file,
                    settings.login,
                    settings.password,
                    retry_for_s=settings.retry_for_s,
                    request_timeout_s=settings.request_timeout_s,
                )
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"{settings.config_file}: ca.file {settings.ca_file} is not a PEM CA certificate "
                    f"({exc.reason or exc}); copy the deployment's ca.pem there"
                ) from None
        self.settings = settings
        self.transport = transport
        self.cache = UploadCache(settings.cache_dir if settings is not None else None)
        self._sleep = sleep
        self._now = now
        #: inputs already uploaded or checked by this client: sha256 -> data uid
        self._inputs: dict[str, str] = {}
        self._input_locks: dict[str, asyncio.Lock] = {}
        #: env archives built by this client: their sources -> data uid
        self._envs: dict[tuple[str, ...], str] = {}

    @classmethod
    def from_config(cls, config: str | os.PathLike[str] | None = None) -> XWClient:
        """A client configured from ``config``, else ``$XWCONFIG``, else ``~/.xtremweb/xwrc``."""
        return cls(load_settings(config))

    async def close(self) -> None:
        self.cache.save()
        await self.transport.close()

    async def __aenter__(self) -> XWClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- server ---------------------------------------------------------------------------------
    async def version(self) -> dict[str, Any]:
        """``{"client_version", "server_version", "api", "server"}``; needs no login."""
        reply = await self.transport.request("GET", "/version", auth=False)
        return {
            "client_version": CLIENT_VERSION,
            "server_version": reply.get("version"),
            "api": reply.get("api"),
            "server": reply.get("server"),
        }

    async def usage(self, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        """Jobs, tasks, CPU and wall seconds, bytes up and down per user (and, for a SUPER user,
        per user group) from ``since`` to ``until`` (ISO 8601; None: from the start, until now):
        ``{"since", "until", "usage": [row, ...]}``."""
        params = {k: v for k, v in (("since", since), ("until", until)) if v}
        return dict(await self.transport.request("GET", "/usage", params=params or None))

    async def events(
        self,
        *,
        job: str | None = None,
        host: str | None = None,
        since: str | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """The event history, oldest first: of one job and its tasks, of one host, or of your
        objects and acts (a SUPER user: everyone's); ``since``: an ISO 8601 time."""
        params = {
            k: str(v)
            for k, v in (("job", job), ("host", host), ("since", since), ("limit", limit))
            if v is not None
        }
        return list((await self.transport.request("GET", "/events", params=params or None))["events"])

    async def ping(self) -> dict[str, Any]:
        """Time a request to the server; needs no login.

        ``connect_ms`` is the first request, TLS handshake included; ``rtt_ms`` a second
        one on the open connection, which is what a busy client sees.
        """
        t0 = time.perf_counter()
        await self.transport.request("GET", "/version", auth=False)
        t1 = time.perf_counter()
        reply = await self.transport.request("GET", "/version", auth=False)
        t2 = time.perf_counter()
        return {
            "server": self.transport.server,
            "version": reply.get("version"),
            "api": reply.get("api"),
            "connect_ms": round((t1 - t0) * 1000, 3),
            "rtt_ms": round((t2 - t1) * 1000, 3),
        }

    async def whoami(self) -> dict[str, Any]:
        """The caller's User."""
        return dict(await self.transport.request("GET", "/users/me"))

    # -- data -----------------------------------------------------------------------------------
    async def send_data(
        self,
        path: str | os.PathLike[str],
        name: str | None = None,
        *,
        access_rights: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Upload a local file as a new data (streamed, sha256 checked by the server)."""
        p = Path(path)
        if not p.is_file():
            raise BadRequest(f"{p} is not a readable file")
        params = {"name": name or p.name, "access_rights": access_rights}
        data = dict(await self.transport.upload("/data", p, params=params, progress=progress))
        log.info("uploaded %s (%d bytes) as data %s", p, data.get("size", 0), data.get("uid"))
        return data

    async def send_data_url(
        self,
        url: str,
        name: str | None = None,
        *,
        sha256: str | None = None,
        size: int | None = None,
        access_rights: str | None = None,
    ) -> dict[str, Any]:
        """Insert data by http(s) URL: nothing is uploaded, workers fetch it from the URL and
        check it against ``sha256`` and ``size``. Without them the server fetches the URL
        once to learn them, where its administrator allows it (else :class:`Forbidden`)."""
        body: dict[str, Any] = {"url": url}
        for key, value in (
            ("name", name),
            ("sha256", sha256),
            ("size", size),
            ("access_rights", access_rights),
        ):
            if value is not None:
                body[key] = value
        data = dict(await self.transport.request("POST", "/data/url", json=body))
        log.info("inserted %s as data %s (sha256 %s)", url, data.get("uid"), data.get("sha256"))
        return data

    async def list_data(self) -> list[dict[str, Any]]:
        """Every data the caller may read."""
        return list((await self.transport.request("GET", "/data"))["data"])

    async def get_data(self, uid: str) -> dict[str, Any]:
        return dict(await self.transport.request("GET", f"/data/{_uid_path(uid)}"))

    async def download_data(
        self,
        uid: str,
        dest: str | os.PathLike[str],
        *,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Download a data's content to ``dest`` (a file, or a folder to write it in by its name).

        The content is verified against the data's sha256 and written atomically. Data by
        URL is fetched from its URL (for https, the system's certificate authorities, or those of
        ``SSL_CERT_FILE``).
        """
        data = await self.get_data(uid)
        target = Path(dest)
        if target.is_dir():
            target = target / safe_file_name(data.get("name"), data["uid"])
        if data.get("url"):
            await urlfetch.fetch(
                data["url"],
                target,
                max_bytes=int(data["size"]),
                timeout_s=defaults.URL_DOWNLOAD_TIMEOUT_S,
                expected_sha256=data.get("sha256"),
                expected_size=int(data["size"]),
            )
            return target
        await self.transport.download(
            f"/data/{_uid_path(data['uid'])}/content",
            target,
            expected_sha256=data.get("sha256"),
            progress=progress,
        )
        return target

    async def delete_data(self, uid: str) -> None:
        await self.transport.request("DELETE", f"/data/{_uid_path(uid)}")

    # -- applications ---------------------------------------------------------------------------------
    async def send_app(
        self,
        name: str,
        cpu: str,
        os: str,
        path_or_data_uri: str | os.PathLike[str],
        *,
        needs_network: bool | None = None,
        progress: Callable[[int], None] | None = None,
        access_rights: str | None = None,
        sign_key: str | os.PathLike[str] | None = None,
        sha256: str | None = None,
        size: int | None = None,
    ) -> dict[str, Any]:
        """Insert an application binary for ``(os, cpu)`` (XWHEP's argument order).

        ``sign_key`` (the deployment's private signing key, ``xwserver keys signing``) signs
        the binary for this app and platform (xwcommon/signing.py): the digest signed is the
        local file's own, computed here. An http(s) URL is inserted as data by URL (with its
        ``sha256`` and ``size`` if given; signing one needs them).

        ``access_rights`` (``0750`` for a group's app, ``0700`` private; ADVANCED and up
        choose, default public ``0755``) are set at insertion: an app's rights never change
        afterwards. Below ADVANCED an app is private whatever is asked: :class:`Forbidden`
        when anything else is asked, and nothing is inserted.

        ``path_or_data_uri`` is a local file (path or ``file://`` URI), uploaded as a data
        first, or the UID/``xw://`` URI of a data already on the server. The same name
        again adds (or replaces) the binary of another platform. ``any``/``any`` suits
        scripts. ``needs_network`` asks for workers that give the app's jobs the network
        (the server's default otherwise: none).
        """
        binary_os, binary_cpu = normalize_os(os), normalize_cpu(cpu)
        rights = None if access_rights is None else normalize_rights(access_rights)
        if rights is not None:
            if not _OCTAL_RIGHTS.match(rights):
                raise BadRequest(f"an app's rights are octal ({rights!r}: give e.g. 0750)")
            await self._check_app_rights(rights)
        key = signing.load_private_key(Path(sign_key)) if sign_key is not None else None
        local = _local_path(path_or_data_uri)
        signed_sha: str | None = None
        if local is not None:
            if key is not None:
                signed_sha = (await asyncio.to_thread(sha256_file, local))[0]
            data = await self.send_data(local, progress=progress)
            data_uid = data["uid"]
        elif urlfetch.is_url(str(path_or_data_uri)):
            if key is not None and sha256 is None:
                raise BadRequest(
                    "signing a binary given by URL needs its sha256 and size (--xwsha256, --xwsize)"
                )
            data = await self.send_data_url(str(path_or_data_uri), sha256=sha256, size=size)
            data_uid, signed_sha = data["uid"], sha256
        elif is_uid(str(path_or_data_uri)):
            data_uid = parse_uid(str(path_or_data_uri))
            if key is not None:  # signs what the server holds: say which digest that is
                signed_sha = (await self.get_data(data_uid))["sha256"]
                log.warning("signing data %s by the digest the server gives: %s", data_uid, signed_sha)
        else:
            raise BadRequest(
                f"{path_or_data_uri!s}: no such file, and not a data UID, xw:// URI or http(s) URL; "
                "give the binary's path"
            )
        binary: dict[str, Any] = {"os": binary_os, "cpu": binary_cpu, "data_uid": data_uid}
        if key is not None and signed_sha is not None:
            binary["signature"] = signing.sign(key, name, binary_os, binary_cpu, signed_sha)
        body: dict[str, Any] = {"name": name, "binaries": [binary]}
        if needs_network is not None:
            body["needs_network"] = needs_network
        if rights is not None:
            body["access_rights"] = rights
        return dict(await self.transport.request("POST", "/apps", json=body))

    async def _check_app_rights(self, rights: str) -> None:
        """:class:`Forbidden` when the caller's level may not choose an app's ``rights``."""
        me = await self.whoami()
        level = UserLevel.parse(str(me.get("rights", "STANDARD")))
        if level < UserLevel.ADVANCED and rights != "0700":
            raise Forbidden(
                f"choosing an application's rights needs ADVANCED rights; {me.get('login')} has "
                f"{level.name}, whose applications are private (0700)"
            )

    async def list_apps(self) -> list[dict[str, Any]]:
        return list((await self.transport.request("GET", "/apps"))["apps"])

    async def get_app(self, uid_or_name: str) -> dict[str, Any]:
        key = parse_uid(uid_or_name) if is_uid(uid_or_name) else uid_or_name
        return dict(await self.transport.request("GET", f"/apps/{quote(key, safe='')}"))

    async def delete_app(self, uid: str) -> None:
        await self.transport.request("DELETE", f"/apps/{_uid_path(uid)}")

    # -- jobs -----------------------------------------------------------------------------------
    async def submit(
        self,
        app: str,
        args: Sequence[str] | str = (),
        stdin_path: str | os.PathLike[str] | None = None,
        label: str | None = None,
        *,
        stdin_uid: str | None = None,
        stdin_name: str | None = None,
        env_uid: str | None = None,
        env: Sequence[str | os.PathLike[str]] | None = None,
        max_retry: int | None = None,
        session_uid: str | None = None,
        group_uid: str | None = None,
        expected_host_uid: str | None = None,
        min_memory_bytes: int | None = None,
        min_disk_bytes: int | None = None,
        priority: int | None = None,
        min_quorum: int | None = None,
        target_results: int | None = None,
        delay_bound_s: float | None = None,
        stdin_url: str | None = None,
        env_url: str | None = None,
    ) -> dict[str, Any]:
        """Submit one job of ``app`` (name or UID).

        ``stdin_url`` and ``env_url`` (an http(s) URL of a zip archive) are inserted as data
        by URL: workers fetch them from there (:meth:`send_data_url`).

        ``stdin_path`` is uploaded as a data first (named ``stdin_name``, else the file's
        name); ``stdin_uid`` names a data already on the server instead. ``env`` lists
        zip files, folders and files that :meth:`send_env` packs into the job's
        environment (expanded in its scratch directory); ``env_uid`` names an archive
        already on the server instead. ``session_uid`` and ``group_uid`` put the job in a
        session or a group of jobs; ``expected_host_uid`` runs it on that host only;
        ``min_memory_bytes`` and ``min_disk_bytes`` ask for a host with that much.
        ``priority`` (higher first, within what the user's level allows); ``min_quorum``
        results that must agree out of ``target_results`` copies sent at first (the
        application's by default); ``delay_bound_s``: a copy still running that long after it
        was sent is sent to another host as well. ``tags``, ``min_cores``, ``min_gpus``: what
        its host must offer (besides its application's requirements).
        """
        spec = await self._spec(
            {
                "app": app,
                "args": args,
                "label": label,
                "stdin_uid": stdin_uid,
                "env_uid": env_uid,
                "env": env,
                "max_retry": max_retry,
                "session_uid": session_uid,
                "group_uid": group_uid,
                "expected_host_uid": expected_host_uid,
                "min_memory_bytes": min_memory_bytes,
                "min_disk_bytes": min_disk_bytes,
                "priority": priority,
                "min_quorum": min_quorum,
                "target_results": target_results,
                "delay_bound_s": delay_bound_s,
                "stdin_url": stdin_url,
                "env_url": env_url,
            },
            stdin_path,
            stdin_name,
        )
        job = dict(await self.transport.request("POST", "/jobs", json=spec))
        log.info("submitted job %s of %s", job.get("uid"), job.get("app_name"))
        return job

    async def submit_many(
        self,
        specs: Sequence[dict[str, Any]],
        chunk: int = BULK_CHUNK,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Submit many jobs in ``POST /jobs/bulk`` requests of ``chunk`` jobs; order is preserved.

        Each spec is a wire JobSpec (``app``, ``args``, ``stdin_uid``, ``env_uid``, ``label``,
        ``max_retry``, ``session_uid``, ``group_uid``, ``expected_host_uid``,
        ``min_memory_bytes``, ``min_disk_bytes``); a ``stdin_path`` key is uploaded as a data
        and becomes ``stdin_uid``, an ``env`` key (a list of sources) becomes ``env_uid`` as in
        :meth:`submit`; the same file is uploaded once however many jobs read it.
        Each chunk is all or nothing on the server; when one fails, the jobs of the chunks
        before it stay submitted, and the error says how many. ``progress`` is called with
        the number of jobs each chunk submitted.
        """
        chunk = max(1, min(chunk, defaults.MAX_BULK_JOBS))
        # inputs (stdin files, env folders) are uploaded a few at a time; each file only once
        gate = asyncio.Semaphore(UPLOAD_CONCURRENCY)

        async def prepare(s: dict[str, Any]) -> dict[str, Any]:
            if s.get("stdin_path") is None and not s.get("env"):
                return await self._spec(dict(s), None)
            async with gate:
                return await self._spec(dict(s), s.get("stdin_path"), s.get("stdin_name"))

        wire = list(await asyncio.gather(*(prepare(s) for s in specs)))
        jobs: list[dict[str, Any]] = []
        for start in range(0, len(wire), chunk):
            try:
                reply = await self.transport.request(
                    "POST", "/jobs/bulk", json={"jobs": wire[start : start + chunk]}
                )
            except XWError as exc:
                if jobs:
                    exc.message = f"{exc.message} (the first {len(jobs)} jobs were submitted)"
                    exc.args = (exc.message,)
                raise
            jobs.extend(reply["jobs"])
            log.info(
                "submitted %d job(s) in one request (%d of %d)", len(reply["jobs"]), len(jobs), len(wire)
            )
            if progress is not None:
                progress(len(reply["jobs"]))
        return jobs

    async def _spec(
        self,
        spec: dict[str, Any],
        stdin_path: str | os.PathLike[str] | None,
        stdin_name: str | None = None,
    ) -> dict[str, Any]:
        spec.pop("stdin_path", None)
        stdin_name = spec.pop("stdin_name", None) or stdin_name
        if stdin_path is not None:
            spec["stdin_uid"] = await self.input_uid(stdin_path, stdin_name)
        # data by URL: inserted as such (no upload), then named by UID like any other data
        if stdin_url := spec.pop("stdin_url", None):
            spec["stdin_uid"] = (await self.send_data_url(stdin_url))["uid"]
        if env_url := spec.pop("env_url", None):
            spec["env_uid"] = (await self.send_data_url(env_url))["uid"]
        env = spec.pop("env", None)
        if env:
            if spec.get("env_uid"):
                raise BadRequest("give env or env_uid, not both")
            spec["env_uid"] = await self.send_env(env)
        if isinstance(spec.get("args"), (list, tuple)):
            spec["args"] = [str(a) for a in spec["args"]]
        for key in ("stdin_uid", "env_uid", "session_uid", "group_uid", "expected_host_uid"):
            if spec.get(key):
                spec[key] = parse_uid(spec[key])
        return {k: v for k, v in spec.items() if v is not None}

    async def input_uid(self, path: str | os.PathLike[str], name: str | None = None) -> str:
        """The UID of a data holding ``path``'s content: uploaded once, then reused.

        The client's cache (:mod:`xwclient.cache`) remembers what it uploaded; a data it
        names is reused only after the server confirms it still holds that content.
        """
        p = Path(path)
        if not p.is_file():
            raise BadRequest(f"{p} is not a readable file")
        known = self.cache.known_sha256(p)
        if known is None:
            sha, _ = await asyncio.to_thread(sha256_file, p)
            self.cache.remember_sha256(p, sha)
        else:
            sha = known
        # one upload per content even when many jobs ask for it at once (submit_many)
        async with self._input_locks.setdefault(sha, asyncio.Lock()):
            return await self._input_uid(p, sha, name)

    async def _input_uid(self, p: Path, sha: str, name: str | None) -> str:
        if sha in self._inputs:
            return self._inputs[sha]
        server, login = self.transport.server, self.transport.login_name
        cached = self.cache.data_uid(server, login, sha)
        if cached is not None:
            try:
                data = await self.get_data(cached)
                if data.get("sha256") == sha and data.get("status") == "AVAILABLE":
                    log.info("%s is already on the server as data %s; not sent again", p, data["uid"])
                    self._inputs[sha] = data["uid"]
                    return str(data["uid"])
            except (NotFound, BadRequest):
                pass
            self.cache.forget_data(server, login, sha)
        data = await self.send_data(p, name)
        self.cache.remember_data(server, login, sha, data["uid"])
        self._inputs[sha] = data["uid"]
        return str(data["uid"])

    async def send_env(self, sources: Sequence[str | os.PathLike[str]] | str) -> str:
        """The UID of a job environment made of ``sources``; the worker expands it in the
        job's scratch directory before the job starts.

        One zip file is sent as it is; folders (their contents), files and other zip files
        (their members) are packed into one archive (:func:`xwclient.archive.build_env_archive`).
        A data UID or ``xw://`` URI alone names an archive already on the server.
        """
        items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
        if not items:
            raise BadRequest("an environment needs at least one zip file, folder or file")
        if len(items) == 1 and _local_path(items[0]) is None and is_uid(str(items[0])):
            return parse_uid(str(items[0]))
        paths: list[Path] = []
        for item in items:
            local = _local_path(item)
            if local is None:
                raise BadRequest(
                    f"--xwenv {os.fspath(item)}: no such file or folder (a data UID or URI must be "
                    "the only environment)"
                )
            paths.append(local.resolve())
        key = tuple(str(p) for p in paths)
        if key in self._envs:
            return self._envs[key]
        if len(paths) == 1 and paths[0].is_file() and paths[0].suffix.lower() == ".zip":
            uid = await self.input_uid(paths[0])
        else:
            folder = Path(tempfile.mkdtemp(prefix="xwenv."))
            try:
                archive = await asyncio.to_thread(build_env_archive, paths, folder / "env.zip")
                uid = await self.input_uid(archive, "env.zip")
            finally:
                shutil.rmtree(folder, ignore_errors=True)
        self._envs[key] = uid
        return uid

    async def list_jobs(
        self,
        status: str | Iterable[str] | None = None,
        label: str | None = None,
        owner: str | None = "me",
        *,
        session: str | None = None,
        group: str | None = None,
    ) -> list[dict[str, Any]]:
        """The caller's jobs (every page), optionally only those of some statuses, a label,
        a session or a group of jobs.

        ``owner`` is ``"me"`` (the default), a user's UID, or ``None`` for every job the
        caller may read (public jobs of others included).
        """
        if status is not None and not isinstance(status, str):
            status = ",".join(status)
        if owner is not None and owner != "me":
            owner = parse_uid(owner)
        params = {
            "status": status or None,
            "label": label,
            "owner": owner,
            "session": parse_uid(session) if session else None,
            "group": parse_uid(group) if group else None,
        }
        return await self._paginate("/jobs", "jobs", params)

    async def get_job(self, uid: str) -> dict[str, Any]:
        return dict(await self.transport.request("GET", f"/jobs/{_uid_path(uid)}"))

    async def delete_job(self, uid: str) -> None:
        """Delete a job (a running one is aborted first)."""
        await self.transport.request("DELETE", f"/jobs/{_uid_path(uid)}")

    async def delete_jobs(self, uids: Iterable[str]) -> tuple[list[str], list[str]]:
        """Delete many jobs in few requests (``POST /jobs/delete``); ``(deleted, missing)``."""
        todo = [parse_uid(u) for u in uids]
        deleted: list[str] = []
        missing: list[str] = []
        for start in range(0, len(todo), defaults.MAX_BULK_JOBS):
            reply = await self.transport.request(
                "POST", "/jobs/delete", json={"uids": todo[start : start + defaults.MAX_BULK_JOBS]}
            )
            deleted.extend(reply.get("deleted", []))
            missing.extend(reply.get("missing", []))
        log.info("removed %d job(s) from the server (%d already gone)", len(deleted), len(missing))
        return deleted, missing

    async def abort_jobs(self, uids: Iterable[str]) -> tuple[list[str], list[dict[str, Any]]]:
        """Abort many jobs (``POST /jobs/abort``): they end ABORTED and stay listed; their
        running copies stop at their workers' next heartbeat. ``(aborted, missing)``."""
        todo = [parse_uid(u) for u in uids]
        aborted: list[str] = []
        missing: list[dict[str, Any]] = []
        for start in range(0, len(todo), defaults.MAX_BULK_JOBS):
            reply = await self.transport.request(
                "POST", "/jobs/abort", json={"uids": todo[start : start + defaults.MAX_BULK_JOBS]}
            )
            aborted.extend(reply.get("aborted", []))
            missing.extend(reply.get("missing", []))
        log.info("aborted %d job(s)", len(aborted))
        return aborted, missing

    async def delete_jobs_where(
        self,
        *,
        status: str | Iterable[str] | None = None,
        label: str | None = None,
        session: str | None = None,
        group: str | None = None,
    ) -> tuple[list[str], list[str]]:
        """Delete the caller's jobs of a selection, as ``condor_rm -constraint`` and
        ``scancel --name`` do: those of some statuses, a label, a session or a group of jobs
        (all that are given). One listing, then bulk removals; ``(deleted, missing)``."""
        if status is None and label is None and session is None and group is None:
            raise BadRequest("a selection needs a status, a label, a session or a group")
        jobs = await self.list_jobs(status=status, label=label, session=session, group=group)
        if not jobs:
            return [], []
        return await self.delete_jobs(j["uid"] for j in jobs)

    # -- sessions and groups of jobs ----------------------------------------------------------------
    # one shape on the server (/sessions and /groups): one implementation here
    async def _create_set(self, kind: str, name: str) -> dict[str, Any]:
        return dict(await self.transport.request("POST", f"/{kind}s", json={"name": name}))

    async def _list_sets(self, kind: str) -> list[dict[str, Any]]:
        return list((await self.transport.request("GET", f"/{kind}s"))[f"{kind}s"])

    async def _get_set(self, kind: str, uid: str) -> dict[str, Any]:
        return dict(await self.transport.request("GET", f"/{kind}s/{_uid_path(uid)}"))

    async def _delete_set(self, kind: str, uid: str) -> None:
        await self.transport.request("DELETE", f"/{kind}s/{_uid_path(uid)}")

    async def create_session(self, name: str) -> dict[str, Any]:
        """A new session (a set of jobs one works on together); submit into it with ``session_uid``."""
        return await self._create_set("session", name)

    async def list_sessions(self) -> list[dict[str, Any]]:
        return await self._list_sets("session")

    async def get_session(self, uid: str) -> dict[str, Any]:
        return await self._get_set("session", uid)

    async def delete_session(self, uid: str) -> None:
        """Delete a session and its jobs."""
        await self._delete_set("session", uid)

    async def create_group(self, name: str) -> dict[str, Any]:
        """A new group of jobs; submit into it with ``group_uid``."""
        return await self._create_set("group", name)

    async def list_groups(self) -> list[dict[str, Any]]:
        return await self._list_sets("group")

    async def get_group(self, uid: str) -> dict[str, Any]:
        return await self._get_set("group", uid)

    async def delete_group(self, uid: str) -> None:
        """Delete a group of jobs and its jobs."""
        await self._delete_set("group", uid)

    async def list_tasks(self, job: str | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """Tasks (one per attempt of a job on a host), optionally of one job."""
        return await self._paginate(
            "/tasks", "tasks", {"job": parse_uid(job) if job else None, "status": status}
        )

    async def _paginate(self, path: str, key: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        while True:
            page = (
                await self.transport.request(
                    "GET", path, params={**params, "limit": PAGE_SIZE, "offset": len(rows)}
                )
            )[key]
            rows.extend(page)
            if len(page) < PAGE_SIZE:
                return rows

    async def wait(
        self,
        uids: Iterable[str],
        poll_s: float = 0.5,
        timeout_s: float | None = None,
        *,
        progress: Callable[[int], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Wait until every job is COMPLETED, ERROR or ABORTED; return them in ``uids`` order.

        Raises :class:`WaitTimeout` after ``timeout_s`` seconds (never, if ``None``).
        ``progress`` is called with the number of jobs seen finished since its last call.
        """
        order = [parse_uid(u) for u in uids]
        done: dict[str, dict[str, Any]] = {}
        deadline = None if timeout_s is None else self._now() + timeout_s
        gate = asyncio.Semaphore(WAIT_CONCURRENCY)

        async def one(uid: str) -> dict[str, Any]:
            async with gate:
                return await self.get_job(uid)

        while True:
            todo = [u for u in dict.fromkeys(order) if u not in done]
            if not todo:
                return [done[u] for u in order]
            if len(todo) <= WAIT_SINGLE_POLL_MAX:
                jobs = await asyncio.gather(*(one(u) for u in todo))
            else:
                wanted = set(todo)
                jobs = [j for j in await self.list_jobs(owner=None) if j["uid"] in wanted]
                missing = wanted - {j["uid"] for j in jobs}
                if missing:
                    raise NotFound(f"job {sorted(missing)[0]} not found ({len(missing)} missing)")
            before = len(done)
            for job in jobs:
                if job["status"] in FINAL_JOB_STATUSES:
                    done[job["uid"]] = job
            if progress is not None and len(done) > before:
                progress(len(done) - before)
            if len(done) == len(set(order)):
                continue
            if deadline is not None and self._now() + poll_s > deadline:
                left = len(set(order)) - len(done)
                raise WaitTimeout(f"{left} job(s) still not finished after {timeout_s:g}s")
            await self._sleep(poll_s)

    # -- results ----------------------------------------------------------------------------------
    async def fetch_result(
        self,
        uid: str,
        dest_dir: str | os.PathLike[str] = ".",
        extract: bool = True,
        *,
        override: bool = False,
        erase: bool = False,
        job: dict[str, Any] | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Download a job's result to ``ResultsOf_<UID>.zip`` (sha256 verified) under ``dest_dir``.

        With ``extract`` (the default) it is then extracted into ``ResultsOf_<UID>/``,
        refusing members that would land outside that folder, and the folder is
        returned; otherwise the zip file is. A ``ResultsOf_<UID>.zip`` already there with the
        result's sha256 is not downloaded again unless ``override``. With ``erase`` the job
        is deleted from the server once its result is safely here (XWHEP's default; the
        command line erases many at once with :meth:`delete_jobs`). ``job`` is the job as
        just read, to save a request.
        """
        if job is None:
            job = await self.get_job(uid)
        result_uid = job.get("result_uid")
        if not result_uid:
            raise NoResult(f"job {job['uid']} has no result (status {job.get('status')})")
        zip_path, folder = result_paths(job["uid"], dest_dir)
        expected = job.get("result_sha256")
        if not expected:
            expected = (await self.get_data(result_uid)).get("sha256")
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        have = (
            not override
            and zip_path.is_file()
            and (await asyncio.to_thread(sha256_file, zip_path))[0] == expected
        )
        if have:
            log.info("%s already holds the result of job %s; kept", zip_path, job["uid"])
        else:
            await self.transport.download(
                f"/data/{_uid_path(result_uid)}/content",
                zip_path,
                expected_sha256=expected,
                progress=progress,
            )
        if extract:
            try:
                await asyncio.to_thread(extract_replacing, zip_path, folder)
            except zipfile.BadZipFile:
                raise IntegrityError(
                    f"the result of job {job['uid']} is not a zip archive; it is kept as {zip_path}"
                ) from None
        if erase:
            await self.delete_job(job["uid"])
        return folder if extract else zip_path

    # -- hosts ------------------------------------------------------------------------------------
    async def list_hosts(self) -> list[dict[str, Any]]:
        """The volunteer hosts known to the server."""
        return list((await self.transport.request("GET", "/hosts"))["hosts"])

    async def disable_host(self, uid: str) -> dict[str, Any]:
        """Disable a host (ADVANCED+): its running tasks go to other workers, its requests are refused."""
        return dict(await self.transport.request("POST", f"/hosts/{_uid_path(uid)}/disable"))

    async def enable_host(self, uid: str) -> dict[str, Any]:
        """Enable a disabled host again (ADVANCED+)."""
        return dict(await self.transport.request("POST", f"/hosts/{_uid_path(uid)}/enable"))

    async def remove_host(self, uid: str) -> int:
        """Remove a host (ADVANCED+): its running tasks go back to the queue first, then its
        task records and the host go; returns how many running tasks it held."""
        answer = await self.transport.request("DELETE", f"/hosts/{_uid_path(uid)}")
        return int(answer.get("released", 0))

    # -- users and user groups -------------------------------------------------------------------
    async def create_user(
        self,
        login: str,
        password: str,
        email: str | None,
        rights: str = "STANDARD",
        group: str | None = None,
    ) -> dict[str, Any]:
        """Insert a user (SUPER only); ``rights`` as ``STANDARD`` or XWHEP's ``STANDARD_USER``…,
        ``group`` a user group's UID or label."""
        body = {
            "login": login,
            "password": password,
            "email": email,
            "rights": UserLevel.parse(rights).name,
            "group": _key(group) if group else None,
        }
        return dict(await self.transport.request("POST", "/users", json=body))

    async def list_users(self) -> list[dict[str, Any]]:
        """Every user for SUPER; only the caller otherwise."""
        return list((await self.transport.request("GET", "/users"))["users"])

    async def get_user(self, uid_or_login: str) -> dict[str, Any]:
        return dict(await self.transport.request("GET", f"/users/{_key_path(uid_or_login)}"))

    async def update_user(
        self,
        uid_or_login: str,
        *,
        rights: str | None = None,
        group: str | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        """Change a user's rights, group or email (SUPER only); a change of rights or group
        logs that user out everywhere."""
        body: dict[str, Any] = {}
        if rights is not None:
            body["rights"] = UserLevel.parse(rights).name
        if group is not None:
            body["group"] = _key(group)
        if email is not None:
            body["email"] = email
        if not body:
            raise BadRequest("nothing to change: give rights, group or email")
        return dict(await self.transport.request("PATCH", f"/users/{_key_path(uid_or_login)}", json=body))

    async def remove_user(self, uid_or_login: str) -> None:
        """Delete a user (SUPER only, not oneself; refused while the user owns apps, data or jobs)."""
        await self.transport.request("DELETE", f"/users/{_key_path(uid_or_login)}")

    async def change_password(
        self, uid_or_login: str, password: str, old_password: str | None = None
    ) -> None:
        """Set a user's password; ``old_password`` is required unless a SUPER changes another's.

        Every token of that user is revoked; when it is the caller's own, this client logs
        in again with the new password on its next call.
        """
        body: dict[str, Any] = {"password": password}
        if old_password is not None:
            body["old_password"] = old_password
        await self.transport.request("POST", f"/users/{_key_path(uid_or_login)}/password", json=body)
        if _key(uid_or_login) in (self.transport.login_name, self.transport.user.get("uid")):
            # our tokens are revoked: the next call logs in again, with the new password
            self.transport.use_password(password)
            if self.settings is not None:
                self.settings.password = password

    async def create_usergroup(self, label: str) -> dict[str, Any]:
        """Insert a user group (SUPER only)."""
        return dict(await self.transport.request("POST", "/usergroups", json={"label": label}))

    async def list_usergroups(self) -> list[dict[str, Any]]:
        """Every group for SUPER; the caller's own otherwise."""
        return list((await self.transport.request("GET", "/usergroups"))["usergroups"])

    async def get_usergroup(self, uid_or_label: str) -> dict[str, Any]:
        return dict(await self.transport.request("GET", f"/usergroups/{_key_path(uid_or_label)}"))

    async def remove_usergroup(self, uid_or_label: str) -> None:
        """Delete a user group (SUPER only; refused while it has members)."""
        await self.transport.request("DELETE", f"/usergroups/{_key_path(uid_or_label)}")

    # -- any object ----------------------------------------------------------------------------------
    async def get_object(self, uid: str) -> tuple[str, dict[str, Any]]:
        """``(kind, object)`` of any object the caller may read; kind is one of
        ``app data job task host user usergroup session group``."""
        reply = await self.transport.request("GET", f"/objects/{_uid_path(uid)}")
        return str(reply["kind"]), dict(reply["object"])

    async def chmod(self, uid: str, rights: str) -> tuple[str, dict[str, Any]]:
        """Change an object's access rights (owner or SUPER): ``0750``, ``0x750`` or XWHEP's
        symbolic ``u+r,g-w,o+x,a+r``; return ``(kind, object)`` as they are now.

        An app's rights never change and a job's are its app's: the server refuses (409).
        """
        body = {"rights": normalize_rights(rights)}
        reply = await self.transport.request("POST", f"/objects/{_uid_path(uid)}/chmod", json=body)
        return str(reply["kind"]), dict(reply["object"])

    async def remove(self, key: str) -> str:
        """Delete an object; return which kind it was.

        ``key`` is a UID or ``xw://`` URI of a job, data, app, user, user group, session or
        group of jobs (its kind is asked of the server first; removing a session or a group
        removes its jobs), or else a login, tried as a user, then as a user group's label.
        """
        if not is_uid(key):
            try:
                await self.remove_user(key)
                return "user"
            except NotFound:
                pass
            try:
                await self.remove_usergroup(key)
                return "usergroup"
            except NotFound:
                raise NotFound(f"no user or user group {key!r} visible to you") from None
        kind, _ = await self.get_object(key)
        path = _REMOVABLE.get(kind)
        if path is None:
            how = "; disable it with xwdisable" if kind == "host" else ""
            raise BadRequest(f"{parse_uid(key)} is a {kind}, which cannot be removed{how}")
        await self.transport.request("DELETE", f"{path}/{_uid_path(key)}")
        return kind


#: where each removable kind of object is deleted
_REMOVABLE = {
    "job": "/jobs",
    "data": "/data",
    "app": "/apps",
    "user": "/users",
    "usergroup": "/usergroups",
    "session": "/sessions",
    "group": "/groups",
}

#: octal access rights as XWHEP and we write them (``755``, ``0755``, ``0x755``)
_OCTAL_RIGHTS = re.compile(r"^(?:0x|0o|0)?[0-7]{3}$")


def normalize_rights(text: str) -> str:
    """Access rights as the wire takes them: octal ones (``750``, ``0x750``) as ``0750``;
    symbolic ones (``u+r,g-w``), which change the object's current bits, as given.

    :class:`BadRequest` (with an example) if they are neither.
    """
    t = text.strip()
    bits = parse_access_rights(t)  # checks the symbolic forms too (applied to 000 here)
    if _OCTAL_RIGHTS.match(t.lower()):
        return format_access_rights(bits)
    return ",".join(c.strip() for c in t.split(","))


def _key(text: str) -> str:
    """A UID (from a UID or URI) or else a name (login, label) as given."""
    return parse_uid(text) if is_uid(text) else text


def _key_path(text: str) -> str:
    return quote(_key(text), safe="")


def safe_file_name(name: Any, fallback: str) -> str:
    """A data's name as a plain file name (no folders, no dot-files that hide)."""
    base = os.path.basename(str(name or "").replace("\\", "/")).strip()
    if base in ("", ".", ".."):
        return fallback
    return base


# -- the synchronous facade ------------------------------------------------------------------------
class Client:
    """:class:`XWClient` for synchronous code: each method runs the async one to completion.

    It owns a private event loop, so its connections stay open between calls; do not use
    it from inside a running event loop (use :class:`XWClient` there).
    """

    def __init__(
        self, settings: ClientSettings | None = None, *, config: str | os.PathLike[str] | None = None
    ) -> None:
        if settings is None:
            settings = load_settings(config)
        self._loop = asyncio.new_event_loop()
        self.aio = XWClient(settings)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._loop.run_until_complete(coro)

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self.aio.close())
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def ping(self) -> dict[str, Any]:
        return self._run(self.aio.ping())

    def usage(self, since: str | None = None, until: str | None = None) -> dict[str, Any]:
        return self._run(self.aio.usage(since, until))

    def version(self) -> dict[str, Any]:
        return self._run(self.aio.version())

    def whoami(self) -> dict[str, Any]:
        return self._run(self.aio.whoami())

    def send_data(self, path: str | os.PathLike[str], name: str | None = None) -> dict[str, Any]:
        return self._run(self.aio.send_data(path, name))

    def list_data(self) -> list[dict[str, Any]]:
        return self._run(self.aio.list_data())

    def get_data(self, uid: str) -> dict[str, Any]:
        return self._run(self.aio.get_data(uid))

    def download_data(self, uid: str, dest: str | os.PathLike[str]) -> Path:
        return self._run(self.aio.download_data(uid, dest))

    def send_app(
        self,
        name: str,
        cpu: str,
        os: str,
        path_or_data_uri: str | os.PathLike[str],
        *,
        needs_network: bool | None = None,
    ) -> dict[str, Any]:
        return self._run(self.aio.send_app(name, cpu, os, path_or_data_uri, needs_network=needs_network))

    def list_apps(self) -> list[dict[str, Any]]:
        return self._run(self.aio.list_apps())

    def get_app(self, uid_or_name: str) -> dict[str, Any]:
        return self._run(self.aio.get_app(uid_or_name))

    def submit(
        self,
        app: str,
        args: Sequence[str] | str = (),
        stdin_path: str | os.PathLike[str] | None = None,
        label: str | None = None,
        **kwargs: Any,
    ) -> dict[str, Any]:
        return self._run(self.aio.submit(app, args, stdin_path, label, **kwargs))

    def submit_many(self, specs: Sequence[dict[str, Any]], chunk: int = BULK_CHUNK) -> list[dict[str, Any]]:
        return self._run(self.aio.submit_many(specs, chunk))

    def list_jobs(
        self,
        status: str | Iterable[str] | None = None,
        label: str | None = None,
        owner: str | None = "me",
        *,
        session: str | None = None,
        group: str | None = None,
    ) -> list[dict[str, Any]]:
        return self._run(self.aio.list_jobs(status, label, owner, session=session, group=group))

    def get_job(self, uid: str) -> dict[str, Any]:
        return self._run(self.aio.get_job(uid))

    def list_tasks(self, job: str | None = None) -> list[dict[str, Any]]:
        return self._run(self.aio.list_tasks(job))

    def remove(self, uid: str) -> str:
        return self._run(self.aio.remove(uid))

    def fetch_result(
        self,
        uid: str,
        dest_dir: str | os.PathLike[str] = ".",
        extract: bool = True,
        *,
        override: bool = False,
        erase: bool = False,
    ) -> Path:
        return self._run(self.aio.fetch_result(uid, dest_dir, extract, override=override, erase=erase))

    def wait(
        self, uids: Iterable[str], poll_s: float = 0.5, timeout_s: float | None = None
    ) -> list[dict[str, Any]]:
        return self._run(self.aio.wait(uids, poll_s, timeout_s))

    def list_hosts(self) -> list[dict[str, Any]]:
        return self._run(self.aio.list_hosts())

    def disable_host(self, uid: str) -> dict[str, Any]:
        return self._run(self.aio.disable_host(uid))

    def enable_host(self, uid: str) -> dict[str, Any]:
        return self._run(self.aio.enable_host(uid))

    def remove_host(self, uid: str) -> int:
        return self._run(self.aio.remove_host(uid))

    def create_user(
        self,
        login: str,
        password: str,
        email: str | None,
        rights: str = "STANDARD",
        group: str | None = None,
    ) -> dict[str, Any]:
        return self._run(self.aio.create_user(login, password, email, rights, group))

    def list_users(self) -> list[dict[str, Any]]:
        return self._run(self.aio.list_users())

    def get_user(self, uid_or_login: str) -> dict[str, Any]:
        return self._run(self.aio.get_user(uid_or_login))

    def update_user(
        self,
        uid_or_login: str,
        *,
        rights: str | None = None,
        group: str | None = None,
        email: str | None = None,
    ) -> dict[str, Any]:
        return self._run(self.aio.update_user(uid_or_login, rights=rights, group=group, email=email))

    def remove_user(self, uid_or_login: str) -> None:
        self._run(self.aio.remove_user(uid_or_login))

    def change_password(self, uid_or_login: str, password: str, old_password: str | None = None) -> None:
        self._run(self.aio.change_password(uid_or_login, password, old_password))

    def create_usergroup(self, label: str) -> dict[str, Any]:
        return self._run(self.aio.create_usergroup(label))

    def list_usergroups(self) -> list[dict[str, Any]]:
        return self._run(self.aio.list_usergroups())

    def get_usergroup(self, uid_or_label: str) -> dict[str, Any]:
        return self._run(self.aio.get_usergroup(uid_or_label))

    def remove_usergroup(self, uid_or_label: str) -> None:
        self._run(self.aio.remove_usergroup(uid_or_label))

    def get_object(self, uid: str) -> tuple[str, dict[str, Any]]:
        return self._run(self.aio.get_object(uid))

    def send_env(self, sources: Sequence[str | os.PathLike[str]] | str) -> str:
        return self._run(self.aio.send_env(sources))

    def delete_job(self, uid: str) -> None:
        self._run(self.aio.delete_job(uid))

    def delete_jobs(self, uids: Iterable[str]) -> tuple[list[str], list[str]]:
        return self._run(self.aio.delete_jobs(uids))

    def create_session(self, name: str) -> dict[str, Any]:
        return self._run(self.aio.create_session(name))

    def list_sessions(self) -> list[dict[str, Any]]:
        return self._run(self.aio.list_sessions())

    def get_session(self, uid: str) -> dict[str, Any]:
        return self._run(self.aio.get_session(uid))

    def delete_session(self, uid: str) -> None:
        self._run(self.aio.delete_session(uid))

    def create_group(self, name: str) -> dict[str, Any]:
        return self._run(self.aio.create_group(name))

    def list_groups(self) -> list[dict[str, Any]]:
        return self._run(self.aio.list_groups())

    def get_group(self, uid: str) -> dict[str, Any]:
        return self._run(self.aio.get_group(uid))

    def delete_group(self, uid: str) -> None:
        self._run(self.aio.delete_group(uid))

    def chmod(self, uid: str, rights: str) -> tuple[str, dict[str, Any]]:
        return self._run(self.aio.chmod(uid, rights))
