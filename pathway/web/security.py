"""Authentication, roles and CSRF for the web pages and the HTTP API.

Pages authenticate with a session cookie (`pathway_session`: HttpOnly, SameSite=Strict, Secure
over https); the API with `Authorization: Bearer <token>` (`pathway token create`) or the same
cookie. Roles are ordered: viewer (read) < coordinator (read + record) < admin (+ users). A login
also sets the device cookie (`pathway_device`, same flags, one year): a browser known for a user
is throttled apart from everyone else's failed logins (persistence/accounts.py).

Dependencies for routes:

    user: User = Depends(page_user)                      # any logged-in user, else redirect to /login
    user: User = Depends(require_page_role("coordinator"))  # ... else 403
    user: User = Depends(api_user) / Depends(require_api_role("coordinator"))   # 401 / 403
    _: None = Depends(verify_csrf)                       # every POST form: hidden field `csrf`

`csrf_token(request)` is the token for the hidden `csrf` field (templates get it as `csrf`). It is
bound to the session; before login (the login form) it is a random value also set in the cookie
`pathway_login_csrf` (double submit). htmx requests may send it as the `X-CSRF-Token` header instead.
The engine is `request.app.state.engine`; the accounts store `request.app.state.accounts`.
"""

from __future__ import annotations

import hmac
import inspect
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Form, HTTPException, Request, status
from starlette.concurrency import run_in_threadpool

from pathway.errors import PathwayError
from persistence.accounts import ROLES, Accounts

SESSION_COOKIE = "pathway_session"
DEVICE_COOKIE = "pathway_device"
LOGIN_CSRF_COOKIE = "pathway_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
_UNSET = object()


@dataclass(frozen=True)
class User:
    """The authenticated user of a request."""

    name: str
    role: str

    def can(self, role: str) -> bool:
        """Whether this user has `role` or a higher one (viewer < coordinator < admin)."""
        if role not in ROLES or self.role not in ROLES:
            return False
        return ROLES.index(self.role) >= ROLES.index(role)


class LoginRequired(PathwayError):
    """A page needs a logged-in user; the app answers with a redirect to /login?next=<path>."""

    def __init__(self, next_path: str = "/"):
        super().__init__(next_path)
        self.next_path = next_path


def accounts(request: Request) -> Accounts:
    return request.app.state.accounts  # type: ignore[no-any-return]


def is_https(request: Request) -> bool:
    """Whether the client reached us over TLS (uvicorn applies X-Forwarded-Proto only when
    `pathway serve --behind-proxy` says a proxy is trusted)."""
    return request.url.scheme == "https"


def _session(request: Request) -> Any:
    """The request's session (SessionInfo) or None, looked up once per request."""
    if getattr(request.state, "pathway_session", _UNSET) is _UNSET:
        secret = request.cookies.get(SESSION_COOKIE)
        found = accounts(request).session(secret) if secret and len(secret) < 200 else None
        request.state.pathway_session = found
    return request.state.pathway_session


def current_user(request: Request) -> User | None:
    """The logged-in user (session cookie, or the bearer token of an API request), or None."""
    user = getattr(request.state, "pathway_user", None)
    if user is not None:
        return user  # type: ignore[no-any-return]
    found = _session(request)
    return User(found.account.name, found.account.role) if found else None


def page_user(request: Request) -> User:
    user = current_user(request)
    if user is None:
        path = request.url.path
        if request.url.query:
            path += "?" + request.url.query
        raise LoginRequired(path)
    request.state.pathway_user = user
    return user


def _check_role(user: User, role: str) -> User:
    if not user.can(role):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role; you are {user.role}")
    return user


def _requiring(role: str, authenticate: Callable[[Request], Any], name: str) -> Callable[[Request], Any]:
    """A dependency: the user `authenticate` finds, if their role includes `role` (else 403).
    An async `authenticate` gives an async dependency (no worker thread when it needs none)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")

    if inspect.iscoroutinefunction(authenticate):
        async def async_dependency(request: Request) -> User:
            return _check_role(await authenticate(request), role)

        async_dependency.__name__ = f"{name}_{role}"
        return async_dependency

    def dependency(request: Request) -> User:
        return _check_role(authenticate(request), role)

    dependency.__name__ = f"{name}_{role}"
    return dependency


def require_page_role(role: str) -> Callable[[Request], User]:
    return _requiring(role, page_user, "require_page_role")


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = 'Bearer realm="pathway"' + (f', error="{error}"' if error else "")
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": challenge})


async def api_user(request: Request) -> User:
    """The API's user: a bearer token's (remembered for a few seconds: most requests need no
    database access, nor a worker thread, to authenticate), else the session's."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, token = header.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise _unauthorized("the Authorization header must be 'Bearer <token>'", "invalid_request")
        account = None
        if len(token) < 200:
            store = accounts(request)
            account = store.cached_token_user(token) or await run_in_threadpool(store.token_user, token)
        if account is None:
            raise _unauthorized("unknown or revoked token", "invalid_token")
        user = User(account.name, account.role)
    else:
        user_or_none = await run_in_threadpool(current_user, request)
        if user_or_none is None:
            raise _unauthorized("authentication required: Authorization: Bearer <token>")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            # a browser session writing through the API must prove it is our page (header X-CSRF-Token)
            check_csrf(request, None)
        user = user_or_none
    request.state.pathway_user = user
    return user


def require_api_role(role: str) -> Callable[[Request], User]:
    return _requiring(role, api_user, "require_api_role")


# -- CSRF -----------------------------------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """The CSRF token for this request's forms: the session's, or before login the pre-session
    token (set as a cookie on the response by the app's middleware when new)."""
    found = _session(request)
    if found is not None:
        return found.csrf  # type: ignore[no-any-return]
    token = getattr(request.state, "login_csrf", None) or request.cookies.get(LOGIN_CSRF_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(32)
        request.state.new_login_csrf = token
    request.state.login_csrf = token
    return token


def _expected_csrf(request: Request) -> str | None:
    found = _session(request)
    if found is not None:
        return found.csrf  # type: ignore[no-any-return]
    return request.cookies.get(LOGIN_CSRF_COOKIE)


def check_csrf(request: Request, submitted: str | None) -> None:
    """Raise 403 unless `submitted` is this request's CSRF token."""
    submitted = submitted or request.headers.get(CSRF_HEADER)
    expected = _expected_csrf(request)
    if not submitted or not expected or not hmac.compare_digest(submitted.encode(), expected.encode()):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "missing or wrong CSRF token: reload the page and try again")


def verify_csrf(request: Request, csrf: str | None = Form(None)) -> None:
    """Dependency of every POST form: the hidden field `csrf` (or header X-CSRF-Token) must match."""
    check_csrf(request, csrf)
