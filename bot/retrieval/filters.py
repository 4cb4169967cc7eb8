"""Filters: the hard constraints a reader sets on which articles may answer (outlet, date range).

``--source/--since/--until`` (and the bot's buttons) become a ``Filters``; dates are read
leniently (a year, a month, a written date) and kept as inclusive ISO days, and a date that
cannot be read raises ``DateFilterError`` saying which forms are accepted. The scoring applies
a ``Filters`` inside both searches (see ``RowTables.allowed_rows``), so nothing outside it can
rank at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.errors import BotError


class DateFilterError(BotError, ValueError):
    """A --since/--until value that is not a date (the message says what is accepted)."""


_ISO_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")
DATE_FORMS = "YYYY, YYYY-MM, YYYY-MM-DD or a written date such as 'Dec 2023' or '1 December 2023'"


def parse_date_bound(value: str, *, end: bool, name: str = "date") -> str:
    """The ISO day a date filter means: a partial ``since`` its first day, a partial ``until`` its last.

    ``2023`` is 2023-01-01 as a start and 2023-12-31 as an end, ``2023-12`` (or ``Dec 2023``)
    2023-12-01 / 2023-12-31; full dates (``2023-12-05``, ``Dec 5 2023``, ``5 December 2023``)
    are that day. A date without a year, or anything unreadable, raises ``DateFilterError``.
    """
    import calendar
    from datetime import date, datetime

    text = " ".join(str(value).split())
    problem = DateFilterError(f"{name}: cannot read {text[:40]!r} as a date; use {DATE_FORMS}")
    if not text:
        raise problem
    iso = _ISO_PARTIAL.match(text)
    if iso:
        year, month, day = (int(g) if g else None for g in iso.groups())
    else:
        from dateutil import parser as date_parser

        try:  # parsed twice with different defaults: a field that follows the default was not given
            first = date_parser.parse(text, default=datetime(2000, 1, 1))
            second = date_parser.parse(text, default=datetime(2001, 2, 2))
        except (ValueError, OverflowError):
            raise problem from None
        if first.year != second.year:
            raise DateFilterError(f"{name}: {text[:40]!r} has no year; use {DATE_FORMS}")
        year = first.year
        month = first.month if first.month == second.month else None
        day = first.day if first.day == second.day else None
        if month is None and day is not None:
            raise problem
    try:
        if month is None:
            return (date(year, 12, 31) if end else date(year, 1, 1)).isoformat()
        if day is None:
            last = calendar.monthrange(year, month)[1]
            return date(year, month, last if end else 1).isoformat()
        return date(year, month, day).isoformat()
    except ValueError:  # 2023-13, 2023-02-30
        raise problem from None


@dataclass(frozen=True)
class Filters:
    """Constraints on which articles may answer. Empty means no constraint.

    ``since`` and ``until`` are read as dates (see ``parse_date_bound``) and kept as ISO days,
    inclusive: ``until="2023-12"`` keeps all of December.
    """

    sources: tuple[str, ...] = ()  # outlet names, matched case-insensitively
    since: str | None = None  # ISO date, inclusive
    until: str | None = None  # ISO date, inclusive

    def __post_init__(self) -> None:
        since = parse_date_bound(self.since, end=False, name="--since") if self.since else None
        until = parse_date_bound(self.until, end=True, name="--until") if self.until else None
        if since and until and since > until:
            raise DateFilterError(f"--since {since} is after --until {until}: no article can match")
        object.__setattr__(self, "since", since)
        object.__setattr__(self, "until", until)

    def __bool__(self) -> bool:
        return bool(self.sources or self.since or self.until)

    def to_dict(self) -> dict:
        data = {"sources": list(self.sources), "since": self.since, "until": self.until}
        return {k: v for k, v in data.items() if v}

