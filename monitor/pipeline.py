"""Pipeline stage workers: claim rows, call classifiers / policy / evidence, record results.

Stages (DESIGN.md): ingest → classify → decide → capture evidence → act. Ingest is the poller
(``monitor.poller``) and act is the executor (``monitor.executor``); this module owns the three
item stages between them and ``drain``, which runs every stage until nothing is left.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from actions.evidence import EvidenceRecord, EvidenceSubject, EvidenceWriter
from actions.policy import PolicySettings, decide, response_due
from actions.render import EvidencePreparer, Prepared
from classifiers import Classifier
from classifiers.base import Input, Signal, Verdict
from classifiers.taxonomy import Cell, Flag, Severity, Tag
from connectors.base import Capability, SourceKind
from monitor.logging import get_logger
from monitor.metrics import Metrics
from monitor.store import ItemClaim, Stage, Store, WorkItem
from monitor.store.review import ALLOW_LIST_RULE, allow_listed

__all__ = ["ALLOWED", "Pipeline", "verdict_from_json", "verdict_summary", "where"]

log = get_logger(__name__)
Clock = Callable[[], datetime]
# The verdict of an allow-listed text: clean, and its one reason says why.
ALLOWED = Verdict(
    reasons=(
        Signal(
            detector=ALLOW_LIST_RULE,
            rule=ALLOW_LIST_RULE,
            flag=None,
            cell=None,
            severity=Severity.NONE,
            span=(0, 0),
            text="",
        ),
    )
)


@dataclass(kw_only=True)
class Pipeline:
    """The item stages, wired to their collaborators; ``drain`` runs them all to quiescence."""

    store: Store
    classifier: Classifier
    policy: PolicySettings
    evidence: EvidenceWriter
    capabilities: dict[int, frozenset[Capability]]  # by source id
    school_name: str
    school_id: int
    clock: Clock
    batch_size: int = 100
    classify_batch_size: int = 64
    # Small: a batch's cards are rendered while its claim holds the SQLite write lock, and an
    # acknowledgement from the web app must not wait long behind it.
    evidence_batch_size: int = 10
    classify_timeout: float = 120.0
    act: Callable[[], Awaitable[int]] | None = None  # the executor's one-batch step
    alert: Callable[..., Awaitable[None]] | None = None  # tells the admin when an item is held
    hold_after: int = 5
    preparer: EvidencePreparer | None = None  # media, Chromium card, live capture
    metrics: Metrics | None = None  # set by the daemon; times each classifier call

    async def classify_batch(self) -> int:
        """Classify one batch of new items (in a worker thread: spaCy is CPU-bound).

        A text on the school's allow-list (a moderator marked it a false positive) is not
        classified: it gets a clean verdict saying so.
        """
        async with self.store.claim_items(
            Stage.CLASSIFY, self.classify_batch_size, school_id=self.school_id
        ) as claim:
            if not claim.items:
                return 0
            allowed = await allow_listed(self.store, self.school_id, [i.text for i in claim.items])
            todo = [item for item in claim.items if item.text not in allowed]
            try:
                verdicts: list[Verdict] | None = await self._classify(todo) if todo else []
            except Exception:  # find the item that fails by classifying one at a time
                verdicts = None
            by_id = dict(zip((i.id for i in todo), verdicts or [], strict=False))

            async def classify_one(item: WorkItem) -> None:
                if item.text in allowed:
                    verdict = ALLOWED
                else:
                    verdict = by_id.get(item.id) or (await self._classify([item]))[0]
                await claim.record_verdict(item, verdict, self.clock())

            done = await self._each(claim, Stage.CLASSIFY, classify_one)
            log.info(
                "items_classified",
                count=done,
                failed=len(claim.items) - done,
                allow_listed=len(claim.items) - len(todo),
            )
            return len(claim.items)

    async def _classify(self, items: Sequence[WorkItem]) -> list[Verdict]:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.classify_timeout):
                return await asyncio.to_thread(
                    self.classifier.classify_many, [_input(item) for item in items]
                )
        finally:  # failed and timed-out calls count too: they are the slow ones
            if self.metrics is not None:
                self.metrics.classify_timed(time.perf_counter() - started, len(items))

    async def decide_batch(self) -> int:
        """Turn flagged verdicts into a case and proposed actions."""
        async with self.store.claim_items(
            Stage.DECIDE, self.batch_size, school_id=self.school_id
        ) as claim:

            async def decide_one(item: WorkItem) -> None:
                now = self.clock()
                verdict = verdict_from_json(await claim.verdict(item))
                proposals = decide(
                    verdict,
                    source_kind=SourceKind(item.source_kind),
                    capabilities=self.capabilities.get(item.source_id, frozenset()),
                    settings=self.policy,
                    now=now,
                )
                await claim.record_decision(
                    item,
                    severity=int(verdict.severity),
                    proposals=proposals,
                    response_due=response_due(now, self.policy),
                    now=now,
                )

            await self._each(claim, Stage.DECIDE, decide_one)
            return len(claim.items)

    async def evidence_batch(self) -> int:
        """Capture evidence of every flagged item version, before any hide or delete."""
        async with self.store.claim_items(
            Stage.EVIDENCE, self.evidence_batch_size, school_id=self.school_id
        ) as claim:

            async def capture_one(item: WorkItem) -> None:
                verdict = await claim.verdict(item)
                subject = self._subject(item, verdict, await claim.parent_text(item))
                now = self.clock()
                prepared = await self._prepare(item, subject, now)  # outside the chain lock
                await claim.record_evidence(item, self._capturer(subject, now, prepared), now)

            await self._each(claim, Stage.EVIDENCE, capture_one)
            return len(claim.items)

    async def _each(
        self, claim: ItemClaim, stage: Stage, step: Callable[[WorkItem], Awaitable[None]]
    ) -> int:
        """Run ``step`` for every claimed item; returns how many succeeded.

        The whole batch runs in one savepoint. If any item raises, that savepoint is undone
        and the batch is redone one item per savepoint, so the failing item is counted (and
        held after ``hold_after`` tries) without undoing the others. ``step`` must be safe
        to repeat: its only side effects outside the transaction are idempotent file writes.
        """
        try:
            async with claim.isolated():
                for item in claim.items:
                    await step(item)
            return len(claim.items)
        except Exception:  # someone in this batch fails: find out who, one at a time
            pass
        done = 0
        for item in claim.items:
            try:
                async with claim.isolated():
                    await step(item)
            except Exception as err:
                await self._failed(claim, stage, item, err)
            else:
                done += 1
        return done

    async def _failed(self, claim: ItemClaim, stage: Stage, item: WorkItem, err: Exception) -> None:
        held = await claim.record_failure(
            item, f"{type(err).__name__}: {err}", self.clock(), hold_after=self.hold_after
        )
        # The message may quote the post, so the log gets only the type and where it happened.
        log.error(
            "item_failed",
            stage=stage.value,
            item_id=item.id,
            held=held,
            error=type(err).__name__,
            at=where(err),
        )
        if held and self.alert is not None:
            await self.alert(
                key=f"held-{item.id}-v{item.version}",
                subject=f"An item needs attention (item {item.id})",
                body=(
                    f"Vigil could not get item {item.id} through the {stage.value} stage after "
                    f"{self.hold_after} tries and has set it aside (stage 'held').\n"
                    f"Error: {type(err).__name__} at {where(err)}.\n\nFix the cause, then run "
                    "`vigil items requeue` to send held items through again.\n"
                ),
            )

    async def _prepare(self, item: WorkItem, subject: EvidenceSubject, now: datetime) -> Prepared:
        """Fetch media and render the card; nothing at all for suspected child imagery."""
        if subject.child_imagery or self.preparer is None:
            return Prepared()  # never downloaded or rendered (DESIGN.md, "must never happen")
        urls = [m.get("url", "") for m in item.media if m.get("type") in ("image", "video")]
        prepared = await self.preparer.prepare(subject, captured_at=now, media_urls=urls)
        for reason in prepared.refusals:  # reasons carry host and path, never the query
            log.info("evidence_refusal", item_id=item.id, reason=reason)
        return prepared

    def _capturer(
        self, subject: EvidenceSubject, now: datetime, prepared: Prepared
    ) -> Callable[[str], Awaitable[EvidenceRecord]]:
        async def capture(prev_hash: str) -> EvidenceRecord:
            return await asyncio.to_thread(
                self.evidence.capture,
                subject,
                captured_at=now,
                prev_hash=prev_hash,
                card=prepared.card,
                renderer=prepared.renderer,
                media=prepared.media,
                live=prepared.live,
            )

        return capture

    def _subject(
        self, item: WorkItem, verdict: Mapping[str, Any], parent: str | None
    ) -> EvidenceSubject:
        child_imagery = Tag.CHILD_SEXUAL_IMAGERY.value in verdict["tags"]
        return EvidenceSubject(
            school=self.school_name,
            platform=item.platform,
            external_id=item.external_id,
            version=item.version,
            author_handle=item.author_handle,
            author_name=item.author_name,
            author_id=item.author_id,
            text=item.text,
            permalink=item.permalink,
            created_at=item.posted_at,
            parent_text=None if child_imagery else parent,
            raw_json=item.raw,
            verdict_summary=verdict_summary(verdict),
            child_imagery=child_imagery,
        )

    async def run_stages_once(self) -> int:
        """One batch of every stage, in order; returns how much work was done.

        Actions run before evidence capture as well as after: an escalation needs no evidence,
        so the DSL's email does not wait for a batch of cards (hide and delete still do).
        """
        done = await self.classify_batch()
        done += await self.decide_batch()
        if self.act is not None:
            done += await self.act()
        done += await self.evidence_batch()
        if self.act is not None:
            done += await self.act()
        return done

    async def drain(self, stop: asyncio.Event | None = None) -> int:
        """Run every stage until no work is left (or ``stop`` is set); returns work done."""
        total = 0
        while stop is None or not stop.is_set():
            done = await self.run_stages_once()
            total += done
            if done == 0:
                break
        return total


def where(err: BaseException) -> str:
    """``file:line in function`` of the innermost frame of ``err``'s traceback."""
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return "unknown"
    last = frames[-1]
    return f"{Path(last.filename).name}:{last.lineno} in {last.name}"


def _input(item: WorkItem) -> Input:
    return Input(
        text=item.text,
        source_kind=item.source_kind,
        platform=item.platform,
        author=item.author_handle,
        url=item.permalink,
        has_media=bool(item.media),
    )


def verdict_summary(verdict: Mapping[str, Any]) -> str:
    """One line naming flags, cells and severity; never quotes the post."""
    severity = Severity(int(verdict["severity"])).label
    flags = ", ".join(verdict["flags"]) or "none"
    cells = ", ".join(verdict["cells"]) or "none"
    return f"flags: {flags}; cells: {cells}; severity: {severity}"


def verdict_from_json(data: Mapping[str, Any]) -> Verdict:
    """Rebuild the parts of a Verdict the policy needs from its stored JSON (reasons omitted)."""
    return Verdict(
        flags=frozenset(Flag(f) for f in data["flags"]),
        cells=frozenset(Cell.parse(c) for c in data["cells"]),
        severity=Severity(int(data["severity"])),
        scores=dict(data.get("scores") or {}),
        tags=frozenset(Tag(t) for t in data.get("tags") or ()),
    )
