"""Business calendars for schedules: fire only on working days of a country or region.

A :class:`Calendar` names a country (and optionally a subdivision: ``"DE"``, ``"DE-BY"``,
``"US-NY"``) whose public holidays come from the ``holidays`` package (the ``calendar``
extra), plus extra closed days of the user's own. Weekends (Saturday, Sunday) are never
business days. A schedule's ticks are kept by its rule: every business day, or only the
first or the last business day of each month. Dates are the UTC dates of the ticks, as
cron is evaluated in UTC.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from .errors import ConfigurationError

__all__ = ["RULES", "Calendar", "parse_calendar"]

#: What a calendar keeps of a schedule's ticks.
RULES = ("business_days", "first_business_day", "last_business_day")


@functools.lru_cache(maxsize=64)
def _holidays(country: str, subdivision: str | None) -> Any:
    import holidays

    return holidays.country_holidays(country, subdiv=subdivision)


@dataclass(frozen=True, slots=True)
class Calendar:
    """Business days of ``country`` (``subdivision``), less ``closed`` days (ISO dates)."""

    country: str
    subdivision: str | None = None
    rule: str = "business_days"
    closed: tuple[str, ...] = ()

    def describe(self) -> str:
        where = self.country + (f"-{self.subdivision}" if self.subdivision else "")
        extra = f", {len(self.closed)} closed days" if self.closed else ""
        return f"{self.rule.replace('_', ' ')} of {where}{extra}"

    def is_business_day(self, day: date) -> bool:
        return (
            day.weekday() < 5
            and day.isoformat() not in self.closed
            and day not in _holidays(self.country, self.subdivision)
        )

    def keeps(self, day: date) -> bool:
        """Whether a tick on ``day`` fires, by the rule."""
        if not self.is_business_day(day):
            return False
        if self.rule == "first_business_day":
            return not any(self.is_business_day(d) for d in _days(day.replace(day=1), day))
        if self.rule == "last_business_day":
            following = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
            return not any(self.is_business_day(d) for d in _days(day + timedelta(1), following))
        return True

    def to_json(self) -> str:
        return json.dumps(
            {
                "country": self.country,
                "subdivision": self.subdivision,
                "rule": self.rule,
                "closed": list(self.closed),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> Calendar:
        data = json.loads(text)
        return cls(data["country"], data.get("subdivision"), data["rule"], tuple(data["closed"]))


def _days(start: date, stop: date) -> Iterable[date]:
    """The days from ``start`` up to, not including, ``stop``."""
    day = start
    while day < stop:
        yield day
        day += timedelta(days=1)


def end_of_day(moment: datetime) -> datetime:
    """The last microsecond of ``moment``'s day."""
    return moment.replace(hour=23, minute=59, second=59, microsecond=999999)


def parse_calendar(calendar: Any, rule: Any = "business_days", closed: Any = ()) -> Calendar:
    """Validate ``calendar="DE"`` or ``"DE-BY"``, ``rule`` and the ``closed`` days
    (dates or ISO ``YYYY-MM-DD`` text).

    Raises:
        ConfigurationError: an unknown country or subdivision, rule, or a bad date; or
            the ``holidays`` package is missing.
    """
    if not isinstance(calendar, str) or not calendar.strip():
        raise ConfigurationError(
            f"calendar must be a country code like 'DE' or 'DE-BY', got {calendar!r}"
        )
    try:
        import holidays
    except ImportError:  # pragma: no cover - the calendar extra is part of dev
        raise ConfigurationError(
            "business-day calendars need the holidays package: pip install 'tasktrail[calendar]'"
        ) from None
    country, _, subdivision = calendar.strip().upper().partition("-")
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise ConfigurationError(
            f"unknown calendar country {country!r}: use an ISO 3166 code the holidays "
            "package knows (DE, FR, GB, US, …)"
        )
    if subdivision and subdivision not in supported[country]:
        raise ConfigurationError(
            f"unknown subdivision {subdivision!r} of {country}: one of "
            f"{', '.join(supported[country])}"
        )
    if rule not in RULES:
        raise ConfigurationError(f"calendar rule must be one of {', '.join(RULES)}, got {rule!r}")
    if isinstance(closed, str | date):
        closed = [closed]
    days: list[str] = []
    for given in closed:
        value = given.date() if isinstance(given, datetime) else given
        if isinstance(value, date):
            days.append(value.isoformat())
            continue
        try:
            days.append(date.fromisoformat(str(value)).isoformat())
        except ValueError:
            raise ConfigurationError(f"closed day {value!r} is not a date (YYYY-MM-DD)") from None
    return Calendar(country, subdivision or None, rule, tuple(sorted(set(days))))
