"""Candidates: the rows worth scoring for a question, from each side and from what it names.

Fusion, boosts, selection and passage fitting work on these rows, never on every row of the
archive: each searched text's nearest rows from the vector store (FAISS, with the filters
pushed down) and its best BM25 rows, ``candidate_pool`` a side, plus the rows of the outlets,
days and months the question names (which a boost may lift past both). On MultiHop-RAG a
pool of 1,000 a side chooses what fusing every row chose (see
``RetrievalParams.candidate_pool``), so a question costs what its candidates cost.
"""

from __future__ import annotations

import numpy as np

from bot.query import QueryHints, near_dates
from bot.retrieval.params import RetrievalParams
from bot.retrieval.rows import _NO_ROWS, RowTables
from bot.retrieval.scoring import Question
from bot.store import StoredIndex


class Candidates:
    """Gathers a read question's candidate rows; one per loaded index."""

    def __init__(self, index: StoredIndex, params: RetrievalParams, tables: RowTables):
        self.index = index
        self.params = params
        self.tables = tables

    def gather(self, question: Question) -> np.ndarray:
        """The rows worth fusing (sorted, unique): each text's nearest rows from the vector
        store and its best BM25 rows (``candidate_pool`` a side, filters applied inside both),
        and the rows the question's outlets and dates lift."""
        scorers, hints, allowed = question.scorers, question.hints, question.allowed
        pool = self.params.candidate_pool
        found = []
        for vector in {id(s.vector): s.vector for s in scorers}.values():
            _, ids = self.index.vectors.search(vector[None, :], pool, allowed)
            found.append(ids[0][ids[0] >= 0])
        for scorer in scorers:
            lexical = scorer.lexical if allowed is None else scorer.lexical[allowed]
            top = np.argpartition(-lexical, pool - 1)[:pool] if len(lexical) > pool else np.arange(len(lexical))
            top = top[lexical[top] > 0]
            found.append(top if allowed is None else allowed[top])
        named = self._named_rows(hints, {name for s in scorers for name in (s.sources if s.sources is not None else hints.sources)})
        if allowed is not None and len(named):
            named = named[np.isin(named, allowed)]
        found.append(named)
        return np.unique(np.concatenate(found).astype(np.int64))

    def _named_rows(self, hints: QueryHints, sources: set[str]) -> np.ndarray:
        """Rows a boost can lift (the outlets, days, months and date range the question names),
        found through per-value tables rather than by scanning every row."""
        params = self.params
        tables = self.tables
        found = []
        if params.source_boost:
            found += [tables._rows_by_source.get(name, _NO_ROWS) for name in sources]
        if hints.dates and params.date_boost:
            found += [tables._rows_by_date.get(day, _NO_ROWS) for day in set().union(*(near_dates(d) for d in hints.dates))]
        if params.month_boost:
            found += [tables._rows_by_month.get(month, _NO_ROWS) for month in hints.months]
            if hints.since or hints.until:
                lo, hi = hints.since or "", (hints.until or "9999")[:10]
                dates = tables._sorted_dates
                found.append(tables._rows_by_day_order[np.searchsorted(dates, lo, "left") : np.searchsorted(dates, hi, "right")])
        return np.concatenate(found) if found else _NO_ROWS
