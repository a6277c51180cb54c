"""Retention on the clock and on the command line: `vigil purge [--dry-run]`, the daemon's
daily ``retention`` task (the same ``purge_school``) and `vigil cases hold|release`.

Glue between the ``[retention]`` settings, ``monitor.store.retention`` and the files on disk:
the store decides and commits what goes; this module then deletes the purged cases' evidence
files, report packs and outbox copies. Nothing here prints or logs content: ids and counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from actions.custody import safe_relpath
from actions.evidence import EvidenceError, safe_name
from actions.policy import UK, ActionKind
from monitor.config import Settings
from monitor.logging import get_logger
from monitor.store import Store
from monitor.store.audit import POLICY_ACTOR
from monitor.store.legal_hold import LegalHold, place_hold, release_hold
from monitor.store.retention import (
    PurgedFiles,
    PurgePlan,
    RetentionCutoffs,
    forget_files,
    id_ranges,
    plan_purge,
    purge,
    purged_files,
)

__all__ = [
    "PurgeOutcome",
    "cutoffs",
    "dry_run",
    "hold_case",
    "periods_line",
    "plan_lines",
    "purge_now",
    "purge_school",
    "release_case",
]

log = get_logger(__name__)
REPORT_SUFFIXES = (".txt", ".json", ".html")  # actions.report.write_report_pack


@dataclass(frozen=True, kw_only=True)
class PurgeOutcome:
    """A purge: what the database lost, and how the files on disk went."""

    plan: PurgePlan
    files_deleted: int  # evidence files, report packs and outbox copies
    files_failed: int  # left for the next purge (evidence) or for a person (the rest)


def cutoffs(settings: Settings, now: datetime) -> RetentionCutoffs:
    """The ``[retention]`` periods, counted back from ``now``."""
    r = settings.retention
    return RetentionCutoffs.at(
        now,
        unflagged_days=r.unflagged_days,
        quarantine_days=r.quarantine_days,
        flagged_days=r.flagged_days,
        safeguarding_days=r.safeguarding_days,
    )


async def purge_school(
    store: Store, settings: Settings, school_id: int, now: datetime, *, actor: str = POLICY_ACTOR
) -> PurgeOutcome:
    """Purge what is due in one school, then delete its files (also any a crash left)."""
    result = await purge(store, school_id, cutoffs(settings, now), now=now, actor=actor)
    cases = [c.case_id for c in result.plan.cases]
    deleted, failed = await _delete_files(store, settings, school_id, cases, result.message_ids)
    log.info("retention_purged", **result.plan.counts, files_deleted=deleted, files_failed=failed)
    if failed:
        log.warning("retention_files_left", files=failed)
    return PurgeOutcome(plan=result.plan, files_deleted=deleted, files_failed=failed)


async def _delete_files(
    store: Store,
    settings: Settings,
    school_id: int,
    case_ids: Sequence[int],
    message_ids: Sequence[str],
) -> tuple[int, int]:
    pending = await purged_files(store, school_id)
    root = settings.under_state(settings.evidence.dir)
    done, deleted, failed = await asyncio.to_thread(_delete_evidence, root, pending)
    await forget_files(store, done)
    every_case = sorted({*case_ids, *(p.case_id for p in pending if p.case_id is not None)})
    others = [
        *_report_paths(settings.under_state(Path("reports")), every_case),
        *_outbox_paths(settings.under_state(settings.email.outbox_dir), message_ids),
    ]
    more, lost = await asyncio.to_thread(_unlink_all, others)
    return deleted + more, failed + lost


def _delete_evidence(root: Path, pending: Iterable[PurgedFiles]) -> tuple[list[int], int, int]:
    """Delete each tombstone's files; returns (evidence ids fully done, deleted, failed)."""
    done: list[int] = []
    deleted = failed = 0
    for entry in pending:
        results = [_delete_evidence_file(root, relpath) for relpath in entry.relpaths]
        deleted += results.count(True)
        failed += results.count(None)
        if None not in results:
            done.append(entry.evidence_id)
    return done, deleted, failed


def _delete_evidence_file(root: Path, relpath: str) -> bool | None:
    if not safe_relpath(relpath):  # a changed row: never touch anything outside the directory
        return None
    path = root / relpath
    gone = _unlink(path)
    if gone is not None:
        _prune(path, root)
    return gone


def _unlink(path: Path) -> bool | None:
    """True if deleted, False if already absent, None if it could not be deleted."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError:
        return None
    return True


def _prune(path: Path, root: Path) -> None:
    """Remove the directories the file leaves empty, up to (not including) ``root``."""
    for parent in path.parents:
        if parent == root or root not in parent.parents:
            return
        try:
            parent.rmdir()
        except OSError:  # not empty (another version's files), or already gone
            return


def _report_paths(directory: Path, case_ids: Iterable[int]) -> list[Path]:
    """Report packs are named ``case-<id>-<kind>`` (monitor/executor.py)."""
    return [
        directory / f"{safe_name(f'case-{case_id}-{kind.value}')}{suffix}"
        for case_id in case_ids
        for kind in ActionKind
        for suffix in REPORT_SUFFIXES
    ]


def _outbox_paths(directory: Path, message_ids: Iterable[str]) -> list[Path]:
    """The escalation email and its re-send to the deputies (``esc-<id>-resend@…``)."""
    paths = []
    for message_id in message_ids:
        local, at, domain = message_id.strip().strip("<>").partition("@")
        for name in (f"{local}{at}{domain}", f"{local}-resend{at}{domain}"):
            try:
                paths.append(directory / f"{safe_name(name)}.eml")
            except EvidenceError:  # an empty id: nothing was written for it
                continue
    return paths


def _unlink_all(paths: Iterable[Path]) -> tuple[int, int]:
    deleted = failed = 0
    for path in paths:
        gone = _unlink(path)
        deleted, failed = deleted + bool(gone), failed + (gone is None)
    return deleted, failed


# --- what the command line prints (ids and counts, never content) ---------------------------

COUNTED = (
    ("versions", "versions"),
    ("verdicts", "verdicts"),
    ("notes", "case notes"),
    ("actions", "actions"),
    ("action_transitions", "action transitions"),
    ("escalations", "escalations"),
    ("evidence_entries", "evidence entries (kept as tombstones in the chain)"),
    ("evidence_files", "evidence files"),
)


def periods_line(settings: Settings) -> str:
    """The [retention] periods in words."""
    r = settings.retention
    return (
        f"retention: clean items {r.unflagged_days} days after last seen; quarantine "
        f"{r.quarantine_days} days; closed cases {r.flagged_days} days, safeguarding cases "
        f"{r.safeguarding_days} days and false positives {r.unflagged_days} days after closing"
    )


def plan_lines(plan: PurgePlan) -> list[str]:
    """What a plan removes, one fact per line: counts per kind and the ids."""
    c = plan.counts
    lines = [
        f"clean items: {c['clean_items']}{_ids(id_ranges(plan.clean_items))}",
        f"quarantined payloads: {c['quarantine']}{_ids(id_ranges(plan.quarantine))}",
        f"flagged items (cases): {c['cases']}",
    ]
    lines += [
        f"  case {p.case_id} (item {p.item_id}): closed {p.closed_at.astimezone(UK):%Y-%m-%d}, "
        f"{p.rule.value.replace('_', ' ')} period"
        for p in plan.cases
    ]
    lines += [f"{label}: {c[key]}" for key, label in COUNTED]
    if plan.evidence_seqs:
        lines.append(f"evidence seqs: {', '.join(id_ranges(plan.evidence_seqs))}")
    if plan.held:
        lines.append(f"kept on legal hold though past their period: cases {_joined(plan.held)}")
    return lines


def _ids(ranges: list[str]) -> str:
    return f" (ids {', '.join(ranges)})" if ranges else ""


def _joined(ids: Iterable[int]) -> str:
    return ", ".join(str(n) for n in ids)


# --- the command line -----------------------------------------------------------------------


async def _school(store: Store, settings: Settings, now: datetime) -> int:
    return await store.ensure_school(settings.school.slug, settings.school.name, now)


async def dry_run(settings: Settings, *, now: datetime | None = None) -> PurgePlan:
    """`vigil purge --dry-run`: what would go now; changes nothing."""
    now = now or datetime.now(UTC)
    store = Store.open(settings.database_url())
    try:
        school_id = await _school(store, settings, now)
        return await plan_purge(store, school_id, cutoffs(settings, now))
    finally:
        await store.close()


async def purge_now(settings: Settings, *, actor: str, now: datetime | None = None) -> PurgeOutcome:
    """`vigil purge`: what the daemon's daily task does, now."""
    now = now or datetime.now(UTC)
    store = Store.open(settings.database_url())
    try:
        school_id = await _school(store, settings, now)
        return await purge_school(store, settings, school_id, now, actor=actor)
    finally:
        await store.close()


async def hold_case(
    settings: Settings, case_id: int, *, reason: str, actor: str, now: datetime | None = None
) -> LegalHold:
    """`vigil cases hold`: keep a case of this school whatever its age."""
    now = now or datetime.now(UTC)
    store = Store.open(settings.database_url())
    try:
        school_id = await _school(store, settings, now)
        return await place_hold(
            store, case_id, reason=reason, actor=actor, now=now, school_id=school_id
        )
    finally:
        await store.close()


async def release_case(
    settings: Settings, case_id: int, *, actor: str, now: datetime | None = None
) -> None:
    """`vigil cases release`: the case's retention period applies again."""
    now = now or datetime.now(UTC)
    store = Store.open(settings.database_url())
    try:
        school_id = await _school(store, settings, now)
        await release_hold(store, case_id, actor=actor, now=now, school_id=school_id)
    finally:
        await store.close()
