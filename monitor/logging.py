"""The single structlog setup: JSON lines to stdout for journald, a console renderer on a TTY.

structlog and the standard library share one path: structlog loggers are stdlib loggers whose
event dicts reach one root handler, and its `ProcessorFormatter` renders both them and foreign
records (SQLAlchemy, httpx, APScheduler, Alembic) in the same format. Secrets are masked by
`redact_secrets` after tracebacks are rendered and before anything is written, so a token in a
URL inside an exception message never reaches the journal.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, Final, TextIO

import structlog
from structlog.contextvars import bound_contextvars
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = [
    "NOISY_LOGGERS",
    "REDACTED",
    "bound_contextvars",
    "configure_logging",
    "get_logger",
    "redact_secrets",
    "redact_text",
]

REDACTED: Final = "[REDACTED]"

# Libraries whose INFO lines are noise, or worse: httpx logs every request URL at INFO, and
# some platforms (Facebook Graph) put the access token in the query string; tweepy logs whole
# request headers, bearer token included, at DEBUG. These stay at WARNING or above always.
NOISY_LOGGERS: Final = (
    "aiohttp",
    "aiosqlite",
    "alembic",
    "apscheduler",
    "asyncio",
    "feedparser",
    "httpcore",
    "httpx",
    "sqlalchemy",
    "tweepy",
)

_SECRET_WORD: Final = re.compile(
    r"token|secret|passw(?:or)?d|api[_-]?key|authori[sz]ation|cookie|credential", re.IGNORECASE
)
# Every pattern starts only where a run of name characters starts and uses possessive
# quantifiers, so redaction stays linear even on hostile input such as "a-a-a-…".
_NAME: Final = r"(?<![\w-])([\w-]++)"
# name=value (query strings, form bodies) and name: value (headers). Only name and separator
# are matched, so a non-secret "https:" never swallows the "?access_token=" after it.
_ASSIGNMENT: Final = re.compile(_NAME + r"\s*+[=:]\s*+")
_VALUE: Final = re.compile(r"""(?:(?:Bearer|Basic)\s++)?[^\s&"',;]++""", re.IGNORECASE)
# "name": "value" inside a JSON body quoted in an error message
_QUOTED: Final = re.compile(r"""(["'])([\w-]++)(["']\s*+:\s*+["'])[^"']*+""")
_BEARER: Final = re.compile(r"(?<![\w-])(Bearer|Basic)\s++[\w.~+/=-]++", re.IGNORECASE)
# scheme://user:password@host (database and SMTP URLs)
_USERINFO: Final = re.compile(
    r"(?<![\w+.-])([a-z][a-z0-9+.-]*+://[^:/@\s]++:)[^@/\s]++@", re.IGNORECASE
)


def _mask_assignments(text: str) -> str:
    pieces: list[str] = []
    done = 0
    for match in _ASSIGNMENT.finditer(text):
        if match.start() < done or not _SECRET_WORD.search(match.group(1)):
            continue
        value = _VALUE.match(text, match.end())
        if value is not None:
            pieces += [text[done : match.end()], REDACTED]
            done = value.end()
    pieces.append(text[done:])
    return "".join(pieces)


def _mask_quoted(match: re.Match[str]) -> str:
    opening, name, middle = match.groups()
    if _SECRET_WORD.search(name):
        return f"{opening}{name}{middle}{REDACTED}"
    return match.group(0)


_HANDLER_MARK: Final = "_vigil_handler"


def redact_text(text: str) -> str:
    """Mask secret-looking fragments (``access_token=…``, ``Bearer …``, URL passwords) in text."""
    text = _QUOTED.sub(_mask_quoted, text)
    text = _mask_assignments(text)
    text = _BEARER.sub(rf"\1 {REDACTED}", text)
    return _USERINFO.sub(rf"\1{REDACTED}@", text)


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, BaseException):
        # JSONRenderer would repr() it, and an httpx error's message holds the request URL.
        return redact_text(f"{type(value).__name__}: {value}")
    if isinstance(value, Mapping):
        return {key: _redact_item(key, item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_redact_value(item) for item in value]
    return value


def _redact_item(key: object, value: Any) -> Any:
    if isinstance(key, str) and _SECRET_WORD.search(key) and value is not None:
        return REDACTED
    return _redact_value(value)


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask values of secret-named keys and secrets inside string values."""
    return {key: _redact_item(key, value) for key, value in event_dict.items()}


def _parse_level(level: str) -> int:
    levels = logging.getLevelNamesMapping()
    try:
        return levels[level.upper()]
    except KeyError:
        raise ValueError(
            f"unknown log level {level!r}; use one of debug, info, warning, error"
        ) from None


def _shared_processors() -> list[Processor]:
    """Run on structlog events and foreign stdlib records alike, before rendering."""
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _render_processors(json: bool, colors: bool) -> list[Processor]:
    """Exceptions are rendered to text or dicts first so that redaction also covers them."""
    if json:
        exceptions: Processor = structlog.processors.ExceptionRenderer(
            ExceptionDictTransformer(show_locals=False)  # locals may hold tokens or post text
        )
        renderer: Processor = structlog.processors.JSONRenderer()
    else:
        exceptions = structlog.processors.format_exc_info
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, exception_formatter=structlog.dev.plain_traceback
        )
    return [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.StackInfoRenderer(),
        exceptions,
        structlog.processors.UnicodeDecoder(),
        redact_secrets,
        renderer,
    ]


def _install_handler(stream: TextIO, formatter: logging.Formatter, level: int) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    handler = logging.StreamHandler(stream)
    setattr(handler, _HANDLER_MARK, True)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty())


def configure_logging(
    *, level: str = "info", json: bool | None = None, stream: TextIO | None = None
) -> None:
    """Route structlog and stdlib logging to *stream* (stdout) in one redacted format.

    ``json=None`` picks JSON lines off a TTY (journald) and the console renderer on a TTY.
    Calling it again replaces the previous setup instead of adding a second handler.
    """
    numeric_level = _parse_level(level)
    out = sys.stdout if stream is None else stream
    tty = _is_tty(out)
    shared = _shared_processors()
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=_render_processors(json=not tty if json is None else json, colors=tty),
    )
    _install_handler(out, formatter, numeric_level)
    structlog.configure(
        processors=[
            structlog.stdlib.filter_by_level,
            *shared,
            structlog.stdlib.PositionalArgumentsFormatter(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        # Caching would pin processors at first use and break structlog.testing.capture_logs.
        cache_logger_on_first_use=False,
    )


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    """A structlog logger named *name* (usually ``__name__``); usable before configuration."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
