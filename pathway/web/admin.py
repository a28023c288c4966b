"""User management for admins: /admin/users (the web counterpart of `pathway user` and `pathway token`).

Every route needs the admin role (others: 403; anonymous: redirect to /login) and every POST the
CSRF token. The rules are those of the CLI: they live in persistence/accounts.py (`Accounts`,
`AccountError`), not here. An admin cannot disable or demote themselves. A new API token is shown
once, on the page that answers its creation. Unlock forgets a user's failed logins (as `pathway
user unlock NAME`). Passwords and token secrets are never logged.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response

from pathway.web.security import User, accounts, require_page_role, verify_csrf
from pathway.web.templating import templates
from persistence.accounts import FAILURE_WINDOW, MIN_PASSWORD, NAME_MAX, ROLES, AccountError

log = logging.getLogger("pathway.web.admin")

router = APIRouter(prefix="/admin")
admin_only = require_page_role("admin")


def _page(request: Request, *, message: str = "", error: str = "", new_token: dict[str, Any] | None = None,
          add_values: dict[str, str] | None = None, status_code: int = 200) -> Response:
    store = accounts(request)
    users = store.users()
    tokens = store.tokens()
    context = {
        "users": users,
        "failures": store.recent_failures(),
        "failure_minutes": int(FAILURE_WINDOW.total_seconds()) // 60,
        "tokens_by_user": {u.name: [t for t in tokens if t.user == u.name] for u in users},
        "roles": ROLES,
        "min_password": MIN_PASSWORD,
        "name_max": NAME_MAX,
        "message": message,
        "error": error,
        "new_token": new_token,
        "add_values": add_values or {},
    }
    response = templates.TemplateResponse(request, "admin_users.html", context, status_code=status_code)
    response.headers["cache-control"] = "no-store"
    return response


def _refused(request: Request, error: str, status_code: int = 400, **kwargs: Any) -> Response:
    return _page(request, error=error, status_code=status_code, **kwargs)


@router.get("/users")
def users_page(request: Request, _admin: User = Depends(admin_only)) -> Response:
    return _page(request)


@router.post("/users/add", dependencies=[Depends(verify_csrf)])
def add_user(request: Request, admin: User = Depends(admin_only), name: str = Form(""), role: str = Form(""),
             password: str = Form("")) -> Response:
    try:
        account = accounts(request).add_user(name, role, password)
    except AccountError as exc:
        return _refused(request, str(exc), add_values={"name": name[:NAME_MAX], "role": role})
    log.info("admin %s added user %s (%s)", admin.name, account.name, account.role)
    return _page(request, message=f"User {account.name} added ({account.role}).")


@router.post("/users/role", dependencies=[Depends(verify_csrf)])
def change_role(request: Request, admin: User = Depends(admin_only), name: str = Form(""),
                role: str = Form("")) -> Response:
    if name == admin.name and role != "admin":
        return _refused(request, "You cannot remove your own admin role: ask another admin to do it.")
    try:
        accounts(request).set_role(name, role)
    except AccountError as exc:
        return _refused(request, str(exc))
    log.info("admin %s set the role of %s to %s", admin.name, name, role)
    return _page(request, message=f"{name} is now {role}.")


def _set_disabled(request: Request, admin: User, name: str, disabled: bool) -> Response:
    if disabled and name == admin.name:
        return _refused(request, "You cannot disable yourself: ask another admin to do it.")
    try:
        accounts(request).set_disabled(name, disabled)
    except AccountError as exc:
        return _refused(request, str(exc))
    word = "disabled" if disabled else "enabled"
    log.info("admin %s %s user %s", admin.name, word, name)
    ended = " Their sessions were ended; their API tokens stop working." if disabled else ""
    return _page(request, message=f"User {name} {word}.{ended}")


@router.post("/users/disable", dependencies=[Depends(verify_csrf)])
def disable_user(request: Request, admin: User = Depends(admin_only), name: str = Form("")) -> Response:
    return _set_disabled(request, admin, name, True)


@router.post("/users/enable", dependencies=[Depends(verify_csrf)])
def enable_user(request: Request, admin: User = Depends(admin_only), name: str = Form("")) -> Response:
    return _set_disabled(request, admin, name, False)


@router.post("/users/password", dependencies=[Depends(verify_csrf)])
def reset_password(request: Request, admin: User = Depends(admin_only), name: str = Form(""),
                   password: str = Form("")) -> Response:
    try:
        accounts(request).set_password(name, password)
    except AccountError as exc:
        return _refused(request, str(exc))
    log.info("admin %s reset the password of %s", admin.name, name)
    return _page(request, message=f"Password of {name} changed; their sessions were ended.")


@router.post("/users/unlock", dependencies=[Depends(verify_csrf)])
def unlock_user(request: Request, admin: User = Depends(admin_only), name: str = Form("")) -> Response:
    try:
        forgotten = accounts(request).unlock_user(name)
    except AccountError as exc:
        return _refused(request, str(exc))
    log.info("admin %s unlocked the logins of %s", admin.name, name)
    return _page(request, message=f"Logins of {name} unlocked ({forgotten} failed login"
                                  f"{'' if forgotten == 1 else 's'} forgotten).")


@router.post("/users/token", dependencies=[Depends(verify_csrf)])
def create_token(request: Request, admin: User = Depends(admin_only), name: str = Form(""),
                 label: str = Form("")) -> Response:
    try:
        token_id, secret = accounts(request).create_token(name, label.strip())
    except AccountError as exc:
        return _refused(request, str(exc))
    log.info("admin %s created API token %s for %s", admin.name, token_id, name)
    return _page(request, message=f"Token {token_id} created for {name}.",
                 new_token={"id": token_id, "user": name, "secret": secret})


@router.post("/tokens/revoke", dependencies=[Depends(verify_csrf)])
def revoke_token(request: Request, admin: User = Depends(admin_only), token_id: str = Form("")) -> Response:
    if not token_id.isdigit() or len(token_id) > 18 or not accounts(request).revoke_token(int(token_id)):
        return _refused(request, f"No active token {token_id[:20]}.", status_code=404)
    log.info("admin %s revoked API token %s", admin.name, token_id)
    return _page(request, message=f"Token {token_id} revoked.")
