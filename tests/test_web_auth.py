"""Authentication and its protections: sessions, roles, tokens, CSRF, throttling, headers, accounts CLI."""

from __future__ import annotations

import hashlib
import html
import re
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from pathway import Engine, ManualClock
from pathway.cli import main
from pathway.web import create_app
from pathway.web.security import DEVICE_COOKIE, LOGIN_CSRF_COOKIE, SESSION_COOKIE, User
from persistence.accounts import Accounts
from persistence.tables import known_device_table, user_table
from tests.conftest import WEB_PASSWORD, csrf_of

PASSWORD = WEB_PASSWORD

API_GETS = ["/api/v1/patients", "/api/v1/patients/P1", "/api/v1/worklist", "/api/v1/pathway", "/api/v1/openapi.json"]




@pytest.fixture
def engine(sqlite_engine: Engine) -> Engine:
    """The web app keeps its accounts in the database: SQLite (or `any_engine`), never the twin."""
    return sqlite_engine


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
        assert any(c.startswith(DEVICE_COOKIE + "=") for c in response.headers.get_list("set-cookie"))


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


# -- throttling (issue 8: guessing stays bounded, lockout is not a denial of service) -------------------


def browser(app: Any, address: str, **kwargs: Any) -> TestClient:
    """A browser at client address `address`."""
    return TestClient(app, client=(address, 50000), **kwargs)


def fail(client: TestClient, name: str, times: int) -> list[int]:
    return [login(client, name, "wrong password").status_code for _ in range(times)]


def known_browser(app: Any, address: str, name: str = "coordinator") -> TestClient:
    """A browser on which `name` has logged in (it keeps the device cookie, not the session)."""
    client = browser(app, address)
    assert login(client, name).status_code == 303
    client.cookies.delete(SESSION_COOKIE)
    return client


def alert(text: str) -> str:
    match = re.search(r'role="alert">(.*?)</p>', text, re.S)
    return html.unescape(match.group(1)) if match else ""


def test_a_users_wrong_passwords_do_not_lock_out_another_user_at_the_same_address(app: Any) -> None:
    """A ward PC, or a hospital NAT: one address, many people."""
    with browser(app, "10.1.1.1") as ward_pc:
        assert fail(ward_pc, "viewer", 5) == [400] * 5
        assert login(ward_pc, "coordinator").status_code == 303


def test_an_attacker_elsewhere_does_not_lock_a_user_out(app: Any) -> None:
    with browser(app, "203.0.113.7") as attacker:
        assert fail(attacker, "coordinator", 10) == [400] * 5 + [429] * 5
    with browser(app, "10.1.1.1") as new_browser:
        assert login(new_browser, "coordinator").status_code == 303


def test_the_sixth_login_for_a_name_from_one_unknown_browser_waits_even_with_the_right_password(
        app: Any, clock: ManualClock) -> None:
    with TestClient(app) as client:
        assert fail(client, "coordinator", 5) == [400] * 5
        response = login(client, "coordinator")
        assert response.status_code == 429 and "try again in 15 minutes" in response.text
        clock.advance(minutes=10)
        assert "try again in 5 minutes" in login(client, "coordinator").text
        clock.advance(minutes=5, seconds=1)
        assert login(client, "coordinator").status_code == 303


def test_guessing_one_name_from_many_addresses_stops_at_twenty_failures(app: Any) -> None:
    for n in range(4):
        with browser(app, f"203.0.113.{n}") as attacker:
            assert fail(attacker, "coordinator", 5) == [400] * 5
    with browser(app, "203.0.113.99") as attacker:
        assert fail(attacker, "coordinator", 1) == [429]
    with browser(app, "10.1.1.1") as new_browser:  # the user's new browsers wait too (README)
        assert login(new_browser, "coordinator").status_code == 429


def test_a_known_browser_logs_in_while_its_name_is_throttled_everywhere_else(app: Any) -> None:
    with known_browser(app, "10.1.1.1") as own:
        for n in range(4):
            with browser(app, f"203.0.113.{n}") as attacker:
                fail(attacker, "coordinator", 5)
        with browser(app, "10.1.1.1") as new_browser:
            assert login(new_browser, "coordinator").status_code == 429
        assert login(own, "coordinator").status_code == 303


def test_guessing_across_names_from_one_address_stops_at_fifty_failures(app: Any) -> None:
    with browser(app, "192.0.2.1") as sprayer:
        assert [login(sprayer, f"name{n}", "wrong password").status_code for n in range(50)] == [400] * 50
        assert login(sprayer, "coordinator").status_code == 429
    with browser(app, "192.0.2.1") as colleague:  # a new browser behind the same NAT
        assert login(colleague, "viewer").status_code == 429


def test_a_known_browser_behind_a_throttled_address_logs_in(app: Any) -> None:
    with known_browser(app, "192.0.2.1") as own, browser(app, "192.0.2.1") as sprayer:
        for n in range(50):
            login(sprayer, f"name{n}", "wrong password")
        assert login(sprayer, "viewer").status_code == 429
        assert login(own, "coordinator").status_code == 303


def test_a_known_browser_waits_after_ten_failures_of_its_own(app: Any) -> None:
    with known_browser(app, "10.1.1.1") as own:
        assert fail(own, "coordinator", 10) == [400] * 10
        response = login(own, "coordinator")
        assert response.status_code == 429 and "try again in 15 minutes" in response.text


def test_failures_on_a_known_browser_count_against_that_browser_only(app: Any) -> None:
    with known_browser(app, "10.1.1.1") as own:
        fail(own, "coordinator", 10)
    with browser(app, "10.1.1.1") as new_browser:
        assert login(new_browser, "coordinator").status_code == 303


def test_the_throttled_answer_does_not_tell_whether_the_name_exists(app: Any) -> None:
    answers = []
    for address, name in (("203.0.113.1", "coordinator"), ("203.0.113.2", "nobody")):
        with browser(app, address) as attacker:
            fail(attacker, name, 5)
            response = login(attacker, name, "wrong password")
            answers.append((response.status_code, alert(response.text)))
    assert answers[0] == answers[1]
    assert answers[0] == (429, "Too many failed logins: try again in 15 minutes, or ask an administrator "
                               "to unlock the logins.")


def test_a_successful_login_clears_the_failures_of_its_browser_or_address(app: Any) -> None:
    with browser(app, "10.1.1.1") as client:
        fail(client, "coordinator", 4)
        assert login(client, "coordinator").status_code == 303
        client.cookies.clear()
        fail(client, "coordinator", 4)
        assert login(client, "coordinator").status_code == 303


def test_a_successful_login_does_not_clear_an_attackers_failures(app: Any) -> None:
    """Else a user's every login would give distributed guessing of their name a fresh allowance."""
    with known_browser(app, "10.1.1.1") as own:
        for n in range(4):
            with browser(app, f"203.0.113.{n}") as attacker:
                fail(attacker, "coordinator", 5)
        assert login(own, "coordinator").status_code == 303
    with browser(app, "203.0.113.99") as attacker:
        assert fail(attacker, "coordinator", 1) == [429]


def test_login_sets_a_random_httponly_strict_device_cookie_for_a_year_stored_only_hashed(app: Any) -> None:
    secrets = []
    for _ in range(2):
        with TestClient(app) as client:
            response = login(client)
            cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(DEVICE_COOKIE + "="))
            assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
            assert "Max-Age=31536000" in cookie and "Path=/" in cookie
            secrets.append(client.cookies[DEVICE_COOKIE])
    assert secrets[0] != secrets[1] and len(secrets[0]) >= 40
    with app.state.accounts.engine.connect() as conn:
        stored = set(conn.execute(sa.select(known_device_table.c.device_hash)).scalars())
    assert stored == {hashlib.sha256(s.encode()).hexdigest() for s in secrets}


def test_one_browser_is_known_for_each_user_who_logs_in_on_it(app: Any) -> None:
    """A shared ward PC keeps one device cookie for all its users."""
    with browser(app, "10.1.1.1") as ward_pc:
        assert login(ward_pc, "viewer").status_code == 303
        device = ward_pc.cookies[DEVICE_COOKIE]
        ward_pc.cookies.delete(SESSION_COOKIE)
        assert login(ward_pc, "coordinator").status_code == 303
        assert ward_pc.cookies[DEVICE_COOKIE] == device
    with app.state.accounts.engine.connect() as conn:
        users = conn.execute(sa.select(user_table.c.name).join(known_device_table)
                             .where(known_device_table.c.device_hash == hashlib.sha256(device.encode()).hexdigest())
                             ).scalars()
        assert sorted(users) == ["coordinator", "viewer"]


def test_a_device_cookie_not_issued_here_counts_as_an_unknown_browser(app: Any) -> None:
    with browser(app, "10.1.1.1", cookies={DEVICE_COOKIE: "made up by the client"}) as client:
        assert fail(client, "coordinator", 6) == [400] * 5 + [429]


def test_a_device_cookie_not_issued_here_is_replaced_at_login(app: Any) -> None:
    with browser(app, "10.1.1.1", cookies={DEVICE_COOKIE: "made up by the client"}) as client:
        response = login(client)
        assert response.status_code == 303
        cookie = next(c for c in response.headers.get_list("set-cookie") if c.startswith(DEVICE_COOKIE + "="))
        assert not cookie.startswith(f'{DEVICE_COOKIE}="made up by the client"')
        assert len(cookie.split(";")[0]) > len(DEVICE_COOKIE) + 40


def wrong_logins_in_parallel(app: Any, cookies: dict[str, str], monkeypatch: pytest.MonkeyPatch,
                             attempts: int = 30) -> tuple[int, list[int]]:
    """`attempts` wrong logins for coordinator at once, from browsers with `cookies`: (how many
    passwords were checked, the status codes)."""
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
    with TestClient(app, cookies=cookies) as client:
        page = client.get("/login")
        cookies = dict(client.cookies)
        data = {"name": "coordinator", "password": "wrong password", "csrf": csrf_of(page.text)}

    def attempt(_: int) -> int:
        with TestClient(app, cookies=cookies) as other:
            return other.post("/login", data=data, follow_redirects=False).status_code

    with ThreadPoolExecutor(attempts) as pool:
        codes = list(pool.map(attempt, range(attempts)))
    return SlowCountingHasher.checks, codes


def test_parallel_wrong_logins_check_at_most_five_passwords(app: Any, any_engine: Engine,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    checks, codes = wrong_logins_in_parallel(app, {}, monkeypatch)
    assert checks <= 5, (checks, codes)
    assert sum(code != 429 for code in codes) <= 5 and set(codes) <= {400, 429}
    with TestClient(app) as client:
        assert login(client).status_code == 429  # the right password waits too


def test_parallel_wrong_logins_on_a_known_browser_check_at_most_ten_passwords(
        app: Any, any_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with known_browser(app, "testclient") as own:
        device = {DEVICE_COOKIE: own.cookies[DEVICE_COOKIE]}
    checks, codes = wrong_logins_in_parallel(app, device, monkeypatch)
    assert checks <= 10, (checks, codes)
    assert sum(code != 429 for code in codes) <= 10 and set(codes) <= {400, 429}
    with TestClient(app, cookies=device) as client:
        assert login(client).status_code == 429


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



def test_cli_unlock_forgets_the_failed_logins_of_a_user_on_every_browser_and_address(
        sqlite_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    import logging

    monkeypatch.setenv("PATHWAY_DB", sqlite_url)
    with Engine.open(sqlite_url, clock=clock) as engine:
        accounts = Accounts(engine.repository.engine, engine.clock)
        alice = accounts.add_user("alice", "coordinator", PASSWORD)
        device = accounts.remember_device(alice, None)
        for _ in range(10):
            accounts.begin_attempt("alice", "10.1.1.1", device)
        for _ in range(5):
            accounts.begin_attempt("alice", "203.0.113.7")
        assert accounts.throttled("alice", "10.1.1.1", device) and accounts.throttled("alice", "203.0.113.7")
        with caplog.at_level(logging.INFO, logger="pathway.cli"):
            result = CliRunner().invoke(main, ["user", "unlock", "alice"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.stdout == "unlocked the logins of alice: 15 failed logins forgotten\n"
        assert accounts.throttled("alice", "10.1.1.1", device) is None
        assert accounts.throttled("alice", "203.0.113.7") is None
    assert "unlocked the logins of alice (command line)" in caplog.text


def test_cli_unlock_of_an_unknown_user_exits_1(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWAY_DB", sqlite_url)
    result = CliRunner().invoke(main, ["user", "unlock", "nobody"], catch_exceptions=False)
    assert result.exit_code == 1 and "no user nobody" in result.output


def test_cli_unlock_by_address_forgets_the_failed_logins_from_that_address_only(
        sqlite_url: str, clock: ManualClock, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATHWAY_DB", sqlite_url)
    with Engine.open(sqlite_url, clock=clock) as engine:
        accounts = Accounts(engine.repository.engine, engine.clock)
        for address in ("192.0.2.1", "203.0.113.7"):
            for n in range(50):
                accounts.begin_attempt(f"name{n}", address)
        result = CliRunner().invoke(main, ["user", "unlock", "--address", "192.0.2.1"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        assert result.stdout == "unlocked the logins from 192.0.2.1: 50 failed logins forgotten\n"
        assert accounts.throttled("alice", "192.0.2.1") is None
        assert accounts.throttled("alice", "203.0.113.7") is not None


@pytest.mark.parametrize("args", [[], ["alice", "--address", "192.0.2.1"]])
def test_cli_unlock_needs_a_name_or_an_address(sqlite_url: str, monkeypatch: pytest.MonkeyPatch,
                                               args: list[str]) -> None:
    monkeypatch.setenv("PATHWAY_DB", sqlite_url)
    result = CliRunner().invoke(main, ["user", "unlock", *args], catch_exceptions=False)
    assert result.exit_code == 2 and "give a user NAME or --address IP" in result.output


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

