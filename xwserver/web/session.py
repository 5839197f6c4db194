"""The dashboard's session: a login's own API token in a cookie, and CSRF tokens.

The cookie carries the bearer token ``users.login`` gave (it expires, is revoked by logout
and by a password change, exactly as the API's): ``Secure`` (HTTPS only), ``HttpOnly`` (no
script reads it; there is no script anyway), ``SameSite=Strict`` (no other site's page
sends it) and ``Path=/``.

Every form carries a CSRF token. Once logged in, it is derived from the session's token
(``sha256("csrf" + token)``): a page of another site cannot know it, and it holds for every
server process of the deployment without shared state. The login form, before any session,
uses a double-submit token: a random value both in a cookie of its own and in the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from aiohttp import web

from xwcommon.errors import AuthenticationError, Forbidden
from xwcommon.levels import UserLevel

from ..access import Caller
from ..users import resolve_token

SESSION_COOKIE = "xw_session"
LOGIN_CSRF_COOKIE = "xw_login_csrf"
CSRF_FIELD = "csrf"

#: the security headers of every dashboard answer: no script, no frame, no foreign anything
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


class NotLoggedIn(Exception):
    """Raised when a page needs a session and the request has none that is valid."""


def csrf_of(token: str) -> str:
    return hashlib.sha256(b"csrf:" + token.encode()).hexdigest()


def set_session(response: web.StreamResponse, token: str, max_age_s: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=max_age_s,
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )


def clear_session(response: web.StreamResponse) -> None:
    response.del_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="Strict")


def new_login_csrf(response: web.StreamResponse) -> str:
    """A fresh double-submit token for the login form; its cookie is set on ``response``."""
    value = secrets.token_urlsafe(24)
    response.set_cookie(
        LOGIN_CSRF_COOKIE, value, max_age=3600, path="/login", secure=True, httponly=True, samesite="Strict"
    )
    return value


def check_login_csrf(request: web.Request, form_value: str) -> None:
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not cookie or not hmac.compare_digest(cookie.encode(), form_value.encode()):
        raise Forbidden("the login form has expired; load it again")


async def caller_of(request: web.Request) -> tuple[Caller, str]:
    """The session's caller and token; :class:`NotLoggedIn` without a valid session."""
    from ..api.http import SERVER_KEY

    token = request.cookies.get(SESSION_COOKIE, "")
    if not token:
        raise NotLoggedIn()
    try:
        caller = await resolve_token(request.app[SERVER_KEY], token)
    except AuthenticationError:
        raise NotLoggedIn() from None
    if caller.host_uid is not None or caller.rights < UserLevel.STANDARD:
        raise NotLoggedIn()  # a worker's identity computes; it has no dashboard
    return caller, token


def check_csrf(token: str, form_value: str) -> None:
    if not hmac.compare_digest(csrf_of(token).encode(), form_value.encode()):
        raise Forbidden("this form is stale or was not sent from this site; load the page again")
