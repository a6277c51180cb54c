"""Chain of custody: verify a school's evidence chain and build a case's export bundle.

Pure functions over plain records (the store fills them in; nothing here touches a database):

- ``verify_chain(entries, root)`` walks one school's evidence entries in ``seq`` order and
  reports every problem: a gap in ``seq`` or a chain not starting at 1, a ``prev_hash`` that
  is not the previous entry's ``entry_hash`` (an entry removed, inserted or reordered), an
  ``entry_hash`` that no longer recomputes from ``(prev_hash, files, metadata)`` (the row was
  changed), and a file that is missing or whose SHA-256 changed. A tombstone left by a
  retention purge is checked for its links only (its content and files are gone by design).
- ``build_export(bundle, root, ...)`` makes the ZIP a DSL hands to the police, the LADO or
  CEOP: ``manifest.json`` (every other member with its SHA-256 and size, the case, when and by
  whom), ``custody.jsonl`` (evidence entries, action transitions and audit entries in time
  order), ``summary.html`` (Jinja2, autoescaped: post text is hostile) and the evidence files
  under ``evidence/``.

Suspected sexual imagery of a child (any verdict of the item tagged ``child_sexual_imagery``,
or any of its evidence marked so) is exported without any post text: ids, the web address and
hashes only, and of the evidence files only ``metadata.json`` and the redacted ``raw.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import zipfile
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined

from actions.evidence import (
    GENESIS_HASH,
    EvidenceError,
    EvidenceFile,
    chain_hash,
    visible_text,
)
from classifiers.taxonomy import Severity, Tag

__all__ = [
    "EXPORT_FORMAT",
    "ActionInfo",
    "AuditInfo",
    "CaseBundle",
    "ChainEntry",
    "ChainProblem",
    "ChainReport",
    "CustodyError",
    "EscalationInfo",
    "ExportArchive",
    "ItemInfo",
    "TransitionInfo",
    "VerdictInfo",
    "VersionInfo",
    "build_export",
    "parse_files",
    "parse_meta",
    "safe_relpath",
    "verify_chain",
]

EXPORT_FORMAT = "vigil-evidence-export/1"
CHILD_IMAGERY_TAG = Tag.CHILD_SEXUAL_IMAGERY.value
_RELPATH_RE = re.compile(r"[A-Za-z0-9_%~.-]+(?:/[A-Za-z0-9_%~.-]+)*")
_CHILD_KEEP = "metadata"  # the one kind always exported for child imagery (plus redacted raw)


class CustodyError(EvidenceError):
    """An evidence export could not be built."""


# --- records the store fills in -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ChainEntry:
    """One evidence row as stored: ``files_json`` and ``meta_json`` are the stored JSON text."""

    school_id: int
    seq: int
    item_id: int
    version: int
    files_json: str
    meta_json: str
    prev_hash: str
    entry_hash: str
    captured_at: datetime
    # A retention purge's tombstone: metadata emptied and files deleted by design, hashes kept.
    purged_at: datetime | None = None

    @property
    def label(self) -> str:
        """How problem lines name the entry: ``evidence seq 12 (item 34 v1)``."""
        return f"evidence seq {self.seq} (item {self.item_id} v{self.version})"


@dataclass(frozen=True, kw_only=True)
class ItemInfo:
    """The case's item (its current version is ``version``)."""

    id: int
    platform: str
    external_id: str
    source_kind: str
    account: str | None
    author_id: str | None
    author_handle: str | None
    author_name: str | None
    permalink: str | None
    posted_at: datetime
    first_seen_at: datetime
    gone_at: datetime | None
    state: str
    version: int


@dataclass(frozen=True, kw_only=True)
class VersionInfo:
    """One stored version of the item; ``text`` is hostile and never exported for child imagery."""

    version: int
    text: str
    content_hash: str
    fetched_at: datetime
    platform_updated_at: datetime | None


@dataclass(frozen=True, kw_only=True)
class VerdictInfo:
    """The verdict of one version; reasons are the stored reason objects."""

    version: int
    flags: tuple[str, ...]
    cells: tuple[str, ...]
    tags: tuple[str, ...]
    severity: int
    reasons: tuple[Mapping[str, Any], ...]
    classified_at: datetime


@dataclass(frozen=True, kw_only=True)
class ActionInfo:
    """One action of the case."""

    id: int
    kind: str
    state: str
    automatic: bool
    route: str | None
    reason: str
    attempts: int
    last_error: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, kw_only=True)
class TransitionInfo:
    """One state change of an action: who, when, why."""

    id: int
    action_id: int
    action_kind: str
    from_state: str | None
    to_state: str
    actor: str
    reason: str
    at: datetime


@dataclass(frozen=True, kw_only=True)
class EscalationInfo:
    """One DSL escalation of the case."""

    id: int
    action_id: int
    state: str
    recipients: tuple[str, ...]
    routes: tuple[str, ...]
    queued_at: datetime
    sent_at: datetime | None
    acknowledged_at: datetime | None
    acknowledged_by: str | None


@dataclass(frozen=True, kw_only=True)
class AuditInfo:
    """One audit-log entry about the case, its item, actions or escalations."""

    id: int
    at: datetime
    actor: str
    event: str
    subject_type: str
    subject_id: int | None
    detail_json: str


@dataclass(frozen=True, kw_only=True)
class CaseBundle:
    """Everything stored about one case, plus its school's whole chain (for verification)."""

    case_id: int
    school_id: int
    school_slug: str
    school_name: str
    status: str
    severity: int
    opened_at: datetime
    response_due_at: datetime
    closed_at: datetime | None
    item: ItemInfo
    versions: tuple[VersionInfo, ...]
    verdicts: tuple[VerdictInfo, ...]
    actions: tuple[ActionInfo, ...]
    transitions: tuple[TransitionInfo, ...]
    escalations: tuple[EscalationInfo, ...]
    audit: tuple[AuditInfo, ...]
    evidence: tuple[ChainEntry, ...]  # the item's entries
    chain: tuple[ChainEntry, ...]  # every entry of the school, for verify

    @property
    def child_imagery(self) -> bool:
        """Suspected sexual imagery of a child: no post text may leave in the export."""
        if any(CHILD_IMAGERY_TAG in v.tags for v in self.verdicts):
            return True
        return any(_meta_or_empty(e).get("child_imagery") is True for e in self.evidence)


# --- verification -----------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ChainProblem:
    """One thing wrong with one entry; ``str()`` is the line ``vigil evidence verify`` prints."""

    seq: int
    item_id: int
    version: int
    message: str

    def __str__(self) -> str:
        return f"evidence seq {self.seq} (item {self.item_id} v{self.version}): {self.message}"


@dataclass(frozen=True, kw_only=True)
class ChainReport:
    """The result of walking one school's chain."""

    entries: int
    files: int
    head_hash: str  # the last entry's entry_hash (GENESIS_HASH for an empty chain)
    problems: tuple[ChainProblem, ...]
    purged: int = 0  # tombstones: linked into the chain, their content gone by design

    @property
    def intact(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def for_seqs(self, seqs: Iterable[int]) -> tuple[ChainProblem, ...]:
        """The problems of the given entries only."""
        wanted = set(seqs)
        return tuple(p for p in self.problems if p.seq in wanted)


def verify_chain(
    entries: Sequence[ChainEntry], root: Path, *, audited_purges: Collection[int] | None = None
) -> ChainReport:
    """Walk one school's entries in ``seq`` order; files are looked up under ``root``.

    A purged entry (a tombstone) is checked only for its links: its content is gone, so its
    entry hash cannot be recomputed, and its files are absent by design. With
    ``audited_purges`` (the seqs the audit log says were purged), a tombstone not among them
    is a problem: an entry's content was removed without a recorded purge.
    """
    problems: list[ChainProblem] = []
    files = 0
    previous: ChainEntry | None = None
    for entry in sorted(entries, key=lambda e: e.seq):
        messages = _link_messages(entry, previous)
        if entry.purged_at is None:
            counted, entry_messages = _entry_messages(entry, root)
        else:
            counted, entry_messages = 0, _tombstone_messages(entry, audited_purges)
        files += counted
        problems += [_problem(entry, m) for m in (*messages, *entry_messages)]
        previous = entry
    head = previous.entry_hash if previous else GENESIS_HASH
    return ChainReport(
        entries=len(entries),
        files=files,
        head_hash=head,
        problems=tuple(problems),
        purged=sum(e.purged_at is not None for e in entries),
    )


def _tombstone_messages(entry: ChainEntry, audited: Collection[int] | None) -> list[str]:
    if audited is None or entry.seq in audited:
        return []
    return ["marked purged, but no retention_purge audit entry records it: the row was changed"]


def _problem(entry: ChainEntry, message: str) -> ChainProblem:
    return ChainProblem(
        seq=entry.seq, item_id=entry.item_id, version=entry.version, message=message
    )


def _link_messages(entry: ChainEntry, previous: ChainEntry | None) -> list[str]:
    messages = []
    if previous is None:
        if entry.seq != 1:
            messages.append(f"the chain starts at seq {entry.seq}, not 1: entries are missing")
        if entry.prev_hash != GENESIS_HASH:
            messages.append(
                f"prev_hash {entry.prev_hash} is not the genesis hash: the first entry was "
                "removed or entries were reordered"
            )
        return messages
    if entry.seq == previous.seq:
        messages.append(f"seq {entry.seq} appears twice")
    elif entry.seq != previous.seq + 1:
        missing = entry.seq - previous.seq - 1
        messages.append(
            f"follows seq {previous.seq}: {missing} entr{'y' if missing == 1 else 'ies'} missing"
        )
    if entry.prev_hash != previous.entry_hash:
        messages.append(
            f"prev_hash {entry.prev_hash} is not the entry_hash of seq {previous.seq} "
            f"({previous.entry_hash}): an entry was removed, inserted or reordered"
        )
    return messages


def _entry_messages(entry: ChainEntry, root: Path) -> tuple[int, list[str]]:
    """Recompute the entry hash and check each file; returns (files checked, messages)."""
    try:
        files = parse_files(entry.files_json)
    except EvidenceError as err:
        return 0, [f"its files list cannot be read ({err}): the row was changed"]
    messages = [m for f in files if (m := _file_message(f, root)) is not None]
    try:
        computed = chain_hash(entry.prev_hash, files, parse_meta(entry.meta_json))
    except EvidenceError as err:
        messages.insert(0, f"its entry hash cannot be recomputed ({err}): the row was changed")
        return len(files), messages
    if computed != entry.entry_hash:
        messages.insert(
            0,
            f"entry_hash {entry.entry_hash} does not recompute from its prev_hash, files and "
            f"metadata (computed {computed}): the row was changed",
        )
    return len(files), messages


def _file_message(file: EvidenceFile, root: Path) -> str | None:
    name = file.relpath.rsplit("/", 1)[-1]
    if not safe_relpath(file.relpath):
        return f"{name}: unsafe path {file.relpath!r} was not opened: the row was changed"
    try:
        data = (root / file.relpath).read_bytes()
    except FileNotFoundError:
        return f"{name} missing: {file.relpath} is not under the evidence directory"
    except OSError as err:
        return f"{name} cannot be read: {err.strerror or type(err).__name__}"
    found = _sha256(data)
    if found != file.sha256:
        return f"{name} changed: sha256 expected {file.sha256}, found {found}"
    return None


def safe_relpath(relpath: str) -> bool:
    """True for a relative evidence path that cannot leave the evidence directory."""
    if not _RELPATH_RE.fullmatch(relpath):
        return False
    return all(part not in {".", ".."} for part in relpath.split("/"))


def parse_files(text: str) -> tuple[EvidenceFile, ...]:
    """The stored files list (JSON of ``{kind, relpath, sha256, size}``) as EvidenceFiles."""
    try:
        raw = json.loads(text)
    except ValueError as err:
        raise EvidenceError(f"not JSON: {err}") from err
    if not isinstance(raw, list):
        raise EvidenceError("not a JSON list")
    return tuple(_one_file(entry) for entry in raw)


def _one_file(entry: Any) -> EvidenceFile:
    if not isinstance(entry, dict):
        raise EvidenceError("a file entry is not a JSON object")
    kind, relpath, sha256, size = (entry.get(k) for k in ("kind", "relpath", "sha256", "size"))
    if not (isinstance(kind, str) and isinstance(relpath, str) and isinstance(sha256, str)):
        raise EvidenceError("a file entry lacks kind, relpath or sha256")
    if not isinstance(size, int) or isinstance(size, bool):
        raise EvidenceError("a file entry has no integer size")
    return EvidenceFile(kind=kind, relpath=relpath, sha256=sha256, size=size)


def parse_meta(text: str) -> dict[str, Any]:
    """The stored metadata object."""
    try:
        meta = json.loads(text)
    except ValueError as err:
        raise EvidenceError(f"metadata is not JSON: {err}") from err
    if not isinstance(meta, dict):
        raise EvidenceError("metadata is not a JSON object")
    return meta


def _meta_or_empty(entry: ChainEntry) -> dict[str, Any]:
    try:
        return parse_meta(entry.meta_json)
    except EvidenceError:
        return {}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- export -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExportArchive:
    """A built export: the ZIP bytes, its SHA-256 and what it holds."""

    data: bytes
    sha256: str
    members: tuple[str, ...]
    entries: int  # evidence entries of the case
    files_included: int
    files_withheld: int  # child imagery: card, unredacted raw
    files_missing: int
    problems: tuple[ChainProblem, ...]  # verify problems of the included entries
    child_imagery: bool


@dataclass(frozen=True, kw_only=True)
class _FileView:
    kind: str
    relpath: str
    sha256: str
    size: int
    status: str  # "included", "withheld", "missing", "unsafe path"
    data: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class _ExportContext:
    bundle: CaseBundle
    child: bool
    exported_at: datetime
    exported_by: str
    tool: str
    report: ChainReport
    files: Mapping[int, tuple[_FileView, ...]]  # by seq


def build_export(
    bundle: CaseBundle, root: Path, *, exported_at: datetime, exported_by: str, tool: str
) -> ExportArchive:
    """Build the case's export ZIP in memory (evidence files are read from ``root``)."""
    if exported_at.tzinfo is None:
        raise CustodyError("exported_at must be timezone-aware")
    child = bundle.child_imagery
    ctx = _ExportContext(
        bundle=bundle,
        child=child,
        exported_at=exported_at.astimezone(UTC),
        exported_by=exported_by,
        tool=tool,
        report=verify_chain(bundle.chain, root),
        files={e.seq: _entry_files(e, root, child) for e in bundle.evidence},
    )
    members = _members(ctx)
    manifest = _manifest(ctx, members)
    data = _zip({"manifest.json": manifest, **members}, ctx.exported_at)
    views = [v for files in ctx.files.values() for v in files]
    return ExportArchive(
        data=data,
        sha256=_sha256(data),
        members=("manifest.json", *members),
        entries=len(bundle.evidence),
        files_included=sum(v.status == "included" for v in views),
        files_withheld=sum(v.status == "withheld" for v in views),
        files_missing=sum(v.status == "missing" for v in views),
        problems=ctx.report.for_seqs(ctx.files),
        child_imagery=child,
    )


def _entry_files(entry: ChainEntry, root: Path, child: bool) -> tuple[_FileView, ...]:
    try:
        files = parse_files(entry.files_json)
    except EvidenceError:
        return ()
    redacted = _meta_or_empty(entry).get("redacted") is True
    return tuple(_file_view(f, root, child=child, redacted=redacted) for f in files)


def _file_view(file: EvidenceFile, root: Path, *, child: bool, redacted: bool) -> _FileView:
    if child and not (file.kind == _CHILD_KEEP or (file.kind == "raw" and redacted)):
        return _view(file, "withheld")
    if not safe_relpath(file.relpath):
        return _view(file, "unsafe path")
    try:
        data = (root / file.relpath).read_bytes()
    except OSError:
        return _view(file, "missing")
    return _view(file, "included", data)


def _view(file: EvidenceFile, status: str, data: bytes | None = None) -> _FileView:
    return _FileView(
        kind=file.kind,
        relpath=file.relpath,
        sha256=file.sha256,
        size=file.size,
        status=status,
        data=data,
    )


def _members(ctx: _ExportContext) -> dict[str, bytes]:
    members = {
        "custody.jsonl": _custody_log(ctx),
        "summary.html": _render_summary(ctx).encode("utf-8"),
    }
    for views in ctx.files.values():
        for view in views:
            if view.data is not None:
                members[f"evidence/{view.relpath}"] = view.data
    return members


def _manifest(ctx: _ExportContext, members: Mapping[str, bytes]) -> bytes:
    bundle = ctx.bundle
    manifest = {
        "format": EXPORT_FORMAT,
        "case_id": bundle.case_id,
        "school": {"slug": bundle.school_slug, "name": bundle.school_name},
        "item": {
            "id": bundle.item.id,
            "platform": bundle.item.platform,
            "external_id": bundle.item.external_id,
            "permalink": bundle.item.permalink,
        },
        "exported_at": ctx.exported_at.isoformat(),
        "exported_by": ctx.exported_by,
        "tool": ctx.tool,
        "child_imagery": ctx.child,
        "chain": _chain_json(ctx),
        "note": "files lists every other member of this ZIP with its SHA-256 and size",
        "files": [
            {"path": name, "sha256": _sha256(data), "size": len(data)}
            for name, data in sorted(members.items())
        ],
    }
    return _json_bytes(manifest)


def _chain_json(ctx: _ExportContext) -> dict[str, Any]:
    problems = ctx.report.for_seqs(ctx.files)
    return {
        "entries_verified": sorted(ctx.files),
        "intact": not problems,
        "problems": [str(p) for p in problems],
        "school_chain_entries": ctx.report.entries,
        "school_chain_problems": len(ctx.report.problems),
        "school_chain_head": ctx.report.head_hash,
    }


def _json_bytes(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")


def _zip(members: Mapping[str, bytes], when: datetime) -> bytes:
    stamp = (when.year, when.month, when.day, when.hour, when.minute, when.second)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name, date_time=stamp)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


# --- the chain-of-custody log -------------------------------------------------------------------


def _custody_log(ctx: _ExportContext) -> bytes:
    """One JSON object per line, in time order; never post text."""
    records: list[tuple[datetime, int, int, dict[str, Any]]] = []
    problems = ctx.report.for_seqs(ctx.files)
    for entry in ctx.bundle.evidence:
        record = _evidence_record(entry, ctx.files[entry.seq], problems)
        records.append((entry.captured_at, 0, entry.seq, record))
    for tr in ctx.bundle.transitions:
        records.append((tr.at, 1, tr.id, _transition_record(tr)))
    for audit in ctx.bundle.audit:
        records.append((audit.at, 2, audit.id, _audit_record(audit)))
    records.sort(key=lambda r: (r[0], r[1], r[2]))
    lines = [json.dumps(r[3], sort_keys=True, ensure_ascii=False) for r in records]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def _evidence_record(
    entry: ChainEntry, files: Sequence[_FileView], problems: Sequence[ChainProblem]
) -> dict[str, Any]:
    return {
        "type": "evidence",
        "at": entry.captured_at.isoformat(),
        "seq": entry.seq,
        "item_id": entry.item_id,
        "version": entry.version,
        "captured_at": entry.captured_at.isoformat(),
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
        "files": [
            {
                "kind": f.kind,
                "relpath": f.relpath,
                "sha256": f.sha256,
                "size": f.size,
                "in_export": f.status == "included",
                "status": f.status,
            }
            for f in files
        ],
        "verified": not any(p.seq == entry.seq for p in problems),
        "problems": [p.message for p in problems if p.seq == entry.seq],
    }


def _transition_record(tr: TransitionInfo) -> dict[str, Any]:
    return {
        "type": "action_transition",
        "at": tr.at.isoformat(),
        "action_id": tr.action_id,
        "action_kind": tr.action_kind,
        "from_state": tr.from_state,
        "to_state": tr.to_state,
        "actor": tr.actor,
        "reason": tr.reason,
    }


def _audit_record(audit: AuditInfo) -> dict[str, Any]:
    try:
        detail: Any = json.loads(audit.detail_json)
    except ValueError:
        detail = audit.detail_json
    return {
        "type": "audit",
        "at": audit.at.isoformat(),
        "audit_id": audit.id,
        "actor": audit.actor,
        "event": audit.event,
        "subject_type": audit.subject_type,
        "subject_id": audit.subject_id,
        "detail": detail,
    }


# --- the HTML summary -------------------------------------------------------------------------

_ENV = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)

_TEMPLATE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="referrer" content="no-referrer">
<title>Vigil evidence export: case {{ case.case_id }}</title>
<style>
body { font-family: sans-serif; margin: 2em; max-width: 70em; }
table { border-collapse: collapse; margin-bottom: 1em; }
th, td { border: 1px solid #999; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
code, .hash { font-family: monospace; word-break: break-all; }
pre { white-space: pre-wrap; border: 1px solid #999; padding: 0.5em; background: #f6f6f6; }
.warn { border: 2px solid #b00; padding: 0.5em; background: #fee; }
.ok { color: #060; } .bad { color: #b00; font-weight: bold; }
</style>
</head>
<body>
<h1>Evidence export: case {{ case.case_id }}</h1>
{% if child %}
<p class="warn">Suspected sexual imagery of a child. This export holds no post text and no
image or rendering of the post: identifiers, the web address, hashes and metadata only. Do not
open, view, copy or share the content; follow the CEOP / IWF route.</p>
{% endif %}
<table>
{% for key, value in facts %}
<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>

<h2>Item</h2>
<table>
{% for key, value in item %}
<tr><th>{{ key }}</th><td>{{ value }}</td></tr>
{% endfor %}
</table>

<h2>Versions</h2>
{% for v in versions %}
<h3>Version {{ v.version }}</h3>
<table>
<tr><th>fetched at</th><td>{{ v.fetched_at }}</td></tr>
<tr><th>edited on the platform at</th><td>{{ v.platform_updated_at }}</td></tr>
<tr><th>text SHA-256</th><td class="hash">{{ v.text_sha256 }}</td></tr>
<tr><th>text length</th><td>{{ v.text_chars }} characters</td></tr>
<tr><th>content hash (text and media)</th><td class="hash">{{ v.content_hash }}</td></tr>
</table>
{% if v.text is not none %}
<pre>{{ v.text }}</pre>
{% else %}
<p>Post text withheld (suspected sexual imagery of a child).</p>
{% endif %}
{% endfor %}

<h2>Verdicts</h2>
{% for v in verdicts %}
<h3>Version {{ v.version }}: {{ v.severity }}</h3>
<table>
<tr><th>classified at</th><td>{{ v.classified_at }}</td></tr>
<tr><th>flags</th><td>{{ v.flags }}</td></tr>
<tr><th>cells</th><td>{{ v.cells }}</td></tr>
<tr><th>tags</th><td>{{ v.tags }}</td></tr>
</table>
{% if v.reasons %}
<table>
<tr><th>detector</th><th>flag</th><th>cell</th><th>span</th><th>matched text</th></tr>
{% for r in v.reasons %}
<tr><td>{{ r.detector }}</td><td>{{ r.flag }}</td><td>{{ r.cell }}</td>
<td>{{ r.span }}</td><td>{{ r.text }}</td></tr>
{% endfor %}
</table>
{% endif %}
{% else %}
<p>No verdicts.</p>
{% endfor %}

<h2>Actions</h2>
{% for a in actions %}
<h3>Action {{ a.id }}: {{ a.kind }} ({{ a.state }})</h3>
<table>
<tr><th>automatic</th><td>{{ a.automatic }}</td></tr>
<tr><th>route</th><td>{{ a.route }}</td></tr>
<tr><th>reason</th><td>{{ a.reason }}</td></tr>
<tr><th>attempts</th><td>{{ a.attempts }}</td></tr>
<tr><th>last error</th><td>{{ a.last_error }}</td></tr>
</table>
<table>
<tr><th>at</th><th>from</th><th>to</th><th>actor</th><th>reason</th></tr>
{% for t in a.transitions %}
<tr><td>{{ t.at }}</td><td>{{ t.from_state }}</td><td>{{ t.to_state }}</td>
<td>{{ t.actor }}</td><td>{{ t.reason }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>No actions.</p>
{% endfor %}

<h2>Escalations</h2>
{% for e in escalations %}
<table>
<tr><th>escalation</th><td>{{ e.id }} (action {{ e.action_id }}): {{ e.state }}</td></tr>
<tr><th>recipients</th><td>{{ e.recipients }}</td></tr>
<tr><th>routes</th><td>{{ e.routes }}</td></tr>
<tr><th>queued / sent</th><td>{{ e.queued_at }} / {{ e.sent_at }}</td></tr>
<tr><th>acknowledged</th><td>{{ e.acknowledged_at }} {{ e.acknowledged_by }}</td></tr>
</table>
{% else %}
<p>No escalations.</p>
{% endfor %}

<h2>Evidence</h2>
<p>Each entry is one link of the school's hash chain:
<code>entry_hash = sha256(prev_hash + canonical JSON of files and metadata)</code>.</p>
{% for e in evidence %}
<h3>Entry seq {{ e.seq }} (version {{ e.version }}):
{% if e.problems %}
<span class="bad">NOT INTACT</span>
{% else %}
<span class="ok">intact</span>
{% endif %}
</h3>
<table>
<tr><th>captured at</th><td>{{ e.captured_at }}</td></tr>
<tr><th>prev_hash</th><td class="hash">{{ e.prev_hash }}</td></tr>
<tr><th>entry_hash</th><td class="hash">{{ e.entry_hash }}</td></tr>
</table>
{% if e.problems %}
<ul>{% for p in e.problems %}<li class="bad">{{ p }}</li>{% endfor %}</ul>
{% endif %}
<table>
<tr><th>kind</th><th>file</th><th>SHA-256</th><th>bytes</th><th>in this export</th></tr>
{% for f in e.files %}
<tr><td>{{ f.kind }}</td><td><code>{{ f.relpath }}</code></td><td class="hash">{{ f.sha256 }}</td>
<td>{{ f.size }}</td><td>{{ f.status }}</td></tr>
{% endfor %}
</table>
{% else %}
<p>No evidence was captured for this item.</p>
{% endfor %}

<h2>Verification</h2>
<p>{{ verification }}</p>

<h2>Audit log</h2>
<table>
<tr><th>at</th><th>actor</th><th>event</th><th>subject</th><th>detail</th></tr>
{% for a in audit %}
<tr><td>{{ a.at }}</td><td>{{ a.actor }}</td><td>{{ a.event }}</td>
<td>{{ a.subject_type }} {{ a.subject_id }}</td><td><code>{{ a.detail_json }}</code></td></tr>
{% endfor %}
</table>
</body>
</html>
"""


_SUMMARY = _ENV.from_string(_TEMPLATE)


def _render_summary(ctx: _ExportContext) -> str:
    """The HTML summary; every value is autoescaped and post text is only in ``<pre>``."""
    bundle = ctx.bundle
    return _SUMMARY.render(
        case=bundle,
        child=ctx.child,
        facts=_facts(ctx),
        item=_item_rows(bundle.item, ctx.child),
        versions=[_version_view(v, ctx.child) for v in bundle.versions],
        verdicts=[_verdict_view(v, ctx.child) for v in bundle.verdicts],
        actions=[_action_view(a, bundle.transitions) for a in bundle.actions],
        escalations=[_escalation_view(e) for e in bundle.escalations],
        evidence=[_evidence_view(e, ctx) for e in bundle.evidence],
        verification=_verification_text(ctx),
        audit=[_audit_view(a) for a in bundle.audit],
    )


def _when(value: datetime | None) -> str:
    return "" if value is None else value.astimezone(UTC).isoformat()


def _show(value: str | None) -> str:
    return "" if value is None else visible_text(value, keep_newlines=False)


def _facts(ctx: _ExportContext) -> list[tuple[str, str]]:
    bundle = ctx.bundle
    return [
        ("school", f"{_show(bundle.school_name)} ({_show(bundle.school_slug)})"),
        ("case", str(bundle.case_id)),
        ("status", bundle.status),
        ("severity", _severity(bundle.severity)),
        ("opened at", _when(bundle.opened_at)),
        ("response due at", _when(bundle.response_due_at)),
        ("closed at", _when(bundle.closed_at)),
        ("exported at", _when(ctx.exported_at)),
        ("exported by", _show(ctx.exported_by)),
        ("exported with", ctx.tool),
    ]


def _severity(value: int) -> str:
    try:
        return Severity(value).label
    except ValueError:
        return str(value)


def _item_rows(item: ItemInfo, child: bool) -> list[tuple[str, str]]:
    name = "(withheld)" if child and item.author_name else _show(item.author_name)
    return [
        ("item id", str(item.id)),
        ("platform", _show(item.platform)),
        ("platform id", _show(item.external_id)),
        ("source", item.source_kind),
        ("account", _show(item.account)),
        ("author id", _show(item.author_id)),
        ("author handle", _show(item.author_handle)),
        ("author name", name),
        ("web address (not a link: open only if it is safe to)", _show(item.permalink)),
        ("posted at", _when(item.posted_at)),
        ("first seen at", _when(item.first_seen_at)),
        ("gone from the platform at", _when(item.gone_at)),
        ("state", item.state),
        ("current version", str(item.version)),
    ]


def _version_view(version: VersionInfo, child: bool) -> dict[str, Any]:
    return {
        "version": version.version,
        "fetched_at": _when(version.fetched_at),
        "platform_updated_at": _when(version.platform_updated_at),
        "text_sha256": _sha256(version.text.encode("utf-8", "surrogatepass")),
        "text_chars": len(version.text),
        "content_hash": version.content_hash,
        "text": None if child else visible_text(version.text),
    }


def _verdict_view(verdict: VerdictInfo, child: bool) -> dict[str, Any]:
    reasons = [
        {
            "detector": _show(_str(r.get("detector"))),
            "flag": _show(_str(r.get("flag"))),
            "cell": _show(_str(r.get("cell"))),
            "span": _show(_str(r.get("span"))),
            "text": "(withheld)" if child else _show(_str(r.get("text"))),
        }
        for r in verdict.reasons
    ]
    return {
        "version": verdict.version,
        "severity": _severity(verdict.severity),
        "classified_at": _when(verdict.classified_at),
        "flags": ", ".join(verdict.flags) or "none",
        "cells": ", ".join(verdict.cells) or "none",
        "tags": ", ".join(verdict.tags) or "none",
        "reasons": reasons,
    }


def _str(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _action_view(action: ActionInfo, transitions: Sequence[TransitionInfo]) -> dict[str, Any]:
    return {
        "id": action.id,
        "kind": action.kind,
        "state": action.state,
        "automatic": "yes" if action.automatic else "no",
        "route": _show(action.route),
        "reason": _show(action.reason),
        "attempts": action.attempts,
        "last_error": _show(action.last_error),
        "transitions": [
            {
                "at": _when(t.at),
                "from_state": t.from_state or "",
                "to_state": t.to_state,
                "actor": _show(t.actor),
                "reason": _show(t.reason),
            }
            for t in transitions
            if t.action_id == action.id
        ],
    }


def _escalation_view(escalation: EscalationInfo) -> dict[str, Any]:
    return {
        "id": escalation.id,
        "action_id": escalation.action_id,
        "state": escalation.state,
        "recipients": ", ".join(_show(r) for r in escalation.recipients),
        "routes": ", ".join(_show(r) for r in escalation.routes),
        "queued_at": _when(escalation.queued_at),
        "sent_at": _when(escalation.sent_at),
        "acknowledged_at": _when(escalation.acknowledged_at),
        "acknowledged_by": _show(escalation.acknowledged_by),
    }


def _evidence_view(entry: ChainEntry, ctx: _ExportContext) -> dict[str, Any]:
    return {
        "seq": entry.seq,
        "version": entry.version,
        "captured_at": _when(entry.captured_at),
        "prev_hash": entry.prev_hash,
        "entry_hash": entry.entry_hash,
        "problems": [p.message for p in ctx.report.for_seqs([entry.seq])],
        "files": [
            {
                "kind": _show(f.kind),
                "relpath": _show(f.relpath),
                "sha256": _show(f.sha256),
                "size": f.size,
                "status": f"yes: evidence/{f.relpath}" if f.status == "included" else f.status,
            }
            for f in ctx.files[entry.seq]
        ],
    }


def _verification_text(ctx: _ExportContext) -> str:
    report = ctx.report
    mine = report.for_seqs(ctx.files)
    verdict = "intact" if not mine else f"NOT INTACT ({len(mine)} problem(s), listed above)"
    elsewhere = len(report.problems) - len(mine)
    return (
        f"The {len(ctx.files)} evidence entr{'y' if len(ctx.files) == 1 else 'ies'} of this case "
        f"{'is' if len(ctx.files) == 1 else 'are'} {verdict}, checked against files under the "
        f"evidence directory at export time. The school's whole chain has {report.entries} "
        f"entries, head entry_hash {report.head_hash}, and {elsewhere} problem(s) in other "
        "entries."
    )


def _audit_view(audit: AuditInfo) -> dict[str, Any]:
    return {
        "at": _when(audit.at),
        "actor": _show(audit.actor),
        "event": _show(audit.event),
        "subject_type": audit.subject_type,
        "subject_id": "" if audit.subject_id is None else audit.subject_id,
        "detail_json": _show(audit.detail_json),
    }
