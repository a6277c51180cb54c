"""The web app (acknowledgement links and health now; the review app grows here)."""

from monitor.web.app import create_app

__all__ = ["create_app"]
