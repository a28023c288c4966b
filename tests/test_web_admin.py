"""User management for admins in the web app: /admin/users (roles, disabling, passwords, API tokens)."""

from __future__ import annotations

import hashlib
import html
import logging
import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from pathway.web.security import SESSION_COOKIE
from tests.conftest import WEB_PASSWORD, csrf_of

PASSWORD = WEB_PASSWORD
NEW_PASSWORD = "a brand new passphrase"





def login(client: TestClient, name: str = "admin", password: str = PASSWORD) -> Any:
    client.cookies.clear()
    page = client.get("/login")
    return client.post("/login", data={"name": name, "password": password, "csrf": csrf_of(page.text)},
                       follow_redirects=False)


def admin_post(client: TestClient, path: str, data: dict[str, str]) -> Any:
    """A POST of an admin form with the session's CSRF token (taken from the users page)."""
    csrf = csrf_of(client.get("/admin/users").text)
    return client.post(path, data={**data, "csrf": csrf}, follow_redirects=False)


@pytest.fixture
def admin(client: TestClient) -> TestClient:
    assert login(client).status_code == 303
    return client


def alert(text: str) -> str:
    match = re.search(r'role="alert">(.*?)</p>', text, re.S)
    return html.unescape(match.group(1)) if match else ""


# -- listing, navigation ---------------------------------------------------------------------------------


def test_admin_sees_users_and_tokens_but_never_a_secret(app: Any, admin: TestClient) -> None:
    token_id, secret = app.state.accounts.create_token("coordinator", "emr")
    page = admin.get("/admin/users")
    assert page.status_code == 200
    for name in ("viewer", "coordinator", "admin"):
        assert f'data-user="{name}"' in page.text
    assert f'data-token="{token_id}"' in page.text and "emr" in page.text
    assert secret not in page.text
    assert hashlib.sha256(secret.encode()).hexdigest() not in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "style=" not in page.text and "<script>" not in page.text  # CSP: no inline style or script
    assert 'href="/admin/users"' in admin.get("/").text  # the nav link


@pytest.mark.parametrize("role", ["viewer", "coordinator"])
def test_others_get_403_on_every_admin_route_and_no_nav_link(app: Any, client: TestClient, role: str) -> None:
    assert login(client, role).status_code == 303
    home = client.get("/")
    assert 'href="/admin/users"' not in home.text
    csrf = csrf_of(home.text)
    assert client.get("/admin/users").status_code == 403
    posts = {"/admin/users/add": {"name": "mallory", "role": "admin", "password": NEW_PASSWORD},
             "/admin/users/role": {"name": role, "role": "admin"},
             "/admin/users/disable": {"name": "admin"},
             "/admin/users/enable": {"name": "admin"},
             "/admin/users/password": {"name": "admin", "password": NEW_PASSWORD},
             "/admin/users/token": {"name": "admin"},
             "/admin/users/unlock": {"name": role},
             "/admin/tokens/revoke": {"token_id": "1"}}
    for path, data in posts.items():
        assert client.post(path, data={**data, "csrf": csrf}, follow_redirects=False).status_code == 403, path
    assert app.state.accounts.user("mallory") is None
    assert app.state.accounts.user(role).role == role
    assert app.state.accounts.tokens() == []


def test_anonymous_is_sent_to_the_login(client: TestClient) -> None:
    response = client.get("/admin/users", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/login?next=/admin/users"


def test_posts_without_or_with_a_wrong_csrf_token_are_403(app: Any, admin: TestClient) -> None:
    data = {"name": "eve", "role": "viewer", "password": NEW_PASSWORD}
    assert admin.post("/admin/users/add", data=data).status_code == 403
    assert admin.post("/admin/users/add", data={**data, "csrf": "forged"}).status_code == 403
    assert admin.post("/admin/users/disable", data={"name": "viewer"}).status_code == 403
    assert app.state.accounts.user("eve") is None
    assert not app.state.accounts.user("viewer").disabled


# -- the actions -------------------------------------------------------------------------------------


def test_admin_adds_a_user_who_can_log_in(app: Any, admin: TestClient) -> None:
    response = admin_post(admin, "/admin/users/add", {"name": "alice", "role": "coordinator", "password": NEW_PASSWORD})
    assert response.status_code == 200 and "User alice added (coordinator)" in response.text
    assert 'data-user="alice"' in response.text
    assert app.state.accounts.user("alice").role == "coordinator"
    assert login(admin, "alice", NEW_PASSWORD).status_code == 303


def test_adding_refuses_what_the_cli_refuses(app: Any, admin: TestClient) -> None:
    weak = admin_post(admin, "/admin/users/add", {"name": "bob", "role": "viewer", "password": "short"})
    assert weak.status_code == 400
    assert alert(weak.text) == "the password is too short: at least 10 characters"
    assert 'value="bob"' in weak.text and "short" not in re.findall(r'name="password"[^>]*', weak.text)[0]
    assert app.state.accounts.user("bob") is None
    taken = admin_post(admin, "/admin/users/add", {"name": "viewer", "role": "viewer", "password": NEW_PASSWORD})
    assert taken.status_code == 400 and alert(taken.text) == "user viewer already exists"
    bad_role = admin_post(admin, "/admin/users/add", {"name": "bob", "role": "root", "password": NEW_PASSWORD})
    assert bad_role.status_code == 400 and "role must be one of" in alert(bad_role.text)
    spaced = admin_post(admin, "/admin/users/add", {"name": "b o b", "role": "viewer", "password": NEW_PASSWORD})
    assert spaced.status_code == 400 and "without spaces" in alert(spaced.text)
    assert app.state.accounts.user("bob") is None


def test_admin_changes_a_role_and_it_applies_at_once(app: Any, admin: TestClient) -> None:
    with TestClient(app) as viewer:
        assert login(viewer, "viewer").status_code == 303
        assert viewer.get("/admin/users").status_code == 403
        response = admin_post(admin, "/admin/users/role", {"name": "viewer", "role": "admin"})
        assert response.status_code == 200 and "viewer is now admin" in response.text
        assert viewer.get("/admin/users").status_code == 200  # the same session, the new role
    assert app.state.accounts.user("viewer").role == "admin"
    unknown = admin_post(admin, "/admin/users/role", {"name": "nobody", "role": "viewer"})
    assert unknown.status_code == 400 and alert(unknown.text) == "no user nobody"
    bad = admin_post(admin, "/admin/users/role", {"name": "viewer", "role": "root"})
    assert bad.status_code == 400 and app.state.accounts.user("viewer").role == "admin"


def test_disabling_ends_the_users_sessions_and_tokens_and_enabling_restores_login(app: Any, admin: TestClient) -> None:
    _, secret = app.state.accounts.create_token("coordinator")
    bearer = {"Authorization": f"Bearer {secret}"}
    with TestClient(app) as coordinator:
        assert login(coordinator, "coordinator").status_code == 303
        assert coordinator.get("/").status_code == 200
        response = admin_post(admin, "/admin/users/disable", {"name": "coordinator"})
        assert response.status_code == 200 and "User coordinator disabled" in response.text
        assert coordinator.get("/", follow_redirects=False).status_code == 303  # back to the login
        assert coordinator.get("/api/v1/patients").status_code == 401
        assert coordinator.get("/api/v1/patients", headers=bearer).status_code == 401
        assert login(coordinator, "coordinator").status_code == 400
        assert admin_post(admin, "/admin/users/enable", {"name": "coordinator"}).status_code == 200
        assert login(coordinator, "coordinator").status_code == 303
        assert coordinator.get("/api/v1/patients", headers=bearer).status_code == 200


def test_an_admin_cannot_disable_or_demote_themselves(app: Any, admin: TestClient) -> None:
    disable = admin_post(admin, "/admin/users/disable", {"name": "admin"})
    assert disable.status_code == 400 and alert(disable.text) == "You cannot disable yourself: ask another admin to do it."
    demote = admin_post(admin, "/admin/users/role", {"name": "admin", "role": "coordinator"})
    assert demote.status_code == 400
    assert alert(demote.text) == "You cannot remove your own admin role: ask another admin to do it."
    account = app.state.accounts.user("admin")
    assert account.role == "admin" and not account.disabled
    assert admin.get("/admin/users").status_code == 200  # still logged in, still admin


def test_admin_resets_a_password(app: Any, admin: TestClient) -> None:
    with TestClient(app) as viewer:
        assert login(viewer, "viewer").status_code == 303
        response = admin_post(admin, "/admin/users/password", {"name": "viewer", "password": NEW_PASSWORD})
        assert response.status_code == 200 and "Password of viewer changed" in response.text
        assert viewer.get("/", follow_redirects=False).status_code == 303  # its sessions ended
        assert login(viewer, "viewer", PASSWORD).status_code == 400
        assert login(viewer, "viewer", NEW_PASSWORD).status_code == 303
    weak = admin_post(admin, "/admin/users/password", {"name": "viewer", "password": "2short"})
    assert weak.status_code == 400 and alert(weak.text) == "the password is too short: at least 10 characters"
    unknown = admin_post(admin, "/admin/users/password", {"name": "nobody", "password": NEW_PASSWORD})
    assert unknown.status_code == 400 and alert(unknown.text) == "no user nobody"


def test_admin_creates_a_token_shown_once_and_stored_hashed(app: Any, admin: TestClient) -> None:
    response = admin_post(admin, "/admin/users/token", {"name": "coordinator", "label": "emr feed"})
    assert response.status_code == 200
    secret = re.search(r'class="secret" id="new-token-secret">([^<]+)<', response.text).group(1)
    assert secret.startswith("pwt_")
    assert hashlib.sha256(secret.encode()).hexdigest() in app.state.accounts.stored_token_hashes()
    assert secret not in admin.get("/admin/users").text  # shown once
    [info] = app.state.accounts.tokens()
    assert (info.user, info.name) == ("coordinator", "emr feed")
    with TestClient(app) as api:
        assert api.get("/api/v1/patients", headers={"Authorization": f"Bearer {secret}"}).status_code == 200
    unknown = admin_post(admin, "/admin/users/token", {"name": "nobody"})
    assert unknown.status_code == 400 and "no user nobody" in alert(unknown.text)


def test_admin_revokes_a_token(app: Any, admin: TestClient) -> None:
    token_id, secret = app.state.accounts.create_token("viewer", "script")
    bearer = {"Authorization": f"Bearer {secret}"}
    with TestClient(app) as api:
        assert api.get("/api/v1/patients", headers=bearer).status_code == 200
        response = admin_post(admin, "/admin/tokens/revoke", {"token_id": str(token_id)})
        assert response.status_code == 200 and f"Token {token_id} revoked" in response.text
        assert api.get("/api/v1/patients", headers=bearer).status_code == 401
    assert app.state.accounts.tokens()[0].revoked_at is not None
    again = admin_post(admin, "/admin/tokens/revoke", {"token_id": str(token_id)})
    assert again.status_code == 404 and alert(again.text) == f"No active token {token_id}."
    assert admin_post(admin, "/admin/tokens/revoke", {"token_id": "x1"}).status_code == 404
    assert admin_post(admin, "/admin/tokens/revoke", {"token_id": "9" * 40}).status_code == 404


def locked_out(app: Any, name: str = "coordinator") -> TestClient:
    """A browser at another address from which `name` failed to log in 5 times: its logins wait."""
    client = TestClient(app, client=("10.1.1.1", 50000))
    for _ in range(5):
        assert login(client, name, "wrong password").status_code == 400
    assert login(client, name).status_code == 429
    return client


def test_admin_unlocks_a_user_whose_logins_wait(app: Any, admin: TestClient) -> None:
    with locked_out(app) as coordinator:
        assert "5 failed logins in 15 min" in admin.get("/admin/users").text
        response = admin_post(admin, "/admin/users/unlock", {"name": "coordinator"})
        assert response.status_code == 200
        assert "Logins of coordinator unlocked (5 failed logins forgotten)." in response.text
        assert 'class="failures"' not in response.text
        assert login(coordinator, "coordinator").status_code == 303


def test_unlocking_an_unknown_user_is_refused(admin: TestClient) -> None:
    response = admin_post(admin, "/admin/users/unlock", {"name": "nobody"})
    assert response.status_code == 400 and alert(response.text) == "no user nobody"


def test_unlock_needs_the_csrf_token_and_the_admin_role(app: Any, admin: TestClient) -> None:
    with locked_out(app) as coordinator:
        assert admin.post("/admin/users/unlock", data={"name": "coordinator"}).status_code == 403
        assert admin.post("/admin/users/unlock", data={"name": "coordinator", "csrf": "forged"}).status_code == 403
        with TestClient(app) as viewer:
            assert login(viewer, "viewer").status_code == 303
            csrf = csrf_of(viewer.get("/").text)
            assert viewer.post("/admin/users/unlock", data={"name": "coordinator", "csrf": csrf}).status_code == 403
        assert login(coordinator, "coordinator").status_code == 429  # still waiting


def test_actions_are_logged_without_passwords_or_token_secrets(app: Any, admin: TestClient,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        admin_post(admin, "/admin/users/add", {"name": "carol", "role": "viewer", "password": NEW_PASSWORD})
        admin_post(admin, "/admin/users/add", {"name": "dave", "role": "viewer", "password": "weakling"})
        admin_post(admin, "/admin/users/password", {"name": "carol", "password": "another passphrase"})
        created = admin_post(admin, "/admin/users/token", {"name": "carol"})
        admin_post(admin, "/admin/users/unlock", {"name": "carol"})
    secret = re.search(r'id="new-token-secret">([^<]+)<', created.text).group(1)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "admin admin added user carol (viewer)" in logged
    assert "admin admin reset the password of carol" in logged
    assert "created API token" in logged
    assert "admin admin unlocked the logins of carol" in logged
    for secret_text in (NEW_PASSWORD, "weakling", "another passphrase", secret, PASSWORD):
        assert secret_text not in logged
    assert SESSION_COOKIE not in logged
