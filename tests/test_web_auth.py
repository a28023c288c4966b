"""Authentication and its protections: sessions, roles, tokens, CSRF, throttling, headers, accounts CLI."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from pathway import Engine, ManualClock
from pathway.cli import main
from pathway.web import create_app
from pathway.web.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE, User
from persistence.accounts import Accounts
from tests.conftest import WEB_PASSWORD, csrf_of

PASSWORD = WEB_PASSWORD

API_GETS = ["/api/v1/patients", "/api/v1/patients/P1", "/api/v1/worklist", "/api/v1/pathway", "/api/v1/openapi.json"]




def login(client: TestClient, name: str = "coordinator", password: str = PASSWORD, next_path: str = "/") -> Any:
    page = client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "csrf": csrf_of(page.text),
                                       "next": next_path}, follow_redirects=False)


def token(app: Any, user: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.state.accounts.create_token(user)[1]}"}


def event(engine: Engine, patient: str = "P1") -> dict[str, Any]:
    return {"patient": patient, "type": "referral", "on": (engine.today() - timedelta(days=3)).isoformat(),
            "data": {"primary": "colorectal"}}


# -- anonymous ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", API_GETS)
def test_anonymous_api_requests_are_401_with_a_challenge(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/json"


def test_anonymous_post_of_events_is_401_and_records_nothing(client: TestClient, any_engine: Engine) -> None:
    assert client.post("/api/v1/events", json=event(any_engine)).status_code == 401
    assert any_engine.patients() == []


def test_anonymous_pages_redirect_to_login_with_next(client: TestClient) -> None:
    response = client.get("/", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/"
    response = client.get("/?kind=chemo_cycle", follow_redirects=False)
    assert response.headers["location"].startswith("/login?next=/%3Fkind")


def test_htmx_requests_get_a_redirect_header_instead(client: TestClient) -> None:
    response = client.get("/", headers={"HX-Request": "true"}, follow_redirects=False)
    assert response.status_code == 401 and response.headers["hx-redirect"].startswith("/login?next=")


def test_login_page_and_static_files_are_public(client: TestClient) -> None:
    assert client.get("/login").status_code == 200
    css = client.get("/static/app.css")
    assert css.status_code == 200 and "text/css" in css.headers["content-type"]
    assert client.get("/static/htmx.min.js").status_code == 200


@pytest.mark.parametrize("header", ["Bearer", "Bearer nope", "Basic dXNlcjpwYXNz", "Bearer " + "x" * 500, "Token abc"])
def test_bad_authorization_headers_are_401(client: TestClient, header: str) -> None:
    response = client.get("/api/v1/patients", headers={"Authorization": header})
    assert response.status_code == 401 and "www-authenticate" in response.headers


# -- roles ----------------------------------------------------------------------------------------------


def test_user_roles_are_ordered() -> None:
    assert User("a", "admin").can("coordinator") and User("a", "admin").can("viewer")
    assert User("c", "coordinator").can("viewer") and not User("c", "coordinator").can("admin")
    assert not User("v", "viewer").can("coordinator")
    assert not User("v", "viewer").can("superuser")


def test_a_viewer_may_read_but_not_record(app: Any, client: TestClient, any_engine: Engine) -> None:
    viewer = token(app, "viewer")
    assert client.get("/api/v1/patients", headers=viewer).status_code == 200
    response = client.post("/api/v1/events", json=event(any_engine), headers=viewer)
    assert response.status_code == 403 and "coordinator" in response.json()["detail"]
    assert any_engine.patients() == []


def test_coordinator_and_admin_may_record(app: Any, client: TestClient, any_engine: Engine) -> None:
    for user, patient in (("coordinator", "P1"), ("admin", "P2")):
        response = client.post("/api/v1/events", json=event(any_engine, patient), headers=token(app, user))
        assert response.json()[0]["status"] == "accepted"
    assert [h.by for h in any_engine.show("P2").history] == ["admin"]


# -- tokens ---------------------------------------------------------------------------------------------


def test_a_revoked_token_is_401(app: Any, client: TestClient) -> None:
    token_id, secret = app.state.accounts.create_token("coordinator", "emr")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/api/v1/patients", headers=headers).status_code == 200
    assert app.state.accounts.revoke_token(token_id)
    response = client.get("/api/v1/patients", headers=headers)
    assert response.status_code == 401 and 'error="invalid_token"' in response.headers["www-authenticate"]
    assert not app.state.accounts.revoke_token(token_id)  # already revoked


def test_a_disabled_users_token_is_401(app: Any, client: TestClient) -> None:
    headers = token(app, "viewer")
    app.state.accounts.set_disabled("viewer", True)
    assert client.get("/api/v1/patients", headers=headers).status_code == 401


def test_tokens_are_stored_only_as_sha256(app: Any) -> None:
    _, secret = app.state.accounts.create_token("coordinator")
    stored = app.state.accounts.stored_token_hashes()
    assert hashlib.sha256(secret.encode()).hexdigest() in stored
    assert all(secret not in h for h in stored)


def test_passwords_are_argon2_hashes(app: Any) -> None:
    stored = app.state.accounts.password_hash("coordinator")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


# -- sessions, cookies, CSRF ---------------------------------------------------------------------------


def test_login_sets_a_strict_httponly_session_cookie_and_redirects_to_next(client: TestClient) -> None:
    response = login(client, next_path="/api/v1/pathway")
    assert response.status_code == 303 and response.headers["location"] == "/api/v1/pathway"
    cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert client.get("/api/v1/pathway").status_code == 200  # the session works for API reads too
    assert client.get("/").status_code == 200


def test_cookies_are_secure_over_https(app: Any) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        page = client.get("/login")
        assert "Secure" in page.headers["set-cookie"]
        response = login(client)
        assert all("Secure" in c for c in response.headers.get_list("set-cookie"))


@pytest.mark.parametrize("next_path", ["//evil.example/", "https://evil.example/", "\\\\evil", "javascript:x"])
def test_login_never_redirects_off_site(client: TestClient, next_path: str) -> None:
    assert login(client, next_path=next_path).headers["location"] == "/"


def test_login_without_or_with_a_wrong_csrf_token_is_403(client: TestClient) -> None:
    page = client.get("/login")
    data = {"name": "coordinator", "password": PASSWORD}
    assert client.post("/login", data=data, follow_redirects=False).status_code == 403
    assert client.post("/login", data={**data, "csrf": "forged"}, follow_redirects=False).status_code == 403
    client.cookies.delete(LOGIN_CSRF_COOKIE)  # the token without its cookie (another browser's token)
    assert client.post("/login", data={**data, "csrf": csrf_of(page.text)}, follow_redirects=False).status_code == 403
    assert SESSION_COOKIE not in client.cookies


def test_logout_needs_the_sessions_csrf_token(client: TestClient) -> None:
    login(client)
    page = client.get("/")
    assert client.post("/logout", follow_redirects=False).status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}, follow_redirects=False).status_code == 403
    assert client.get("/api/v1/patients").status_code == 200  # still logged in
    response = client.post("/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert client.get("/api/v1/patients").status_code == 401
    assert client.get("/", follow_redirects=False).status_code == 303


def test_logout_without_a_live_session_just_clears_the_cookie(app: Any, client: TestClient, clock: ManualClock,
                                                             any_engine: Engine) -> None:
    login(client)
    assert SESSION_COOKIE in client.cookies
    clock.advance(hours=13)  # the session expired: the page's CSRF token is gone with it
    response = client.post("/logout", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert SESSION_COOKIE not in client.cookies
    with TestClient(app, cookies={SESSION_COOKIE: "no-such-session"}) as other:
        response = other.post("/logout", follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/login"
        assert f"{SESSION_COOKIE}=" in response.headers["set-cookie"]
        assert "max-age=0" in response.headers["set-cookie"].lower()
    with TestClient(app) as anonymous:
        assert anonymous.post("/logout", follow_redirects=False).status_code == 303


def test_a_stolen_session_cookie_is_useless_after_logout(app: Any, client: TestClient) -> None:
    login(client)
    secret = client.cookies[SESSION_COOKIE]
    page = client.get("/")
    client.post("/logout", data={"csrf": csrf_of(page.text)})
    with TestClient(app, cookies={SESSION_COOKIE: secret}) as other:
        assert other.get("/api/v1/patients").status_code == 401


def test_session_writes_through_the_api_need_the_csrf_header(client: TestClient, any_engine: Engine) -> None:
    login(client)
    csrf = csrf_of(client.get("/").text)
    assert client.post("/api/v1/events", json=event(any_engine)).status_code == 403
    response = client.post("/api/v1/events", json=event(any_engine), headers={"X-CSRF-Token": csrf})
    assert response.json()[0]["status"] == "accepted"
    assert [h.by for h in any_engine.show("P1").history] == ["coordinator"]  # the audit log names the user


def test_wrong_password_unknown_user_and_disabled_user_cannot_log_in(app: Any, client: TestClient) -> None:
    assert login(client, password="wrong password!").status_code == 400
    assert login(client, name="nobody").status_code == 400
    app.state.accounts.set_disabled("viewer", True)
    assert login(client, name="viewer").status_code == 400
    assert SESSION_COOKIE not in client.cookies


def test_sessions_expire(app: Any, engine: Engine, clock: ManualClock) -> None:
    app = create_app(engine)
    app.state.accounts.add_user("c", "coordinator", PASSWORD)
    with TestClient(app) as client:
        login(client, "c")
        assert client.get("/api/v1/patients").status_code == 200
        clock.advance(hours=13)
        assert client.get("/api/v1/patients").status_code == 401


# -- throttling -------------------------------------------------------------------------------------------


def test_login_is_throttled_after_five_failures_for_a_user(engine: Engine, clock: ManualClock) -> None:
    app = create_app(engine)
    app.state.accounts.add_user("c", "coordinator", PASSWORD)
    with TestClient(app) as client:
        for _ in range(5):
            assert login(client, "c", "wrong password").status_code == 400
        response = login(client, "c")  # even the right password now waits
        assert response.status_code == 429 and "try again in 15 minutes" in response.text
        clock.advance(minutes=10)
        assert "try again in 5 minutes" in login(client, "c").text
        clock.advance(minutes=5, seconds=1)
        assert login(client, "c").status_code == 303


def test_parallel_wrong_logins_check_at_most_five_passwords(app: Any, any_engine: Engine,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    from argon2 import PasswordHasher

    class SlowCountingHasher(PasswordHasher):
        checks = 0
        lock = threading.Lock()

        def verify(self, hash: str | bytes, password: str | bytes) -> bool:  # noqa: A002
            with self.lock:
                type(self).checks += 1
            time.sleep(0.05)  # argon2's real cost: the window the throttle must not leave open
            return super().verify(hash, password)

    monkeypatch.setattr("persistence.accounts._hasher",
                        SlowCountingHasher(time_cost=1, memory_cost=1024, parallelism=1))
    with TestClient(app) as client:
        page = client.get("/login")
        cookies = dict(client.cookies)
        data = {"name": "coordinator", "password": "wrong password", "csrf": csrf_of(page.text)}

        def attempt(_: int) -> int:
            with TestClient(app, cookies=cookies) as other:
                return other.post("/login", data=data, follow_redirects=False).status_code

        with ThreadPoolExecutor(30) as pool:
            codes = list(pool.map(attempt, range(30)))
    assert SlowCountingHasher.checks <= 5, (SlowCountingHasher.checks, codes)
    assert sum(code != 429 for code in codes) <= 5 and set(codes) <= {400, 429}
    with TestClient(app) as client:
        assert login(client).status_code == 429  # the right password waits too


def test_login_is_throttled_per_client_address_across_names(engine: Engine, clock: ManualClock) -> None:
    app = create_app(engine)
    app.state.accounts.add_user("c", "coordinator", PASSWORD)
    with TestClient(app) as client:
        for n in range(5):
            login(client, f"guess{n}", "wrong password")
        assert login(client, "c").status_code == 429


def test_a_successful_login_clears_the_users_failures(engine: Engine) -> None:
    app = create_app(engine)
    app.state.accounts.add_user("c", "coordinator", PASSWORD)
    with TestClient(app) as client:
        for _ in range(4):
            login(client, "c", "wrong password")
        assert login(client, "c").status_code == 303
        client.cookies.clear()
        for _ in range(4):
            login(client, "c", "wrong password")
        assert login(client, "c").status_code == 303


# -- headers ---------------------------------------------------------------------------------------------


def test_pages_carry_a_csp_without_inline_script(client: TestClient) -> None:
    for response in (client.get("/login"), client.get("/static/app.css"), client.get("/api/v1/pathway")):
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["referrer-policy"] == "same-origin"
    login(client)
    page = client.get("/")
    assert "content-security-policy" in page.headers
    assert "<script>" not in page.text and " style=" not in page.text and " onclick=" not in page.text


# -- the accounts CLI ------------------------------------------------------------------------------------


def test_cli_adds_users_lists_them_and_manages_tokens(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("PATHWAY_DB", sqlite_url)
    monkeypatch.setenv("PATHWAY_PASSWORD", PASSWORD)
    result = runner.invoke(main, ["user", "add", "alice", "--role", "coordinator"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    again = runner.invoke(main, ["user", "add", "alice", "--role", "viewer"], catch_exceptions=False)
    assert again.exit_code == 2 and "already exists" in again.output
    cased = runner.invoke(main, ["user", "add", "Alice", "--role", "viewer"], catch_exceptions=False)
    assert cased.exit_code == 2 and "user alice already exists" in cased.output  # one person, one audit name
    listing = runner.invoke(main, ["user", "list", "--json"], catch_exceptions=False)
    assert '"name": "alice"' in listing.stdout and '"role": "coordinator"' in listing.stdout
    created = runner.invoke(main, ["token", "create", "alice", "--label", "emr"], catch_exceptions=False)
    assert created.exit_code == 0
    secret = created.stdout.strip()
    assert secret.startswith("pwt_")
    engine = Engine.open(sqlite_url)
    with engine:
        accounts = Accounts(engine.repository.engine, engine.clock)
        assert accounts.token_user(secret).name == "alice"  # type: ignore[union-attr]
        token_id = accounts.tokens()[0].id
    assert "pwt_" not in runner.invoke(main, ["token", "list"], catch_exceptions=False).stdout
    revoked = runner.invoke(main, ["token", "revoke", str(token_id)], catch_exceptions=False)
    assert revoked.exit_code == 0
    assert runner.invoke(main, ["token", "revoke", str(token_id)], catch_exceptions=False).exit_code == 1
    with Engine.open(sqlite_url) as engine:
        assert Accounts(engine.repository.engine, engine.clock).token_user(secret) is None
    missing = runner.invoke(main, ["token", "create", "bob"], catch_exceptions=False)
    assert missing.exit_code == 2 and "no user bob" in missing.output


def test_cli_refuses_short_passwords_and_asks_twice(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    monkeypatch.setenv("PATHWAY_DB", sqlite_url)
    monkeypatch.delenv("PATHWAY_PASSWORD", raising=False)
    short = runner.invoke(main, ["user", "add", "bob", "--role", "viewer"], input="short\nshort\n",
                          catch_exceptions=False)
    assert short.exit_code == 2 and "too short: at least 10 characters" in short.output
    mismatch = runner.invoke(main, ["user", "add", "bob", "--role", "viewer"],
                             input="first password1\nsecond password\nfirst password1\nfirst password1\n",
                             catch_exceptions=False)
    assert mismatch.exit_code == 0 and "do not match" in mismatch.output.lower()
    assert "first password1" not in mismatch.output  # hidden input
    monkeypatch.setenv("PATHWAY_PASSWORD", "tiny")
    env_short = runner.invoke(main, ["user", "add", "carol", "--role", "viewer"], catch_exceptions=False)
    assert env_short.exit_code == 2



# -- caching, request bodies, proxies -------------------------------------------------------------------


def test_every_response_but_static_files_is_no_store(client: TestClient, any_engine: Engine) -> None:
    assert client.get("/", follow_redirects=False).headers["cache-control"] == "no-store"
    login(client)
    csrf = csrf_of(client.get("/").text)
    client.post("/api/v1/events", json=event(any_engine), headers={"X-CSRF-Token": csrf})
    for path in ("/", "/patients/P1", "/login", "/nowhere"):
        response = client.get(path)
        assert response.headers["cache-control"] == "no-store", path
    assert client.get("/patients/P1").status_code == 200
    assert "no-store" not in client.get("/static/app.css").headers.get("cache-control", "")


def test_oversized_bodies_are_413_before_any_parsing(app: Any, client: TestClient, any_engine: Engine) -> None:
    page = client.get("/login")
    data = {"name": "coordinator", "password": "x" * (1024 * 1024 + 10), "csrf": csrf_of(page.text)}
    response = client.post("/login", data=data, follow_redirects=False)
    assert response.status_code == 413
    assert "content-security-policy" in response.headers
    headers = {**token(app, "coordinator"), "Content-Type": "application/json"}
    response = client.post("/api/v1/events", content=b"[" + b" " * (10 * 1024 * 1024) + b"]", headers=headers)
    assert response.status_code == 413
    assert client.post("/api/v1/events", content=b"[" + b" " * (2 * 1024 * 1024) + b"]",
                       headers=headers).status_code == 200  # the API allows more than the pages
    assert login(client).status_code == 303  # nothing was counted against the user


def test_multipart_posts_to_pages_are_415(client: TestClient) -> None:
    login(client)
    csrf = csrf_of(client.get("/").text)
    response = client.post("/logout", data={"csrf": csrf}, files={"f": ("a.txt", b"hello")},
                           follow_redirects=False)
    assert response.status_code == 415
    assert client.get("/api/v1/patients").status_code == 200  # the form was never read: still logged in


def test_serve_trusts_forwarded_headers_only_from_the_given_proxies(sqlite_url: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: calls.append(kwargs))
    runner = CliRunner()
    for args in (["--behind-proxy"], ["--behind-proxy", "--forwarded-allow-ips", "10.0.0.5,10.0.0.6"], []):
        result = runner.invoke(main, ["serve", "--db", sqlite_url, "--no-scheduler", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
    assert [(c["proxy_headers"], c["forwarded_allow_ips"]) for c in calls] == [
        (True, "127.0.0.1"), (True, "10.0.0.5,10.0.0.6"), (False, None)]

