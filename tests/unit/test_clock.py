"""clock: durations and UTC conversion."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo

import pytest

from tasktrail.clock import parse_duration, to_utc, utcnow
from tasktrail.errors import InvalidArguments


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90", timedelta(seconds=90)),
        ("0", timedelta(0)),
        ("30s", timedelta(seconds=30)),
        ("250ms", timedelta(milliseconds=250)),
        ("5m", timedelta(minutes=5)),
        ("1.5h", timedelta(minutes=90)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(days=14)),
        (" 3 h ", timedelta(hours=3)),
        ("10m\n", timedelta(minutes=10)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    "text", ["", "s", "-5s", "5x", "5 m s", "1e3", "5M", "1,5h", "five", ".5h", "5.h"]
)
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidArguments, match="cannot read duration"):
        parse_duration(text)


def test_durations_too_long_for_a_timedelta_are_refused_cleanly() -> None:
    with pytest.raises(InvalidArguments, match="99999999999d"):
        parse_duration("99999999999d")


def test_to_utc_converts_aware_datetimes() -> None:
    paris = timezone(timedelta(hours=2))
    converted = to_utc(datetime(2030, 6, 1, 12, 0, tzinfo=paris))
    assert converted == datetime(2030, 6, 1, 10, 0, tzinfo=timezone.utc)
    assert converted.utcoffset() == timedelta(0)


def test_to_utc_refuses_naive_datetimes_naming_what() -> None:
    with pytest.raises(InvalidArguments, match="since 2030-06-01T12:00:00 has no timezone"):
        to_utc(datetime(2030, 6, 1, 12, 0), "since")


def test_to_utc_refuses_a_tzinfo_without_an_offset() -> None:
    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> None:
            return None

    with pytest.raises(InvalidArguments, match="has no timezone"):
        to_utc(datetime(2030, 1, 1, tzinfo=NoOffset()))


def test_utcnow_is_aware_utc() -> None:
    assert utcnow().utcoffset() == timedelta(0)
