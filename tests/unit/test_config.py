"""Config: TOML → frozen Settings, every problem listed at once as ``file: key.path: message``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from monitor.config import (
    ConfigError,
    Secret,
    Settings,
    StaffSettings,
    load_settings,
    parse_settings,
)
from tests.conftest import ROSTER_TOML

ROOT = Path(__file__).resolve().parents[2]


ACCOUNT_TOML = """
[[accounts]]
platform = "facebook"
handle = "oakfieldprimary"
master_administrator = "Sarah Whitfield"
opened = 2019-09-02
"""

SCHOOL: dict[str, Any] = {"name": "Oakfield Primary School", "aliases": ["Oakfield", "OPS"]}
SECRET_VALUE = "EAAB-very-secret-token-1234"


def write(tmp_path: Path, text: str, name: str = "config.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(text: str, tmp_path: Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """The problems load_settings reports for ``text``, with the file called ``config.toml``."""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text), environ=environ or {})
    return list(info.value.problems)


def parse(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> Settings:
    return parse_settings(data, path=Path("config.toml"), environ=environ or {})


def parse_problems(data: dict[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(data, environ)
    return list(info.value.problems)


def source(**overrides: Any) -> dict[str, Any]:
    return {"name": "fb", "platform": "facebook", "kind": "own", **overrides}


# --- valid files -------------------------------------------------------------------------------


def test_minimal_config_parses_with_defaults(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, '[school]\nname = "Oakfield"\n'), environ={})
    assert settings.school.name == "Oakfield"
    assert settings.school.slug == "oakfield"
    assert settings.sources == ()
    assert settings.accounts == ()
    assert settings.path == tmp_path / "config.toml"
    assert settings.daemon.state_dir == Path("/var/lib/vigil")
    assert settings.email.password is None


def test_school_roster_format_parses_into_staff_settings(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, ROSTER_TOML), environ={})
    school = settings.school
    assert school.name == "Oakfield Primary School"
    assert school.slug == "oakfield-primary-school"
    assert school.aliases == ("Oakfield", "OPS")
    assert school.published_contacts == ("01632 960123", "office@oakfield.example.sch.uk")
    assert school.staff == (
        StaffSettings(name="David Hughes", aliases=("Mr Hughes",), role="teacher"),
    )
    assert isinstance(school.staff[0], StaffSettings)
    assert school.staff[0].email == ""


def test_any_role_string_is_allowed(tmp_path: Path) -> None:
    text = ROSTER_TOML.replace('role = "teacher"', 'role = "office_manager"')
    settings = load_settings(write(tmp_path, text), environ={})
    assert settings.school.staff[0].role == "office_manager"


def test_settings_are_frozen() -> None:
    settings = parse({"school": SCHOOL})
    with pytest.raises(AttributeError):
        settings.school = settings.school  # type: ignore[misc]


def test_config_example_loads_without_problems() -> None:
    settings = load_settings(ROOT / "config.example.toml", environ={})
    assert settings.school.staff
    assert settings.accounts
    assert settings.sources


def test_database_url_defaults_to_sqlite_under_state_dir(tmp_path: Path) -> None:
    settings = parse({"school": SCHOOL, "daemon": {"state_dir": str(tmp_path / "state")}})
    assert settings.database_url() == f"sqlite+aiosqlite:///{tmp_path / 'state' / 'vigil.db'}"


def test_database_url_given_is_used() -> None:
    url = "postgresql+asyncpg://vigil@127.0.0.1/vigil"
    assert parse({"school": SCHOOL, "database": {"url": url}}).database_url() == url


def test_mention_source_search_terms_default_to_school_name_and_aliases() -> None:
    settings = parse(
        {
            "school": SCHOOL,
            "sources": [
                {"platform": "facebook", "kind": "mention"},
                {"platform": "x", "kind": "mention", "search_terms": ["#oakfield"]},
                {"platform": "youtube", "kind": "own"},
            ],
        }
    )
    assert settings.source("facebook-mention").search_terms == (
        "Oakfield Primary School",
        "Oakfield",
        "OPS",
    )
    assert settings.source("x-mention").search_terms == ("#oakfield",)
    assert settings.source("youtube-own").search_terms == ()


def test_source_name_defaults_to_platform_and_kind() -> None:
    settings = parse({"school": SCHOOL, "sources": [{"platform": "facebook", "kind": "own"}]})
    assert [s.name for s in settings.sources] == ["facebook-own"]
    with pytest.raises(KeyError):
        settings.source("facebook")


# --- every problem at once ---------------------------------------------------------------------


def test_every_problem_is_listed_at_once_as_file_key_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write(
        tmp_path,
        ROSTER_TOML
        + """
[[sources]]
name = "facebook"
platform = "facebook"
kind = "own"
interval = 10

[email]
smtp_port = 0

[daemon]
log_level = "loud"
""",
    )
    with pytest.raises(ConfigError) as info:
        load_settings("config.toml", environ={})
    problems = info.value.problems
    assert "config.toml: sources.facebook.interval: must be at least 60" in problems
    assert "config.toml: email.smtp_port: must be at least 1" in problems
    assert any(p.startswith("config.toml: daemon.log_level: must be ") for p in problems)
    assert len(problems) == 3
    assert str(info.value) == "\n".join(problems)


def test_unnamed_source_is_labelled_by_its_default_name(tmp_path: Path) -> None:
    problems = problems_of(
        ROSTER_TOML + '[[sources]]\nplatform = "facebook"\nkind = "mention"\ninterval = 1\n',
        tmp_path,
    )
    assert problems == [
        f"{tmp_path / 'config.toml'}: sources.facebook-mention.interval: must be at least 60"
    ]


def test_unknown_keys_are_reported(tmp_path: Path) -> None:
    problems = problems_of(
        ROSTER_TOML.replace("[[school.staff]]", 'colour = "blue"\n[[school.staff]]')
        + '\n[emial]\nsender = "x@example.org"\n',
        tmp_path,
    )
    where = tmp_path / "config.toml"
    assert sorted(problems) == [
        f"{where}: emial: unknown key (misspelt?)",
        f"{where}: school.colour: unknown key (misspelt?)",
    ]


def test_missing_required_keys_are_named(tmp_path: Path) -> None:
    problems = problems_of(
        ROSTER_TOML + '[[sources]]\nname = "fb"\nplatform = "facebook"\n', tmp_path
    )
    assert problems == [f"{tmp_path / 'config.toml'}: sources.fb.kind: required but missing"]
    assert problems_of("", tmp_path) == [
        f"{tmp_path / 'config.toml'}: school: required but missing"
    ]


def test_bad_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    problems = problems_of('[school]\nname = "Oakfield\n', tmp_path)
    assert len(problems) == 1
    assert problems[0].startswith(f"{tmp_path / 'config.toml'}: not valid TOML: ")


def test_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.toml"
    with pytest.raises(ConfigError) as info:
        load_settings(missing, environ={})
    assert info.value.problems == (f"{missing}: file not found",)


def test_keys_vigil_sets_itself_are_rejected() -> None:
    problems = parse_problems({"school": SCHOOL, "path": "/etc/other.toml"})
    assert problems == ["config.toml: path: set by Vigil itself, not in the file"]
    problems = parse_problems(
        {"school": SCHOOL, "sources": [source(secrets={"token": SECRET_VALUE})]}
    )
    assert "config.toml: sources.fb.secrets: set by Vigil itself, not in the file" in problems
    assert not any(SECRET_VALUE in p for p in problems)


# --- checks beyond the types -------------------------------------------------------------------


def test_duplicate_source_names_are_reported() -> None:
    problems = parse_problems({"school": SCHOOL, "sources": [source(), source(kind="mention")]})
    assert problems == ["config.toml: sources.fb.name: two sources have this name"]


def test_default_names_can_collide_too() -> None:
    problems = parse_problems(
        {"school": SCHOOL, "sources": [{"platform": "x", "kind": "own"}, source(name="x-own")]}
    )
    assert problems == ["config.toml: sources.x-own.name: two sources have this name"]


def test_bad_source_name_is_reported() -> None:
    problems = parse_problems({"school": SCHOOL, "sources": [source(name="Face Book")]})
    assert problems == [
        "config.toml: sources.Face Book.name: use lower-case letters, digits, '-', '_' or '.'"
    ]


def test_own_source_account_must_be_in_the_register(tmp_path: Path) -> None:
    text = (
        ROSTER_TOML
        + ACCOUNT_TOML
        + """
[[sources]]
name = "fb"
platform = "facebook"
kind = "own"
account = "oakfield_primary"
"""
    )
    assert problems_of(text, tmp_path) == [
        f"{tmp_path / 'config.toml'}: sources.fb.account: "
        "'oakfield_primary' is not in the account register"
    ]
    good = text.replace('account = "oakfield_primary"', 'account = "oakfieldprimary"')
    assert (
        load_settings(write(tmp_path, good), environ={}).source("fb").account == "oakfieldprimary"
    )


def test_account_closed_before_opened_is_reported(tmp_path: Path) -> None:
    text = ROSTER_TOML + ACCOUNT_TOML + "closed = 2019-01-01\n"
    assert problems_of(text, tmp_path) == [
        f"{tmp_path / 'config.toml'}: accounts.oakfieldprimary.closed: "
        "before the date it was opened"
    ]


def test_type_and_cross_checks_all_reported_when_types_are_valid() -> None:
    problems = parse_problems(
        {
            "school": SCHOOL,
            "sources": [source(credentials={"token": "x"}), source()],
            "email": {"password_env": "VIGIL_NO_SUCH_VAR"},
        }
    )
    assert sorted(problems) == [
        "config.toml: email.password_env: environment variable VIGIL_NO_SUCH_VAR is not set",
        "config.toml: sources.fb.credentials.token: secrets are never written in the file; "
        "use token_env, token_file or token_credential",
        "config.toml: sources.fb.name: two sources have this name",
    ]


# --- secrets -----------------------------------------------------------------------------------


def test_token_env_is_read_from_the_given_environment() -> None:
    settings = parse(
        {"school": SCHOOL, "sources": [source(credentials={"token_env": "VIGIL_FB_TOKEN"})]},
        environ={"VIGIL_FB_TOKEN": SECRET_VALUE},
    )
    secret = settings.source("fb").secrets["token"]
    assert isinstance(secret, Secret)
    assert secret.reveal() == SECRET_VALUE


def test_missing_environment_variable_is_named() -> None:
    problems = parse_problems(
        {"school": SCHOOL, "sources": [source(credentials={"token_env": "VIGIL_FB_TOKEN"})]},
        environ={"OTHER": "x"},
    )
    assert problems == [
        "config.toml: sources.fb.credentials.token_env: "
        "environment variable VIGIL_FB_TOKEN is not set"
    ]


def test_token_file_is_read_and_stripped(tmp_path: Path) -> None:
    secret_file = tmp_path / "fb-token"
    secret_file.write_text(SECRET_VALUE + "\n", encoding="utf-8")
    settings = parse(
        {"school": SCHOOL, "sources": [source(credentials={"token_file": str(secret_file)})]}
    )
    assert settings.source("fb").secrets["token"].reveal() == SECRET_VALUE


def test_unreadable_or_empty_token_file_is_reported(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("\n", encoding="utf-8")
    missing = tmp_path / "missing"
    problems = parse_problems(
        {
            "school": SCHOOL,
            "sources": [
                source(credentials={"token_file": str(empty)}),
                source(name="fb2", credentials={"token_file": str(missing)}),
            ],
        }
    )
    assert (
        problems[0]
        == f"config.toml: sources.fb.credentials.token_file: secret file {empty} is empty"
    )
    assert problems[1].startswith(
        f"config.toml: sources.fb2.credentials.token_file: cannot read secret file {missing}: "
    )
    assert len(problems) == 2


def test_token_credential_is_read_from_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "vigil-fb-token").write_text(SECRET_VALUE, encoding="utf-8")
    data = {
        "school": SCHOOL,
        "sources": [source(credentials={"token_credential": "vigil-fb-token"})],
    }
    settings = parse(data, environ={"CREDENTIALS_DIRECTORY": str(tmp_path)})
    assert settings.source("fb").secrets["token"].reveal() == SECRET_VALUE
    problems = parse_problems(data, environ={})
    assert problems == [
        "config.toml: sources.fb.credentials.token_credential: "
        "CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"
    ]


def test_literal_token_is_rejected_naming_the_key_not_the_value(tmp_path: Path) -> None:
    text = (
        ROSTER_TOML
        + f"""
[[sources]]
name = "fb"
platform = "facebook"
kind = "own"
credentials = {{ token = "{SECRET_VALUE}" }}
"""
    )
    problems = problems_of(text, tmp_path)
    assert problems == [
        f"{tmp_path / 'config.toml'}: sources.fb.credentials.token: secrets are never written "
        "in the file; use token_env, token_file or token_credential"
    ]
    assert SECRET_VALUE not in "\n".join(problems)


def test_literal_email_password_is_rejected_without_echoing_it() -> None:
    problems = parse_problems({"school": SCHOOL, "email": {"password": SECRET_VALUE}})
    assert "config.toml: email.password: set by Vigil itself, not in the file" in problems
    assert SECRET_VALUE not in "\n".join(problems)


def test_email_password_resolves_from_env_and_file(tmp_path: Path) -> None:
    settings = parse(
        {"school": SCHOOL, "email": {"password_env": "VIGIL_SMTP_PASSWORD"}},
        environ={"VIGIL_SMTP_PASSWORD": SECRET_VALUE},
    )
    assert settings.email.password is not None
    assert settings.email.password.reveal() == SECRET_VALUE
    (tmp_path / "smtp").write_text("from-a-file\n", encoding="utf-8")
    settings = parse({"school": SCHOOL, "email": {"password_file": str(tmp_path / "smtp")}})
    assert settings.email.password is not None
    assert settings.email.password.reveal() == "from-a-file"


def test_only_one_way_to_give_a_secret() -> None:
    problems = parse_problems(
        {"school": SCHOOL, "email": {"password_env": "A", "password_file": "/x"}},
        environ={"A": "x"},
    )
    assert problems == ["config.toml: email.password: give only one of password_env, password_file"]


def test_secrets_never_show_in_repr_or_str(tmp_path: Path) -> None:
    settings = parse(
        {
            "school": SCHOOL,
            "sources": [source(credentials={"token_env": "VIGIL_FB_TOKEN"})],
            "email": {"password_env": "VIGIL_SMTP_PASSWORD"},
        },
        environ={"VIGIL_FB_TOKEN": SECRET_VALUE, "VIGIL_SMTP_PASSWORD": "smtp-pass-value"},
    )
    for shown in (repr(settings), str(settings), repr(settings.sources), str(settings.email)):
        assert SECRET_VALUE not in shown
        assert "smtp-pass-value" not in shown
    secret = settings.source("fb").secrets["token"]
    assert repr(secret) == str(secret) == f"{secret}" == "Secret('**********')"
    assert secret == Secret(SECRET_VALUE)
    assert secret != Secret("other")


def test_type_errors_and_secret_problems_are_listed_together() -> None:
    problems = parse_problems(
        {
            "school": SCHOOL,
            "sources": [source(interval=10, credentials={"token": "x", "page_env": "UNSET_VAR"})],
        },
        environ={},
    )
    assert problems == [
        "config.toml: sources.fb.interval: must be at least 60",
        "config.toml: sources.fb.credentials.token: secrets are never written in the file; "
        "use token_env, token_file or token_credential",
        "config.toml: sources.fb.credentials.page_env: environment variable UNSET_VAR is not set",
    ]
