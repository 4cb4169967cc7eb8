"""Cheap question understanding: outlets, dates and the halves of a compound question.

Nothing here is learned or slow: outlet names are matched against the sources the
corpus actually holds, dates are read with a few patterns, and a compound question
("Does X ... while Y ...?") is cut at its clause joints. The retriever turns the
result into boosts (a named outlet or date lifts its articles, it does not exclude
the others: a question naming two outlets needs both) and into per-part searches.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

# Month names and abbreviations as written ("September", "Sep", "Sept"); also used by the
# answer composer to recognise a date-like sentence.
MONTH_WORDS: dict[str, int] = {name: i for i, name in enumerate(calendar.month_name) if name}
MONTH_WORDS.update({name: i for i, name in enumerate(calendar.month_abbr) if name})
MONTH_WORDS["Sept"] = 9
DAY_WORDS: tuple[str, ...] = tuple(calendar.day_name)
_MONTHS = {name.lower(): i for name, i in MONTH_WORDS.items()}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))

# "October 12, 2023", "Oct. 12th 2023", "12 October 2023", "2023-10-12"
_DAY_MONTH_YEAR = re.compile(rf"\b(\d{{1,2}})(?:st|nd|rd|th)?\s+(?:of\s+)?({_MONTH_RE})\.?,?\s+(\d{{4}})\b", re.IGNORECASE)
_MONTH_DAY_YEAR = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?,?\s+(\d{{4}})\b", re.IGNORECASE)
_MONTH_DAY = re.compile(rf"\b({_MONTH_RE})\.?\s+(\d{{1,2}})(?:st|nd|rd|th)?\b(?!,?\s*\d)", re.IGNORECASE)
_ISO = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_MONTH_YEAR = re.compile(rf"\b(?:in|during|of|from)\s+({_MONTH_RE})\.?\s+(\d{{4}})\b", re.IGNORECASE)
# "published before ..." constraints only count when they are about publication.
_PUBLISHED_BEFORE = re.compile(r"\bpublished\s+(?:before|prior to)\s*$", re.IGNORECASE)
_PUBLISHED_AFTER = re.compile(r"\bpublished\s+(?:after|since)\s*$", re.IGNORECASE)

# Where a compound question divides into parts that need different evidence.
_JOINTS = re.compile(
    r"(?:,\s*(?:while|whereas|but|and|or|yet)\b|;|\s+while\b|\s+whereas\b|"
    r"\s+and\s+(?=(?:does|did|do|is|was|has|have|had|are|were|can|could|would|will|the|a|an|another|'|\")\b)|"
    r",\s*(?:as reported|according)\b)",
    re.IGNORECASE,
)
_WORD = re.compile(r"[A-Za-z0-9&]+")


@dataclass(frozen=True)
class QueryHints:
    sources: tuple[str, ...] = ()  # corpus source names the question names
    dates: tuple[str, ...] = ()  # ISO days the question names
    months: tuple[str, ...] = ()  # "YYYY-MM" months the question names ("in November 2023")
    since: str | None = None  # "published after ..." (soft: a boost, not a filter)
    until: str | None = None
    parts: tuple[str, ...] = ()  # the clauses of a compound question (empty: just one)
    part_sources: tuple[tuple[str, ...], ...] = field(default=())  # outlets each part names


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def source_aliases(source: str) -> set[str]:
    """Ways a question may name an outlet: the full name and its head ("The Roar", "Cnbc")."""
    aliases = {source}
    for separator in (" | ", " - ", ": ", " – "):
        if separator in source:
            aliases.add(source.split(separator, 1)[0])
    shorter = set()
    for alias in aliases:
        if alias.lower().startswith("the ") and len(_words(alias)) > 2:
            shorter.add(alias[4:])
        if alias.lower().endswith(".com"):
            shorter.add(alias[:-4])
    aliases |= shorter
    return {" ".join(_words(a)).lower() for a in aliases if _words(a)}


class SourceMatcher:
    """Finds the corpus's outlets named in a question (capitalized, whole words)."""

    def __init__(self, sources: Iterable[str]):
        self._aliases: dict[tuple[str, ...], set[str]] = {}
        for source in {s for s in sources if s}:
            for alias in source_aliases(source):
                self._aliases.setdefault(tuple(alias.split()), set()).add(source)
        self._longest = max((len(a) for a in self._aliases), default=0)

    def find(self, text: str) -> list[tuple[int, int, tuple[str, ...]]]:
        """(start char, end char, sources) of each mention, longest match first, in order."""
        tokens = [(m.group(0), m.start(), m.end()) for m in _WORD.finditer(text)]
        found = []
        i = 0
        while i < len(tokens):
            for n in range(min(self._longest, len(tokens) - i), 0, -1):
                key = tuple(t[0].lower() for t in tokens[i : i + n])
                if key in self._aliases and (tokens[i][0][0].isupper() or tokens[i][0][0].isdigit()):
                    found.append((tokens[i][1], tokens[i + n - 1][2], tuple(sorted(self._aliases[key]))))
                    i += n
                    break
            else:
                i += 1
        return found


def _iso(year: int, month: int, day: int) -> str | None:
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def find_dates(text: str, default_year: int | None = None) -> list[tuple[int, int, str]]:
    """(start, end, ISO day) of every full date in the text."""
    found: list[tuple[int, int, str]] = []
    taken: list[tuple[int, int]] = []

    def add(match, iso):
        if iso and not any(s < match.end() and match.start() < e for s, e in taken):
            found.append((match.start(), match.end(), iso))
            taken.append((match.start(), match.end()))

    for m in _ISO.finditer(text):
        add(m, _iso(int(m.group(1)), int(m.group(2)), int(m.group(3))))
    for m in _MONTH_DAY_YEAR.finditer(text):
        add(m, _iso(int(m.group(3)), _MONTHS[m.group(1).lower()], int(m.group(2))))
    for m in _DAY_MONTH_YEAR.finditer(text):
        add(m, _iso(int(m.group(3)), _MONTHS[m.group(2).lower()], int(m.group(1))))
    if default_year:
        for m in _MONTH_DAY.finditer(text):
            add(m, _iso(default_year, _MONTHS[m.group(1).lower()], int(m.group(2))))
    return sorted(found)


def split_parts(question: str, min_words: int = 3) -> list[str]:
    """The clauses of a compound question; one part (the question) when it has no joint."""
    pieces = [p.strip(" ,;?") for p in _JOINTS.split(question)]
    parts: list[str] = []
    for piece in pieces:
        if len(_words(piece)) < min_words and parts:
            parts[-1] = f"{parts[-1]} {piece}"
        elif piece:
            parts.append(piece)
    return parts if len(parts) > 1 else []


def parse_query(question: str, known_sources: Iterable[str] = (), default_year: int | None = None) -> QueryHints:
    """Outlets, dates, publication constraints and parts stated in a question."""
    matcher = known_sources if isinstance(known_sources, SourceMatcher) else SourceMatcher(known_sources)
    mentions = matcher.find(question)
    sources: list[str] = []
    for _, _, names in mentions:
        for name in names:
            if name not in sources:
                sources.append(name)
    dated = find_dates(question, default_year)
    days = list(dict.fromkeys(iso for _, _, iso in dated))
    months = [
        f"{int(m.group(2)):04d}-{_MONTHS[m.group(1).lower()]:02d}"
        for m in _MONTH_YEAR.finditer(question)
        if not any(s <= m.start(1) < e for s, e, _ in dated)
    ]
    since = until = None
    for start, _, iso in dated:
        before_text = question[max(0, start - 40) : start]
        if _PUBLISHED_AFTER.search(before_text):
            since = iso
        elif _PUBLISHED_BEFORE.search(before_text):
            until = iso
    parts = split_parts(question)
    part_sources = tuple(tuple(n for _, _, names in matcher.find(p) for n in names) for p in parts)
    return QueryHints(
        sources=tuple(sources),
        dates=tuple(days),
        months=tuple(dict.fromkeys(months)),
        since=since,
        until=until,
        parts=tuple(parts),
        part_sources=part_sources,
    )


def near_dates(iso: str, days: int = 1) -> set[str]:
    """The day and its neighbours: publication timestamps are UTC, the question may not be."""
    day = date.fromisoformat(iso)
    return {(day + timedelta(d)).isoformat() for d in range(-days, days + 1)}
