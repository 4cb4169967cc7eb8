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
import threading
from collections import OrderedDict
from typing import TYPE_CHECKING

import numpy as np

from bot.query import SourceMatcher
from bot.rows import group_rows, rows_by_article
from bot.store import StoredIndex

if TYPE_CHECKING:
    from bot.retrieval.filters import Filters
    from bot.retrieval.passages import _ArticleSentences

_NO_ROWS = np.zeros(0, dtype=np.int64)


def _normalize_source(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def _between(dates: np.ndarray, since: str | None, until: str | None) -> np.ndarray:
    lo, hi = since or "", (until or "9999")[:10]
    return np.array([bool(d) and lo <= d <= hi for d in dates], dtype=bool)


def _rows_by(article_values: np.ndarray, article_no: np.ndarray) -> dict[str, np.ndarray]:
    """value -> the rows whose article holds it (ascending), empty values left out."""
    filled = np.flatnonzero(article_values != "")
    if not len(filled):
        return {}
    names, codes = np.unique(article_values[filled].astype(str), return_inverse=True)
    article_code = np.full(len(article_values), -1, dtype=np.int64)
    article_code[filled] = codes
    row_code = article_code[article_no]
    rows = np.flatnonzero(row_code >= 0)
    return {str(names[code]): rows[at] for code, at in group_rows(row_code[rows]).items()}


class RowTables:
    """Per-row metadata of one loaded index and the tables from a value to its rows."""

    def __init__(self, index: StoredIndex):
        # From the index's columns (``bot.rows.ChunkTable``) and the articles' metadata: no
        # chunk or article text is read here, so this is cheap at a million rows.
        chunks = index.chunks
        article_ids = chunks.article_ids
        metadata = {a.article_id: a for a in index.articles.metadata()}
        article_no = self._row_article_no = np.asarray(chunks.article_no, dtype=np.int64)
        self._n_articles = len(article_ids)
        self._article_source = np.array([_normalize_source(metadata[a].source or "") for a in article_ids], dtype=object)
        self._article_date = np.array([metadata[a].date or "" for a in article_ids], dtype=object)
        source_names = np.array([metadata[a].source or "" for a in article_ids], dtype=object)
        months = np.array([d[:7] for d in self._article_date], dtype=object)
        self._row_source_name = source_names[article_no]
        self._row_date = self._article_date[article_no]
        self._row_month = months[article_no]
        self.source_matcher = SourceMatcher({a.source for a in metadata.values() if a.source})
        years = sorted(a.date[:4] for a in metadata.values() if a.date)
        self._default_year = int(years[len(years) // 2]) if years else None
        self._sentences: OrderedDict[str, _ArticleSentences] = OrderedDict()  # bounded: SENTENCE_CACHE
        self._sentences_lock = threading.Lock()
        self._row_start = np.asarray(chunks.start, dtype=np.int64)
        self._row_end = np.asarray(chunks.end, dtype=np.int64)
        self._rows_of_article = rows_by_article(chunks)
        # Per-value tables: the rows a named outlet, day or month lifts, without a scan
        # (values are sorted per article, then spread to the rows: no sort of a million strings).
        self._rows_by_source = _rows_by(source_names, article_no)
        self._rows_by_date = _rows_by(self._article_date, article_no)
        self._rows_by_month = _rows_by(months, article_no)
        dated = np.flatnonzero(self._article_date != "")
        rank = np.full(len(article_ids), -1, dtype=np.int64)  # an article's place in date order
        rank[dated[np.argsort(self._article_date[dated].astype(str), kind="stable")]] = np.arange(len(dated))
        row_rank = rank[article_no]
        dated_rows = np.flatnonzero(row_rank >= 0)
        self._rows_by_day_order = dated_rows[np.argsort(row_rank[dated_rows], kind="stable")]
        self._sorted_dates = self._row_date[self._rows_by_day_order].astype(str)

    def allowed_rows(self, filters: Filters) -> np.ndarray | None:
        """The rows ``filters`` let answer (None: every row; empty: none)."""
        if not filters:
            return None
        wanted = np.ones(self._n_articles, dtype=bool)  # decided per article, then spread to its rows
        if filters.sources:
            names = {_normalize_source(s) for s in filters.sources}
            wanted &= np.array([src in names for src in self._article_source], dtype=bool)
        if filters.since or filters.until:
            wanted &= _between(self._article_date, filters.since, filters.until)
        return np.flatnonzero(wanted[self._row_article_no])

    def dated_between(self, since: str | None, until: str | None, rows: np.ndarray) -> np.ndarray:
        """Whether each of ``rows`` has its article dated within [since, until] (ISO; either
        end may be open)."""
        return _between(self._row_date[rows], since, until)
