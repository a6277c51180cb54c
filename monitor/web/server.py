"""Serving the web app inside ``vigil run``: uvicorn on the daemon's event loop and store.

uvicorn's ``Server.serve`` installs its own SIGTERM/SIGINT handlers; inside the daemon those
belong to the daemon (it drains polls and batches before exiting), so the embedded server
leaves signals alone and stops when the daemon's stop event is set.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator
from datetime import datetime

import uvicorn

from monitor.config import Settings
from monitor.metrics import Metrics
from monitor.store import Store
from monitor.web.app import create_app
from monitor.web.health import SchedulerView

__all__ = ["serve_until", "uvicorn_options"]


def uvicorn_options(settings: Settings) -> dict[str, object]:
    """The uvicorn settings both ``vigil web`` and ``vigil run`` use."""
    return {
        "host": settings.web.host,
        "port": settings.web.port,
        "lifespan": "on",  # the lifespan opens the store (or checks it); if it cannot, no serving
        "log_config": None,  # uvicorn's loggers go through our structlog setup
        "access_log": False,  # request lines would put acknowledgement tokens in the journal
        "server_header": False,
    }


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the daemon owns the signals


async def _serve(server: uvicorn.Server) -> None:
    # uvicorn exits the process when it cannot bind; the daemon must not. Suppressed here,
    # inside the task, because asyncio re-raises a task's SystemExit out of the event loop.
    with contextlib.suppress(SystemExit):
        await server.serve()


async def serve_until(
    settings: Settings,
    store: Store,
    clock: Callable[[], datetime],
    stop: asyncio.Event,
    *,
    metrics: Metrics | None = None,
    scheduler: SchedulerView | None = None,
) -> None:
    """Serve the web app on ``[web] host:port`` until ``stop`` is set.

    ``metrics`` and ``scheduler`` are the daemon's, for ``/metrics`` and ``/readyz``.
    Raises OSError (e.g. the port is taken) so the daemon's supervisor can back off and retry.
    """
    app = create_app(settings, store, clock=clock, metrics=metrics, scheduler=scheduler)
    config = uvicorn.Config(app, **uvicorn_options(settings))  # type: ignore[arg-type]
    server = _EmbeddedServer(config)
    serving = asyncio.create_task(_serve(server), name="web")
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        server.should_exit = True
        stopping.cancel()
        await serving
    if not server.started and not stop.is_set():
        raise OSError(f"the web app could not listen on {settings.web.host}:{settings.web.port}")
