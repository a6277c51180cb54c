"""Retention on SQLite and PostgreSQL, on items made by the real pipeline: the dry run, the
purge (and its tombstones in the evidence chain), legal holds, the subject access export,
the audit entries, the commands and the case page's hold toggle."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
import zipfile
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from click.testing import CliRunner
from sqlalchemy import inspect, select, update
from starlette.applications import Starlette

from actions.evidence import safe_name
from classifiers import Classifier
from monitor import cli
from monitor.app import App, build_app, build_classifier_for, purge_expired
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.evidence_cmd import verify_evidence
from monitor.retention_cmd import cutoffs, purge_school
from monitor.sar_export import DATA_MEMBER, export_author
from monitor.store import Store, StoreError, review
from monitor.store import tables as t
from monitor.store.legal_hold import legal_hold, place_hold, release_hold
from monitor.store.migrate import alembic_config, upgrade
from monitor.store.retention import PURGE_EVENT, PurgeRule, id_ranges, plan_purge
from monitor.store.users import Role, add_user, create_session
from monitor.web import create_app
from monitor.web.auth import SESSION_COOKIE
from tests.conftest import Clock

ABUSE = "You are a worthless fat pig and everyone hates you"  # abusive
THEFT = "Mr Hughes stole from the PTA fund"  # defamatory
SELF_HARM = "I want to kill myself, nobody at this school cares"  # safeguarding
SPAM = "Buy cheap followers at spam.example now!!! click here"  # spam: a false positive here
CHILD = "leaked nudes of a year 9 girl at Oakfield, everyone has seen them"  # child imagery
CLEAN = "Lovely assembly today, well done everyone"
# external id → (platform, author handle, text); "parent.one" posts on two platforms.
POSTS = {
    "abuse": ("facebook", "Parent.One", ABUSE),
    "theft": ("x", "@parent.one", THEFT),
    "selfharm": ("facebook", "pupil.two", SELF_HARM),
    "spam": ("facebook", "spammer", SPAM),
    "child": ("facebook", "PARENT.ONE", CHILD),
    "clean": ("facebook", "parent.one", CLEAN),
}
TEXTS = [text for _p, _h, text in POSTS.values()]
RETENTION = {"unflagged_days": 30, "quarantine_days": 30, "flagged_days": 365}
BASE = "https://vigil.example.sch.uk"


def replay_source(tmp_path: Path) -> dict[str, Any]:
    """The posts above, and one line without an id (it is quarantined)."""
    lines = [
        {
            "op": "post",
            "platform": platform,
            "external_id": key,
            "source": "own",
            "author_id": f"id-{handle.lower().lstrip('@')}",
            "author_handle": handle,
            "author_name": f"Name of {key}",
            "text": text,
            "created_at": "2026-11-02T08:00:00Z",
            "permalink": f"https://www.facebook.com/oakfield/posts/{key}",
        }
        for key, (platform, handle, text) in POSTS.items()
    ]
    lines.append({"op": "post", "platform": "facebook", "text": "no id"})
    path = tmp_path / "posts.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return {"name": "replay", "platform": "replay", "kind": "own", "options": {"path": str(path)}}


@dataclass(kw_only=True)
class Site:
    """A school after one `vigil run --once` over the posts."""

    app: App
    settings: Settings
    clock: Clock
    items: dict[str, int]
    cases: dict[str, int]

    @property
    def store(self) -> Store:
        return self.app.store

    @property
    def school_id(self) -> int:
        return self.app.pipeline.school_id

    @property
    def evidence_dir(self) -> Path:
        return self.settings.under_state(self.settings.evidence.dir)


async def ids_by_key(store: Store) -> tuple[dict[str, int], dict[str, int]]:
    """(items, cases) by external id."""
    async with store.engine.connect() as conn:
        items = dict((await conn.execute(select(t.Item.external_id, t.Item.id))).all())
        cases = dict(
            (
                await conn.execute(
                    select(t.Item.external_id, t.Case.id).join(t.Item, t.Item.id == t.Case.item_id)
                )
            ).all()
        )
    return items, cases


_CLASSIFIER: list[Classifier] = []  # the real classifier, built once for the module


def cached_classifier(settings: Settings) -> Classifier:
    if not _CLASSIFIER:
        _CLASSIFIER.append(build_classifier_for(settings))
    return _CLASSIFIER[0]


@pytest.fixture
async def site(
    database_url: str,
    make_settings: Callable[..., Settings],
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Site]:
    monkeypatch.setattr("monitor.app.build_classifier_for", cached_classifier)
    settings = make_settings(
        database={"url": database_url},
        sources=[replay_source(tmp_path)],
        retention=RETENTION,
        web={"base_url": BASE},
    )
    app = await build_app(settings, clock=clock)
    try:
        await app.run_once()
        items, cases = await ids_by_key(app.store)
        assert set(cases) == {"abuse", "theft", "selfharm", "spam", "child"}, cases
        yield Site(app=app, settings=settings, clock=clock, items=items, cases=cases)
    finally:
        await app.close()


async def close_cases(site: Site) -> None:
    """Abuse and theft closed as moderation cases, self-harm referred, spam a false positive;
    the child imagery case stays open. Theft goes on legal hold."""
    store, now = site.store, site.clock()
    await review.add_note(store, site.cases["abuse"], author="mod", body="spoke to them", now=now)
    await review.close_case(store, site.cases["abuse"], "actioned", actor="mod", now=now)
    await review.close_case(store, site.cases["theft"], "no_action", actor="mod", now=now)
    await review.close_case(store, site.cases["selfharm"], "referred", actor="dsl", now=now)
    await review.mark_false_positive(store, site.cases["spam"], actor="mod", now=now)
    await place_hold(store, site.cases["theft"], reason="solicitor's letter", actor="dsl", now=now)


async def snapshot(store: Store) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table."""
    out: dict[str, list[tuple[Any, ...]]] = {}
    async with store.engine.connect() as conn:
        for table in t.Base.metadata.sorted_tables:
            out[table.name] = sorted(
                (tuple(r) for r in (await conn.execute(select(table))).all()), key=repr
            )
    return out


async def evidence_rows(store: Store) -> dict[int, t.Evidence]:
    """Evidence rows by item id."""
    async with store.transaction() as s:
        return {r.item_id: r for r in await s.scalars(select(t.Evidence))}


async def audit_rows(store: Store, event: str) -> list[t.AuditEntry]:
    async with store.transaction() as s:
        query = select(t.AuditEntry).where(t.AuditEntry.event == event)
        return list(await s.scalars(query.order_by(t.AuditEntry.id)))


def relpaths(row: t.Evidence) -> list[str]:
    return [str(f["relpath"]) for f in json.loads(row.files)]


def assert_no_post_text(text: str) -> None:
    for post in TEXTS:
        assert post not in text
    assert "parent.one" not in text.lower() and "pupil.two" not in text


# --- dry run and purge ------------------------------------------------------------------------


async def test_the_dry_run_changes_nothing_and_lists_what_the_purge_removes(site: Site) -> None:
    await close_cases(site)
    site.clock.advance(days=400)
    now, store = site.clock(), site.store
    before = await snapshot(store)
    plan = await plan_purge(store, site.school_id, cutoffs(site.settings, now))
    assert await snapshot(store) == before

    assert plan.clean_items == (site.items["clean"],) and len(plan.quarantine) == 1
    assert {c.case_id: c.rule for c in plan.cases} == {
        site.cases["abuse"]: PurgeRule.FLAGGED,
        site.cases["spam"]: PurgeRule.FALSE_POSITIVE,
    }
    assert plan.held == (site.cases["theft"],)  # self-harm (25 years) and child (open) stay
    assert plan.counts["notes"] == 1 and plan.counts["evidence_entries"] == 2

    outcome = await purge_school(store, site.settings, site.school_id, now)
    assert outcome.plan == plan and outcome.files_failed == 0
    after = await snapshot(store)
    gone = {name: len(before[name]) - len(after[name]) for name in before}
    assert gone["items"] == plan.counts["clean_items"]
    assert gone["quarantine"] == plan.counts["quarantine"]
    for table, key in (
        ("item_versions", "versions"),
        ("verdicts", "verdicts"),
        ("case_notes", "notes"),
        ("actions", "actions"),
        ("action_transitions", "action_transitions"),
        ("escalations", "escalations"),
    ):
        assert gone[table] == plan.counts[key], table
    assert gone["cases"] == gone["evidence"] == 0  # kept: the case record, the chain's links
    assert gone["audit_log"] == -1  # one entry added, none removed


async def test_a_purge_keeps_a_content_free_record_and_deletes_the_files(site: Site) -> None:
    await close_cases(site)
    kept_before = {
        k: (await evidence_rows(site.store))[site.items[k]] for k in ("selfharm", "child")
    }
    purged_files = [
        site.evidence_dir / p
        for k in ("abuse", "spam")
        for p in relpaths((await evidence_rows(site.store))[site.items[k]])
    ]
    assert purged_files and all(p.exists() for p in purged_files)
    site.clock.advance(days=400)
    assert await purge_expired(site.app, site.clock()) == {"items": 3, "quarantine": 1}

    assert not any(p.exists() for p in purged_files)
    assert not (site.evidence_dir / "facebook" / "abuse").exists()  # emptied directories go
    rows = await evidence_rows(site.store)
    for key in ("abuse", "spam"):
        row = rows[site.items[key]]
        assert row.purged_at is not None and row.files == "[]" and row.meta == "{}"
        assert len(row.entry_hash) == len(row.prev_hash) == 64
    for key, row in kept_before.items():
        now_row = rows[site.items[key]]
        assert (now_row.purged_at, now_row.files, now_row.meta) == (None, row.files, row.meta)
        assert all((site.evidence_dir / p).exists() for p in relpaths(now_row))
    async with site.store.transaction() as s:
        item = await s.get(t.Item, site.items["abuse"])
        case = await s.get(t.Case, site.cases["abuse"])
        assert item is not None and case is not None
        assert item.external_id == f"purged:{item.id}"
        assert (item.author_id, item.author_handle, item.author_name, item.permalink) == (None,) * 4
        assert case.purged_at is not None and case.outcome == "actioned"
    (entry,) = await audit_rows(site.store, PURGE_EVENT)
    detail = json.loads(entry.detail)
    assert entry.school_id == site.school_id and entry.actor == "policy"
    assert detail["case_ids"] == sorted([site.cases["abuse"], site.cases["spam"]])
    assert detail["clean_item_ids"] == id_ranges([site.items["clean"]])
    assert detail["held_case_ids"] == [site.cases["theft"]]
    assert_no_post_text(entry.detail)
    # Nothing is left to purge, and a purged case cannot be held.
    assert (
        await plan_purge(site.store, site.school_id, cutoffs(site.settings, site.clock()))
    ).empty
    with pytest.raises(StoreError, match="purged"):
        await place_hold(site.store, site.cases["abuse"], reason="x", actor="dsl", now=site.clock())


async def test_open_and_recently_closed_cases_are_kept(site: Site) -> None:
    await close_cases(site)
    site.clock.advance(days=364)  # abuse's year is not over; the false positive's 30 days are
    plan = await plan_purge(site.store, site.school_id, cutoffs(site.settings, site.clock()))
    assert [c.case_id for c in plan.cases] == [site.cases["spam"]]
    site.clock.advance(days=3650)  # ten years on: every closed case is due but self-harm's
    plan = await plan_purge(site.store, site.school_id, cutoffs(site.settings, site.clock()))
    due = {c.case_id for c in plan.cases}
    assert site.cases["selfharm"] not in due and site.cases["child"] not in due
    assert site.cases["abuse"] in due


async def test_a_safeguarding_case_goes_after_its_own_period_with_its_email_copies(
    site: Site,
) -> None:
    await close_cases(site)
    outbox = site.settings.under_state(site.settings.email.outbox_dir)
    async with site.store.engine.connect() as conn:
        message_id = await conn.scalar(
            select(t.Escalation.message_id).where(t.Escalation.case_id == site.cases["selfharm"])
        )
    assert message_id is not None
    email = outbox / f"{safe_name(message_id.strip('<>'))}.eml"
    pack = site.settings.under_state(Path("reports")) / f"case-{site.cases['selfharm']}-report.txt"
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.write_text("a report pack", encoding="utf-8")
    assert email.exists()
    retention = replace(site.settings.retention, safeguarding_days=500)
    shorter = replace(site.settings, retention=retention)
    site.clock.advance(days=501)
    outcome = await purge_school(site.store, shorter, site.school_id, site.clock())
    rules = {c.case_id: c.rule for c in outcome.plan.cases}
    assert rules[site.cases["selfharm"]] is PurgeRule.SAFEGUARDING
    assert outcome.plan.counts["escalations"] == 1
    assert not email.exists() and not pack.exists()
    assert len(list(outbox.glob("*.eml"))) == 1  # the open child case's escalation stays


# --- legal hold -------------------------------------------------------------------------------


async def test_a_legal_hold_prevents_the_purge_and_releasing_it_allows_it(site: Site) -> None:
    await close_cases(site)
    store, theft = site.store, site.cases["theft"]
    hold = await legal_hold(store, theft)
    assert hold is not None and hold.reason == "solicitor's letter" and hold.by == "dsl"
    site.clock.advance(days=400)
    await purge_expired(site.app, site.clock())
    async with store.engine.connect() as conn:
        versions = await conn.scalar(
            select(t.ItemVersion.text).where(t.ItemVersion.item_id == site.items["theft"])
        )
    assert versions == THEFT  # held: untouched

    with pytest.raises(StoreError, match="already on legal hold"):
        await place_hold(store, theft, reason="again", actor="dsl", now=site.clock())
    with pytest.raises(StoreError, match="no case"):
        await place_hold(
            store, theft, reason="x", actor="dsl", now=site.clock(), school_id=site.school_id + 1
        )
    with pytest.raises(ValueError, match="reason"):
        await place_hold(store, site.cases["child"], reason="  ", actor="dsl", now=site.clock())
    await release_hold(store, theft, actor="dsl", now=site.clock())
    assert await legal_hold(store, theft) is None
    with pytest.raises(StoreError, match="not on legal hold"):
        await release_hold(store, theft, actor="dsl", now=site.clock())

    plan = await plan_purge(store, site.school_id, cutoffs(site.settings, site.clock()))
    assert [c.case_id for c in plan.cases] == [theft] and plan.held == ()
    await purge_expired(site.app, site.clock())
    async with store.engine.connect() as conn:
        left = await conn.scalar(
            select(t.ItemVersion.id).where(t.ItemVersion.item_id == site.items["theft"])
        )
    assert left is None
    placed = await audit_rows(store, "legal_hold_placed")
    released = await audit_rows(store, "legal_hold_released")
    assert [json.loads(a.detail)["reason"] for a in placed] == ["solicitor's letter"]
    assert [(a.subject_type, a.subject_id, a.actor) for a in released] == [("case", theft, "dsl")]
    assert len(await audit_rows(store, PURGE_EVENT)) == 2


# --- the evidence chain -----------------------------------------------------------------------


async def test_the_chain_verifies_after_a_purge_and_still_detects_tampering(site: Site) -> None:
    await close_cases(site)
    site.clock.advance(days=400)
    await purge_expired(site.app, site.clock())
    (school,) = await verify_evidence(site.settings)
    assert school.report.intact, school.report.problems
    assert school.report.purged == 2 and "(2 purged)" in school.summary()

    rows = await evidence_rows(site.store)
    child, selfharm = rows[site.items["child"]], rows[site.items["selfharm"]]
    meta = site.evidence_dir / next(p for p in relpaths(child) if p.endswith("metadata.json"))
    original = meta.read_bytes()
    meta.write_bytes(original + b" ")
    (school,) = await verify_evidence(site.settings)
    assert [(p.seq, "metadata.json changed" in p.message) for p in school.report.problems] == [
        (child.seq, True)
    ]
    meta.write_bytes(original)

    # A live entry turned into a tombstone without a purge (content removed) is caught.
    async with site.store.transaction() as s:
        await s.execute(
            update(t.Evidence)
            .where(t.Evidence.id == selfharm.id)
            .values(purged_at=site.clock(), meta="{}", files="[]")
        )
    (school,) = await verify_evidence(site.settings)
    assert [p.seq for p in school.report.problems] == [selfharm.seq]
    assert "no retention_purge audit entry" in school.report.problems[0].message


async def test_a_changed_tombstone_breaks_the_links(site: Site) -> None:
    await close_cases(site)
    site.clock.advance(days=400)
    await purge_expired(site.app, site.clock())
    rows = sorted((await evidence_rows(site.store)).values(), key=lambda r: r.seq)
    tombstone = next(r for r in rows[:-1] if r.purged_at is not None)
    async with site.store.transaction() as s:
        await s.execute(
            update(t.Evidence).where(t.Evidence.id == tombstone.id).values(entry_hash="f" * 64)
        )
    (school,) = await verify_evidence(site.settings)
    assert [p.seq for p in school.report.problems] == [tombstone.seq + 1]
    assert "is not the entry_hash" in school.report.problems[0].message


# --- subject access -------------------------------------------------------------------------


async def test_the_subject_access_export_holds_everything_about_the_author(
    site: Site, tmp_path: Path
) -> None:
    out = tmp_path / "sar.zip"
    outcome = await export_author(
        site.settings, "@PARENT.ONE", out, actor="cli:dpo", now=site.clock()
    )
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        doc = json.loads(archive.read(DATA_MEMBER))
        for f in doc["files"]:
            assert f["status"] == "included"
            assert hashlib.sha256(archive.read(f["member"])).hexdigest() == f["sha256"]
    items = {i["item"]["external_id"]: i for i in doc["items"]}
    assert set(items) == {"abuse", "theft", "child", "clean"} and outcome.items == 4
    assert {i["item"]["platform"] for i in items.values()} == {"facebook", "x"}
    assert items["abuse"]["versions"][0]["text"] == ABUSE
    assert items["abuse"]["verdicts"][0]["flags"] == ["abusive"]
    assert items["abuse"]["case"]["id"] == site.cases["abuse"]
    assert items["abuse"]["actions"] and all("transitions" in a for a in items["abuse"]["actions"])
    assert items["clean"]["case"] is None and items["clean"]["evidence"] == []
    assert items["child"]["escalations"][0]["state"] in {"sent", "acknowledged"}
    assert "recipients" not in items["child"]["escalations"][0]
    # Suspected child imagery: no text, and of the evidence only metadata and the redacted raw.
    raw = json.dumps(doc)
    assert CHILD not in raw and SELF_HARM not in raw and "pupil.two" not in raw
    assert {f["kind"] for f in items["child"]["evidence"][0]["files"]} <= {"metadata", "raw"}
    assert (
        f"evidence/{relpaths((await evidence_rows(site.store))[site.items['abuse']])[0]}" in names
    )
    events = {(a["event"], a["subject_type"], a["subject_id"]) for a in doc["audit"]}
    assert ("case_opened", "case", site.cases["theft"]) in events
    assert not any(a["subject_id"] == site.cases["selfharm"] for a in doc["audit"])

    (entry,) = await audit_rows(site.store, "sar_export")
    detail = json.loads(entry.detail)
    assert detail["handle_sha256"] == hashlib.sha256(b"parent.one").hexdigest()
    assert sorted(detail["item_ids"]) == sorted(site.items[k] for k in items)
    assert detail["sha256"] == outcome.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert entry.actor == "cli:dpo"
    assert_no_post_text(entry.detail)

    with pytest.raises(FileExistsError):
        await export_author(site.settings, "parent.one", out, actor="cli:dpo")
    assert hashlib.sha256(out.read_bytes()).hexdigest() == outcome.sha256


async def test_a_purged_item_is_no_longer_found_for_its_author(site: Site, tmp_path: Path) -> None:
    await close_cases(site)
    site.clock.advance(days=400)
    await purge_expired(site.app, site.clock())
    outcome = await export_author(site.settings, "spammer", tmp_path / "s.zip", actor="cli:dpo")
    assert outcome.items == 0 and outcome.files_included == 0


# --- the case page --------------------------------------------------------------------------


@dataclass(kw_only=True)
class Web:
    """The review app on the site's store, with a DSL and a moderator signed in."""

    app: Starlette
    sessions: dict[Role, tuple[str, str]]

    def client(self, role: Role) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app),
            base_url=BASE,
            cookies={SESSION_COOKIE: self.sessions[role][0]},
        )

    def csrf(self, role: Role) -> str:
        return self.sessions[role][1]


async def web_for(site: Site) -> Web:
    web = Web(app=create_app(site.settings, site.store, clock=site.clock), sessions={})
    for role in (Role.DSL, Role.MODERATOR):
        user = await add_user(
            site.store,
            username=role.value,
            display_name=f"{role.value} person",
            email=f"{role.value}@oakfield.example.sch.uk",
            role=role,
            password_hash="not-a-real-hash",
            school_ids=[site.school_id],
            actor="test",
            now=site.clock(),
        )
        web.sessions[role] = await create_session(
            site.store, user.id, now=site.clock(), lifetime=timedelta(days=999)
        )
    return web


async def test_only_a_dsl_can_place_and_release_a_legal_hold_from_the_case_page(
    site: Site,
) -> None:
    web = await web_for(site)
    client, sessions = web.client, web.sessions
    case = site.cases["abuse"]
    async with client(Role.MODERATOR) as c:
        page = (await c.get(f"/cases/{case}")).text
        assert "Place a legal hold" not in page
        refused = await c.post(
            f"/cases/{case}/hold", data={"csrf": sessions[Role.MODERATOR][1], "reason": "x"}
        )
        assert refused.status_code == 403
    async with client(Role.DSL) as c:
        csrf = sessions[Role.DSL][1]
        assert "Place a legal hold" in (await c.get(f"/cases/{case}")).text
        empty = await c.post(f"/cases/{case}/hold", data={"csrf": csrf, "reason": " "})
        assert empty.status_code == 400
        done = await c.post(
            f"/cases/{case}/hold", data={"csrf": csrf, "reason": "<b>police</b> ref 42"}
        )
        assert done.status_code == 303
        page = (await c.get(done.headers["location"])).text
        assert "&lt;b&gt;police&lt;/b&gt; ref 42" in page and "Release the legal hold" in page
        released = await c.post(f"/cases/{case}/release", data={"csrf": csrf})
        assert released.status_code == 303
    assert await legal_hold(site.store, case) is None


# --- the commands ---------------------------------------------------------------------------


def test_the_commands_hold_release_purge_and_export(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """On SQLite, years ago: the commands use the real clock."""
    clock = Clock(datetime(2020, 1, 6, 9, 0, tzinfo=UTC))
    settings = make_settings(sources=[replay_source(tmp_path)], retention=RETENTION)
    asyncio.run(upgrade(settings.database_url()))
    assert asyncio.run(Daemon(settings, clock=clock).run(once=True)) == 0
    config = tmp_path / "vigil.toml"
    config.write_text(
        f'[school]\nname = "{settings.school.name}"\n'
        f'[daemon]\nstate_dir = "{settings.state_dir}"\n'
        "[retention]\nunflagged_days = 30\nflagged_days = 365\n"
        '[email]\nsender = "vigil@oakfield.example.sch.uk"\n',
        encoding="utf-8",
    )

    async def close() -> dict[str, int]:
        store = Store.open(settings.database_url())
        try:
            _items, cases = await ids_by_key(store)
            await review.close_case(store, cases["abuse"], "actioned", actor="m", now=clock())
            await review.close_case(store, cases["theft"], "actioned", actor="m", now=clock())
            return cases
        finally:
            await store.close()

    cases = asyncio.run(close())

    def vigil(*args: str) -> Any:
        result = CliRunner().invoke(cli.main, [*args, "--config", str(config)])
        assert_no_post_text(result.output)
        return result

    held = vigil("cases", "hold", str(cases["theft"]), "--reason", "court order")
    assert held.exit_code == 0 and "legal hold" in held.output
    assert vigil("cases", "hold", str(cases["theft"]), "--reason", "again").exit_code == 2
    dry = vigil("purge", "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert f"case {cases['abuse']} (item" in dry.output
    assert f"kept on legal hold though past their period: cases {cases['theft']}" in dry.output
    assert vigil("purge", "--dry-run").output == dry.output  # the dry run changed nothing
    assert vigil("cases", "release", str(cases["theft"])).exit_code == 0
    assert vigil("cases", "release", str(cases["theft"])).exit_code == 2
    done = vigil("purge")
    assert done.exit_code == 0, done.output
    assert "flagged items (cases): 2" in done.output and "left behind: 0" in done.output
    assert "flagged items (cases): 0" in vigil("purge", "--dry-run").output

    out = tmp_path / "sar.zip"
    exported = vigil("export", "--author", "parent.one", "--out", str(out))
    assert exported.exit_code == 0 and "1 item(s)" in exported.output  # the open child case
    again = vigil("export", "--author", "parent.one", "--out", str(out))
    assert again.exit_code == 2 and "never overwritten" in again.output
    assert vigil("evidence", "verify").exit_code == 0


async def test_a_purged_case_shows_what_is_left_and_takes_no_decisions(site: Site) -> None:
    await close_cases(site)
    site.clock.advance(days=400)
    await purge_expired(site.app, site.clock())
    web = await web_for(site)
    case = site.cases["abuse"]
    async with web.client(Role.DSL) as c:
        page = await c.get(f"/cases/{case}")
        assert page.status_code == 200 and "Purged" in page.text
        assert ABUSE not in page.text and "Place a legal hold" not in page.text
        assert "/hide" not in page.text
        for path, form in (("notes", {"body": "x"}), ("hide", {}), ("hold", {"reason": "x"})):
            refused = await c.post(
                f"/cases/{case}/{path}", data={"csrf": web.csrf(Role.DSL), **form}
            )
            assert refused.status_code == 409 and "purged" in refused.text, path


# --- the migration --------------------------------------------------------------------------


def test_the_retention_migration_goes_down_and_up_again(database_url: str) -> None:
    config = alembic_config(database_url)

    async def columns() -> dict[str, set[str]]:
        store = Store.open(database_url)
        try:
            async with store.engine.connect() as conn:
                return await conn.run_sync(
                    lambda c: {
                        n: {col["name"] for col in inspect(c).get_columns(n)}
                        for n in ("cases", "evidence")
                    }
                )
        finally:
            await store.close()

    added = {"legal_hold_at", "legal_hold_by", "legal_hold_reason", "purged_at"}
    assert added <= asyncio.run(columns())["cases"]
    command.downgrade(config, "0002")
    found = asyncio.run(columns())
    assert not added & found["cases"] and "purged_at" not in found["evidence"]
    command.upgrade(config, "head")
    found = asyncio.run(columns())
    assert added <= found["cases"] and "purged_at" in found["evidence"]
