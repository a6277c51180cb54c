"""Builds the running parts from Settings: store, classifier, connectors, pollers, pipeline.

``App`` only wires things together; ``run_once`` is `vigil run --once` and the demo's engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from actions.escalate import Mailer, OutboxMailer, SmtpMailer
from actions.evidence import EvidenceWriter
from actions.media import MediaFetcher
from actions.policy import PolicySettings
from actions.render import ChromiumRenderer, EvidencePreparer, LiveCapturer, make_renderer
from classifiers import Classifier, ClassifierOptions, build_classifier
from classifiers.base import Roster, StaffMember
from classifiers.taxonomy import Severity
from connectors.base import Capability, Connector, SourceContext, SourceKind
from monitor.config import ConfigError, Settings, SourceSettings
from monitor.executor import Executor, ExecutorSettings
from monitor.followup import FollowUp
from monitor.logging import get_logger
from monitor.pipeline import Pipeline
from monitor.poller import Poller, PollOutcome, PollResult
from monitor.registry import connector_class
from monitor.retention_cmd import purge_school
from monitor.retry import RetryPolicy
from monitor.store import Store
from monitor.store.migrate import head_revision

__all__ = [
    "App",
    "SchemaOutOfDate",
    "build_app",
    "check_schema",
    "dsl_recipients",
    "roster_from",
    "utcnow",
]

log = get_logger(__name__)
DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def utcnow() -> datetime:
    """The current time, aware UTC."""
    return datetime.now(UTC)


@dataclass(kw_only=True)
class App:
    """The wired parts of one running Vigil."""

    settings: Settings
    store: Store
    classifier: Classifier
    pipeline: Pipeline
    executor: Executor
    pollers: dict[str, Poller] = field(default_factory=dict)
    connectors: dict[int, Connector] = field(default_factory=dict)

    @property
    def capabilities(self) -> dict[int, frozenset[Capability]]:
        """Moderation capabilities by source id, as the policy sees them."""
        return self.pipeline.capabilities

    async def poll_all(self) -> dict[str, PollResult]:
        """Poll every source once, one after another, each under its per-source lock."""
        results = {}
        for name, poller in self.pollers.items():
            async with self.store.source_lock(poller.source_id) as held:
                results[name] = (
                    await poller.poll() if held else PollResult(outcome=PollOutcome.PAUSED)
                )
        return results

    async def run_once(self) -> dict[str, PollResult]:
        """`vigil run --once`: poll every source once, drain every stage, follow up once."""
        results = await self.poll_all()
        await self.pipeline.drain()
        await self.follow_up()
        return results

    async def follow_up(self) -> None:
        """Re-send escalations nobody acknowledged, and send the daily digest when it is due."""
        await self.followup.run(self.executor.clock())

    @property
    def followup(self) -> FollowUp:
        """The school's clock-driven emails."""
        return FollowUp(
            store=self.store,
            executor=self.executor,
            settings=self.settings,
            school_id=self.pipeline.school_id,
        )

    async def close(self) -> None:
        """Close connectors, the evidence browser and media client, and the store."""
        for connector in self.connectors.values():
            await connector.aclose()
        if self.pipeline.preparer is not None:
            await self.pipeline.preparer.close()
        await self.store.close()


async def purge_expired(app: App, now: datetime) -> dict[str, int]:
    """Apply the [retention] settings once (the daemon's daily task; `vigil purge` does the
    same). Returns how many items (clean and flagged) and quarantined payloads went; the full
    counts are logged and audited (``monitor.retention_cmd``)."""
    outcome = await purge_school(app.store, app.settings, app.pipeline.school_id, now)
    counts = outcome.plan.counts
    return {
        "items": counts["clean_items"] + counts["flagged_items"],
        "quarantine": counts["quarantine"],
    }


def roster_from(settings: Settings) -> Roster:
    """The classifiers' view of the school."""
    school = settings.school
    return Roster(
        school_name=school.name,
        school_aliases=school.aliases,
        published_contacts=school.published_contacts,
        staff=tuple(StaffMember(name=s.name, aliases=s.aliases, role=s.role) for s in school.staff),
    )


def dsl_recipients(settings: Settings) -> tuple[str, ...]:
    """Who receives escalations: ``email.dsl`` plus roster DSLs with an email address."""
    return _recipients(settings.email.dsl, settings, "dsl")


def deputy_recipients(settings: Settings) -> tuple[str, ...]:
    """Who gets an escalation nobody acknowledged: ``email.deputy_dsl`` plus roster deputies."""
    return _recipients(settings.email.deputy_dsl, settings, "deputy_dsl")


def _recipients(listed: tuple[str, ...], settings: Settings, role: str) -> tuple[str, ...]:
    found = [*listed, *(s.email for s in settings.school.staff if s.role == role and s.email)]
    return tuple(dict.fromkeys(found))


def make_mailer(settings: Settings) -> Mailer:
    """SMTP when a host is configured; otherwise ``.eml`` files in the outbox directory."""
    email = settings.email
    if not email.smtp_host:
        return OutboxMailer(settings.under_state(email.outbox_dir))
    return SmtpMailer(
        host=email.smtp_host,
        port=email.smtp_port,
        username=email.username or None,
        password=email.password.reveal() if email.password else None,
        starttls=email.starttls,
        use_tls=email.use_tls,
        timeout=email.timeout,
    )


def policy_settings(settings: Settings) -> PolicySettings:
    """The policy's settings from the [policy] section."""
    p = settings.policy
    return PolicySettings(
        auto_hide_abusive_min_severity=Severity.parse(p.auto_hide_abusive_min_severity),
        auto_hide_safeguarding_min_severity=Severity.parse(p.auto_hide_safeguarding_min_severity),
        auto_hide_spam=p.auto_hide_spam,
        escalate_min_severity=Severity.parse(p.escalate_min_severity),
        response_due_hours=p.response_due_hours,
    )


def build_connector(source: SourceSettings, clock: Callable[[], datetime] = utcnow) -> Connector:
    """The connector for one configured source (raises ValueError or RegistryError)."""
    context = SourceContext(
        clock=clock,
        source_name=source.name,
        kind=SourceKind(source.kind),
        account=source.account,
        search_terms=source.search_terms,
        max_items_per_poll=source.max_items_per_poll,
        options=dict(source.options),
        secrets={k: v.reveal() for k, v in source.secrets.items()},
    )
    return connector_class(source.platform).from_context(context)


class SchemaOutOfDate(Exception):
    """The database schema is not at this version's head: run `vigil db upgrade`."""


async def check_schema(store: Store) -> None:
    """Refuse to run on a database that has not been migrated to this version."""
    current, head = await store.schema_revision(), head_revision()
    if current != head:
        raise SchemaOutOfDate(
            f"database schema is at {current or 'nothing'}, this Vigil needs {head}: "
            "run `vigil db upgrade`"
        )


async def build_app(settings: Settings, *, clock: Callable[[], datetime] = utcnow) -> App:
    """Open the store and build every part; the schema must be migrated already."""
    store = Store.open(
        settings.database_url(),
        busy_timeout=settings.database.busy_timeout,
        pool_size=settings.database.pool_size,
        echo=settings.database.echo,
    )
    try:
        await check_schema(store)
        return await _assemble(settings, store, clock)
    except BaseException:
        await store.close()
        raise


async def _assemble(settings: Settings, store: Store, clock: Callable[[], datetime]) -> App:
    now = clock()
    school_id = await store.ensure_school(settings.school.slug, settings.school.name, now)
    classifier = build_classifier_for(settings)
    connectors: dict[int, Connector] = {}  # shared by the executor, the pipeline and the app
    executor = Executor(
        store=store,
        connectors=connectors,
        mailer=make_mailer(settings),
        retry=_action_retry(settings),
        clock=clock,
        settings=_executor_settings(settings, school_id),
    )
    app = App(
        settings=settings,
        store=store,
        classifier=classifier,
        executor=executor,
        pipeline=_pipeline(settings, store, classifier, executor, clock, school_id),
        connectors=connectors,
    )
    for source in settings.sources:
        if source.enabled:
            await _add_source(app, school_id, source, clock)
    return app


def build_classifier_for(settings: Settings) -> Classifier:
    """The classifier the config asks for; ConfigError if a configured detector cannot run."""
    options = ClassifierOptions(
        extra_lexicon_files=settings.classifier.lexicons,
        suppress_rules=settings.classifier.suppress,
        enabled_detectors=settings.classifier.detectors,
        detoxify_model=settings.classifier.detoxify_model,
        detoxify_checkpoint=settings.classifier.detoxify_checkpoint,
        detoxify_config_dir=settings.classifier.detoxify_config_dir,
        detoxify_batch_size=settings.classifier.detoxify_batch_size,
        detoxify_thresholds=tuple(settings.classifier.detoxify_thresholds.items()),
        textcat_model=settings.classifier.textcat_model,
        textcat_thresholds=tuple(settings.classifier.textcat_thresholds.items()),
    )
    classifier = build_classifier(roster_from(settings), options)
    if classifier.skipped:  # a configured detector that cannot run is a config error, not a shrug
        raise ConfigError(
            [f"{settings.path}: classifier.{name}: {why}" for name, why in classifier.skipped]
        )
    log.info(
        "classifier_ready",
        enabled=list(classifier.enabled),
        skipped=[f"{name}: {why}" for name, why in classifier.skipped],
    )
    return classifier


def card_font(settings: Settings) -> Path | None:
    """The evidence card font: the configured one, else DejaVu Sans when installed.

    Pillow's built-in font draws many scripts as boxes; DejaVu covers far more of them.
    """
    if settings.evidence.font_path is not None:
        return settings.evidence.font_path
    return DEJAVU if DEJAVU.exists() else None


def _pipeline(
    settings: Settings,
    store: Store,
    classifier: Classifier,
    executor: Executor,
    clock: Callable[[], datetime],
    school_id: int,
) -> Pipeline:
    evidence = EvidenceWriter(
        settings.under_state(settings.evidence.dir), font_path=card_font(settings)
    )
    return Pipeline(
        store=store,
        classifier=classifier,
        policy=policy_settings(settings),
        evidence=evidence,
        capabilities={},
        school_name=settings.school.name,
        school_id=school_id,
        clock=clock,
        batch_size=settings.daemon.batch_size,
        classify_batch_size=settings.classifier.batch_size,
        classify_timeout=settings.classifier.timeout,
        act=executor.run_batch,
        alert=executor.alert_admin,
        hold_after=settings.daemon.item_max_failures,
        preparer=evidence_preparer(settings),
    )


def evidence_preparer(settings: Settings) -> EvidencePreparer:
    """The card renderer, media fetcher and live capturer from [evidence]; nothing starts yet."""
    ev = settings.evidence
    renderer = make_renderer(
        ev.renderer,
        chromium_path=ev.chromium_path,
        timeout=ev.render_timeout,
        concurrency=ev.render_concurrency,
        font_path=card_font(settings),
    )
    live = None
    if ev.live_capture:
        browser = ChromiumRenderer(
            executable_path=ev.chromium_path, timeout=ev.render_timeout, concurrency=1
        )
        live = LiveCapturer(browser, storage_state=ev.storage_state)
    fetcher = MediaFetcher(ev.media_hosts, max_bytes=ev.media_max_bytes, timeout=ev.media_timeout)
    return EvidencePreparer(renderer=renderer, fetcher=fetcher, live=live)


def _executor_settings(settings: Settings, school_id: int) -> ExecutorSettings:
    return ExecutorSettings(
        school_name=settings.school.name,
        school_id=school_id,
        reports_dir=settings.under_state(Path("reports")),
        outbox_dir=settings.under_state(settings.email.outbox_dir),
        excerpt=settings.email.excerpt,
        published_contacts=settings.school.published_contacts,
        templates_dir=settings.policy.templates_dir,
        dsl_recipients=dsl_recipients(settings),
        deputy_recipients=deputy_recipients(settings),
        link_secret=settings.web.secret,
        admin_recipients=settings.email.admin,
        sender=settings.email.sender,
        message_domain=settings.email.message_domain,
        base_url=settings.web.base_url,
    )


def _action_retry(settings: Settings) -> RetryPolicy:
    p = settings.policy
    return RetryPolicy(
        base=p.action_retry_base, cap=p.action_retry_cap, max_attempts=p.action_max_attempts
    )


def poll_retry() -> RetryPolicy:
    """Backoff between failed polls of one source (the source's interval still applies)."""
    return RetryPolicy(base=60.0, cap=3600.0, max_attempts=None)


async def _add_source(
    app: App, school_id: int, source: SourceSettings, clock: Callable[[], datetime]
) -> None:
    connector = build_connector(source, clock)
    state = await app.store.ensure_source(
        school_id, source.name, source.platform, source.kind, clock()
    )
    app.connectors[state.id] = connector
    app.capabilities[state.id] = frozenset(connector.capabilities)
    app.pollers[source.name] = Poller(
        store=app.store,
        connector=connector,
        source_id=state.id,
        budget=source.max_items_per_poll,
        retry=poll_retry(),
        clock=clock,
        alert_admin=app.executor.alert_admin,
        timeout=app.settings.daemon.poll_timeout,
    )
