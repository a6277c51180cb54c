"""actions.states: every (source, destination) pair of the action state machine."""

from __future__ import annotations

import itertools

import pytest

from actions.states import (
    TRANSITIONS,
    ActionError,
    ActionState,
    InvalidTransition,
    check_transition,
    initial_state,
    is_terminal,
)

P, A, R, D, X, F, G = (
    ActionState.PROPOSED,
    ActionState.APPROVED,
    ActionState.RUNNING,
    ActionState.DONE,
    ActionState.REJECTED,
    ActionState.FAILED,
    ActionState.GAVE_UP,
)

ALLOWED = {
    (P, A),
    (P, X),
    (A, R),
    (A, X),
    (R, D),
    (R, F),
    (R, A),  # resume after a crash (actor "policy")
    (F, R),  # retry
    (F, G),
}

ALL_PAIRS = list(itertools.product(ActionState, repeat=2))


@pytest.mark.parametrize(("src", "dst"), ALL_PAIRS, ids=[f"{s}->{d}" for s, d in ALL_PAIRS])
def test_every_pair(src: ActionState, dst: ActionState) -> None:
    if (src, dst) in ALLOWED:
        check_transition(src, dst)
        return
    with pytest.raises(InvalidTransition) as info:
        check_transition(src, dst)
    assert str(src) in str(info.value) and str(dst) in str(info.value)


def test_invalid_transition_is_an_action_error() -> None:
    assert issubclass(InvalidTransition, ActionError)


def test_message_lists_the_allowed_targets() -> None:
    with pytest.raises(InvalidTransition, match=r"from proposed: approved, rejected"):
        check_transition(P, D)
    with pytest.raises(InvalidTransition, match="done is final"):
        check_transition(D, R)


@pytest.mark.parametrize(
    ("state", "terminal"),
    [(P, False), (A, False), (R, False), (D, True), (X, True), (F, False), (G, True)],
)
def test_is_terminal(state: ActionState, terminal: bool) -> None:
    assert is_terminal(state) is terminal


@pytest.mark.parametrize(("automatic", "state"), [(True, A), (False, P)])
def test_initial_state(automatic: bool, state: ActionState) -> None:
    assert initial_state(automatic) is state


def test_table_matches_and_is_read_only() -> None:
    assert {(s, d) for s, targets in TRANSITIONS.items() for d in targets} == ALLOWED
    assert set(TRANSITIONS) == set(ActionState)
    with pytest.raises(TypeError):
        TRANSITIONS[P] = frozenset()  # type: ignore[index]


def test_state_values_are_stable() -> None:
    assert [s.value for s in ActionState] == [
        "proposed", "approved", "running", "done", "rejected", "failed", "gave_up",
    ]  # fmt: skip
