"""sd_notify against a real AF_UNIX datagram socket standing in for systemd."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.sdnotify import Notifier


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A bound datagram socket in tmp_path, like the one systemd passes in NOTIFY_SOCKET."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(path)
        sock.settimeout(1.0)  # only a guard: every datagram is already queued when we read
        yield sock, path


def _received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_messages_reach_the_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.enabled
    notifier.ready()
    notifier.status("polling 3 sources")
    notifier.watchdog()
    notifier.stopping()
    assert [_received(sock) for _ in range(4)] == [
        "READY=1",
        "STATUS=polling 3 sources",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_status_is_one_line(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    Notifier({"NOTIFY_SOCKET": path}).status("draining\nREADY=1")
    assert _received(sock) == "STATUS=draining READY=1"


def test_abstract_socket() -> None:
    name = f"vigil-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(1.0)
        Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert _received(sock) == "READY=1"


def test_unset_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    with capture_logs() as logs:
        notifier.ready()
        notifier.status("x")
        notifier.watchdog()
        notifier.stopping()
    assert logs == []
    assert notifier.watchdog_interval() is None


def test_reads_os_environ_by_default(
    listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sock, path = listener
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    Notifier().ready()
    assert _received(sock) == "READY=1"


def test_unsupported_address_is_logged_and_ignored() -> None:
    with capture_logs() as logs:
        notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert [entry["event"] for entry in logs] == ["sd_notify_address_unsupported"]


def test_send_errors_never_raise_and_are_logged_once(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    with capture_logs() as logs:
        notifier.ready()
        notifier.watchdog()
        notifier.stopping()
    assert [entry["event"] for entry in logs] == ["sd_notify_failed"]
    assert "FileNotFoundError" in logs[0]["error"]


def test_full_receive_queue_does_not_block(listener: tuple[socket.socket, str]) -> None:
    _, path = listener
    notifier = Notifier({"NOTIFY_SOCKET": path})
    with capture_logs() as logs:
        for _ in range(10_000):  # far beyond the default queue length, nobody reads
            notifier.watchdog()
    assert [entry["event"] for entry in logs] == ["sd_notify_failed"]


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WATCHDOG_USEC": "30000000"}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}, 15.0),
        ({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval(environ: dict[str, str], expected: float | None) -> None:
    assert Notifier(environ).watchdog_interval() == expected
