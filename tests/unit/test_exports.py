"""The packages' public names are pinned: changing one is a deliberate edit here too."""

from __future__ import annotations

import importlib

import pytest

EXPORTS: dict[str, list[str]] = {
    "connectors": [
        "AuthFailed",
        "Batch",
        "Capability",
        "Connector",
        "ConnectorError",
        "ConnectorUnavailable",
        "Cursor",
        "Media",
        "ModerationResult",
        "ModerationTarget",
        "NotSupported",
        "PayloadInvalid",
        "Post",
        "RateLimited",
        "Reject",
        "SourceContext",
        "SourceKind",
    ],
    "classifiers": [
        "ALL_CELLS",
        "DETECTORS",
        "Area",
        "Cell",
        "Classifier",
        "ClassifierError",
        "ClassifierOptions",
        "Detector",
        "Flag",
        "Input",
        "NotConfigured",
        "Roster",
        "Severity",
        "Signal",
        "StaffMember",
        "Tag",
        "Type",
        "Verdict",
        "build_classifier",
    ],
    "actions": [
        "GENESIS_HASH",
        "ROUTE_GUIDANCE",
        "TRANSITIONS",
        "ActionError",
        "ActionKind",
        "ActionState",
        "EscalationError",
        "EscalationSubject",
        "EvidenceError",
        "EvidenceFile",
        "EvidenceRecord",
        "EvidenceSubject",
        "EvidenceWriter",
        "InvalidTransition",
        "MailFailed",
        "Mailer",
        "OutboxMailer",
        "PolicySettings",
        "ProposedAction",
        "Route",
        "SmtpMailer",
        "chain_hash",
        "check_transition",
        "decide",
        "escalation_routes",
        "initial_state",
        "is_terminal",
        "render_escalation",
        "response_due",
        "safe_name",
        "verify_record",
        "visible_text",
    ],
    "monitor.store": [
        "UNREACHABLE",
        "ActionRecord",
        "EscalationRecord",
        "IngestCounts",
        "ItemClaim",
        "ItemState",
        "SourceState",
        "Stage",
        "Store",
        "StoreError",
        "WorkItem",
        "upgrade",
    ],
}


def isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical."""
    group = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return group, name


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_all_is_pinned(module: str) -> None:
    assert list(importlib.import_module(module).__all__) == EXPORTS[module]


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_pinned_lists_are_sorted_and_unique(module: str) -> None:
    names = EXPORTS[module]
    assert names == sorted(names, key=isort_key)
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("module", sorted(EXPORTS))
def test_every_exported_name_is_importable(module: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from {module} import *", namespace)  # the star import is what we test
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(EXPORTS[module])
    mod = importlib.import_module(module)
    for name in EXPORTS[module]:
        assert getattr(mod, name) is namespace[name]
