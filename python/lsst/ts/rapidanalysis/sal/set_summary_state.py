"""Drive a CSC to a summary state through the allowed transitions (as salobj)."""

from __future__ import annotations

from typing import Any

from .base_csc import make_state_transition_dict
from .enums import State

__all__ = ["set_summary_state"]


async def set_summary_state(remote: Any, state: State | int, override: str = "", timeout: float = 30) -> list[State]:
    """Command a CSC, step by step, to ``state``.

    Parameters
    ----------
    remote : `Remote`
        Remote of the CSC (needs ``evt_summaryState`` and the state commands).
    state : `State`
        Desired state (not FAULT).
    override : `str`
        Configuration override for ``start``, if it is sent.
    timeout : `float`
        Seconds for each command (and to read the current state).

    Returns
    -------
    states : `list` [`State`]
        The current state followed by the state after each command sent.
    """
    state = State(state)
    if state == State.FAULT:
        raise ValueError("Cannot command a CSC into FAULT")
    current = State((await remote.evt_summaryState.aget(timeout=timeout)).summaryState)
    states = [current]
    for command, next_state in make_state_transition_dict()[(current, state)]:
        cmd = getattr(remote, f"cmd_{command}")
        if command == "start":
            await cmd.set_start(configurationOverride=override, timeout=timeout)
        else:
            await cmd.start(timeout=timeout)
        states.append(next_state)
    return states
