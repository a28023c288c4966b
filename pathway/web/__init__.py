"""The coordinator web app and the HTTP API (issue 4): `create_app(engine)` builds the FastAPI app."""

from pathway.web.app import create_app

__all__ = ["create_app"]
