"""configure_logging: one format for structlog and stdlib, JSON off a TTY, secrets masked."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.logging import (
    NOISY_LOGGERS,
    REDACTED,
    bound_contextvars,
    configure_logging,
    get_logger,
    redact_secrets,
    redact_text,
)

TOKEN = "EAAGm0PX4ZCpsBAKZCqZAsecretvalue"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def configured(**kwargs: Any) -> io.StringIO:
    stream = io.StringIO()
    configure_logging(stream=stream, **kwargs)
    return stream


def test_json_lines_off_a_tty() -> None:
    stream = configured()
    get_logger("monitor.scheduler").info("poll_finished", source="facebook", new=3)
    [line] = lines(stream)
    assert line["event"] == "poll_finished"
    assert line["level"] == "info"
    assert line["logger"] == "monitor.scheduler"
    assert line["source"] == "facebook"
    assert line["new"] == 3
    assert line["timestamp"].endswith("Z")


def test_console_renderer_on_a_tty() -> None:
    stream = FakeTTY()
    configure_logging(stream=stream)
    get_logger("t").info("poll_finished", source="facebook")
    output = stream.getvalue()
    assert "poll_finished" in output
    assert "source" in output
    with pytest.raises(json.JSONDecodeError):
        json.loads(output)


def test_explicit_json_wins_over_tty_detection() -> None:
    stream = FakeTTY()
    configure_logging(stream=stream, json=True)
    get_logger("t").info("poll_finished")
    assert json.loads(stream.getvalue())["event"] == "poll_finished"


def test_level_filters_structlog_and_stdlib() -> None:
    stream = configured(level="warning")
    get_logger("t").info("quiet")
    logging.getLogger("other").info("quiet too")
    get_logger("t").warning("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]


def test_unknown_level_is_rejected() -> None:
    with pytest.raises(ValueError, match="verbose"):
        configure_logging(level="verbose", stream=io.StringIO())


def test_contextvars_are_merged() -> None:
    stream = configured()
    with bound_contextvars(source="instagram", item_id=41, action_id=7):
        get_logger("t").info("item_classified")
    get_logger("t").info("after")
    first, second = lines(stream)
    assert (first["source"], first["item_id"], first["action_id"]) == ("instagram", 41, 7)
    assert "source" not in second


def test_stdlib_logger_goes_through_the_same_format() -> None:
    stream = configured()
    logging.getLogger("apscheduler.scheduler").warning("Run time of job %s was missed", "poll")
    [line] = lines(stream)
    assert line["event"] == "Run time of job poll was missed"
    assert line["level"] == "warning"
    assert line["logger"] == "apscheduler.scheduler"
    assert line["timestamp"].endswith("Z")


def test_noisy_libraries_are_warning_even_at_debug() -> None:
    stream = configured(level="debug")
    logging.getLogger("httpx").info(f"HTTP Request: GET https://graph/?access_token={TOKEN}")
    logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")
    get_logger("t").debug("debug_shown")
    assert [line["event"] for line in lines(stream)] == ["debug_shown"]
    for name in NOISY_LOGGERS:
        assert logging.getLogger(name).getEffectiveLevel() == logging.WARNING


def test_secret_keys_are_masked() -> None:
    stream = configured()
    get_logger("t").info(
        "token_refreshed",
        access_token=TOKEN,
        Authorization=f"Bearer {TOKEN}",
        smtp_password="hunter2",
        api_key="k",
        cookie="sid=1",
        client_secret="s",
        nested={"refresh_token": TOKEN, "ok": 1},
        source="facebook",
    )
    output = stream.getvalue()
    assert TOKEN not in output
    assert "hunter2" not in output
    [line] = lines(stream)
    for key in ("access_token", "Authorization", "smtp_password", "api_key", "cookie"):
        assert line[key] == REDACTED
    assert line["nested"] == {"refresh_token": REDACTED, "ok": 1}
    assert line["source"] == "facebook"
    assert line["event"] == "token_refreshed"


def test_token_in_a_url_is_masked() -> None:
    stream = configured()
    url = f"https://graph.facebook.com/v19.0/me/feed?fields=message&access_token={TOKEN}&limit=5"
    get_logger("t").warning("poll_failed", url=url, error=f"401 for url '{url}'")
    [line] = lines(stream)
    expected = (
        f"https://graph.facebook.com/v19.0/me/feed?fields=message&access_token={REDACTED}&limit=5"
    )
    assert line["url"] == expected
    assert TOKEN not in stream.getvalue()


def test_token_in_a_stdlib_message_and_traceback_is_masked() -> None:
    stream = configured()
    try:
        raise RuntimeError(f"GET https://x.test/?access_token={TOKEN} failed")
    except RuntimeError:
        logging.getLogger("apscheduler.executors").exception("Job raised")
        get_logger("t").exception("poll_crashed")
    assert TOKEN not in stream.getvalue()
    first, second = lines(stream)
    assert first["exception"][0]["exc_type"] == "RuntimeError"
    assert REDACTED in second["exception"][0]["exc_value"]


def test_traceback_locals_are_not_logged() -> None:
    stream = configured()
    password = "correct horse"  # noqa: F841 - a local the traceback must not show

    try:
        raise ValueError("boom")
    except ValueError as err:
        get_logger("t").error("task_crashed", exc_info=err)
    assert "correct horse" not in stream.getvalue()


def test_console_tracebacks_are_masked_too() -> None:
    stream = FakeTTY()
    configure_logging(stream=stream)
    try:
        raise RuntimeError(f"Authorization: Bearer {TOKEN}")
    except RuntimeError as err:
        get_logger("t").error("task_crashed", exc_info=err)
    output = stream.getvalue()
    assert "RuntimeError" in output
    assert TOKEN not in output


def test_exception_values_are_masked() -> None:
    stream = configured()
    error = ConnectionError(f"https://api.test/?token={TOKEN}")
    get_logger("t").warning("poll_failed", error=error)
    [line] = lines(stream)
    assert line["error"] == f"ConnectionError: https://api.test/?token={REDACTED}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"?access_token={TOKEN}&x=1", f"?access_token={REDACTED}&x=1"),
        (f"fb_exchange_token={TOKEN}", f"fb_exchange_token={REDACTED}"),
        (f"client_secret={TOKEN} next", f"client_secret={REDACTED} next"),
        (f"Authorization: Bearer {TOKEN}", f"Authorization: {REDACTED}"),
        (f"sent Bearer {TOKEN}", f"sent Bearer {REDACTED}"),
        (f'{{"access_token": "{TOKEN}", "n": 1}}', f'{{"access_token": "{REDACTED}", "n": 1}}'),
        (
            f"postgresql+asyncpg://vigil:{TOKEN}@db/vigil",
            f"postgresql+asyncpg://vigil:{REDACTED}@db/vigil",
        ),
        ("poll_finished source=facebook new=3", "poll_finished source=facebook new=3"),
        ("https://example.org/path?page=2", "https://example.org/path?page=2"),
    ],
)
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_redact_secrets_processor_leaves_other_values() -> None:
    event = {"event": "e", "count": 3, "none": None, "items": ("a", f"token={TOKEN}")}
    assert redact_secrets(None, "info", event) == {
        "event": "e",
        "count": 3,
        "none": None,
        "items": ["a", f"token={REDACTED}"],
    }


@pytest.mark.parametrize("filler", ["a", "a-", "a:", "x=1&", '"a":"', "http://a:", "Bearer "])
def test_redaction_stays_linear_on_hostile_text(filler: str) -> None:
    # "a-" * 20_000 took over two minutes with backtracking patterns; now milliseconds.
    blob = filler * (100_000 // len(filler)) + f" https://x.test/?access_token={TOKEN}"
    assert TOKEN not in redact_text(blob)


def test_calling_twice_does_not_duplicate_handlers() -> None:
    before = len(logging.getLogger().handlers)
    configure_logging(stream=io.StringIO())
    stream = configured()
    assert len(logging.getLogger().handlers) == before + 1
    get_logger("t").info("once")
    logging.getLogger("other").warning("once too")
    assert [line["event"] for line in lines(stream)] == ["once", "once too"]


def test_capture_logs_still_works_after_configuration() -> None:
    configured()
    logger = get_logger("t")
    logger.info("before_capture")  # a first use must not pin the processors
    with capture_logs() as logs:
        logger.info("captured", source="x")
    assert logs == [{"event": "captured", "source": "x", "log_level": "info"}]


def test_get_logger_before_configuration() -> None:
    with capture_logs() as logs:
        get_logger().info("early")
    assert logs[0]["event"] == "early"


def test_tweepy_cannot_log_its_request_headers_even_at_debug() -> None:
    stream = io.StringIO()
    configure_logging(level="debug", json=True, stream=stream)
    logging.getLogger("tweepy.asynchronous.client").debug(
        "Making API request: GET https://api.twitter.com/2/users/me "
        "Headers: {'Authorization': 'Bearer AAAA'}"
    )
    assert "AAAA" not in stream.getvalue()
