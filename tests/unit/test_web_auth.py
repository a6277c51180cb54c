"""Signing in: passwords, throttling, sessions, CSRF, roles and redirects (SQLite and PostgreSQL).

The routes run in a small Starlette app built here: ``auth_routes()`` plus protected endpoints
wrapped in ``requires``, driven in-process through httpx.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from argon2 import PasswordHasher, Type
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from monitor.config import Settings
from monitor.store import Store, StoreError
from monitor.store import tables as t
from monitor.store.users import (
    Role,
    UserRecord,
    add_user,
    create_session,
    disable_user,
    end_session,
    find_user,
    get_user,
    list_users,
    session_user,
    set_password,
)
from monitor.web import auth
from monitor.web.app import TEMPLATES, WebContext
from monitor.web.auth import (
    SESSION_COOKIE,
    LoginThrottle,
    Viewer,
    auth_routes,
    can_see_case,
    hash_password,
    password_problem,
    requires,
    safe_next,
    verify_password,
)
from monitor.web.pages import install_filters
from tests.conftest import Clock

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
BASE = "https://vigil.example.sch.uk"
PASSWORD = "correct horse battery staple"
# Cheap argon2id parameters keep the tests fast; verifying reads the parameters from the hash.
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
OTHER_IP = ("198.51.100.7", 4000)
REAL_HASHER = auth.HASHER  # before the fixture below swaps it


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(auth, "HASHER", CHEAP)


# -- passwords ----------------------------------------------------------------------------------


def test_hash_round_trip_is_argon2id_and_salted() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)
    assert first.startswith("$argon2id$") and first != second
    assert verify_password(first, PASSWORD) and verify_password(second, PASSWORD)
    assert not verify_password(first, PASSWORD + "!")
    assert not verify_password("not-a-hash", PASSWORD)


def test_the_app_hasher_is_argon2id_at_a_real_cost() -> None:
    assert REAL_HASHER.type is Type.ID
    assert REAL_HASHER.memory_cost >= 19 * 1024 and REAL_HASHER.time_cost >= 2  # OWASP minimum


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "at least 12"),
        ("elevenchars", "at least 12"),
        ("            ", "only spaces"),
        ("abababababababab", "different characters"),
        ("x" * 1025, "at most 1024"),
        ("twelve chars", None),
        (PASSWORD, None),
    ],
)
def test_password_policy(password: str, problem: str | None) -> None:
    found = password_problem(password)
    assert found == problem if problem is None else (found is not None and problem in found)


# -- the throttle -------------------------------------------------------------------------------


def test_throttle_blocks_after_five_failures_and_releases_after_the_window() -> None:
    throttle, now = LoginThrottle(), T0
    for _ in range(4):
        throttle.failed("user:alice", now)
        now += timedelta(minutes=1)
    assert not throttle.blocked("user:alice", now)
    throttle.failed("user:alice", now)
    assert throttle.blocked("user:alice", now)
    assert throttle.blocked("user:alice", now + timedelta(minutes=14, seconds=59))
    assert not throttle.blocked("ip:203.0.113.5", now)
    assert not throttle.blocked("user:alice", now + timedelta(minutes=15))
    throttle.failed("user:alice", now + timedelta(minutes=15))  # a fresh count
    assert not throttle.blocked("user:alice", now + timedelta(minutes=15))


def test_throttle_window_slides_and_success_clears() -> None:
    throttle = LoginThrottle()
    for minute in range(0, 40, 10):  # 4 failures 10 minutes apart: never 5 within 15 minutes
        throttle.failed("k", T0 + timedelta(minutes=minute))
    at = T0 + timedelta(minutes=41)
    throttle.failed("k", at)  # 30 and 41 are within 15 minutes; 0, 10 and 20 have slid out
    assert not throttle.blocked("k", at)
    for _ in range(2):
        throttle.failed("k", at)
    throttle.succeeded("k")  # 4 failures forgotten
    for _ in range(4):
        throttle.failed("k", at)
    assert not throttle.blocked("k", at)
    throttle.failed("k", at)
    assert throttle.blocked("k", at)


# -- safe redirects -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/cases/3?tab=mine", "/cases/3?tab=mine"),
        ("/", "/"),
        ("//evil.example", "/"),
        ("//evil.example/cases", "/"),
        ("https://evil.example", "/"),
        ("https:/evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/\t/evil.example", "/"),
        ("javascript:alert(1)", "/"),
        ("evil.example", "/"),
        ("", "/"),
        ("/login?next=/x", "/"),
        ("/" + "a" * 3000, "/"),
    ],
)
def test_safe_next_allows_only_paths_on_this_site(target: str, expected: str) -> None:
    assert safe_next(target) == expected


# -- the store ------------------------------------------------------------------------------------


async def make_user(
    store: Store,
    username: str = "alice",
    role: Role = Role.MODERATOR,
    password: str = PASSWORD,
    school: str = "oakfield",
) -> UserRecord:
    school_id = await store.ensure_school(school, school.title(), T0)
    return await add_user(
        store,
        username=username,
        display_name=username.strip().title(),
        email=f"{username.strip().lower()}@oakfield.example.sch.uk",
        role=role,
        password_hash=hash_password(password),
        school_ids=[school_id],
        actor="test",
        now=T0,
    )


async def audit(store: Store, event: str) -> list[t.AuditEntry]:
    async with store.engine.connect() as conn:
        rows = await conn.execute(select(t.AuditEntry).where(t.AuditEntry.event == event))
        return list(rows.all())  # type: ignore[arg-type]


async def test_users_are_added_found_and_listed(store: Store) -> None:
    alice = await make_user(store, " Alice ", Role.DSL)
    assert alice.username == "alice" and alice.role is Role.DSL and not alice.disabled
    assert alice.display_name == "Alice" and len(alice.school_ids) == 1
    with pytest.raises(StoreError, match="already exists"):
        await make_user(store, "ALICE")
    with pytest.raises(ValueError, match="username"):
        await make_user(store, "bad name")
    await make_user(store, "bob")
    found = await find_user(store, "Alice")
    assert found is not None and found[0] == alice and verify_password(found[1] or "", PASSWORD)
    assert await find_user(store, "nobody") is None and await find_user(store, "") is None
    assert await get_user(store, alice.id) == alice and await get_user(store, 999) is None
    assert [u.username for u in await list_users(store)] == ["alice", "bob"]
    (entry, _bob) = await audit(store, "user_added")
    assert entry.subject_id == alice.id and entry.school_id == alice.school_ids[0]
    assert json.loads(entry.detail) == {
        "username": "alice",
        "role": "dsl",
        "school_ids": list(alice.school_ids),
    }
    assert "argon2" not in entry.detail


async def test_sessions_keep_only_the_token_hash_and_end(store: Store) -> None:
    alice = await make_user(store)
    token, csrf = await create_session(store, alice.id, now=T0, lifetime=timedelta(hours=1))
    async with store.engine.connect() as conn:
        stored = (await conn.execute(select(t.WebSession.token_hash))).scalars().all()
    assert stored and token not in stored[0] and len(stored[0]) == 64
    found = await session_user(store, token, now=T0, idle=timedelta(minutes=30))
    assert found == (alice, csrf)
    assert await session_user(store, "x" * 500, now=T0, idle=timedelta(minutes=30)) is None
    await end_session(store, token)
    assert await session_user(store, token, now=T0, idle=timedelta(minutes=30)) is None


async def test_password_change_and_disable_are_audited_without_the_hash(store: Store) -> None:
    alice = await make_user(store)
    await set_password(store, "alice", hash_password("another long password"), actor="t", now=T0)
    await disable_user(store, "ALICE", actor="t", now=T0)
    found = await find_user(store, "alice")
    assert found is not None and found[0].disabled
    assert verify_password(found[1] or "", "another long password")
    with pytest.raises(StoreError, match="no user"):
        await set_password(store, "nobody", "h", actor="t", now=T0)
    with pytest.raises(StoreError, match="no user"):
        await disable_user(store, "nobody", actor="t", now=T0)
    for event in ("user_password_set", "user_disabled"):
        (entry,) = await audit(store, event)
        assert entry.subject_id == alice.id and "argon2" not in entry.detail


# -- the routes -----------------------------------------------------------------------------------


async def whoami(request: Request, viewer: Viewer) -> Response:
    """A protected page that shows what ``requires`` handed it."""
    body = {"user": viewer.user.username, "csrf": viewer.csrf, "form": request.state.form}
    return JSONResponse(body)


def make_app(settings: Settings, store: Store, clock: Clock) -> Starlette:
    templates = Environment(
        loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined
    )
    install_filters(templates)  # as create_app does: the page frame's nav
    app = Starlette(
        routes=[
            *auth_routes(),
            Route("/private", requires()(whoami), methods=["GET", "POST"]),
            Route("/dsl-only", requires(Role.DSL)(whoami), methods=["GET", "POST"]),
        ]
    )
    app.state.vigil = WebContext(settings=settings, store=store, clock=clock, templates=templates)
    return app


Client = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def make_client(
    store: Store, make_settings: Callable[..., Settings], clock: Clock
) -> AsyncIterator[Client]:
    """Clients of one app (per base URL); each client may come from its own address."""
    apps: dict[str, Starlette] = {}
    clients: list[httpx.AsyncClient] = []

    def make(
        base: str = BASE, address: tuple[str, int] = ("203.0.113.5", 1234)
    ) -> httpx.AsyncClient:
        if base not in apps:
            apps[base] = make_app(make_settings(web={"base_url": base}), store, clock)
        transport = httpx.ASGITransport(app=apps[base], client=address)
        client = httpx.AsyncClient(transport=transport, base_url=base)
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


@pytest.fixture
async def client(make_client: Client) -> httpx.AsyncClient:
    return make_client()


async def login(
    client: httpx.AsyncClient,
    username: str = "alice",
    password: str = PASSWORD,
    next: str = "/",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    data = {"username": username, "password": password, "next": next}
    return await client.post("/login", data=data, headers=headers)


async def csrf_of(client: httpx.AsyncClient) -> str:
    response = await client.get("/private")
    assert response.status_code == 200
    return str(response.json()["csrf"])


async def test_login_sets_a_strict_http_only_secure_cookie(
    store: Store, client: httpx.AsyncClient
) -> None:
    await make_user(store)
    page = await client.get("/login?next=/cases/7")
    assert page.status_code == 200 and 'name="password"' in page.text
    assert 'value="/cases/7"' in page.text
    response = await login(client, " Alice ", next="/cases/7")
    assert response.status_code == 303 and response.headers["location"] == "/cases/7"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    for attribute in ("httponly", "samesite=strict", "path=/", "secure"):
        assert attribute in cookie
    assert "max-age" not in cookie and "expires" not in cookie  # gone when the browser closes
    assert (await client.get("/private")).json()["user"] == "alice"
    again = await client.get("/login?next=/queue")  # already signed in: straight on
    assert again.status_code == 303 and again.headers["location"] == "/queue"


async def test_cookie_is_not_secure_on_a_plain_http_base_url(
    store: Store, make_client: Client
) -> None:
    await make_user(store)
    response = await login(make_client("http://127.0.0.1:8080"))
    assert response.status_code == 303
    assert "secure" not in response.headers["set-cookie"].lower()


async def test_wrong_password_unknown_user_and_disabled_user_get_the_same_answer(
    store: Store, make_client: Client
) -> None:
    await make_user(store)
    await make_user(store, "dora")
    await disable_user(store, "dora", actor="test", now=T0)
    answers = []
    for username, password in (
        ("alice", "wrong password!!"),
        ("nobody", PASSWORD),
        ("dora", PASSWORD),
    ):
        response = await login(make_client(), username, password)
        assert "set-cookie" not in response.headers
        answers.append((response.status_code, "Wrong username or password." in response.text))
    assert answers == [(400, True)] * 3


async def test_the_login_page_escapes_what_it_echoes(client: httpx.AsyncClient) -> None:
    hostile = '/x"><script>alert(1)</script>'
    page = await client.get("/login", params={"next": hostile})
    assert "<script>" not in page.text and "&lt;script&gt;" in page.text
    failed = await login(client, "<b>bob</b>", "whatever password")
    assert "<b>bob</b>" not in failed.text and "&lt;b&gt;bob&lt;/b&gt;" in failed.text


async def test_five_failures_block_the_username_for_fifteen_minutes(
    store: Store, make_client: Client, clock: Clock
) -> None:
    await make_user(store)
    for n in range(5):  # from five different addresses: the username count still adds up
        response = await login(
            make_client(address=(f"203.0.113.{n + 10}", 1)), "alice", "nope nope nope"
        )
        assert response.status_code == 400
    blocked = await login(make_client(address=OTHER_IP), "alice", PASSWORD)
    assert blocked.status_code == 429 and "Too many failed sign-ins" in blocked.text
    assert "set-cookie" not in blocked.headers
    clock.advance(minutes=15)
    assert (await login(make_client(address=OTHER_IP), "alice", PASSWORD)).status_code == 303


async def test_five_failures_block_the_address(
    store: Store, make_client: Client, clock: Clock
) -> None:
    await make_user(store)
    attacker = make_client()
    for n in range(5):  # five different usernames from one address
        assert (await login(attacker, f"user{n}", "nope nope nope")).status_code == 400
    assert (await login(attacker, "alice", PASSWORD)).status_code == 429
    assert (await login(make_client(address=OTHER_IP), "alice", PASSWORD)).status_code == 303
    clock.advance(minutes=15)
    assert (await login(attacker, "alice", PASSWORD)).status_code == 303


async def test_sessions_end_when_idle(
    store: Store, client: httpx.AsyncClient, clock: Clock
) -> None:
    await make_user(store)
    await login(client)
    for _ in range(2):
        clock.advance(minutes=50)
        assert (await client.get("/private")).status_code == 200
    clock.advance(minutes=61)
    response = await client.get("/private")
    assert response.status_code == 303 and response.headers["location"].startswith("/login")


async def test_sessions_end_after_their_lifetime_even_when_busy(
    store: Store, client: httpx.AsyncClient, clock: Clock
) -> None:
    await make_user(store)
    await login(client)
    for _ in range(14):  # 11 h 40 min of steady use
        clock.advance(minutes=50)
        assert (await client.get("/private")).status_code == 200
    clock.advance(minutes=20)
    assert (await client.get("/private")).status_code == 303


async def test_logout_ends_the_session(store: Store, make_client: Client) -> None:
    await make_user(store)
    client = make_client()
    await login(client)
    token = client.cookies[SESSION_COOKIE]
    csrf = await csrf_of(client)
    assert (await client.post("/logout", data={"csrf": "wrong"})).status_code == 403
    assert (await client.get("/private")).status_code == 200  # a forged logout changed nothing
    response = await client.post("/logout", data={"csrf": csrf})
    assert response.status_code == 303 and response.headers["location"] == "/login"
    assert f'{SESSION_COOKIE}=""' in response.headers["set-cookie"]
    replay = make_client()  # the old cookie, presented again
    stale = await replay.get("/private", headers={"cookie": f"{SESSION_COOKIE}={token}"})
    assert stale.status_code == 303
    assert (await make_client().post("/logout")).status_code == 303  # signed out already


@pytest.mark.parametrize("change", ["disable", "password"])
async def test_disabling_or_a_new_password_ends_sessions(
    store: Store, client: httpx.AsyncClient, change: str
) -> None:
    await make_user(store)
    await login(client)
    assert (await client.get("/private")).status_code == 200
    if change == "disable":
        await disable_user(store, "alice", actor="admin", now=T0)
    else:
        await set_password(store, "alice", hash_password("a brand new password"), actor="a", now=T0)
    assert (await client.get("/private")).status_code == 303
    assert (await login(client, password="a brand new password")).status_code == (
        400 if change == "disable" else 303
    )


async def test_posts_need_the_session_csrf_token(store: Store, client: httpx.AsyncClient) -> None:
    await make_user(store)
    await login(client)
    csrf = await csrf_of(client)
    for form in ({"note": "hi"}, {"note": "hi", "csrf": "wrong"}, {"csrf": "é" + csrf[1:]}):
        assert (await client.post("/private", data=form)).status_code == 403
    ok = await client.post("/private", data={"csrf": csrf, "note": "hi", "empty": ""})
    assert ok.status_code == 200
    assert ok.json()["form"] == {"csrf": csrf, "note": "hi", "empty": ""}
    not_a_form = await client.post("/private", json={"csrf": csrf})
    assert not_a_form.status_code == 400
    too_big = await client.post("/private", data={"csrf": csrf, "note": "x" * 70_000})
    assert too_big.status_code == 400


CROSS_SITE: list[tuple[dict[str, str], int]] = [
    ({"origin": "https://evil.example"}, 403),
    ({"origin": "http://vigil.example.sch.uk"}, 403),  # another scheme is another origin
    ({"referer": "https://evil.example/page"}, 403),
    ({"sec-fetch-site": "cross-site"}, 403),
    ({"sec-fetch-site": "same-site"}, 403),
    ({"origin": BASE}, 200),
    ({"origin": "null"}, 200),  # a same-origin form under Referrer-Policy: no-referrer
    ({"referer": f"{BASE}/cases/1"}, 200),
    ({"sec-fetch-site": "same-origin"}, 200),
    ({}, 200),
]


async def test_posts_from_another_site_are_refused(store: Store, make_client: Client) -> None:
    await make_user(store)
    client = make_client()
    await login(client)
    csrf = await csrf_of(client)
    for headers, status in CROSS_SITE:
        response = await client.post("/private", data={"csrf": csrf}, headers=headers)
        assert response.status_code == status, headers
        signing_in = await login(make_client(address=OTHER_IP), headers=headers)
        assert signing_in.status_code == (303 if status == 200 else 403), headers


async def test_roles_are_enforced(store: Store, make_client: Client) -> None:
    await make_user(store, "mo", Role.MODERATOR)
    await make_user(store, "dee", Role.DSL)
    moderator, dsl = make_client(), make_client(address=OTHER_IP)
    await login(moderator, "mo")
    await login(dsl, "dee")
    refused = await moderator.get("/dsl-only")
    assert refused.status_code == 403 and "Not allowed" in refused.text
    post = await moderator.post("/dsl-only", data={"csrf": await csrf_of(moderator)})
    assert post.status_code == 403
    assert (await dsl.get("/dsl-only")).json()["user"] == "dee"
    assert (await dsl.post("/dsl-only", data={"csrf": await csrf_of(dsl)})).status_code == 200


def test_only_a_dsl_sees_restricted_cases() -> None:
    def as_role(role: Role) -> Viewer:
        user = UserRecord(
            id=1,
            username="u",
            display_name="U",
            email="u@x.example",
            role=role,
            disabled=False,
            school_ids=(1,),
        )
        return Viewer(user=user, csrf="c")

    assert can_see_case(as_role(Role.DSL), restricted=True)
    for role in (Role.MODERATOR, Role.ADMIN):
        assert not can_see_case(as_role(role), restricted=True)
        assert can_see_case(as_role(role), restricted=False)


async def test_anonymous_get_goes_to_login_and_comes_back(
    store: Store, client: httpx.AsyncClient
) -> None:
    await make_user(store)
    response = await client.get("/private?tab=mine&n=2")
    assert response.status_code == 303
    location = response.headers["location"]
    assert location == "/login?next=%2Fprivate%3Ftab%3Dmine%26n%3D2"
    assert (await client.post("/private", data={"csrf": "x"})).status_code == 403
    page = await client.get(location)
    assert 'value="/private?tab=mine&amp;n=2"' in page.text
    back = await login(client, next="/private?tab=mine&n=2")
    assert back.headers["location"] == "/private?tab=mine&n=2"


async def test_login_never_redirects_off_site(store: Store, make_client: Client) -> None:
    await make_user(store)
    for target in (
        "//evil.example",
        "https://evil.example",
        "/\\evil.example",
        "http:evil.example",
    ):
        response = await login(make_client(), next=target)
        assert response.status_code == 303 and response.headers["location"] == "/", target


async def test_sign_ins_failures_and_sign_outs_are_audited(
    store: Store, make_client: Client
) -> None:
    await make_user(store)
    client = make_client()
    await login(client, "alice", "not the password at all")
    await login(client)
    await client.post("/logout", data={"csrf": await csrf_of(client)})
    async with store.engine.connect() as conn:
        rows = (
            await conn.execute(
                select(t.AuditEntry.event, t.AuditEntry.actor, t.AuditEntry.detail)
                .where(t.AuditEntry.subject_type == "user")
                .order_by(t.AuditEntry.id)
            )
        ).all()
    events = [(event, actor) for event, actor, _ in rows if event != "user_added"]
    assert events == [("login_failed", "alice"), ("logged_in", "alice"), ("logged_out", "alice")]
    assert all(PASSWORD not in detail and "not the password" not in detail for *_, detail in rows)
