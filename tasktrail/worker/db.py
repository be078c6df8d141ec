"""How the worker calls its database.

Every backend call of the supervisor and its job flow goes through one guard
(``Supervisor._db``, a :class:`DatabaseCall`): while the database cannot be reached it
returns :data:`UNREACHABLE` instead of raising, and backs off. The caller then skips what
needed the answer and the loop carries on: the call is made again at a later turn, and
nothing the children reported is dropped meanwhile.

``UNREACHABLE`` is its own type, never a value a backend call returns (unlike ``None``,
``False`` or an empty list), so mypy makes every caller tell the two apart; check it with
``is`` (it is not falsy).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Final, Protocol, TypeVar

__all__ = ["UNREACHABLE", "DatabaseCall", "Unreachable"]

T = TypeVar("T")


class Unreachable(enum.Enum):
    """The type of :data:`UNREACHABLE`."""

    UNREACHABLE = "unreachable"


#: What a :class:`DatabaseCall` returns when the database was not reached: the call
#: failed to connect, or an earlier one did and the worker is waiting before it retries.
UNREACHABLE: Final = Unreachable.UNREACHABLE


class DatabaseCall(Protocol):
    """Runs one backend call, ``call``, described by ``what`` (for the log): its result,
    or :data:`UNREACHABLE` if the database could not be reached."""

    def __call__(self, what: str, call: Callable[[], T], /) -> T | Unreachable: ...
