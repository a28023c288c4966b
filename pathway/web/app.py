"""The FastAPI application: login/logout, the HTTP API at /api/v1, the pages, static files.

`create_app(engine)` serves one engine. Every response carries a strict Content-Security-Policy
(no inline script or style), nosniff and a same-origin referrer policy. Nothing but the login page,
static files and the OpenAPI document is reachable without logging in (API: 401; pages: a
redirect to /login?next=<path>).
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio.to_thread
import psycopg
import sqlalchemy as sa
from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pathway import clock as clocks
from pathway.delivery import DispatcherLocked
from pathway.engine import Engine
from pathway.errors import ConcurrentUpdate, PathwayError, StorageError
from pathway.web import security
from pathway.web.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE, LoginRequired, is_https, verify_csrf
from pathway.web.templating import templates
from persistence import db
from persistence.accounts import DEVICE_LIFETIME, SESSION_HOURS, Accounts

log = logging.getLogger("pathway.web")

STATIC = Path(__file__).resolve().parent / "static"
API_PREFIX = "/api/v1"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """Adds the security headers to every response (pure ASGI: streaming responses too)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (name, value) for name, value in SECURITY_HEADERS if name not in names
                ]
                # pages show patient data (shared ward workstations): nothing but static files is cached
                if not scope.get("path", "").startswith("/static/") and b"cache-control" not in names:
                    message["headers"].append((b"cache-control", b"no-store"))
            await send(message)

        await self.app(scope, receive, send_with_headers)


PAGE_BODY_LIMIT = 1024 * 1024  # bytes of a request body to a page (forms)
API_BODY_LIMIT = 10 * 1024 * 1024  # ... to the HTTP API (event lists)


class BodyLimit:
    """Rejects request bodies over PAGE_BODY_LIMIT (API_BODY_LIMIT under /api/) with 413 — by their
    Content-Length before anything is read, and by counting the bytes of a chunked body as it
    streams — and multipart bodies to the pages with 415 (no page uploads files), before any form
    parsing (pure ASGI)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        api = path.startswith("/api/")
        limit = API_BODY_LIMIT if api else PAGE_BODY_LIMIT
        headers = {name.lower(): value for name, value in scope.get("headers", [])}
        length = headers.get(b"content-length")
        if length is not None:
            try:
                too_large = int(length) > limit
            except ValueError:
                await _plain(400, "bad Content-Length", api)(scope, receive, send)
                return
            if too_large:
                await _plain(413, f"the request body is too large (at most {limit // (1024 * 1024)} MB)",
                             api)(scope, receive, send)
                return
        content_type = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if not api and content_type == b"multipart/form-data":
            await _plain(415, "file uploads are not accepted", api)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLarge as exc:
            if started:
                raise
            await _plain(413, str(exc.detail), api)(scope, receive, send)


class _BodyTooLarge(HTTPException, PathwayError):
    def __init__(self, limit: int):
        super().__init__(413, f"the request body is too large (at most {limit // (1024 * 1024)} MB)")


def _plain(status_code: int, detail: str, api: bool) -> Response:
    if api:
        return JSONResponse({"detail": detail}, status_code=status_code)
    return HTMLResponse(f"<!doctype html><title>Error</title><h1>Request refused</h1><p>{detail}</p>",
                        status_code=status_code)


def safe_next(value: str | None) -> str:
    """A local path to go to after login (never another site)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value or "\n" in value:
        return "/"
    return value


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: int) -> None:
    response.set_cookie(name, value, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=is_https(request))


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _error_page(request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
    template = templates.env.from_string(
        '{% extends "base.html" %}{% block title %}{{ title }}{% endblock %}'
        '{% block content %}<section class="error-page"><h1>{{ title }}</h1><p>{{ message }}</p>'
        '<p><a href="/">Back to the worklist</a></p></section>{% endblock %}'
    )
    context = {"request": request, "title": title, "message": message}
    try:
        context.update(user=security.current_user(request), csrf=security.csrf_token(request))
    except Exception:  # noqa: BLE001 - an error page must render even when the database does not answer
        context.update(user=None, csrf="")
    return HTMLResponse(template.render(context), status_code=status_code)


#: Seconds an API token's account is remembered by a server process (a token revoked, or a user
#: disabled, by another process stops working within this time; by this process at once).
TOKEN_CACHE_SECONDS = 5.0
#: Seconds a client is asked to wait before trying again after a 503 (the database is unavailable).
RETRY_AFTER_SECONDS = 5
UNAVAILABLE = ("the database is not available; send the request again shortly (events with a key are never "
               "stored twice, should this one have reached the database before it went away)")
CONFLICT = ("another user changed this patient at the same time and the retries ran out: "
            "nothing was recorded by this request; read the patient again and retry")


def _answer_unavailable(request: Request) -> Response:
    """503 with Retry-After: the request changed nothing and may be sent again as it is."""
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    if _wants_json(request):
        return JSONResponse({"detail": UNAVAILABLE}, status_code=503, headers=headers)
    response = _error_page(request, 503, "Database unavailable", UNAVAILABLE)
    response.headers.update(headers)
    return response


def _answer_conflict(request: Request) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": CONFLICT}, status_code=409)
    return _error_page(request, 409, "Changed meanwhile", CONFLICT)


#: Requests a server process works on at once (worker threads; the database pool has room for
#: them and for the dispatcher): more would only queue for the two cores and the database.
WEB_THREADS = 20


def create_app(engine: Engine, *, scheduler: bool = False, notifiers: Iterable[Any] | None = None,
               accounts: Accounts | None = None, close_engine: bool = False) -> FastAPI:
    """The web app and HTTP API over `engine`. With `scheduler`, reminders are delivered in-process
    (through `notifiers`, else the engine's) while the app runs; on SQLite, if another dispatcher
    holds the database, the app serves without one and says so in the log. With `close_engine`
    the engine is closed when the app shuts down."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = WEB_THREADS
        started = False
        if scheduler:
            try:
                engine.start_scheduler(list(notifiers) if notifiers is not None else None)
                started = True
                log.info("reminder dispatcher running in this process")
            except DispatcherLocked as exc:
                log.warning("serving without the reminder dispatcher: %s", exc)
                app.state.dispatcher_problem = str(exc)
        try:
            yield
        finally:
            if started:
                engine.stop_scheduler(wait=True)
            if close_engine:
                engine.close()

    from pathway.web.api import openapi_components
    from pathway.web.api import router as api_router

    app = FastAPI(
        title="Liver pathway HTTP API",
        version="1",
        description=(
            "The care-pathway engine over HTTP. Authenticate with `Authorization: Bearer <token>` "
            "(`pathway token create USER`). Events follow the public event contract; the server sets `by`."
        ),
        openapi_url=None,  # served below, to logged-in users and token holders only
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.accounts = accounts or Accounts(engine.repository.engine, engine.clock,
                                              token_cache_seconds=TOKEN_CACHE_SECONDS, monotonic=clocks.monotonic)
    app.state.dispatcher_problem = None
    app.add_middleware(BodyLimit)
    app.add_middleware(SecurityHeaders)  # outermost: its headers go on BodyLimit's refusals too
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # -- errors ----------------------------------------------------------------------------------

    @app.exception_handler(LoginRequired)
    async def _login_required(request: Request, exc: LoginRequired) -> Response:
        target = "/login?next=" + quote(safe_next(exc.next_path), safe="/")
        if request.headers.get("hx-request"):
            return Response(status_code=401, headers={"HX-Redirect": target})
        return RedirectResponse(target, status_code=303)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = getattr(exc, "headers", None)
        if _wants_json(request) or request.headers.get("hx-request") and exc.status_code < 500:
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        titles = {401: "Not logged in", 403: "Not allowed", 404: "Not found", 405: "Not allowed",
                  429: "Too many attempts"}
        response = _error_page(request, exc.status_code, titles.get(exc.status_code, "Error"), str(exc.detail))
        if headers:
            response.headers.update(headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> Response:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        if _wants_json(request):
            return JSONResponse({"detail": errors}, status_code=422)
        message = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}" for e in errors)
        return _error_page(request, 422, "Invalid input", message)

    @app.exception_handler(ConcurrentUpdate)
    @app.exception_handler(db.WriteConflict)
    async def _conflict(request: Request, exc: Exception) -> Response:
        log.warning("conflict on %s %s: %s", request.method, request.url.path, type(exc).__name__)
        return _answer_conflict(request)

    @app.exception_handler(StorageError)
    @app.exception_handler(db.DatabaseUnavailable)
    async def _storage(request: Request, exc: Exception) -> Response:
        log.error("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return _answer_unavailable(request)

    # A driver error that escaped translation still gets its true answer (handled here, inside
    # the app, rather than by the outermost 500 handler, which closes the connection after it).
    @app.exception_handler(sa.exc.SQLAlchemyError)
    @app.exception_handler(sqlite3.Error)
    @app.exception_handler(psycopg.Error)
    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        kind = db.classify(exc)
        if kind is db.DatabaseUnavailable:
            log.error("database unavailable on %s %s: %s", request.method, request.url.path, db.describe(exc))
            return _answer_unavailable(request)
        if kind is db.WriteConflict:
            log.warning("conflict on %s %s: %s", request.method, request.url.path, db.describe(exc))
            return _answer_conflict(request)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        if _wants_json(request):
            response: Response = JSONResponse({"detail": "internal error (logged on the server)"}, status_code=500)
        else:
            response = HTMLResponse("<!doctype html><title>Error</title><h1>Something went wrong</h1>"
                                    "<p>The error was logged on the server.</p>", status_code=500)
        for name, value in SECURITY_HEADERS:
            response.headers[name.decode()] = value.decode()
        return response

    # -- login, logout ---------------------------------------------------------------------------

    def _login_page(request: Request, status_code: int = 200, error: str = "", name: str = "",
                    next_path: str = "/") -> Response:
        response = templates.TemplateResponse(
            request, "login.html", {"error": error, "name": name, "next": safe_next(next_path)},
            status_code=status_code,
        )
        new = getattr(request.state, "new_login_csrf", None)
        if new:
            set_cookie(request, response, LOGIN_CSRF_COOKIE, new, max_age=2 * 3600)
        return response

    @app.get("/login", include_in_schema=False)
    def login_form(request: Request, next: str = "/") -> Response:  # noqa: A002
        if security.current_user(request) is not None:
            return RedirectResponse(safe_next(next), status_code=303)
        return _login_page(request, next_path=next)

    @app.post("/login", include_in_schema=False, dependencies=[Depends(verify_csrf)])
    def login(request: Request, name: str = Form(""), password: str = Form(""),
              next: str = Form("/")) -> Response:  # noqa: A002
        store = security.accounts(request)
        address = request.client.host if request.client else "unknown"
        name = name.strip()[:64]
        device = request.cookies.get(security.DEVICE_COOKIE)
        device = device if device and len(device) < 200 else None
        # the attempt is recorded (as a failure) before the slow password check, in the transaction
        # that checks the throttle: parallel guesses cannot all slip under the limit. A browser known
        # for the name is throttled only by its own failures (persistence/accounts.py)
        wait, attempt = store.begin_attempt(name, address, device)
        if wait is not None or attempt is None:
            wait = wait or timedelta(minutes=1)
            minutes = max(1, int(wait.total_seconds() + 59) // 60)
            log.warning("login throttled after repeated failures")
            # the same answer whether the name exists or not
            return _login_page(request, 429, f"Too many failed logins: try again in {minutes} minute"
                               f"{'s' if minutes != 1 else ''}, or ask an administrator to unlock the logins.",
                               name, next)
        account = store.authenticate(name, password) if name and password else None
        if account is None:
            return _login_page(request, 400, "Wrong name or password.", name, next)
        store.forget_attempt(attempt)
        device = store.remember_device(account, device)
        secret, _csrf = store.create_session(account)
        response = RedirectResponse(safe_next(next), status_code=303)
        set_cookie(request, response, SESSION_COOKIE, secret, max_age=SESSION_HOURS * 3600)
        set_cookie(request, response, security.DEVICE_COOKIE, device, max_age=int(DEVICE_LIFETIME.total_seconds()))
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=is_https(request))
        log.info("login: %s", account.name)
        return response

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request, csrf: str | None = Form(None)) -> Response:
        secret = request.cookies.get(SESSION_COOKIE)
        if security.current_user(request) is not None and secret:
            security.check_csrf(request, csrf)  # a live session: only our own page may end it
            security.accounts(request).end_session(secret)
        # no (or an expired) session: nothing to protect; just drop the stale cookie
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=is_https(request))
        return response

    # -- the API and the pages ---------------------------------------------------------------------

    app.include_router(api_router, prefix=API_PREFIX)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes)
            schema.setdefault("components", {}).setdefault("schemas", {}).update(openapi_components())
            schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
            schema["security"] = [{"bearer": []}]
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get(f"{API_PREFIX}/openapi.json", include_in_schema=False)
    def openapi_json(_user: security.User = Depends(security.api_user)) -> JSONResponse:
        return JSONResponse(app.openapi())
    try:
        pages = importlib.import_module("pathway.web.pages")
    except ModuleNotFoundError as exc:
        if exc.name != "pathway.web.pages":
            raise
        pages = None  # type: ignore[assignment]

        @app.get("/", include_in_schema=False)
        def home(request: Request, user: security.User = Depends(security.page_user)) -> Response:
            return _error_page(request, 200, "Liver pathway", f"Logged in as {user.name} ({user.role}).")

    if pages is not None:
        app.include_router(pages.router, include_in_schema=False)

    from pathway.web.admin import router as admin_router

    app.include_router(admin_router, include_in_schema=False)

    return app



def create_app_from_environment() -> FastAPI:
    """The app of one `pathway serve --workers N` worker process (a uvicorn factory): the database
    and policy `serve` resolved into PATHWAY_DB and PATHWAY_POLICY, no dispatcher (`pathway run`
    processes deliver reminders), the engine closed when the worker stops."""
    from pathway import config

    config.configure_logging(bool(os.environ.get(config.VERBOSE_ENV)))
    engine = Engine.open(None, policy=config.load_policy(None))
    return create_app(engine, scheduler=False, close_engine=True)
