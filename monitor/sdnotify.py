"""The systemd notify protocol (``Type=notify``) without a dependency.

systemd passes a datagram socket in ``NOTIFY_SOCKET``: a filesystem path, or an abstract
socket written with a leading ``@``. Each message is newline-separated ``KEY=value`` lines.
See sd_notify(3). Outside systemd the variable is unset and every method does nothing.
Sending never raises and never blocks the event loop: a failure is logged once.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Final

from monitor.logging import get_logger

__all__ = ["Notifier"]

log = get_logger(__name__)

NOTIFY_SOCKET: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC: Final = "WATCHDOG_USEC"
WATCHDOG_PID: Final = "WATCHDOG_PID"

SD_NOTIFY_FAILED: Final = "sd_notify_failed"
SD_NOTIFY_ADDRESS_UNSUPPORTED: Final = "sd_notify_address_unsupported"


def _parse_address(raw: str | None) -> str | None:
    if not raw:
        return None
    if raw.startswith("@"):
        return "\0" + raw[1:]  # Linux abstract namespace
    if raw.startswith("/"):
        return raw
    log.warning(SD_NOTIFY_ADDRESS_UNSUPPORTED, address=raw)  # e.g. vsock:, which we skip
    return None


def _parse_watchdog(environ: Mapping[str, str]) -> float | None:
    """Seconds between pings: half of WATCHDOG_USEC, if the watchdog is meant for us."""
    try:
        usec = int(environ.get(WATCHDOG_USEC, ""))
    except ValueError:
        return None
    pid = environ.get(WATCHDOG_PID)
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000 / 2


class Notifier:
    """Tell systemd we are ready, alive, stopping, and what we are doing."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self._address = _parse_address(env.get(NOTIFY_SOCKET))
        self._watchdog = _parse_watchdog(env)
        self._failed = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._address is not None

    def ready(self) -> None:
        """Startup is finished: the store is open and the scheduler has started."""
        self._send("READY=1")

    def status(self, text: str) -> None:
        """A one-line status shown by ``systemctl status``."""
        self._send("STATUS=" + " ".join(text.splitlines()))

    def watchdog(self) -> None:
        """Keep-alive ping for ``WatchdogSec=``."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Shutdown has begun."""
        self._send("STOPPING=1")

    def watchdog_interval(self) -> float | None:
        """How often to call `watchdog` (half the configured timeout), or None if not asked to."""
        return self._watchdog

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)  # a full receive queue must not stall the event loop
                sock.sendto(message.encode(), self._address)
        except OSError as err:
            self._log_failure(err)

    def _log_failure(self, err: OSError) -> None:
        if self._failed:
            return
        self._failed = True
        log.warning(SD_NOTIFY_FAILED, error=f"{type(err).__name__}: {err}")
