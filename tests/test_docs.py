"""The docs keep up with the code: every setting is in config.example.toml, every plug-in has a
docstring, and the README and CI run the same commands."""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from monitor import config
from monitor.config import Settings, load_settings
from monitor.registry import connector_class, connector_names

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"
RESOLVED_ONLY = {"secrets", "password", "secret", "path"}  # set by Vigil, never in TOML
_COMMENTED_SETTING = re.compile(r"^(\s*)#\s?(?=[a-z_][a-z0-9_]*\s*=)", re.MULTILINE)

# Where each settings dataclass lives in the file; [[tables]] are checked on their first entry.
SECTIONS: dict[str, tuple[str | int, ...]] = {
    "SchoolSettings": ("school",),
    "StaffSettings": ("school", "staff", 0),
    "AccountSettings": ("accounts", 0),
    "SourceSettings": ("sources", 0),
    "ClassifierSettings": ("classifier",),
    "PolicyConfig": ("policy",),
    "EmailSettings": ("email",),
    "EvidenceSettings": ("evidence",),
    "WebSettings": ("web",),
    "DatabaseSettings": ("database",),
    "RetentionSettings": ("retention",),
    "DaemonSettings": ("daemon",),
}


def uncommented_example() -> str:
    """config.example.toml with every "# key = value" line turned into a real setting."""
    return _COMMENTED_SETTING.sub(r"\1", EXAMPLE.read_text(encoding="utf-8"))


def shown_keys(where: tuple[str | int, ...]) -> set[str]:
    table: Any = tomllib.loads(uncommented_example())
    for step in where:
        table = table[step]
    assert isinstance(table, dict)
    return set(table)


def settings_classes() -> list[type[Any]]:
    """Every settings dataclass defined in monitor/config.py."""
    return [
        obj
        for _, obj in inspect.getmembers(config, inspect.isclass)
        if dataclasses.is_dataclass(obj) and obj.__module__ == config.__name__
    ]


def test_every_settings_class_has_a_place_in_the_example() -> None:
    names = {cls.__name__ for cls in settings_classes()}
    assert names - {"Settings"} == set(SECTIONS)


@pytest.mark.parametrize("name", sorted(SECTIONS))
def test_every_setting_appears_in_config_example(name: str) -> None:
    fields = {f.name for f in dataclasses.fields(getattr(config, name))} - RESOLVED_ONLY
    missing = fields - shown_keys(SECTIONS[name])
    assert not missing, (
        f"config.example.toml [{'.'.join(map(str, SECTIONS[name]))}] lacks {missing}"
    )


def test_every_section_appears_in_config_example() -> None:
    sections = {f.name for f in dataclasses.fields(Settings)} - RESOLVED_ONLY
    assert sections <= set(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))


def test_example_shows_no_resolved_only_keys() -> None:
    data = tomllib.loads(uncommented_example())
    for section in ("email", "web"):
        assert not RESOLVED_ONLY & set(data[section])
    assert not RESOLVED_ONLY & set(data)
    assert all("secrets" not in s for s in data["sources"])


def test_example_with_commented_settings_switched_on_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(uncommented_example(), encoding="utf-8")
    settings = load_settings(path, environ={})
    assert settings.accounts[0].closed is not None
    assert settings.evidence.font_path is not None


@pytest.mark.parametrize(
    "name", sorted(n for n, where in SECTIONS.items() if len(where) == 1 and where != ("school",))
)
def test_example_values_are_the_code_defaults(name: str) -> None:
    """The file says it shows every default: a section read alone equals the class's defaults."""
    section = str(SECTIONS[name][0])
    cls = getattr(config, name)
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))[section]
    assert TypeAdapter(cls).validate_python(data) == cls(), f"[{section}] differs from the defaults"


@pytest.mark.parametrize("name", connector_names())
def test_every_registered_connector_has_a_docstring(name: str) -> None:
    cls = connector_class(name)
    assert inspect.getdoc(cls), f"connector {name!r} ({cls.__qualname__}) has no docstring"
    assert inspect.getdoc(cls.from_context), f"{cls.__qualname__}.from_context has no docstring"


def test_readme_gives_the_demo_and_test_commands() -> None:
    readme = ROOT / "README.md"
    assert readme.is_file(), "README.md is missing"
    text = readme.read_text(encoding="utf-8")
    assert "./scripts/demo" in text
    assert "./scripts/test" in text


def test_ci_runs_the_readme_test_command() -> None:
    ci = ROOT / ".ci" / "run"
    assert os.access(ci, os.X_OK), ".ci/run must be executable"
    commands = [
        line.strip()
        for line in ci.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert any(re.search(r"(^|\s|/)scripts/test(\s|$)", c) for c in commands), commands
    for script in ("test", "demo"):
        assert os.access(ROOT / "scripts" / script, os.X_OK), f"scripts/{script} must be executable"
