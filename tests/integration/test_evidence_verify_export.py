"""`vigil evidence verify` and `vigil evidence export` on evidence made by a real pipeline run."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor import cli
from monitor.config import Settings
from monitor.daemon import Daemon
from monitor.store.migrate import upgrade
from tests.conftest import Clock

HOSTILE = "<script>alert(1)</script> you are a stupid idiot and I will batter you"
CHILD = "leaked nudes of a year 9 girl at Oakfield, everyone has seen them"
ABUSIVE = "you are a stupid idiot, I will batter you after school"
CLEAN = "Lovely assembly today, thank you"
TEXTS = {"fb_c_1": HOSTILE, "fb_c_2": CHILD, "fb_c_3": ABUSIVE, "fb_c_4": CLEAN}
LINE_RE = re.compile(r"^evidence seq \d+ \(item \d+ v\d+\): ")


@dataclass(frozen=True, kw_only=True)
class Installed:
    config: Path
    db: Path
    evidence: Path
    tmp: Path


def _posts(path: Path) -> Path:
    lines = [
        {
            "op": "post",
            "platform": "facebook",
            "external_id": external_id,
            "source": "own",
            "account": "oakfieldprimary",
            "author_id": f"fbu_{n}",
            "author_handle": f"user.{n}",
            "author_name": f"User <b>{n}</b>",
            "text": text,
            "created_at": f"2026-11-02T08:0{n}:00Z",
            "permalink": f"https://www.facebook.com/oakfieldprimary/posts/1?comment_id={n}",
        }
        for n, (external_id, text) in enumerate(TEXTS.items(), start=1)
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def _config_file(settings: Settings, path: Path) -> Path:
    """The same installation as ``settings``, as a file the CLI reads."""
    database = f'[database]\nurl = "{settings.database.url}"\n' if settings.database.url else ""
    path.write_text(
        f"""\
[school]
name = "{settings.school.name}"

[daemon]
state_dir = "{settings.state_dir}"

[evidence]
renderer = "pillow"

[email]
sender = "vigil@oakfield.example.sch.uk"
admin = ["it@oakfield.example.sch.uk"]
{database}""",
        encoding="utf-8",
    )
    return path


def _install(
    make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock, url: str = ""
) -> Installed:
    """Run the whole pipeline once over the replay posts, so real evidence exists."""
    settings = make_settings(
        database={"url": url},
        evidence={"renderer": "pillow"},  # the card drawn by Pillow: no browser to start
        sources=[
            {
                "name": "replay",
                "platform": "replay",
                "kind": "own",
                "max_items_per_poll": 1000,
                "options": {
                    "path": str(_posts(tmp_path / "posts.jsonl")),
                    "page_size": 50,
                    "moderation_log": str(tmp_path / "calls.jsonl"),
                },
            }
        ],
    )
    asyncio.run(upgrade(settings.database_url()))
    assert asyncio.run(Daemon(settings, clock=clock).run(once=True)) == 0
    return Installed(
        config=_config_file(settings, tmp_path / "vigil.toml"),
        db=settings.state_dir / "vigil.db",
        evidence=settings.under_state(settings.evidence.dir),
        tmp=tmp_path,
    )


@pytest.fixture
def installed(make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock) -> Installed:
    return _install(make_settings, tmp_path, clock)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def sql(db: Path, statement: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(statement, params).fetchall()


def evidence_rows(db: Path) -> list[tuple[int, int, str, str]]:
    """(seq, item id, external id, files JSON) of every evidence row, in chain order."""
    rows = sql(
        db,
        "SELECT e.seq, e.item_id, i.external_id, e.files FROM evidence e "
        "JOIN items i ON i.id = e.item_id ORDER BY e.seq",
    )
    return [(int(str(s)), int(str(i)), str(x), str(f)) for s, i, x, f in rows]


def case_of(db: Path, external_id: str) -> int:
    rows = sql(
        db,
        "SELECT c.id FROM cases c JOIN items i ON i.id = c.item_id WHERE i.external_id = ?",
        external_id,
    )
    return int(str(rows[0][0]))


def file_of(installed: Installed, external_id: str, kind: str) -> Path:
    for _seq, _item, ext, files in evidence_rows(installed.db):
        if ext == external_id:
            relpath = next(f["relpath"] for f in json.loads(files) if f["kind"] == kind)
            return installed.evidence / str(relpath)
    raise AssertionError(f"no evidence for {external_id}")


def assert_no_post_text(output: str) -> None:
    for text in TEXTS.values():
        assert text not in output
    assert "batter" not in output and "nudes" not in output


# --- verify ---------------------------------------------------------------------------------


def test_the_pipeline_made_a_chain_of_three_entries(installed: Installed) -> None:
    rows = evidence_rows(installed.db)
    assert [seq for seq, *_ in rows] == [1, 2, 3]
    assert sorted(ext for _s, _i, ext, _f in rows) == ["fb_c_1", "fb_c_2", "fb_c_3"]


def test_verify_passes_on_an_intact_store(installed: Installed) -> None:
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 0, result.output
    assert "evidence intact" in result.output
    assert re.search(r"school oakfield-primary-school: 3 entries, 8 files, intact", result.output)
    assert_no_post_text(result.output)


def test_verify_detects_a_changed_file(installed: Installed) -> None:
    card = file_of(installed, "fb_c_1", "card")
    expected = hashlib.sha256(card.read_bytes()).hexdigest()
    card.write_bytes(card.read_bytes() + b"\x00")
    found = hashlib.sha256(card.read_bytes()).hexdigest()
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 1, result.output
    problems = [line for line in result.output.splitlines() if LINE_RE.match(line)]
    assert len(problems) == 1
    assert problems[0].endswith(f"card.png changed: sha256 expected {expected}, found {found}")
    assert "1 problem(s)" in result.output
    assert_no_post_text(result.output)


def test_verify_detects_a_missing_file(installed: Installed) -> None:
    file_of(installed, "fb_c_3", "raw").unlink()
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if LINE_RE.match(line)]
    assert len(problems) == 1 and "raw.json missing" in problems[0]
    assert_no_post_text(result.output)


def test_verify_detects_a_tampered_row(installed: Installed) -> None:
    seq, item_id, _ext, _files = evidence_rows(installed.db)[1]
    meta = json.loads(str(sql(installed.db, "SELECT meta FROM evidence WHERE seq = ?", seq)[0][0]))
    meta["author_handle"] = "someone.else"
    sql(installed.db, "UPDATE evidence SET meta = ? WHERE seq = ?", json.dumps(meta), seq)
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if LINE_RE.match(line)]
    assert len(problems) == 1
    assert problems[0].startswith(f"evidence seq {seq} (item {item_id} v1): entry_hash ")
    assert "does not recompute" in problems[0] and "the row was changed" in problems[0]


def test_verify_detects_reordered_entries(installed: Installed) -> None:
    sql(installed.db, "UPDATE evidence SET seq = -1 WHERE seq = 1")
    sql(installed.db, "UPDATE evidence SET seq = 1 WHERE seq = 2")
    sql(installed.db, "UPDATE evidence SET seq = 2 WHERE seq = -1")
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if LINE_RE.match(line)]
    assert any(p.startswith("evidence seq 1 ") and "not the genesis hash" in p for p in problems)
    assert any(p.startswith("evidence seq 2 ") and "reordered" in p for p in problems)
    assert any(p.startswith("evidence seq 3 ") and "reordered" in p for p in problems)


def test_verify_detects_a_removed_entry(installed: Installed) -> None:
    sql(installed.db, "DELETE FROM evidence WHERE seq = 2")
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 1
    assert "evidence seq 3 " in result.output and "1 entry missing" in result.output


def test_verify_never_opens_a_path_outside_the_evidence_directory(installed: Installed) -> None:
    seq, _item, _ext, files_json = evidence_rows(installed.db)[0]
    files = json.loads(files_json)
    files[0]["relpath"] = "../../../../etc/passwd"
    sql(installed.db, "UPDATE evidence SET files = ? WHERE seq = ?", json.dumps(files), seq)
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 1
    problems = [line for line in result.output.splitlines() if LINE_RE.match(line)]
    assert any("unsafe path" in p for p in problems)  # reported, not read
    assert any("does not recompute" in p for p in problems)
    assert "root:" not in result.output


# --- export ---------------------------------------------------------------------------------


def export(installed: Installed, case_id: int, name: str = "case.zip") -> tuple[Result, Path]:
    out = installed.tmp / name
    result = invoke(
        "evidence", "export", str(case_id), "--config", str(installed.config), "--out", str(out)
    )
    return result, out


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_export_holds_manifest_custody_summary_and_evidence(installed: Installed) -> None:
    case_id = case_of(installed.db, "fb_c_1")
    result, out = export(installed, case_id)
    assert result.exit_code == 0, result.output
    zipped = members(out)
    evidence = sorted(name for name in zipped if name.startswith("evidence/"))
    assert [name.rsplit("/", 1)[1] for name in evidence] == [
        "card.png",
        "metadata.json",
        "raw.json",
    ]
    assert set(zipped) == {"manifest.json", "custody.jsonl", "summary.html", *evidence}
    manifest = json.loads(zipped["manifest.json"])
    assert manifest["case_id"] == case_id and manifest["exported_by"]
    assert manifest["exported_at"].startswith("20") and manifest["chain"]["intact"] is True
    listed = {f["path"]: f for f in manifest["files"]}
    assert set(listed) == set(zipped) - {"manifest.json"}
    for name, entry in listed.items():
        assert entry["sha256"] == hashlib.sha256(zipped[name]).hexdigest()
        assert entry["size"] == len(zipped[name])
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    assert f"sha256 {digest}" in result.output
    assert_no_post_text(result.output)


def test_export_custody_log_has_evidence_transitions_and_audit(installed: Installed) -> None:
    case_id = case_of(installed.db, "fb_c_1")
    _result, out = export(installed, case_id)
    records = [json.loads(line) for line in members(out)["custody.jsonl"].splitlines()]
    by_type: dict[str, list[dict[str, object]]] = {}
    for record in records:
        by_type.setdefault(str(record["type"]), []).append(record)
    (entry,) = by_type["evidence"]
    seq, prev, entry_hash, captured = sql(
        installed.db,
        "SELECT e.seq, e.prev_hash, e.entry_hash, e.captured_at FROM evidence e "
        "JOIN cases c ON c.item_id = e.item_id WHERE c.id = ?",
        case_id,
    )[0]
    assert (entry["seq"], entry["prev_hash"], entry["entry_hash"]) == (seq, prev, entry_hash)
    assert str(entry["captured_at"]).startswith(str(captured)[:19].replace(" ", "T"))
    assert entry["verified"] is True
    assert by_type["action_transition"] and all(
        r["actor"] and r["at"] and r["reason"] for r in by_type["action_transition"]
    )
    assert any(r["event"] == "case_opened" for r in by_type["audit"])
    assert [r["at"] for r in records] == sorted(str(r["at"]) for r in records)
    # the export itself is audited, so the next export of the case shows this one
    _again, second = export(installed, case_id, "again.zip")
    later = [json.loads(line) for line in members(second)["custody.jsonl"].splitlines()]
    exported = [r for r in later if r.get("event") == "evidence_exported"]
    assert len(exported) == 1
    assert exported[0]["detail"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()


def test_export_summary_escapes_hostile_post_text(installed: Installed) -> None:
    _result, out = export(installed, case_of(installed.db, "fb_c_1"))
    html = members(out)["summary.html"].decode("utf-8")
    assert "<script>" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt; you are a stupid idiot" in html
    assert "User &lt;b&gt;1&lt;/b&gt;" in html
    assert "intact" in html and "NOT INTACT" not in html


def test_child_imagery_export_holds_no_post_text(installed: Installed) -> None:
    result, out = export(installed, case_of(installed.db, "fb_c_2"))
    assert result.exit_code == 0, result.output
    zipped = members(out)
    names = [name.rsplit("/", 1)[1] for name in zipped if name.startswith("evidence/")]
    assert sorted(names) == ["metadata.json", "raw.json"]
    raw = next(data for name, data in zipped.items() if name.endswith("raw.json"))
    assert json.loads(raw)["redacted"] is True
    manifest = json.loads(zipped["manifest.json"])
    assert manifest["child_imagery"] is True
    everything = b"\n".join(zipped.values()).decode("utf-8", "replace")
    assert CHILD not in everything and "nudes" not in everything
    assert "User <b>2</b>" not in everything and "User &lt;b&gt;2&lt;/b&gt;" not in everything
    html = zipped["summary.html"].decode("utf-8")
    text_sha = hashlib.sha256(CHILD.encode("utf-8")).hexdigest()
    assert text_sha in html and "comment_id=2" in html
    assert_no_post_text(result.output)


def test_export_shows_a_changed_file_as_not_intact(installed: Installed) -> None:
    file_of(installed, "fb_c_1", "card").write_bytes(b"not the card")
    result, out = export(installed, case_of(installed.db, "fb_c_1"))
    assert result.exit_code == 0
    assert "card.png changed" in result.output
    zipped = members(out)
    assert json.loads(zipped["manifest.json"])["chain"]["intact"] is False
    assert "NOT INTACT" in zipped["summary.html"].decode("utf-8")


def test_export_refuses_to_overwrite(installed: Installed) -> None:
    out = installed.tmp / "case.zip"
    out.write_bytes(b"keep me")
    result, _ = export(installed, case_of(installed.db, "fb_c_1"))
    assert result.exit_code == 2
    assert "already exists" in result.output
    assert out.read_bytes() == b"keep me"


def test_export_of_an_unknown_case_exits_2(installed: Installed) -> None:
    result, out = export(installed, 9999)
    assert result.exit_code == 2
    assert "no case with id 9999" in result.output
    assert not out.exists()


@pytest.mark.postgres
def test_verify_and_export_on_postgresql(
    postgres_url: str, make_settings: Callable[..., Settings], tmp_path: Path, clock: Clock
) -> None:
    installed = _install(make_settings, tmp_path, clock, postgres_url)
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 0, result.output
    assert "3 entries, 8 files, intact" in result.output
    result, out = export(installed, 1)
    assert result.exit_code == 0, result.output
    manifest = json.loads(members(out)["manifest.json"])
    assert manifest["case_id"] == 1 and manifest["chain"]["intact"] is True
    for card in installed.evidence.rglob("card.png"):
        card.write_bytes(b"changed")
    result = invoke("evidence", "verify", "--config", str(installed.config))
    assert result.exit_code == 1 and result.output.count("card.png changed") == 2
