"""The action state machine, and the base of the ``actions`` exception tree.

::

    proposed ──► approved ──► running ──► done
        │            │  ▲        │
        │            │  └────────┤ (resume after a crash, actor "policy")
        ▼            ▼           ▼
    rejected ◄───────┘         failed ──► running (retry)
                                  └─────► gave_up (pages a human)

Automatic actions start at ``approved``; the rest wait at ``proposed`` for a moderator.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from types import MappingProxyType

__all__ = [
    "TRANSITIONS",
    "ActionError",
    "ActionState",
    "InvalidTransition",
    "check_transition",
    "initial_state",
    "is_terminal",
]


class ActionError(Exception):
    """An action could not be decided, recorded or carried out."""


class InvalidTransition(ActionError):
    """That state change is not allowed."""


class ActionState(StrEnum):
    """Where an action is in its life."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    RUNNING = "running"
    DONE = "done"
    REJECTED = "rejected"
    FAILED = "failed"
    GAVE_UP = "gave_up"


TRANSITIONS: Mapping[ActionState, frozenset[ActionState]] = MappingProxyType(
    {
        ActionState.PROPOSED: frozenset({ActionState.APPROVED, ActionState.REJECTED}),
        ActionState.APPROVED: frozenset({ActionState.RUNNING, ActionState.REJECTED}),
        ActionState.RUNNING: frozenset(
            {ActionState.DONE, ActionState.FAILED, ActionState.APPROVED}
        ),
        ActionState.FAILED: frozenset({ActionState.RUNNING, ActionState.GAVE_UP}),
        ActionState.DONE: frozenset(),
        ActionState.REJECTED: frozenset(),
        ActionState.GAVE_UP: frozenset(),
    }
)


def initial_state(automatic: bool) -> ActionState:
    """Automatic actions start approved; the rest wait for a moderator."""
    return ActionState.APPROVED if automatic else ActionState.PROPOSED


def check_transition(src: ActionState, dst: ActionState) -> None:
    """Raise InvalidTransition unless ``src → dst`` is allowed."""
    allowed = TRANSITIONS[src]
    if dst in allowed:
        return
    if allowed:
        options = ", ".join(sorted(state.value for state in allowed))
        raise InvalidTransition(f"an action cannot go from {src} to {dst}; from {src}: {options}")
    raise InvalidTransition(f"an action cannot go from {src} to {dst}: {src} is final")


def is_terminal(state: ActionState) -> bool:
    """True for states an action never leaves (done, rejected, gave_up)."""
    return not TRANSITIONS[state]
