"""The web app inside `vigil run`: a taken port is an error the supervisor retries, not an exit."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import pytest

from monitor.config import Settings
from monitor.store import Store
from monitor.web.server import serve_until
from tests.conftest import Clock


async def test_a_taken_port_raises_oserror_instead_of_exiting(
    make_settings: Callable[..., Settings], store: Store, clock: Clock
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = make_settings(web={"port": port})
        with pytest.raises(OSError, match=f"could not listen on 127.0.0.1:{port}"):
            await asyncio.wait_for(serve_until(settings, store, clock, asyncio.Event()), 10)


async def test_it_serves_until_stopped(
    make_settings: Callable[..., Settings], store: Store, clock: Clock
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = make_settings(web={"port": port})
    stop = asyncio.Event()
    task = asyncio.create_task(serve_until(settings, store, clock, stop))
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            try:
                response = await client.get(f"http://127.0.0.1:{port}/healthz")
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
        assert response.status_code == 200
    stop.set()
    await asyncio.wait_for(task, 10)
