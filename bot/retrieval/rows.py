"""Row tables: what scoring, selection and passage fitting look up about each row of an index.

Row i is chunk i of the index (and FAISS id i). ``RowTables`` is built once per loaded index
from its chunks and articles: each row's outlet, date, month, article and character offsets,
and the reverse tables from an outlet, a day or a month to its rows, so that a question's
filters and boosts find their rows without walking every chunk. It also holds the question
reader's view of the archive (its outlets, its typical year) and the per-article sentence
cache that passage fitting fills.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from bot.query import SourceMatcher
from bot.store import StoredIndex

if TYPE_CHECKING:
    from bot.retrieval.filters import Filters
    from bot.retrieval.passages import _ArticleSentences

_NO_ROWS = np.zeros(0, dtype=np.int64)


def _normalize_source(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def _rows_by(values: np.ndarray) -> dict[str, np.ndarray]:
    rows: dict[str, list[int]] = {}
    for row, value in enumerate(values):
        if value:
            rows.setdefault(value, []).append(row)
    return {value: np.array(r, dtype=np.int64) for value, r in rows.items()}


class RowTables:
    """Per-row metadata of one loaded index and the tables from a value to its rows."""

    def __init__(self, index: StoredIndex):
        chunks = index.chunks
        articles = index.articles
        self._row_source = np.array([_normalize_source(articles[c.article_id].source or "") for c in chunks], dtype=object)
        self._row_source_name = np.array([articles[c.article_id].source or "" for c in chunks], dtype=object)
        self._row_date = np.array([articles[c.article_id].date or "" for c in chunks], dtype=object)
        self._row_month = np.array([d[:7] for d in self._row_date], dtype=object)
        self._row_article = [c.article_id for c in chunks]
        ids = {aid: i for i, aid in enumerate(dict.fromkeys(self._row_article))}
        self._row_article_no = np.array([ids[a] for a in self._row_article], dtype=np.int64)
        self._n_articles = len(ids)
        self.source_matcher = SourceMatcher({a.source for a in articles.values() if a.source})
        years = sorted(a.date[:4] for a in articles.values() if a.date)
        self._default_year = int(years[len(years) // 2]) if years else None
        self._sentences: dict[str, _ArticleSentences] = {}
        self._row_start = np.array([c.start for c in chunks], dtype=np.int64)
        self._row_end = np.array([c.end for c in chunks], dtype=np.int64)
        self._rows_of_article: dict[str, np.ndarray] = {}
        for row, article_id in enumerate(self._row_article):
            self._rows_of_article.setdefault(article_id, []).append(row)
        self._rows_of_article = {a: np.array(r, dtype=np.int64) for a, r in self._rows_of_article.items()}
        # Per-value tables: the rows a named outlet, day or month lifts, without a scan.
        self._rows_by_source = _rows_by(self._row_source_name)
        self._rows_by_date = _rows_by(self._row_date)
        self._rows_by_month = _rows_by(self._row_month)
        dated = np.array([row for row, d in enumerate(self._row_date) if d], dtype=np.int64)
        order = np.argsort(self._row_date[dated].astype(str), kind="stable") if len(dated) else dated
        self._rows_by_day_order = dated[order]
        self._sorted_dates = self._row_date[self._rows_by_day_order].astype(str)

    def allowed_rows(self, filters: Filters) -> np.ndarray | None:
        """The rows ``filters`` let answer (None: every row; empty: none)."""
        if not filters:
            return None
        mask = np.ones(len(self._row_article), dtype=bool)
        if filters.sources:
            wanted = {_normalize_source(s) for s in filters.sources}
            mask &= np.array([src in wanted for src in self._row_source], dtype=bool)
        if filters.since or filters.until:
            mask &= self.dated_between(filters.since, filters.until)
        return np.flatnonzero(mask)

    def dated_between(self, since: str | None, until: str | None, rows: np.ndarray | None = None) -> np.ndarray:
        """Whether each row (all, or ``rows``) has its article dated within [since, until]
        (ISO; either end may be open)."""
        lo, hi = since or "", (until or "9999")[:10]
        dates = self._row_date if rows is None else self._row_date[rows]
        return np.array([bool(d) and lo <= d <= hi for d in dates], dtype=bool)
