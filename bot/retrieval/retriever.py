"""The Retriever: one question through the retrieval stages, in the order they run.

read the question -> candidates -> fuse and boost -> select -> fit passages; each stage is
one module of this package (see its ``__init__``), built once per loaded index over the same
``RowTables``.
"""

from __future__ import annotations

import numpy as np

from bot.embedding import Embedder, embed_questions
from bot.retrieval.candidates import Candidates
from bot.retrieval.filters import Filters
from bot.retrieval.params import RetrievalParams
from bot.retrieval.passages import Passages
from bot.retrieval.rows import RowTables
from bot.retrieval.scoring import Scores, Scoring
from bot.retrieval.selection import Selection
from bot.store import StoredIndex
from bot.types import Hit


class Retriever:
    """Ranks an index's chunks for a question. Built once per loaded index."""

    def __init__(self, index: StoredIndex, embedder: Embedder, params: RetrievalParams | None = None):
        self.index = index
        self.embedder = embedder
        self.params = params or RetrievalParams()
        self.tables = RowTables(index)
        self.scoring = Scoring(index, embedder, self.params, self.tables)
        self.candidates = Candidates(index, self.params, self.tables)
        self.selection = Selection(index, self.params, self.tables)
        self.passages = Passages(index, embedder, self.params, self.tables)

    def search(
        self, query: str, k: int, filters: Filters | None = None, query_vector: np.ndarray | None = None, *, page: int | None = None
    ) -> list[Hit]:
        """The k best passages, tidied for a reader (deduplicated, merged, diversified).

        ``page``: the passages come in pages of this size (default: one page of k). A
        search with a larger k returns the same earlier pages, so "More sources" can search
        again and skip what was shown.
        """
        question = self.scoring.read(query, filters, query_vector)  # what it names, its vectors, the allowed rows
        if question is None:
            return []
        rows = self.candidates.gather(question)
        scores = self.scoring.fuse(question, rows)
        if not scores.candidates:
            return []
        hits = self.selection.select(scores, k)
        if self.params.fit_passages:
            hits = self.passages.fit(query, hits, k, scores.best_by_row, page or k)
        return hits[:k]

    def _score(self, query: str, filters: Filters | None, query_vector: np.ndarray | None) -> Scores:
        """The first stages of ``search``: the question read, its candidates, fused and boosted."""
        question = self.scoring.read(query, filters, query_vector)
        if question is None:
            return Scores({}, None, None)
        rows = self.candidates.gather(question)
        return self.scoring.fuse(question, rows)

    def score(self, query: str, filters: Filters | None = None, query_vector: np.ndarray | None = None) -> dict[int, tuple[float, float, float]]:
        """Candidate rows -> (fused, dense cosine, raw BM25)."""
        return self._score(query, filters, query_vector).candidates

    def embed_query(self, query: str) -> np.ndarray:
        return embed_questions(self.embedder, [query])[0]

    # -- one side alone, for latency and ablations ---------------------------------

    def dense_only(self, query: str, k: int) -> list[int]:
        """Rows of the k nearest chunks by cosine alone (for latency and ablations)."""
        _, ids = self.index.search(self.embed_query(query)[None, :], k)
        return [int(i) for i in ids[0] if i >= 0]

    def lexical_only(self, query: str, k: int) -> list[int]:
        """Rows of the k best chunks by BM25 alone (for latency and ablations)."""
        scores = self.index.lexical.scores(query)
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k] if len(scores) > k else np.arange(len(scores))
        return [int(i) for i in top[np.argsort(-scores[top])] if scores[i] > 0]

    # -- single stages, as the tests call them ---------------------------------------

    def _term_weights(self, query: str) -> dict[str, float]:
        return self.passages.term_weights(query)

    def _fit_passages(self, hits: list[Hit], weights: dict[str, float], k: int, row_scores=None) -> list[Hit]:
        return self.passages.fit_passages(hits, weights, k, row_scores)

    def _passage_evidence(self, hit: Hit, weights: dict[str, float], row_scores) -> float:
        return self.passages.passage_evidence(hit, weights, row_scores)
