"""`vigil check` and `vigil run` refuse a bad config, listing every problem as file: key: msg."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from monitor import cli

ROOT = Path(__file__).resolve().parents[2]

SCHOOL = """\
[school]
name = "Oakfield Primary School"
aliases = ["Oakfield", "OPS"]
[[school.staff]]
name = "Priya Shah"
role = "dsl"
email = "dsl@oakfield.example.sch.uk"
"""

BROKEN = """\
[school]
name = "Oakfield Primary School"
colour = "blue"

[[sources]]
name = "facebook"
platform = "facebook"
kind = "own"
interval = 10

[email]
smtp_port = 0
"""


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli.main, list(args))


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def replay_source(path: Path, name: str = "replay") -> str:
    return f"""
[[sources]]
name = "{name}"
platform = "replay"
kind = "own"
options = {{ path = "{path}" }}
"""


def broken_problems(path: Path) -> list[str]:
    return [
        f"{path}: school.colour: unknown key (misspelt?)",
        f"{path}: sources.facebook.interval: must be at least 60",
        f"{path}: email.smtp_port: must be at least 1",
    ]


def test_check_lists_every_problem_on_stderr_and_exits_2(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN, "broken.toml")
    result = invoke("check", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == broken_problems(path)
    assert result.stdout == ""


def test_run_refuses_to_start_with_the_same_messages(tmp_path: Path) -> None:
    path = write(tmp_path, BROKEN, "broken.toml")
    result = invoke("run", "--once", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == broken_problems(path)
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("command", ["check", "run"])
def test_real_process_exits_2_listing_every_problem(tmp_path: Path, command: str) -> None:
    path = write(tmp_path, BROKEN, "broken.toml")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", command, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == broken_problems(path)
    assert done.stdout == ""


def test_missing_config_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    for command in ("check", "run"):
        result = invoke(command, "--config", str(missing))
        assert result.exit_code == 2
        assert result.stderr.splitlines() == [f"{missing}: file not found"]


def test_check_offline_on_a_good_file_exits_0(tmp_path: Path) -> None:
    path = write(tmp_path, SCHOOL + replay_source(tmp_path / "not-read-offline.jsonl"))
    result = invoke("check", "--offline", "--config", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"{path}: OK"]
    assert result.stderr == ""


def test_check_offline_accepts_config_example() -> None:
    path = ROOT / "config.example.toml"
    result = invoke("check", "--offline", "--config", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [f"{path}: OK"]


def test_unknown_platform_is_named_by_check(tmp_path: Path) -> None:
    text = SCHOOL + '[[sources]]\nname = "gossip"\nplatform = "nosuchplatform"\nkind = "mention"\n'
    path = write(tmp_path, text)
    result = invoke("check", "--offline", "--config", str(path))
    assert result.exit_code == 2
    [problem] = result.stderr.splitlines()
    assert problem.startswith(
        f"{path}: sources.gossip.platform: no connector called 'nosuchplatform' (known: "
    )
    assert "replay" in problem


def test_bad_connector_options_are_named_by_check(tmp_path: Path) -> None:
    text = SCHOOL + '[[sources]]\nname = "replay"\nplatform = "replay"\nkind = "own"\n'
    path = write(tmp_path, text)
    result = invoke("check", "--offline", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}: sources.replay.options.path: the JSONL file to replay is required"
    ]


def test_no_dsl_address_is_reported(tmp_path: Path) -> None:
    text = SCHOOL.replace('email = "dsl@oakfield.example.sch.uk"\n', "")
    path = write(tmp_path, text)
    result = invoke("check", "--offline", "--config", str(path))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"{path}: email.dsl: no DSL address: set email.dsl or give a dsl staff member an email"
    ]
    fixed = write(tmp_path, text + '[email]\ndsl = ["dsl@oakfield.example.sch.uk"]\n')
    assert invoke("check", "--offline", "--config", str(fixed)).exit_code == 0


def test_every_static_problem_is_listed_together(tmp_path: Path) -> None:
    text = (
        SCHOOL.replace('email = "dsl@oakfield.example.sch.uk"\n', "")
        + '[[sources]]\nname = "gossip"\nplatform = "nosuchplatform"\nkind = "mention"\n'
        + '[[sources]]\nname = "replay"\nplatform = "replay"\nkind = "own"\n'
    )
    path = write(tmp_path, text)
    result = invoke("check", "--config", str(path))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == [
        "email.dsl",
        "sources.gossip.platform",
        "sources.replay.options.path",
    ]


def test_online_check_reports_a_source_whose_check_fails(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    present = tmp_path / "present.jsonl"
    present.write_text("", encoding="utf-8")
    text = SCHOOL + replay_source(missing, "gone") + replay_source(present, "here")
    path = write(tmp_path, text)
    result = invoke("check", "--config", str(path))
    assert result.exit_code == 2
    [problem] = result.stderr.splitlines()
    assert problem.startswith(f"{path}: sources.gone: check failed: FileNotFoundError: ")
    assert result.stdout.splitlines() == [f"{path}: sources.here: credentials OK"]


def test_online_check_passes_when_every_source_answers(tmp_path: Path) -> None:
    present = tmp_path / "present.jsonl"
    present.write_text("", encoding="utf-8")
    path = write(tmp_path, SCHOOL + replay_source(present))
    result = invoke("check", "--config", str(path))
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"{path}: sources.replay: credentials OK",
        f"{path}: OK",
    ]


def test_offline_check_does_not_touch_sources(tmp_path: Path) -> None:
    path = write(tmp_path, SCHOOL + replay_source(tmp_path / "missing.jsonl"))
    assert invoke("check", "--offline", "--config", str(path)).exit_code == 0
    assert invoke("check", "--config", str(path)).exit_code == 2
