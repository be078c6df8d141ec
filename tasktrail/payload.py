"""JSON encoding of job arguments and results.

Job data is JSON and nothing else: a row in a shared database must never be able to make
a worker run code, so nothing here unpickles or imports. Values are checked strictly
(no NaN, no non-string keys, no sets or objects) so that what a task receives is exactly
what the producer sent, and the error names the offending place.
"""

from __future__ import annotations

import json
import math
from typing import Any

from .errors import InvalidPayload

__all__ = ["MAX_PAYLOAD_BYTES", "decode", "encode"]

#: Largest encoded arguments or result accepted, in bytes. Job rows are read on every
#: claim; large data belongs in the business tables, referenced by id.
MAX_PAYLOAD_BYTES = 1_000_000

#: One encoder for every call (``json.dumps`` with options builds a new one each time).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check(value: Any, where: str, depth: int = 0) -> None:
    if depth > 100:
        raise InvalidPayload(f"{where} is nested more than 100 levels deep")
    if value is None or isinstance(value, bool | int | str):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidPayload(f"{where} is {value!r}, which JSON cannot represent")
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{where}[{index}]", depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise InvalidPayload(
                    f"{where} has a key {key!r} of type {type(key).__name__}; JSON keys are strings"
                )
            _check(item, f"{where}[{key!r}]", depth + 1)
        return
    raise InvalidPayload(
        f"{where} is a {type(value).__name__}, which is not JSON "
        "(use str, int, float, bool, None, list or dict)"
    )


def encode(value: Any, what: str, limit: int = MAX_PAYLOAD_BYTES) -> str:
    """Encode ``value`` as compact JSON text, refusing anything that is not plain JSON.

    Args:
        value: the arguments or result.
        what: how to name it in an error, e.g. ``"argument 0 of refresh_frontpage"``.
        limit: the largest encoded size accepted, in bytes.

    Raises:
        InvalidPayload: the value is not JSON or is larger than ``limit``.
    """
    if type(value) is list and not value:  # no arguments: the common case
        return "[]"
    if type(value) is dict and not value:
        return "{}"
    _check(value, what)
    try:
        text = _ENCODER.encode(value)
    except ValueError as exc:  # an int with more digits than Python will write out
        raise InvalidPayload(f"{what} holds an integer too large to write as JSON: {exc}") from exc
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidPayload(
            f"{what} is {size:,} bytes as JSON, over the {limit:,}-byte limit; "
            "store large data in your own tables and pass its id"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidPayload(
            f"{what} contains a lone surrogate character, not valid UTF-8"
        ) from exc
    return text


def decode(text: str | None) -> Any:
    """Decode JSON text from the database (``None`` stays ``None``)."""
    if text is None:
        return None
    return json.loads(text)
