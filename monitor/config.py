"""Configuration: TOML (+ secrets from env, files or systemd credentials) → frozen, typed Settings.

This is the only module that reads config files and the environment. Every problem is collected
and reported at once as ``file: key.path: message`` (see ``ConfigError``).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "AccountSettings",
    "ClassifierSettings",
    "ConfigError",
    "DaemonSettings",
    "DatabaseSettings",
    "EmailSettings",
    "EvidenceSettings",
    "PolicyConfig",
    "RetentionSettings",
    "SchoolSettings",
    "Secret",
    "Settings",
    "SourceSettings",
    "StaffSettings",
    "WebSettings",
    "load_settings",
    "parse_settings",
]

SECRET_SUFFIXES = ("_env", "_file", "_credential")
_FORBID: ConfigDict = ConfigDict(
    extra="forbid", str_strip_whitespace=True, arbitrary_types_allowed=True
)
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists every ``file: key: message``."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


class Secret:
    """A secret value that never shows itself in repr, str or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself: pass it straight to the client that needs it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


Seconds = Annotated[float, Field(gt=0)]
NonEmpty = Annotated[str, Field(min_length=1)]


@dataclass(frozen=True, kw_only=True)
class StaffSettings:
    """One adult on the school's roster."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    name: NonEmpty
    aliases: tuple[str, ...] = ()
    role: str = ""  # "head", "dsl", "deputy_dsl", "governor" have meaning; anything else is allowed
    email: str = ""


@dataclass(frozen=True, kw_only=True)
class SchoolSettings:
    """The school: names it is known by, contacts it publishes, and its staff roster."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    name: NonEmpty
    slug: str = ""  # defaults to the name, lower-cased with dashes
    aliases: tuple[str, ...] = ()
    published_contacts: tuple[str, ...] = ()
    staff: tuple[StaffSettings, ...] = ()


@dataclass(frozen=True, kw_only=True)
class AccountSettings:
    """One official account in the school's account register (the policy's account log)."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    platform: NonEmpty
    handle: NonEmpty
    account_id: str = ""
    master_administrator: NonEmpty
    approved_posters: tuple[str, ...] = ()
    opened: dt.date
    closed: dt.date | None = None


@dataclass(frozen=True, kw_only=True)
class SourceSettings:
    """One polled source: a platform, own account or mentions, its interval and credentials."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    MIN_INTERVAL: ClassVar[float] = 60.0
    platform: NonEmpty
    kind: Literal["own", "mention"]
    name: str = ""  # defaults to "<platform>-<kind>"; must be unique
    interval: Annotated[float, Field(ge=60)] = 900.0
    jitter: Annotated[float, Field(ge=0)] = 30.0
    enabled: bool = True
    account: str = ""  # handle from [[accounts]] for own-account sources
    search_terms: tuple[str, ...] = ()  # mention sources: defaults to the school's name and aliases
    max_items_per_poll: Annotated[int, Field(ge=1)] = 500
    credentials: Mapping[str, str] = field(
        default_factory=dict
    )  # NAME_env / NAME_file / NAME_credential
    options: Mapping[str, Any] = field(default_factory=dict)  # platform-specific settings
    secrets: Mapping[str, Secret] = field(
        default_factory=dict
    )  # resolved from credentials; not in TOML


@dataclass(frozen=True, kw_only=True)
class ClassifierSettings:
    """Which detectors run and with what data."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    detectors: tuple[str, ...] = ("rules", "people", "personal_info", "textcat")
    lexicons: tuple[Path, ...] = ()  # extra lexicon TOML files, same format as the built-ins
    suppress: tuple[str, ...] = ()  # lexicon entry ids to switch off
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 64
    timeout: Seconds = 120.0
    # Detoxify (optional extra `vigil[detoxify]`); add "detoxify" to detectors to use it.
    detoxify_model: str = "original-small"  # original, unbiased, multilingual, original-small, ...
    detoxify_checkpoint: Path | None = None  # a local checkpoint (no downloads at run time)
    detoxify_config_dir: Path | None = None  # the local Hugging Face config/tokenizer directory
    detoxify_batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    detoxify_thresholds: Mapping[str, float] = field(
        default_factory=lambda: {
            "toxicity": 0.8,
            "severe_toxicity": 0.5,
            "threat": 0.6,
            "insult": 0.8,
            "identity_attack": 0.6,
            "obscene": 0.9,
            "sexual_explicit": 0.7,
        }
    )  # score at or above which a Detoxify label raises a signal
    # The trained text classifier; add "textcat" to detectors. None: the model shipped with Vigil.
    textcat_model: Path | None = None
    textcat_thresholds: Mapping[str, Annotated[float, Field(gt=0.0, le=1.0)]] = field(
        default_factory=dict
    )  # per flag, over the model's defaults


@dataclass(frozen=True, kw_only=True)
class PolicyConfig:
    """The [policy] section; turned into actions.policy.PolicySettings by the pipeline."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    auto_hide_abusive_min_severity: Literal["low", "medium", "high", "critical"] = "high"
    auto_hide_safeguarding_min_severity: Literal["low", "medium", "high", "critical"] = "high"
    auto_hide_spam: bool = True
    escalate_min_severity: Literal["low", "medium", "high", "critical"] = "low"
    response_due_hours: Annotated[int, Field(ge=1, le=168)] = 24
    action_max_attempts: Annotated[int, Field(ge=1, le=100)] = 8
    action_retry_base: Seconds = 30.0
    action_retry_cap: Seconds = 3600.0
    templates_dir: Path | None = None  # the school's own response templates (override defaults)


@dataclass(frozen=True, kw_only=True)
class EmailSettings:
    """Escalation email: SMTP when ``smtp_host`` is set, otherwise ``.eml`` files in the outbox."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    smtp_host: str = ""
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    starttls: bool = True
    use_tls: bool = False
    username: str = ""
    password_env: str = ""
    password_file: str = ""
    password_credential: str = ""
    sender: str = "vigil@localhost"
    dsl: tuple[str, ...] = ()
    deputy_dsl: tuple[str, ...] = ()  # escalations nobody acknowledged are re-sent to these
    moderators: tuple[str, ...] = ()  # the daily digest of open items goes to these
    admin: tuple[str, ...] = ()
    outbox_dir: Path = Path("outbox")  # relative paths are under the state directory
    timeout: Seconds = 30.0
    resend_after_hours: Annotated[float, Field(gt=0)] = 4.0
    digest_hour: Annotated[int, Field(ge=0, le=23)] = 7  # UK time
    excerpt: Literal["full", "redacted", "none"] = "full"  # how much post text the DSL email quotes
    message_domain: str = "vigil.invalid"
    password: Secret | None = None  # resolved; not in TOML


@dataclass(frozen=True, kw_only=True)
class EvidenceSettings:
    """Where evidence is kept, how cards are rendered and which media may be fetched."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    dir: Path = Path("evidence")  # relative paths are under the state directory
    font_path: Path | None = None  # default: DejaVu Sans when installed, else Pillow's own
    renderer: Literal["auto", "chromium", "pillow"] = "auto"  # auto: Chromium if it starts
    chromium_path: Path = Path("/usr/bin/chromium")
    render_timeout: Seconds = 30.0
    render_concurrency: Annotated[int, Field(ge=1, le=8)] = 2
    live_capture: bool = False  # also screenshot the permalink itself (off by default)
    storage_state: Path | None = None  # browser session for logged-in live captures
    media_hosts: tuple[str, ...] = (
        "scontent.xx.fbcdn.net",
        "fbcdn.net",
        "cdninstagram.com",
        "pbs.twimg.com",
        "video.twimg.com",
        "yt3.ggpht.com",
        "i.ytimg.com",
        "cdn.bsky.app",
        "files.mastodon.social",
        "i.redd.it",
        "preview.redd.it",
    )  # media is fetched only from these hosts (and their subdomains)
    media_max_bytes: Annotated[int, Field(ge=1)] = 10_000_000
    media_timeout: Seconds = 20.0


@dataclass(frozen=True, kw_only=True)
class WebSettings:
    """The web app: where it listens, its address for links, and the key that signs them."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    serve: bool = True  # `vigil run` serves the web app too; false when `vigil web` runs it alone
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    base_url: str = "http://127.0.0.1:8080"
    secret_env: str = ""  # signs acknowledgement links (sessions are random tokens in the DB)
    secret_file: str = ""
    secret_credential: str = ""
    secret: Secret | None = None  # resolved; not in TOML
    # /readyz under `vigil web` alone: the scheduler counts as running when some source was
    # polled within this many seconds; 0 = max(3 × the shortest enabled interval, 600).
    ready_window: Annotated[float, Field(ge=0)] = 0.0
    health_timeout: Seconds = 5.0  # /readyz and /metrics wait this long for the database


@dataclass(frozen=True, kw_only=True)
class DatabaseSettings:
    """Where the store lives: SQLite in the state directory unless a URL is given."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    url: str = ""  # e.g. postgresql+asyncpg://vigil@127.0.0.1/vigil ; empty = sqlite in state dir
    url_env: str = ""  # take the URL (it may hold a password) from this environment variable
    busy_timeout: Seconds = 30.0
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5
    echo: bool = False


@dataclass(frozen=True, kw_only=True)
class RetentionSettings:
    """How long things are kept (UK GDPR: no longer than needed); the daemon purges daily."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    unflagged_days: Annotated[int, Field(ge=1)] = 30
    quarantine_days: Annotated[int, Field(ge=1)] = 30
    # Flagged items and their evidence, counted from the case's closing (open cases and cases
    # on legal hold are never purged; a false positive gets unflagged_days). Six years: the
    # Limitation Act 1980 period for most civil claims, which school records schedules use
    # for incident and complaint records.
    flagged_days: Annotated[int, Field(ge=1)] = 2190
    # Safeguarding cases (restricted to the DSL, or escalated): 25 years, as a child
    # protection record is kept until the child is 25 (Vigil does not know ages).
    safeguarding_days: Annotated[int, Field(ge=1)] = 9125


@dataclass(frozen=True, kw_only=True)
class DaemonSettings:
    """The process itself."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    state_dir: Path = Path("/var/lib/vigil")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    shutdown_grace: Seconds = 20.0
    tick: Seconds = 5.0  # how often idle stage workers look for work
    batch_size: Annotated[int, Field(ge=1, le=5000)] = 100
    poll_timeout: Seconds = 300.0
    item_max_failures: Annotated[int, Field(ge=1, le=100)] = 5


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything Vigil reads from its config file, validated and frozen."""

    __pydantic_config__: ClassVar[ConfigDict] = _FORBID
    school: SchoolSettings
    accounts: tuple[AccountSettings, ...] = ()
    sources: tuple[SourceSettings, ...] = ()
    classifier: ClassifierSettings = ClassifierSettings()
    policy: PolicyConfig = PolicyConfig()
    email: EmailSettings = EmailSettings()
    evidence: EvidenceSettings = EvidenceSettings()
    web: WebSettings = WebSettings()
    database: DatabaseSettings = DatabaseSettings()
    retention: RetentionSettings = RetentionSettings()
    daemon: DaemonSettings = DaemonSettings()
    path: Path = Path("config.toml")  # the file these came from; not in TOML

    @property
    def state_dir(self) -> Path:
        """The directory holding the SQLite database, evidence and outbox."""
        return self.daemon.state_dir

    def under_state(self, path: Path) -> Path:
        """``path`` if absolute, else relative to the state directory."""
        return path if path.is_absolute() else self.state_dir / path

    def database_url(self) -> str:
        """The SQLAlchemy URL; SQLite in the state directory by default."""
        if self.database.url_env:
            return os.environ.get(self.database.url_env, "")
        if self.database.url:
            return self.database.url
        return f"sqlite+aiosqlite:///{self.state_dir / 'vigil.db'}"

    def source(self, name: str) -> SourceSettings:
        """The source called ``name``."""
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)


_ADAPTER: TypeAdapter[Settings] = TypeAdapter(Settings)
_RESOLVED_ONLY = {"secrets", "password", "secret", "path"}


def load_settings(path: Path | str, *, environ: Mapping[str, str] | None = None) -> Settings:
    """Read, validate and resolve the config at ``path``; ConfigError lists every problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found"]) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError([f"{path}: cannot read: {err}"]) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"{path}: not valid TOML: {err}"]) from None
    return parse_settings(data, path=path, environ=environ)


def parse_settings(
    data: Mapping[str, Any], *, path: Path, environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate already-parsed TOML ``data`` as if read from ``path``."""
    env = os.environ if environ is None else environ
    problems = [
        f"{path}: {key}: set by Vigil itself, not in the file" for key in _leaked_keys(data)
    ]
    try:
        settings = _ADAPTER.validate_python({**data, "path": path})
    except ValidationError as err:
        more = [f"{path}: {p}" for p in _raw_credential_problems(data, env)]
        raise ConfigError(problems + _format_errors(err, data, path) + more) from None
    settings, more = _resolve(settings, env)
    problems += [f"{path}: {p}" for p in more]
    if problems:
        raise ConfigError(problems)
    return settings


def _leaked_keys(data: Mapping[str, Any]) -> list[str]:
    leaked = [k for k in _RESOLVED_ONLY if k in data]
    for section in ("email", "web"):
        leaked += [f"{section}.{k}" for k in _RESOLVED_ONLY if k in data.get(section, {})]
    for i, source in enumerate(data.get("sources", [])):
        if isinstance(source, Mapping) and "secrets" in source:
            leaked.append(f"sources.{_source_label(data, i)}.secrets")
    return leaked


def _source_label(data: Mapping[str, Any], index: int) -> str:
    """Name a source in messages as it will be named once valid: name, or "<platform>-<kind>"."""
    try:
        source = data["sources"][index]
        platform, kind = source.get("platform"), source.get("kind")
        default = f"{platform}-{kind}" if platform and kind in ("own", "mention") else platform
        label = source.get("name") or default
        return str(label) if label else str(index)
    except (KeyError, IndexError, TypeError, AttributeError):
        return str(index)


def _format_errors(err: ValidationError, data: Mapping[str, Any], path: Path) -> list[str]:
    out: list[str] = []
    for e in err.errors(include_url=False):
        loc = [str(p) for p in e["loc"]]
        if len(loc) >= 2 and loc[0] in ("sources", "accounts") and loc[1].isdigit():
            loc[1] = _source_label(data, int(loc[1])) if loc[0] == "sources" else loc[1]
        loc = [p for p in loc if not p.startswith(("function-", "lax-", "json-"))]
        out.append(f"{path}: {'.'.join(loc) or '(top level)'}: {_message(e)}")
    return out


def _message(e: Any) -> str:
    kind, ctx = e.get("type", ""), e.get("ctx") or {}
    if kind == "greater_than_equal":
        return f"must be at least {ctx.get('ge'):g}"
    if kind == "greater_than":
        return f"must be greater than {ctx.get('gt'):g}"
    if kind == "less_than_equal":
        return f"must be at most {ctx.get('le'):g}"
    if kind == "missing":
        return "required but missing"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return "unknown key (misspelt?)"
    return str(e.get("msg", "invalid")).replace("Input should be", "must be")


def _resolve(settings: Settings, env: Mapping[str, str]) -> tuple[Settings, list[str]]:
    """Resolve secrets and defaults, and check what the types alone cannot."""
    problems: list[str] = []
    school = _resolve_school(settings.school)
    sources = []
    for source in settings.sources:
        resolved, more = _resolve_source(source, school, env)
        sources.append(resolved)
        problems += more
    problems += _check_unique(sources, settings.accounts)
    email_pw, more = _secret(settings.email, "password", env, "email")
    problems += more
    web_secret, more = _secret(settings.web, "secret", env, "web")
    problems += more
    if settings.database.url_env and not env.get(settings.database.url_env):
        problems.append(
            f"database.url_env: environment variable {settings.database.url_env} is not set"
        )
    settings = replace(
        settings,
        school=school,
        sources=tuple(sources),
        email=replace(settings.email, password=email_pw),
        web=replace(settings.web, secret=web_secret),
    )
    return settings, problems


def _resolve_school(school: SchoolSettings) -> SchoolSettings:
    slug = school.slug or re.sub(r"[^a-z0-9]+", "-", school.name.lower()).strip("-")
    return replace(school, slug=slug)


def _resolve_source(
    source: SourceSettings, school: SchoolSettings, env: Mapping[str, str]
) -> tuple[SourceSettings, list[str]]:
    name = source.name or f"{source.platform}-{source.kind}"
    label = f"sources.{name}"
    problems: list[str] = []
    if not _SLUG.match(name):
        problems.append(f"{label}.name: use lower-case letters, digits, '-', '_' or '.'")
    terms = source.search_terms
    if source.kind == "mention" and not terms:
        terms = (school.name, *school.aliases)
    secrets, more = _resolve_credentials(label, source.credentials, env)
    return replace(source, name=name, search_terms=terms, secrets=secrets), problems + more


def _resolve_credentials(
    label: str, credentials: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[dict[str, Secret], list[str]]:
    """Read each NAME_env / NAME_file / NAME_credential; a literal secret is a problem."""
    secrets: dict[str, Secret] = {}
    problems: list[str] = []
    for key, value in credentials.items():
        base, suffix = _split_secret_key(key)
        if suffix is None:
            problems.append(
                f"{label}.credentials.{key}: secrets are never written in the file; "
                f"use {key}_env, {key}_file or {key}_credential"
            )
            continue
        secret, error = _read_secret(suffix, str(value), env)
        if error:
            problems.append(f"{label}.credentials.{key}: {error}")
        elif secret is not None:
            secrets[base] = secret
    return secrets, problems


def _raw_credential_problems(data: Mapping[str, Any], env: Mapping[str, str]) -> list[str]:
    """Credential problems read straight from the TOML, so that a file with type errors
    still gets every problem listed at once."""
    problems: list[str] = []
    sources = data.get("sources")
    for index, source in enumerate(sources if isinstance(sources, list) else []):
        credentials = source.get("credentials") if isinstance(source, Mapping) else None
        if isinstance(credentials, Mapping):
            label = f"sources.{_source_label(data, index)}"
            problems += _resolve_credentials(label, credentials, env)[1]
    return problems


def _split_secret_key(key: str) -> tuple[str, str | None]:
    for suffix in SECRET_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            return key[: -len(suffix)], suffix
    return key, None


def _read_secret(suffix: str, value: str, env: Mapping[str, str]) -> tuple[Secret | None, str]:
    """Read one secret; return (secret, "") or (None, problem)."""
    if suffix == "_env":
        found = env.get(value)
        return (Secret(found), "") if found else (None, f"environment variable {value} is not set")
    if suffix == "_credential":
        directory = env.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return None, "CREDENTIALS_DIRECTORY is not set (use LoadCredential= in the unit)"
        value = str(Path(directory) / value)
    try:
        text = Path(value).read_text(encoding="utf-8").strip()
    except OSError as err:
        return None, f"cannot read secret file {value}: {err.strerror or err}"
    return (Secret(text), "") if text else (None, f"secret file {value} is empty")


def _secret(
    section: Any, base: str, env: Mapping[str, str], label: str
) -> tuple[Secret | None, list[str]]:
    given = [(s, getattr(section, base + s)) for s in SECRET_SUFFIXES if getattr(section, base + s)]
    if not given:
        return None, []
    if len(given) > 1:
        return None, [f"{label}.{base}: give only one of {', '.join(base + s for s, _ in given)}"]
    suffix, value = given[0]
    secret, error = _read_secret(suffix, value, env)
    return secret, ([f"{label}.{base}{suffix}: {error}"] if error else [])


def _check_unique(
    sources: Sequence[SourceSettings], accounts: Sequence[AccountSettings]
) -> list[str]:
    problems, seen = [], set()
    for source in sources:
        if source.name in seen:
            problems.append(f"sources.{source.name}.name: two sources have this name")
        seen.add(source.name)
        handles = {a.handle for a in accounts if a.platform == source.platform}
        if source.kind == "own" and source.account and handles and source.account not in handles:
            problems.append(
                f"sources.{source.name}.account: {source.account!r} is not in the account register"
            )
    for account in accounts:
        if account.closed and account.closed < account.opened:
            problems.append(f"accounts.{account.handle}.closed: before the date it was opened")
    return problems
