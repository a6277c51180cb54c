"""Actions: policy, the action state machine, evidence capture and DSL escalation.

Exception tree::

    ActionError              base; an action could not be decided, recorded or carried out
    ├── InvalidTransition    a state change the state machine does not allow
    ├── EvidenceError        evidence could not be captured or verified
    └── EscalationError      an escalation could not be rendered or sent
        └── MailFailed       the mail server could not be reached or refused the message

This package imports only ``classifiers.taxonomy``, ``classifiers.base`` and
``connectors.base`` of ours (see DESIGN.md, "Packages").
"""

from __future__ import annotations

from actions.escalate import (
    ROUTE_GUIDANCE,
    EscalationError,
    EscalationSubject,
    Mailer,
    MailFailed,
    OutboxMailer,
    SmtpMailer,
    render_escalation,
)
from actions.evidence import (
    GENESIS_HASH,
    EvidenceError,
    EvidenceFile,
    EvidenceRecord,
    EvidenceSubject,
    EvidenceWriter,
    chain_hash,
    safe_name,
    verify_record,
    visible_text,
)
from actions.policy import (
    ActionKind,
    PolicySettings,
    ProposedAction,
    Route,
    decide,
    escalation_routes,
    response_due,
)
from actions.states import (
    TRANSITIONS,
    ActionError,
    ActionState,
    InvalidTransition,
    check_transition,
    initial_state,
    is_terminal,
)

__all__ = [
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
]
