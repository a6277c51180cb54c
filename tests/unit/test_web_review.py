"""The review app in-process on SQLite: authorisation matrix, CSRF, hostile content, decisions,
evidence and CSV exports."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.routing import Mount, Route

from actions.evidence import EvidenceFile, EvidenceRecord
from actions.policy import ActionKind, ProposedAction
from actions.states import ActionState
from classifiers.base import Signal, Verdict
from classifiers.taxonomy import Cell, Flag, Severity, Tag
from connectors.base import Post, SourceKind
from monitor.config import Settings
from monitor.store import Stage, Store
from monitor.store import tables as t
from monitor.store.escalations import acknowledge
from monitor.store.migrate import upgrade
from monitor.store.review import add_note
from monitor.store.users import Role, UserRecord, add_user, create_session
from monitor.web import create_app
from monitor.web.app import SECURITY_HEADERS
from monitor.web.auth import SESSION_COOKIE, hash_password
from monitor.web.pages import due_badge, highlight, web_link
from tests.conftest import Clock

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BASE = "https://vigil.example.sch.uk"
ROLES = (Role.MODERATOR, Role.DSL, Role.ADMIN)
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)
ABUSIVE = Verdict(
    flags=frozenset({Flag.ABUSIVE}),
    cells=frozenset({Cell.parse("conduct.aggressive")}),
    severity=Severity.MEDIUM,
    reasons=(
        Signal(
            detector="rules",
            rule="insult",
            flag=Flag.ABUSIVE,
            cell=Cell.parse("conduct.aggressive"),
            severity=Severity.MEDIUM,
            span=(4, 9),
            text="are a",
        ),
    ),
)
SAFEGUARDING = Verdict(
    flags=frozenset({Flag.SAFEGUARDING}),
    cells=frozenset({Cell.parse("contact.values")}),
    tags=frozenset({Tag.SELF_HARM}),
    severity=Severity.HIGH,
)
CHILD_IMAGERY = Verdict(
    flags=frozenset({Flag.SAFEGUARDING}),
    cells=frozenset({Cell.parse("contact.sexual")}),
    tags=frozenset({Tag.CHILD_SEXUAL_IMAGERY}),
    severity=Severity.CRITICAL,
)
PROPOSALS = (
    ProposedAction(kind=ActionKind.HIDE, automatic=False, reason="abusive"),
    ProposedAction(kind=ActionKind.REPORT, automatic=False, reason="platform terms"),
)
ESCALATE = (ProposedAction(kind=ActionKind.ESCALATE, automatic=True, reason="safeguarding"),)


# --- building a world ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Made:
    case_id: int
    item_id: int
    action_ids: dict[str, int]
    evidence_id: int = 0


@dataclass(kw_only=True)
class World:
    store: Store
    app: Starlette
    settings: Settings
    school_id: int
    evidence_dir: Path
    users: dict[Role, UserRecord] = field(default_factory=dict)
    sessions: dict[Role, tuple[str, str]] = field(default_factory=dict)
    spare_user: int = 0
    cases: dict[str, Made] = field(default_factory=dict)
    escalation_id: int = 0

    def client(self, role: Role | None) -> httpx.AsyncClient:
        """A client signed in as ``role`` (None: anonymous); no redirects followed."""
        cookies = {SESSION_COOKIE: self.sessions[role][0]} if role is not None else {}
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app), base_url=BASE, cookies=cookies
        )

    def csrf(self, role: Role) -> str:
        return self.sessions[role][1]


async def make_case(
    world: World,
    n: int,
    *,
    text: str = "you are an idiot and a disgrace",
    verdict: Verdict = ABUSIVE,
    proposals: tuple[ProposedAction, ...] = PROPOSALS,
    due: timedelta = timedelta(hours=24),
    evidence: bool = True,
    **post: Any,
) -> Made:
    """A post flagged through the real store path, with its case, actions and evidence."""
    store = world.store
    source = await store.ensure_source(world.school_id, "fb", "facebook", "own", T0)
    item = Post(
        platform="facebook",
        external_id=f"post-{n}",
        text=text,
        created_at=T0,
        source_kind=SourceKind.OWN,
        raw={"id": n},
        **post,
    )
    await store.record_batch(source.id, [item], cursor=None, now=T0)
    async with store.claim_items(Stage.CLASSIFY, 10, school_id=world.school_id) as claim:
        (work,) = claim.items
        await claim.record_verdict(work, verdict, T0)
    async with store.claim_items(Stage.DECIDE, 10, school_id=world.school_id) as claim:
        case_id = await claim.record_decision(
            claim.items[0],
            severity=int(verdict.severity),
            proposals=list(proposals),
            response_due=T0 + due,
            now=T0,
        )
    evidence_id = await _capture(world, n) if evidence else 0
    actions = {a.kind: a.id for a in await store.case_actions(case_id)}
    return Made(case_id=case_id, item_id=work.id, action_ids=actions, evidence_id=evidence_id)


async def _capture(world: World, n: int) -> int:
    """An evidence entry with a card PNG written under the evidence directory."""
    relpath = f"facebook/post-{n}/v1/card.png"
    path = world.evidence_dir / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(PNG)
    card = EvidenceFile(
        kind="card", relpath=relpath, sha256=hashlib.sha256(PNG).hexdigest(), size=len(PNG)
    )
    raw = EvidenceFile(
        kind="raw", relpath=f"facebook/post-{n}/v1/raw.json", sha256="0" * 64, size=0
    )

    async def capture(prev: str) -> EvidenceRecord:
        return EvidenceRecord(
            files=(card, raw), prev_hash=prev, entry_hash=f"{n:064x}", captured_at=T0
        )

    async with world.store.claim_items(Stage.EVIDENCE, 10, school_id=world.school_id) as claim:
        await claim.record_evidence(claim.items[0], capture, T0)
    async with world.store.engine.connect() as conn:
        found = await conn.scalar(select(t.Evidence.id).where(t.Evidence.entry_hash == f"{n:064x}"))
    assert found is not None
    return int(found)


async def make_user(world: World, role: Role, username: str) -> UserRecord:
    return await add_user(
        world.store,
        username=username,
        display_name=f"{role.value.title()} Person",
        email=f"{username}@oakfield.example.sch.uk",
        role=role,
        password_hash="not-a-real-hash",
        school_ids=[world.school_id],
        actor="test",
        now=T0,
    )


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'vigil.db'}"
    asyncio.run(upgrade(url))
    return url


@pytest.fixture
async def world(
    sqlite_url: str, make_settings: Callable[..., Settings], clock: Clock
) -> AsyncIterator[World]:
    settings = make_settings(
        web={"base_url": BASE},
        accounts=[
            {
                "platform": "facebook",
                "handle": '=HYPERLINK("https://evil.example","x")',
                "master_administrator": "@head",
                "approved_posters": ["+44 1632 960000", "Office"],
                "opened": "2024-09-01",
            }
        ],
    )
    store = Store.open(sqlite_url)
    school = settings.school
    school_id = await store.ensure_school(school.slug, school.name, T0)
    w = World(
        store=store,
        app=create_app(settings, store, clock=clock),
        settings=settings,
        school_id=school_id,
        evidence_dir=settings.under_state(settings.evidence.dir),
    )
    for role in ROLES:
        w.users[role] = await make_user(w, role, role.value)
        w.sessions[role] = await create_session(
            store, w.users[role].id, now=T0, lifetime=timedelta(hours=12)
        )
    w.spare_user = (await make_user(w, Role.MODERATOR, "spare")).id
    w.cases["open"] = await make_case(w, 1)
    w.cases["restricted"] = await make_case(
        w, 2, text="I want to hurt myself", verdict=SAFEGUARDING, proposals=ESCALATE
    )
    w.escalation_id = await _escalation(w, w.cases["restricted"])
    try:
        yield w
    finally:
        await store.close()


async def _escalation(world: World, made: Made) -> int:
    claimed = await world.store.claim_due_actions(
        10, now=T0, lease=timedelta(days=365), school_id=world.school_id
    )
    (action,) = [a for a in claimed if a.id == made.action_ids["escalate"]]
    escalation = await world.store.ensure_escalation(
        action,
        recipients=["dsl@oakfield.example.sch.uk"],
        routes=[],
        message_id=f"<esc-{action.id}@vigil.invalid>",
        now=T0,
    )
    await world.store.mark_escalation_sent(escalation.id, T0)
    return escalation.id


async def audit_events(store: Store) -> list[tuple[str, str, str | None]]:
    """(actor, event, subject) of every audit entry, oldest first."""
    async with store.engine.connect() as conn:
        rows = await conn.execute(select(t.AuditEntry).order_by(t.AuditEntry.id))
        return [(r.actor, r.event, f"{r.subject_type}:{r.subject_id}") for r in rows]


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table except sessions (reading a page may touch last_seen_at)."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with store.engine.connect() as conn:
        for table in t.Base.metadata.sorted_tables:
            if table.name != "web_sessions":
                out[table.name] = [tuple(r) for r in (await conn.execute(select(table))).all()]
    return out


# --- the authorisation matrix ----------------------------------------------------------------

ANYONE = "public"  # no sign-in (acknowledgement links, health, sign-in): tested elsewhere
EVERY = frozenset(ROLES)
DSL = frozenset({Role.DSL})
OVERSIGHT = frozenset({Role.DSL, Role.ADMIN})
ADMIN = frozenset({Role.ADMIN})

# (method, route path) → who may use it. A route missing here fails the test.
MATRIX: dict[tuple[str, str], frozenset[Role] | str] = {
    ("GET", "/healthz"): ANYONE,
    ("GET", "/readyz"): ANYONE,  # tests/unit/test_readyz.py
    ("GET", "/metrics"): ANYONE,  # tests/unit/test_metrics.py
    ("GET", "/ack/{token}"): ANYONE,
    ("POST", "/ack/{token}"): ANYONE,
    ("GET", "/login"): ANYONE,
    ("POST", "/login"): ANYONE,
    ("POST", "/logout"): ANYONE,
    ("GET", "/"): EVERY,
    ("GET", "/queue"): EVERY,
    ("GET", "/cases/{id:int}"): EVERY,
    ("GET", "/cases/{id:int}/evidence/{evidence_id:int}/{n:int}"): EVERY,
    ("GET", "/cases/{id:int}/export"): DSL,
    ("POST", "/cases/{id:int}/actions/{action_id:int}/approve"): EVERY,
    ("POST", "/cases/{id:int}/actions/{action_id:int}/reject"): EVERY,
    ("POST", "/cases/{id:int}/actions/{action_id:int}/change"): EVERY,
    ("POST", "/cases/{id:int}/actions/{action_id:int}/undo"): EVERY,
    ("POST", "/cases/{id:int}/hide"): EVERY,
    ("POST", "/cases/{id:int}/false-positive"): EVERY,
    ("POST", "/cases/{id:int}/notes"): EVERY,
    ("POST", "/cases/{id:int}/assign"): EVERY,
    ("POST", "/cases/{id:int}/escalate"): EVERY,
    ("POST", "/cases/{id:int}/close"): EVERY,
    ("POST", "/cases/{id:int}/hold"): DSL,  # legal hold: tests/unit/test_retention.py
    ("POST", "/cases/{id:int}/release"): DSL,
    ("GET", "/escalations"): DSL,
    ("POST", "/escalations/{id:int}/ack"): DSL,
    ("POST", "/escalations/{id:int}/outcome"): DSL,
    ("GET", "/audit"): OVERSIGHT,
    ("GET", "/audit.csv"): OVERSIGHT,
    ("GET", "/sources"): OVERSIGHT,
    ("GET", "/accounts"): OVERSIGHT,
    ("GET", "/accounts.csv"): OVERSIGHT,
    ("GET", "/report"): OVERSIGHT,
    ("GET", "/report.csv"): OVERSIGHT,
    ("GET", "/admin/users"): ADMIN,
    ("POST", "/admin/users"): ADMIN,
    ("POST", "/admin/users/{id:int}/disable"): ADMIN,
    ("GET", "/admin/settings"): ADMIN,
}

# What each POST sends besides the CSRF token (enough for the view to get past its checks).
FORMS: dict[str, dict[str, str]] = {
    "change": {"kind": "delete"},
    "assign": {"to": "me"},
    "close": {"outcome": "no_action"},
    "hold": {"reason": "police investigation"},
    "notes": {"body": "checked with the head"},
    "outcome": {"outcome": "nfa", "note": "spoke to parents"},
    "users": {
        "username": "newbie",
        "display_name": "New Person",
        "email": "new@oakfield.example.sch.uk",
        "role": "moderator",
        "password": "a long enough passphrase",
        "password_again": "a long enough passphrase",
    },
}


def app_routes(app: Starlette) -> list[tuple[str, str]]:
    """Every (method, path) the app serves, HEAD aside (it follows GET)."""
    found = []
    for route in app.routes:
        if isinstance(route, Route):
            found += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
        else:
            assert isinstance(route, Mount) and route.path == "/static", route
    return found


def fill(path: str, world: World, case: str) -> str:
    """The route path with real ids: case ``case``'s, its actions', its evidence's."""
    made = world.cases[case]
    if path.startswith("/escalations/"):
        ident = world.escalation_id
    elif path.startswith("/admin/users/"):
        ident = world.spare_user
    else:
        ident = made.case_id
    action = next(iter(made.action_ids.values()))
    return (
        path.replace("{id:int}", str(ident))
        .replace("{action_id:int}", str(action))
        .replace("{evidence_id:int}", str(made.evidence_id))
        .replace("{n:int}", "0")
        .replace("{token}", "not-a-token")
    )


def form_for(path: str) -> dict[str, str]:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return dict(FORMS.get(last, {}))


async def test_every_route_is_in_the_matrix(world: World) -> None:
    assert sorted(app_routes(world.app)) == sorted(MATRIX)


async def test_authorisation_matrix(world: World) -> None:
    checked = 0
    for method, path in app_routes(world.app):
        allowed = MATRIX[(method, path)]
        if allowed == ANYONE:
            continue
        assert isinstance(allowed, frozenset)
        for case in ("open", "restricted") if path.startswith("/cases/") else ("open",):
            url = fill(path, world, case)
            await _anonymous(world, method, url)
            for role in ROLES:
                response = await _send(world, role, method, url, form_for(path))
                expected = _expected(role, allowed, method, path, restricted=case == "restricted")
                assert response.status_code in expected, (method, url, role, response.text[:300])
                checked += 1
    assert checked > 100


def _expected(
    role: Role, allowed: frozenset[Role], method: str, path: str, *, restricted: bool
) -> set[int]:
    if role not in allowed:
        return {403}
    if restricted and role != Role.DSL:
        return {404}  # as if it did not exist
    if method == "GET":
        return {303} if path == "/" else {200}
    return {303, 400, 409}  # done, or refused for the case's state: never 403/404


async def _anonymous(world: World, method: str, url: str) -> None:
    async with world.client(None) as c:
        if method == "GET":
            response = await c.get(url)
            assert response.status_code == 303, url
            assert response.headers["location"].startswith("/login?next=")
        else:
            response = await c.post(url, data={"csrf": "x"})
            assert response.status_code == 403, url


async def _send(
    world: World, role: Role, method: str, url: str, form: dict[str, str]
) -> httpx.Response:
    async with world.client(role) as c:
        if method == "GET":
            return await c.get(url)
        return await c.post(url, data={**form, "csrf": world.csrf(role)})


async def test_static_stylesheet_needs_no_sign_in(world: World) -> None:
    async with world.client(None) as c:
        response = await c.get("/static/app.css")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/css")


async def test_a_user_without_the_school_is_refused(world: World) -> None:
    outsider = await add_user(
        world.store,
        username="outsider",
        display_name="Outsider",
        email="o@example.org",
        role=Role.DSL,
        password_hash="x",
        school_ids=[],
        actor="test",
        now=T0,
    )
    token, _ = await create_session(world.store, outsider.id, now=T0, lifetime=timedelta(hours=1))
    cookies = {SESSION_COOKIE: token}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=world.app), base_url=BASE, cookies=cookies
    ) as c:
        assert (await c.get("/queue")).status_code == 403
        assert (await c.get(f"/cases/{world.cases['open'].case_id}")).status_code == 404


# --- CSRF ------------------------------------------------------------------------------------


async def test_every_post_without_the_csrf_token_is_refused(world: World) -> None:
    before = await snapshot(world.store)
    posts = [p for m, p in app_routes(world.app) if m == "POST" and MATRIX[(m, p)] != ANYONE]
    assert len(posts) >= 14
    for path in posts:
        allowed = MATRIX[("POST", path)]
        assert isinstance(allowed, frozenset)
        role = Role.DSL if Role.DSL in allowed else Role.ADMIN
        url = fill(path, world, "open")
        async with world.client(role) as c:
            for csrf in (None, "wrong", world.csrf(Role.MODERATOR), world.csrf(role) + "x"):
                data = form_for(path) | {"reason": "x"} | ({} if csrf is None else {"csrf": csrf})
                response = await c.post(url, data=data)
                assert response.status_code == 403, (url, csrf)
            cross = await c.post(
                url,
                data=form_for(path) | {"csrf": world.csrf(role)},
                headers={"origin": "https://evil.example"},
            )
            assert cross.status_code == 403, url
    assert await snapshot(world.store) == before


# --- hostile content -------------------------------------------------------------------------

HOSTILE = [
    "<script>alert('x')</script>",
    '<img src=x onerror="alert(1)">',
    '<a href="javascript:alert(1)">click</a>',
    "</textarea><script>alert(2)</script>",
    "{{ 7 * 7 }} {% raw %}",
    "\u202egnp.exe",
    "null\x00byte",
    "<svg/onload=alert(3)>",
    "\"'><iframe src=//evil.example>",
]
LONG = "A" * 100_000
BAD_LINKS = [
    "javascript:alert(1)",
    " javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "//evil.example/x",
    "vbscript:msgbox(1)",
]
# Our templates use these elements and attributes; anything else came from data.
TAGS = {
    "html", "head", "meta", "title", "link", "body", "header", "nav", "ul", "ol", "li", "a",
    "span", "form", "input", "button", "main", "h1", "h2", "h3", "p", "section", "dl", "dt",
    "dd", "strong", "bdi", "time", "code", "mark", "div", "label", "select", "option",
    "textarea", "table", "caption", "thead", "tbody", "tr", "th", "td", "br", "img",
}  # fmt: skip
ATTRS = {
    "lang", "charset", "name", "content", "rel", "href", "class", "aria-label",
    "aria-current", "method", "action", "type", "value", "id", "for", "selected", "scope",
    "datetime", "role", "aria-labelledby", "maxlength", "required", "referrerpolicy", "target",
    "formaction", "src", "alt", "loading", "minlength", "autocomplete",
}  # fmt: skip


class Markup(HTMLParser):
    """Every element and attribute of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(page: str) -> Markup:
    parser = Markup()
    parser.feed(page)
    parser.close()
    return parser


def assert_inert(page: str) -> Markup:
    """Only our own elements and attributes; no script, no inline style, only safe links."""
    markup = parse(page)
    for tag, attrs in markup.tags:
        assert tag in TAGS, tag
        assert set(attrs) <= ATTRS, (tag, attrs)
        for name in ("href", "src", "action", "formaction"):
            value = attrs.get(name)
            if value is not None:
                assert (value.startswith("/") and not value.startswith("//")) or value.startswith(
                    ("https://", "http://")
                ), (tag, name, value)
    assert "<script" not in page.lower() and "style=" not in page.lower()
    return markup


async def test_hostile_content_is_shown_as_text(world: World) -> None:
    text = " ".join(HOSTILE) + " " + LONG
    hostile = await make_case(
        world,
        10,
        text=text,
        author_name=HOSTILE[1],
        author_handle=HOSTILE[5],
        permalink=BAD_LINKS[0],
        evidence=False,
    )
    for i, link in enumerate(BAD_LINKS[1:], start=11):
        await make_case(world, i, text=HOSTILE[i % len(HOSTILE)], permalink=link, evidence=False)
    await add_note(world.store, hostile.case_id, author=HOSTILE[3], body=" ".join(HOSTILE), now=T0)
    for role in (Role.MODERATOR, Role.DSL):
        async with world.client(role) as c:
            queue = await c.get("/queue")
            pages = [queue.text]
            for i in range(10, 11 + len(BAD_LINKS) - 1):
                case_id = hostile.case_id + (i - 10)
                pages.append((await c.get(f"/cases/{case_id}")).text)
        assert queue.status_code == 200
        for page in pages:
            assert_inert(page)
        case_page = pages[1]
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in case_page
        assert "&lt;/textarea&gt;" in case_page
        assert "{{ 7 * 7 }} {% raw %}" in case_page  # data, never a template
        assert "[U+202E]" in case_page and "\u202e" not in case_page
        assert "[U+0000]" in case_page and "\x00" not in case_page
        assert LONG in case_page
        assert "Not linked (not a web address)" in case_page
        for page in pages:
            assert (
                "javascript:"
                not in " ".join(
                    str(v) for _, attrs in parse(page).tags for v in attrs.values()
                ).lower()
            )


async def test_a_web_permalink_is_a_link_that_leaks_no_referrer(world: World) -> None:
    made = await make_case(
        world, 20, permalink='https://facebook.example/p/1?x="a"', evidence=False
    )
    async with world.client(Role.MODERATOR) as c:
        page = (await c.get(f"/cases/{made.case_id}")).text
    links = [a for tag, a in parse(page).tags if tag == "a" and a.get("referrerpolicy")]
    assert links == [
        {
            "href": 'https://facebook.example/p/1?x="a"',
            "rel": "noreferrer noopener nofollow",
            "referrerpolicy": "no-referrer",
            "target": "_blank",
        }
    ]


def test_web_link_accepts_only_absolute_http() -> None:
    assert web_link("https://x.example/a") == "https://x.example/a"
    assert web_link("HTTP://x.example") == "HTTP://x.example"
    for bad in [*BAD_LINKS, None, "", "https://", "https://x.example/a b", "http:/x", "ftp://x"]:
        assert web_link(bad) is None, bad


@pytest.mark.parametrize(
    ("text", "spans", "expected"),
    [
        ("hello world", [(6, 11)], [("hello ", False), ("world", True)]),
        ("abc", [], [("abc", False)]),
        ("", [(0, 3)], [("", False)]),
        ("abcdef", [(1, 3), (2, 5)], [("a", False), ("bcde", True), ("f", False)]),
        ("abcdef", [(4, 99), (-5, 1)], [("a", True), ("bcd", False), ("ef", True)]),
        ("abc", [(2, 1), (1,), (0, 3)], [("abc", True)]),
    ],
)
def test_highlight_splits_at_the_spans(
    text: str, spans: list[tuple[int, ...]], expected: list[tuple[str, bool]]
) -> None:
    assert highlight(text, spans) == expected


@pytest.mark.parametrize(
    ("left", "status", "expected"),
    [
        (timedelta(hours=24), "open", ("later", "due in 24 h")),
        (timedelta(hours=2, minutes=59), "open", ("soon", "due in 2 h")),
        (timedelta(minutes=30), "open", ("soon", "due in 30 min")),
        (timedelta(0), "open", ("overdue", "overdue")),
        (timedelta(hours=-5), "open", ("overdue", "overdue")),
        (timedelta(hours=-5), "closed", ("", "")),
    ],
)
def test_due_badge(left: timedelta, status: str, expected: tuple[str, str]) -> None:
    assert due_badge(T0 + left, T0, status) == expected


# --- pages -----------------------------------------------------------------------------------


async def test_queue_shows_severity_chips_due_badges_and_counts(world: World) -> None:
    await make_case(world, 30, due=timedelta(hours=-1), evidence=False)
    async with world.client(Role.MODERATOR) as mod, world.client(Role.DSL) as dsl:
        mine = await mod.get("/queue")
        everything = await dsl.get("/queue")
        restricted = await dsl.get("/queue?status=open&view=restricted")
        filtered = await mod.get("/queue?flag=safeguarding&severity=nonsense&cell=x.y")
    assert mine.headers["content-security-policy"] == SECURITY_HEADERS["content-security-policy"]
    assert "overdue" in mine.text and "due in 24 h" in mine.text
    assert 'class="sev sev-medium"' in mine.text and "chip flag" in mine.text
    assert f'/cases/{world.cases["restricted"].case_id}"' not in mine.text
    assert "Restricted" not in mine.text  # the tab is the DSL's only
    assert f'/cases/{world.cases["restricted"].case_id}"' in everything.text
    assert 'class="chip restricted"' in everything.text
    assert f'/cases/{world.cases["open"].case_id}"' not in restricted.text
    assert f'/cases/{world.cases["restricted"].case_id}"' in restricted.text
    assert filtered.status_code == 200 and "Nothing here" in filtered.text
    assert 'Open<span class="count">3</span>' in everything.text
    assert 'Restricted<span class="count">1</span>' in everything.text
    assert 'Open<span class="count">2</span>' in mine.text
    assert 'Unassigned<span class="count">2</span>' in mine.text


async def test_nav_follows_the_role(world: World) -> None:
    expected = {
        Role.MODERATOR: ["/queue"],
        Role.DSL: ["/queue", "/escalations", "/audit", "/sources", "/accounts", "/report"],
        Role.ADMIN: [
            "/queue", "/audit", "/sources", "/accounts", "/report", "/admin/users",
            "/admin/settings",
        ],
    }  # fmt: skip
    for role, hrefs in expected.items():
        async with world.client(role) as c:
            page = (await c.get("/queue")).text
        nav = page[page.index('<nav class="main"') : page.index("</nav>")]
        assert [a["href"] for tag, a in parse(nav).tags if tag == "a"] == hrefs
        assert 'action="/logout"' in nav


async def test_case_page_highlights_and_blurs(world: World) -> None:
    made = world.cases["open"]
    async with world.client(Role.MODERATOR) as c:
        page = (await c.get(f"/cases/{made.case_id}")).text
        image = await c.get(f"/cases/{made.case_id}/evidence/{made.evidence_id}/0")
        raw = await c.get(f"/cases/{made.case_id}/evidence/{made.evidence_id}/1")
        beyond = await c.get(f"/cases/{made.case_id}/evidence/{made.evidence_id}/2")
    assert "you <mark>are a</mark>n idiot" in page
    markup = assert_inert(page)
    boxes = [a for tag, a in markup.tags if tag == "input" and a.get("class") == "reveal"]
    assert len(boxes) == 1 and "checked" not in boxes[0]
    assert (image.status_code, image.content) == (200, PNG)
    assert image.headers["content-type"] == "image/png"
    assert (raw.status_code, beyond.status_code) == (404, 404)  # only images are served


async def test_evidence_that_changed_or_left_the_directory_is_not_served(world: World) -> None:
    made = world.cases["open"]
    card = world.evidence_dir / "facebook/post-1/v1/card.png"
    card.write_bytes(PNG + b"tampered")
    async with world.client(Role.MODERATOR) as c:
        changed = await c.get(f"/cases/{made.case_id}/evidence/{made.evidence_id}/0")
    assert changed.status_code == 404


async def test_child_imagery_is_never_shown(world: World) -> None:
    made = await make_case(world, 40, verdict=CHILD_IMAGERY, proposals=ESCALATE)
    async with world.client(Role.DSL) as c:
        page = (await c.get(f"/cases/{made.case_id}")).text
        image = await c.get(f"/cases/{made.case_id}/evidence/{made.evidence_id}/0")
    assert "no image is ever stored or shown" in page and "<img" not in page
    assert image.status_code == 404


async def test_dsl_exports_the_evidence_pack(world: World) -> None:
    made = world.cases["restricted"]
    async with world.client(Role.DSL) as c:
        response = await c.get(f"/cases/{made.case_id}/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    assert "manifest.json" in names
    assert ("dsl", "evidence_exported", f"case:{made.case_id}") in await audit_events(world.store)


async def test_other_pages_render(world: World) -> None:
    async with world.client(Role.ADMIN) as admin, world.client(Role.DSL) as dsl:
        pages = {
            "sources": await admin.get("/sources"),
            "accounts": await admin.get("/accounts"),
            "report": await admin.get("/report?start=2026-10-01&end=2026-11-30"),
            "audit": await admin.get("/audit?actor=test&since=2026-11-01&until=2026-11-02"),
            "users": await admin.get("/admin/users"),
            "settings": await admin.get("/admin/settings"),
            "escalations": await dsl.get("/escalations"),
        }
        bad_period = await admin.get("/report?start=2026-12-01&end=2026-11-01")
    for name, response in pages.items():
        assert response.status_code == 200, name
        assert_inert(response.text)
    assert "fb" in pages["sources"].text
    assert "@head" in pages["accounts"].text
    assert "Cases" in pages["report"].text and "medium" in pages["report"].text
    assert "user_added" in pages["audit"].text
    assert "spare" in pages["users"].text
    assert "Oakfield Primary School" in pages["settings"].text
    assert "vigil.db" not in pages["settings"].text  # the database URL is never shown
    assert f"Case #{world.cases['restricted'].case_id}" in pages["escalations"].text
    assert bad_period.status_code == 400


# --- decisions -------------------------------------------------------------------------------


async def case_row(store: Store, case_id: int) -> t.Case:
    async with store.engine.connect() as conn:
        row = (await conn.execute(select(t.Case).where(t.Case.id == case_id))).one()
    return row  # type: ignore[return-value]


async def action_states(store: Store, case_id: int) -> dict[str, str]:
    return {a.kind: a.state for a in await store.case_actions(case_id)}


async def post(world: World, role: Role, url: str, /, **form: str) -> httpx.Response:
    async with world.client(role) as c:
        return await c.post(url, data={**form, "csrf": world.csrf(role)})


async def test_approve_reject_and_change(world: World) -> None:
    made = world.cases["open"]
    base = f"/cases/{made.case_id}/actions"
    approved = await post(world, Role.MODERATOR, f"{base}/{made.action_ids['hide']}/approve")
    assert approved.status_code == 303
    assert approved.headers["location"] == f"/cases/{made.case_id}?done=approved"
    changed = await post(
        world, Role.MODERATOR, f"{base}/{made.action_ids['report']}/change", kind="delete"
    )
    assert changed.status_code == 303
    assert await action_states(world.store, made.case_id) == {
        "hide": ActionState.APPROVED,
        "report": ActionState.REJECTED,
        "delete": ActionState.APPROVED,
    }
    again = await post(world, Role.MODERATOR, f"{base}/{made.action_ids['hide']}/approve")
    assert again.status_code == 409 and "Not done" in again.text
    foreign = await post(
        world, Role.DSL, f"{base}/{world.cases['restricted'].action_ids['escalate']}/reject"
    )
    assert foreign.status_code == 404  # an action of another case
    events = await audit_events(world.store)
    hide, report = made.action_ids["hide"], made.action_ids["report"]
    assert ("moderator", "action_approved", f"action:{hide}") in events
    assert ("moderator", "action_changed", f"action:{report}") in events
    async with world.client(Role.MODERATOR) as c:
        page = (await c.get(approved.headers["location"])).text
    assert "Action approved" in page
    assert "proposed → approved by" in page.replace("new → proposed", "")


async def test_hide_then_undo(world: World) -> None:
    made = await make_case(world, 50, proposals=(), evidence=True)
    hidden = await post(world, Role.MODERATOR, f"/cases/{made.case_id}/hide")
    assert hidden.status_code == 303
    (hide,) = await world.store.claim_due_actions(
        10, now=T0, lease=timedelta(minutes=5), school_id=world.school_id
    )
    await world.store.finish_action(hide.id, ActionState.DONE, now=T0, reason="hidden")
    undone = await post(world, Role.MODERATOR, f"/cases/{made.case_id}/actions/{hide.id}/undo")
    assert undone.status_code == 303
    assert await action_states(world.store, made.case_id) == {
        "hide": ActionState.DONE,
        "unhide": ActionState.APPROVED,
    }


async def test_false_positive_closes_and_allow_lists(world: World) -> None:
    made = world.cases["open"]
    response = await post(world, Role.MODERATOR, f"/cases/{made.case_id}/false-positive")
    assert response.status_code == 303
    row = await case_row(world.store, made.case_id)
    assert (row.status, row.outcome, row.closed_by) == ("closed", "false_positive", "moderator")
    async with world.store.engine.connect() as conn:
        allowed = (await conn.execute(select(t.AllowedText))).all()
    assert [(a.school_id, a.case_id) for a in allowed] == [(world.school_id, made.case_id)]
    assert set((await action_states(world.store, made.case_id)).values()) == {"rejected"}
    events = await audit_events(world.store)
    assert ("moderator", "allow_list_added", f"case:{made.case_id}") in events
    assert ("moderator", "case_closed", f"case:{made.case_id}") in events


async def test_note_assign_escalate_and_close(world: World) -> None:
    made = world.cases["open"]
    url = f"/cases/{made.case_id}"
    assert (
        await post(world, Role.MODERATOR, f"{url}/notes", body=" Rang the parent. ")
    ).status_code == 303
    empty = await post(world, Role.MODERATOR, f"{url}/notes", body="   ")
    assert empty.status_code == 400 and "The note is empty" in empty.text
    assert (await post(world, Role.MODERATOR, f"{url}/assign", to="me")).status_code == 303
    assert (await case_row(world.store, made.case_id)).assignee_id == world.users[Role.MODERATOR].id
    assert (
        await post(world, Role.MODERATOR, f"{url}/escalate", reason="worried")
    ).status_code == 303
    assert (await action_states(world.store, made.case_id))["escalate"] == ActionState.APPROVED
    bad = await post(world, Role.MODERATOR, f"{url}/close", outcome="vanished")
    assert bad.status_code == 400
    assert (
        await post(world, Role.MODERATOR, f"{url}/close", outcome="actioned")
    ).status_code == 303
    row = await case_row(world.store, made.case_id)
    assert (row.status, row.outcome) == ("closed", "actioned")
    async with world.client(Role.MODERATOR) as c:
        page = (await c.get(url)).text
    assert "Rang the parent." in page and "Moderator Person" in page
    async with world.store.engine.connect() as conn:
        notes = (await conn.execute(select(t.CaseNote.author, t.CaseNote.body))).all()
    assert [tuple(n) for n in notes] == [("moderator", "Rang the parent.")]
    events = {(a, e) for a, e, s in await audit_events(world.store) if s == f"case:{made.case_id}"}
    assert {
        ("moderator", "case_note_added"),
        ("moderator", "case_assigned"),
        ("moderator", "case_closed"),
    } <= events


async def test_dsl_acknowledges_and_records_the_outcome(world: World) -> None:
    esc = world.escalation_id
    ack = await post(world, Role.DSL, f"/escalations/{esc}/ack")
    assert (ack.status_code, ack.headers["location"]) == (303, "/escalations?done=acknowledged")
    outcome = await post(
        world,
        Role.DSL,
        f"/escalations/{esc}/outcome",
        outcome="lado",
        note="LADO called",
        back="case",
    )
    case_id = world.cases["restricted"].case_id
    assert (outcome.status_code, outcome.headers["location"]) == (
        303,
        f"/cases/{case_id}?done=outcome",
    )
    bad = await post(world, Role.DSL, f"/escalations/{esc}/outcome", outcome="shrug")
    assert bad.status_code == 400
    async with world.store.engine.connect() as conn:
        row = (await conn.execute(select(t.Escalation).where(t.Escalation.id == esc))).one()
    assert (row.state, row.acknowledged_by, row.outcome, row.outcome_note) == (
        "acknowledged",
        "Dsl Person",
        "lado",
        "LADO called",
    )
    events = await audit_events(world.store)
    assert ("Dsl Person", "escalation_acknowledged", f"escalation:{esc}") in events
    assert ("dsl", "escalation_outcome", f"escalation:{esc}") in events
    async with world.client(Role.DSL) as c:
        page = (await c.get(f"/cases/{case_id}")).text
    assert "LADO" in page and "LADO called" in page


async def test_admin_adds_and_disables_users(world: World) -> None:
    form = FORMS["users"]
    added = await post(world, Role.ADMIN, "/admin/users", **form)
    assert (added.status_code, added.headers["location"]) == (303, "/admin/users?done=added")
    twice = await post(world, Role.ADMIN, "/admin/users", **form)
    assert twice.status_code == 400 and "already exists" in twice.text
    short = await post(
        world,
        Role.ADMIN,
        "/admin/users",
        **(form | {"username": "x", "password": "short", "password_again": "short"}),
    )
    assert short.status_code == 400 and "12 characters" in short.text
    disabled = await post(world, Role.ADMIN, f"/admin/users/{world.spare_user}/disable")
    assert disabled.status_code == 303
    myself = await post(world, Role.ADMIN, f"/admin/users/{world.users[Role.ADMIN].id}/disable")
    assert myself.status_code == 400
    async with world.store.engine.connect() as conn:
        users = {r.username: r for r in (await conn.execute(select(t.User))).all()}
    assert users["spare"].disabled_at is not None and users["admin"].disabled_at is None
    assert users["newbie"].password_hash.startswith("$argon2id$")
    events = await audit_events(world.store)
    assert ("admin", "user_added", f"user:{users['newbie'].id}") in events
    assert ("admin", "user_disabled", f"user:{world.spare_user}") in events


async def test_signing_in_through_the_form(world: World) -> None:
    password = "correct horse battery staple"
    await add_user(
        world.store,
        username="priya",
        display_name="Priya Shah",
        email="dsl@oakfield.example.sch.uk",
        role=Role.DSL,
        password_hash=hash_password(password),
        school_ids=[world.school_id],
        actor="test",
        now=T0,
    )
    async with world.client(None) as c:
        first = await c.get("/cases/1")
        assert first.status_code == 303
        login = await c.post(
            "/login", data={"username": "priya", "password": password, "next": "/cases/1"}
        )
        assert (login.status_code, login.headers["location"]) == (303, "/cases/1")
        page = await c.get("/queue")
    assert page.status_code == 200 and "Priya Shah" in page.text


# --- CSV -------------------------------------------------------------------------------------


def read_csv(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment;")
    return list(csv.reader(io.StringIO(response.text)))


async def test_csv_exports_have_headers_and_no_formulas(world: World) -> None:
    await acknowledge(world.store, world.escalation_id, '=HYPERLINK("https://evil")', T0)
    async with world.client(Role.ADMIN) as c:
        audit = read_csv(await c.get("/audit.csv"))
        accounts = read_csv(await c.get("/accounts.csv"))
        report = read_csv(await c.get("/report.csv?start=2026-11-01&end=2026-11-30"))
    assert audit[0] == ["id", "at", "actor", "event", "subject_type", "subject_id", "detail"]
    assert '\'=HYPERLINK("https://evil")' in [row[2] for row in audit[1:]]
    assert accounts[0] == [
        "platform",
        "handle",
        "account_id",
        "master_administrator",
        "approved_posters",
        "opened",
        "closed",
    ]
    assert accounts[1] == [
        "facebook",
        '\'=HYPERLINK("https://evil.example","x")',
        "",
        "'@head",
        "'+44 1632 960000; Office",
        "2024-09-01",
        "",
    ]
    assert report[0] == ["section", "name", "value"]
    assert ["cases", "total", "2"] in report
    for rows in (audit, accounts, report):
        for row in rows:
            assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row), row
