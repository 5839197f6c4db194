"""The web dashboard: server-rendered pages at ``/`` over the server's own TLS.

Same accounts and rights as the API: a page calls the same domain functions as the API's
handlers (``jobs.list_tasks``, ``jobs.get``, ``hosts.list_hosts``, ``users.list_users`` …)
with the caller its session cookie names, so it shows what the API would show that user.
No JavaScript at all: forms and links, Jinja2 templates, one style sheet; nothing to build
or download at install time. See :mod:`xwserver.web.session` for the session cookie and
the CSRF tokens, :mod:`xwserver.web.pages` for the pages.
"""

from __future__ import annotations

from aiohttp import web

from ..state import Server
from .pages import add_pages


def install(app: web.Application, srv: Server) -> None:
    add_pages(app, srv)
