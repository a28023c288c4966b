"""Jinja2 templates of the web pages (autoescaped), shared by the login page and W2's pages.

Every template gets, besides what a route passes: `request`, `user` (the logged-in `User` or
None) and `csrf` (the CSRF token to put in a hidden `csrf` field of every POST form).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.requests import Request

from states import events

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _context(request: Request) -> dict[str, Any]:
    from pathway.web.security import csrf_token, current_user

    return {"user": current_user(request), "csrf": csrf_token(request)}


_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=select_autoescape(enabled_extensions=("html", "htm", "xml", "svg"), default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)

_env.globals["NOTE_MAX"] = events.NOTE_MAX  # the envelope's limit: the form says what the engine accepts
templates = Jinja2Templates(env=_env, context_processors=[_context])
