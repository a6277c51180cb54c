"""The web app: the review app, DSL acknowledgement links and /healthz (Starlette)."""

from monitor.web.app import create_app

__all__ = ["create_app"]
