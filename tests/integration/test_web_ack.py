"""Acknowledgement links, in-process through the ASGI app, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from actions.policy import ActionKind, ProposedAction
from classifiers.base import Verdict
from classifiers.taxonomy import Cell, Flag, Severity
from connectors.base import Post, SourceKind
from monitor.app import SchemaOutOfDate
from monitor.cli import main
from monitor.config import Settings
from monitor.links import ACK, ack_url, sign
from monitor.store import Stage, Store, StoreError
from monitor.store import tables as t
from monitor.store.escalations import acknowledge, escalation_summary
from monitor.store.migrate import upgrade
from monitor.web import create_app
from monitor.web.app import SECURITY_HEADERS
from tests.conftest import Clock

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BASE = "https://vigil.example.sch.uk"
SECRET = "test-web-secret-0123456789abcdef"
HOSTILE = "<script>alert('x')</script> HOSTILE-POST-MARKER <img src=x onerror=alert(1)>"
FLAGGED = Verdict(
    flags=frozenset({Flag.ABUSIVE, Flag.SAFEGUARDING}),
    cells=frozenset({Cell.parse("conduct.aggressive")}),
    severity=Severity.HIGH,
)


@dataclass(frozen=True, kw_only=True)
class Escalated:
    school_id: int
    item_id: int
    case_id: int
    escalation_id: int


async def make_escalation(
    store: Store,
    *,
    n: int = 1,
    text: str = HOSTILE,
    school: str = "oakfield",
    now: datetime = T0,
    due: datetime | None = None,
    verdict: Verdict = FLAGGED,
    escalate: bool = True,
    sent: bool = True,
) -> Escalated:
    """An item flagged through the real store path, with its case and (sent) escalation."""
    school_id = await store.ensure_school(school, school.title(), now)
    source = await store.ensure_source(school_id, "fb", "facebook", "own", now)
    post = Post(
        platform="facebook",
        external_id=f"{school}-{n}",
        text=text,
        created_at=now,
        source_kind=SourceKind.OWN,
        raw={"id": n, "message": text},
    )
    await store.record_batch(source.id, [post], cursor=None, now=now)
    async with store.claim_items(Stage.CLASSIFY, 10, school_id=school_id) as claim:
        (item,) = claim.items
        await claim.record_verdict(item, verdict, now)
    kind = ActionKind.ESCALATE if escalate else ActionKind.REVIEW
    proposal = ProposedAction(kind=kind, automatic=escalate, reason="test")
    async with store.claim_items(Stage.DECIDE, 10, school_id=school_id) as claim:
        case_id = await claim.record_decision(
            claim.items[0],
            severity=int(verdict.severity),
            proposals=[proposal],
            response_due=due or now + timedelta(hours=24),
            now=now,
        )
    if not escalate:
        return Escalated(school_id=school_id, item_id=item.id, case_id=case_id, escalation_id=0)
    claimed = await store.claim_due_actions(
        10, now=now, lease=timedelta(days=365), school_id=school_id
    )
    (action,) = [a for a in claimed if a.item_id == item.id]
    escalation = await store.ensure_escalation(
        action,
        recipients=["dsl@oakfield.example.sch.uk"],
        routes=[],
        message_id=f"<esc-{action.id}@vigil.invalid>",
        now=now,
    )
    if sent:
        await store.mark_escalation_sent(escalation.id, now)
    return Escalated(
        school_id=school_id, item_id=item.id, case_id=case_id, escalation_id=escalation.id
    )


async def audit_events(store: Store, event: str) -> list[t.AuditEntry]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(select(t.AuditEntry).where(t.AuditEntry.event == event))
        return list(rows.all())  # type: ignore[arg-type]


@pytest.fixture
def web_settings(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> Settings:
    monkeypatch.setenv("VIGIL_TEST_WEB_SECRET", SECRET)
    return make_settings(web={"secret_env": "VIGIL_TEST_WEB_SECRET", "base_url": BASE})


@pytest.fixture
async def client(
    store: Store, web_settings: Settings, clock: Clock
) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(web_settings, store, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        yield c


def link(escalation_id: int, now: datetime = T0) -> str:
    url = ack_url(BASE, SECRET.encode(), escalation_id, now)
    assert url is not None
    return url.removeprefix(BASE)


def assert_secure(response: httpx.Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers[name] == value, name
    assert "set-cookie" not in response.headers


async def test_get_shows_the_escalation_and_never_acknowledges(
    store: Store, client: httpx.AsyncClient
) -> None:
    esc = await make_escalation(store)
    for method in ("GET", "HEAD", "GET"):  # mail scanners prefetch links, sometimes twice
        response = await client.request(method, link(esc.escalation_id))
        assert response.status_code == 200
        assert_secure(response)
    page = (await client.get(link(esc.escalation_id))).text
    assert f"escalation {esc.escalation_id}" in page
    assert "facebook" in page and "abusive, safeguarding" in page and "high" in page
    assert '<form method="post"' in page and 'name="name"' in page
    summary = await escalation_summary(store, esc.escalation_id)
    assert summary is not None and summary.state == "sent" and summary.acknowledged_at is None
    assert await audit_events(store, "escalation_acknowledged") == []


async def test_post_acknowledges_once_and_then_says_who_did(
    store: Store, client: httpx.AsyncClient, clock: Clock
) -> None:
    esc = await make_escalation(store)
    url = link(esc.escalation_id)
    token = url.rsplit("/", 1)[1]
    clock.advance(hours=1)
    response = await client.post(url, data={"token": token, "name": "Priya Shah"})
    assert response.status_code == 200
    assert_secure(response)
    expected = "acknowledged by priya shah at monday 02 november 2026 10:00 uk time"
    assert expected in response.text.lower()
    summary = await escalation_summary(store, esc.escalation_id)
    assert summary is not None and summary.state == "acknowledged"
    assert summary.acknowledged_by == "Priya Shah"
    assert summary.acknowledged_at == T0 + timedelta(hours=1)
    clock.advance(hours=1)
    again = await client.post(url, data={"token": token, "name": "Someone Else"})
    assert again.status_code == 200
    assert (
        "already acknowledged by priya shah at monday 02 november 2026 10:00" in again.text.lower()
    )
    assert "already acknowledged" in (await client.get(url)).text.lower()
    (entry,) = await audit_events(store, "escalation_acknowledged")
    assert entry.actor == "Priya Shah" and entry.subject_id == esc.escalation_id
    assert json.loads(entry.detail)["via"] == "link"


async def test_hostile_text_and_names_are_never_rendered_raw(
    store: Store, client: httpx.AsyncClient
) -> None:
    esc = await make_escalation(store, text=HOSTILE)
    url = link(esc.escalation_id)
    token = url.rsplit("/", 1)[1]
    page = (await client.get(url)).text
    assert "HOSTILE-POST-MARKER" not in page and "<script" not in page
    name = "<script>alert(1)</script>"
    response = await client.post(url, data={"token": token, "name": name})
    assert response.status_code == 200
    for text in (response.text, (await client.get(url)).text):
        assert "<script" not in text and "HOSTILE-POST-MARKER" not in text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


KEY = SECRET.encode()
DAY = timedelta(days=1)


BAD_TOKENS: dict[str, Callable[[int], str]] = {
    "expired": lambda i: sign(KEY, ACK, i, T0 - timedelta(seconds=1)),
    "forged": lambda i: sign(b"not-the-secret", ACK, i, T0 + DAY),
    "other purpose": lambda i: sign(KEY, "session", i, T0 + DAY),
    "no such row": lambda i: sign(KEY, ACK, i + 999, T0 + DAY),
    "garbage": lambda i: "not-a-token",
    "huge": lambda i: "x" * 5000,
}


async def test_bad_tokens_get_the_same_404_for_get_and_post(
    store: Store, client: httpx.AsyncClient
) -> None:
    esc = await make_escalation(store)
    for why, make_token in BAD_TOKENS.items():
        token = make_token(esc.escalation_id)
        for response in (
            await client.get(f"/ack/{token}"),
            await client.post(f"/ack/{token}", data={"token": token, "name": "Mallory"}),
        ):
            assert response.status_code == 404, why
            assert "not valid or has expired" in response.text
            assert_secure(response)
    summary = await escalation_summary(store, esc.escalation_id)
    assert summary is not None and summary.acknowledged_at is None


NOT_THE_FORM: list[tuple[str, dict[str, str], dict[str, str], int]] = [
    ("no token in the form", {"name": "Priya Shah"}, {}, 400),
    ("another token", {"token": "wrong", "name": "Priya Shah"}, {}, 400),
    ("no name", {"token": "TOKEN", "name": " \t "}, {}, 400),
    ("another origin", {"token": "TOKEN", "name": "P"}, {"origin": "https://evil.example"}, 403),
    ("cross-site", {"token": "TOKEN", "name": "P"}, {"sec-fetch-site": "cross-site"}, 403),
]


async def test_a_post_that_is_not_the_form_changes_nothing(
    store: Store, client: httpx.AsyncClient
) -> None:
    esc = await make_escalation(store)
    url = link(esc.escalation_id)
    token = url.rsplit("/", 1)[1]
    for why, form, headers, status in NOT_THE_FORM:
        data = {key: token if value == "TOKEN" else value for key, value in form.items()}
        response = await client.post(url, data=data, headers=headers)
        assert response.status_code == status, why
        assert_secure(response)
    no_name = await client.post(url, data={"token": token, "name": ""})
    assert "say who is acknowledging" in no_name.text and '<form method="post">' in no_name.text
    summary = await escalation_summary(store, esc.escalation_id)
    assert summary is not None and summary.acknowledged_at is None


async def test_same_origin_and_null_origin_posts_are_accepted(
    store: Store, client: httpx.AsyncClient
) -> None:
    for n, origin in enumerate((BASE, "null"), start=1):
        esc = await make_escalation(store, n=n)
        url = link(esc.escalation_id)
        response = await client.post(
            url,
            data={"token": url.rsplit("/", 1)[1], "name": "Priya Shah"},
            headers={"origin": origin, "sec-fetch-site": "same-origin"},
        )
        assert response.status_code == 200, origin


async def test_only_a_small_urlencoded_form_is_read(
    store: Store, client: httpx.AsyncClient
) -> None:
    esc = await make_escalation(store)
    url = link(esc.escalation_id)
    token = url.rsplit("/", 1)[1]
    as_json = await client.post(url, json={"token": token, "name": "Priya Shah"})
    huge = await client.post(url, data={"token": token, "name": "P" * 10_000})
    assert (as_json.status_code, huge.status_code) == (400, 400)
    summary = await escalation_summary(store, esc.escalation_id)
    assert summary is not None and summary.acknowledged_at is None


async def test_without_a_secret_there_are_no_links(
    store: Store, make_settings: Callable[..., Settings], clock: Clock
) -> None:
    esc = await make_escalation(store)
    app = create_app(make_settings(web={"base_url": BASE}), store, clock=clock)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as c:
        assert (await c.get(link(esc.escalation_id))).status_code == 404


async def test_healthz_and_unknown_paths(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert (health.status_code, health.text) == (200, "ok")
    assert_secure(health)
    missing = await client.get("/no-such-page")  # /cases/N now asks anonymous users to sign in
    assert missing.status_code == 404
    assert_secure(missing)
    wrong_method = await client.delete("/healthz")
    assert wrong_method.status_code == 405
    assert_secure(wrong_method)


async def test_acknowledge_in_the_store(store: Store) -> None:
    esc = await make_escalation(store, sent=False)  # queued: the DSL heard by phone
    first = await acknowledge(store, esc.escalation_id, "  Priya\tShah ", T0, via="cli")
    assert first.newly and first.acknowledged_by == "Priya Shah"
    second = await acknowledge(store, esc.escalation_id, "Other", T0 + timedelta(hours=1))
    assert not second.newly
    assert (second.acknowledged_by, second.acknowledged_at) == ("Priya Shah", T0)
    with pytest.raises(StoreError):
        await acknowledge(store, 9999, "Priya Shah", T0)
    with pytest.raises(ValueError, match="name"):
        await acknowledge(store, esc.escalation_id, " \n ", T0)
    assert await escalation_summary(store, 9999) is None


async def test_lifespan_opens_and_closes_its_own_store(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    settings = make_settings()
    app = create_app(settings, clock=clock)
    with pytest.raises(SchemaOutOfDate):
        async with app.router.lifespan_context(app):
            pass
    await upgrade(settings.database_url())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as c:
            assert (await c.get("/healthz")).text == "ok"
        assert app.state.vigil.store is not None
    assert app.state.vigil.store is None


def test_cli_acknowledges(tmp_path: Path) -> None:
    state = tmp_path / "state"
    config = tmp_path / "config.toml"
    config.write_text(
        f'[school]\nname = "Oakfield Primary School"\n[daemon]\nstate_dir = "{state}"\n',
        encoding="utf-8",
    )
    url = f"sqlite+aiosqlite:///{state / 'vigil.db'}"

    async def setup() -> int:
        await upgrade(url)
        store = Store.open(url)
        try:
            return (await make_escalation(store)).escalation_id
        finally:
            await store.close()

    escalation_id = asyncio.run(setup())
    runner = CliRunner()
    args = ["escalations", "ack", str(escalation_id), "--config", str(config)]
    first = runner.invoke(main, [*args, "--by", "Priya Shah"])
    assert first.exit_code == 0, first.output
    assert f"escalation {escalation_id} acknowledged by Priya Shah" in first.output
    second = runner.invoke(main, [*args, "--by", "Someone Else"])
    assert second.exit_code == 0 and "already acknowledged by Priya Shah" in second.output
    missing = runner.invoke(
        main, ["escalations", "ack", "999", "--config", str(config), "--by", "X"]
    )
    assert missing.exit_code == 2 and "no escalation with id 999" in missing.output
