"""payload.encode / decode: strict JSON in, the same value out."""

from __future__ import annotations

import json
import math
from collections import OrderedDict

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasktrail import payload
from tasktrail.errors import InvalidPayload

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)


def nested(levels: int) -> object:
    value: object = 0
    for _ in range(levels):
        value = [value]
    return value


@given(json_values)
def test_round_trip_of_json_values(value: object) -> None:
    text = payload.encode(value, "value")
    assert payload.decode(text) == value
    # Compact: no whitespace between tokens, so the stored text is small.
    assert text == json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def test_decode_none_is_none() -> None:
    assert payload.decode(None) is None


def test_tuples_become_lists() -> None:
    assert payload.decode(payload.encode((1, (2, 3)), "value")) == [1, [2, 3]]


def test_unicode_and_nul_are_kept() -> None:
    value = {"name": "Zoë 日本 🎉", "raw": "a\x00b", "ctl": "\t\n\r\x1f"}
    text = payload.encode(value, "value")
    assert "🎉" in text  # not escaped: ensure_ascii is off
    assert payload.decode(text) == value


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        ([1, float("-inf")], "[1]"),
        ({"a": {"b": math.nan}}, "['a']['b']"),
    ],
)
def test_non_finite_floats_are_refused(value: object, needle: str) -> None:
    with pytest.raises(InvalidPayload, match="JSON cannot represent") as info:
        payload.encode(value, "args")
    assert needle in str(info.value)


@pytest.mark.parametrize(
    ("value", "type_name"),
    [
        ({1, 2}, "set"),
        (frozenset(), "frozenset"),
        (b"bytes", "bytes"),
        (object(), "object"),
        ([1, {"when": __import__("datetime").date(2024, 1, 1)}], "date"),
        (1 + 2j, "complex"),
    ],
)
def test_non_json_types_are_refused_with_their_type(value: object, type_name: str) -> None:
    with pytest.raises(InvalidPayload, match=rf"is a {type_name}, which is not JSON"):
        payload.encode(value, "args")


@pytest.mark.parametrize("key", [1, 1.5, None, True, ("a", "b")])
def test_non_string_keys_are_refused(key: object) -> None:
    with pytest.raises(InvalidPayload, match="JSON keys are strings"):
        payload.encode({"outer": {key: 1}}, "kwargs")


def test_error_names_the_place() -> None:
    with pytest.raises(InvalidPayload) as info:
        payload.encode([0, {"x": [1, 2, {3}]}], "arguments of refresh")
    assert str(info.value).startswith("arguments of refresh[1]['x'][2] is a set")


def test_dict_subclasses_are_plain_dicts() -> None:
    value = OrderedDict([("b", 1), ("a", 2)])
    assert payload.decode(payload.encode(value, "v")) == {"b": 1, "a": 2}


def test_nesting_up_to_100_levels_is_accepted() -> None:
    assert payload.decode(payload.encode(nested(100), "v")) == nested(100)


def test_nesting_over_100_levels_is_refused() -> None:
    with pytest.raises(InvalidPayload, match="nested more than 100 levels"):
        payload.encode(nested(101), "v")


def test_very_deep_nesting_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(InvalidPayload, match="nested more than 100 levels"):
        payload.encode(nested(5000), "v")


def test_size_limit_counts_utf8_bytes() -> None:
    # "é" is one character but two bytes; the JSON adds two quote bytes.
    text = "é" * 49
    assert payload.encode(text, "v", limit=100) == f'"{text}"'
    with pytest.raises(InvalidPayload, match="102 bytes as JSON, over the 100-byte limit"):
        payload.encode(text + "é", "v", limit=100)


def test_default_limit_is_about_a_megabyte() -> None:
    payload.encode("x" * (payload.MAX_PAYLOAD_BYTES - 2), "v")
    with pytest.raises(InvalidPayload, match="over the 1,000,000-byte limit"):
        payload.encode("x" * (payload.MAX_PAYLOAD_BYTES - 1), "v")


@pytest.mark.parametrize("value", ["\ud800", ["ok", "x\udfffy"], {"\udc80": 1}])
def test_lone_surrogates_are_refused(value: object) -> None:
    with pytest.raises(InvalidPayload, match="lone surrogate"):
        payload.encode(value, "v")


def test_surrogate_pair_characters_are_fine() -> None:
    assert payload.decode(payload.encode("𝄞", "v")) == "𝄞"


def test_huge_integers_are_refused_cleanly() -> None:
    with pytest.raises(InvalidPayload, match="integer"):
        payload.encode({"n": 10**5000}, "v")


def test_big_integers_that_json_can_hold_round_trip() -> None:
    value = [2**64, -(10**100)]
    assert payload.decode(payload.encode(value, "v")) == value
