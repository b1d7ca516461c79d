"""Calls that salobj 7 makes plainly and salobj 8 awaits, working both ways.

salobj 8 made a topic's ``write`` and ``set_write`` and a command's ``ack`` and
``ack_in_progress`` coroutines; salobj 7 (the DDS era, whose semantics this layer follows)
called them plainly. Code written for either must work unchanged: such a call does its work at
once, as in salobj 7, and returns a value that is also awaitable, giving that same value, as in
salobj 8. So ``topic.set_write(x=1)`` and ``await topic.set_write(x=1)`` write once each and give
the same `SetWriteResult`.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, TypeVar

__all__ = ["DONE", "Done", "AwaitsToItself", "await_to_itself"]

T = TypeVar("T")


class AwaitsToItself:
    """A mixin: awaiting the object gives the object (its work was done when it was made)."""

    def __await__(self: T) -> Generator[Any, None, T]:
        return self
        yield  # a generator function, as __await__ must return an iterator


def await_to_itself(self: T) -> Generator[Any, None, T]:
    """`AwaitsToItself.__await__` as a plain function, for classes that cannot take the mixin."""
    return self
    yield


class Done:
    """What a call that returns nothing returns: awaiting it gives None."""

    __slots__ = ()

    def __await__(self) -> Generator[Any, None, None]:
        return None
        yield

    def __repr__(self) -> str:
        return "DONE"


#: The one `Done` (salobj 7 code ignores it; salobj 8 code awaits it).
DONE = Done()
