"""Scoring: read the question, then fuse and boost its candidate rows.

``Scoring.read`` reads the question once: the outlets, dates and parts it names
(``bot.query``), its vector (and its parts' vectors when ``embed_parts``), the BM25 of every
row for the question and for each part, and the rows the reader's filters allow. Each text
searched (the question, then each part) becomes a ``TextScorer``.

``Scoring.fuse`` scores only the candidate rows (``bot.retrieval.candidates``): a weighted
fusion of cosine and BM25 on a common 0..1 scale (naive reciprocal-rank fusion measured
*worse* than BM25 alone on news, so the weights are explicit and tuned), plus the lift of the
outlets and dates the question names. The question's best ``candidates`` rows, and each
part's best half as many, go on to the selection, so that every part of a compound question
has evidence to choose from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.embedding import Embedder, embed_questions
from bot.query import QueryHints, near_dates, parse_query
from bot.retrieval.filters import Filters
from bot.retrieval.params import RetrievalParams
from bot.retrieval.rows import RowTables
from bot.store import StoredIndex, check_dimension

# Candidates at least 1/8 of the rows: one pass over every vector beats gathering theirs
# (609 articles, 8,885 rows, ~2,000 candidates: 1.1 ms against 3.6 ms a text).
FULL_SCAN_SHARE = 8


class TextScorer:
    """Fused scores of one searched text (the question or a part) for any rows: its cosine
    from the vector store, its BM25 (every row's, computed once), its boosts."""

    def __init__(self, scoring: Scoring, vector: np.ndarray, lexical: np.ndarray, hints: QueryHints,
                 sources: tuple[str, ...] | None):
        self.scoring, self.vector, self.lexical, self.hints, self.sources = scoring, vector, lexical, hints, sources
        self.lexical_top = float(lexical.max()) if lexical.size else 0.0

    def fused(self, rows: np.ndarray, dense: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(fused score with boosts, cosine) of each of ``rows`` (``dense``: their cosines, when known)."""
        if dense is None:
            dense = self.scoring.cosines(rows, self.vector)
        fused = self.scoring._fused(rows, dense, self.lexical, self.lexical_top)
        return fused + self.scoring._boosts(rows, self.hints, self.sources), dense


@dataclass(frozen=True)
class Question:
    """A question read for searching: what it names (``hints``), one scorer per text searched
    (the question first, then each part when parts count), and the rows the filters allow
    (None: every row)."""

    hints: QueryHints
    scorers: list[TextScorer]
    allowed: np.ndarray | None
    use_parts: bool


class BestScore:
    """Any row's best fused score (the question's or any part's): the prior that places a
    passage inside its article, computed once per row and only for the rows asked about
    (the candidates' are known from the scoring)."""

    def __init__(self, scorers: list[TextScorer], rows: np.ndarray, best: np.ndarray):
        self.scorers = scorers
        self._known: dict[int, float] = dict(zip(rows.tolist(), best.tolist()))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        missing = np.array([r for r in dict.fromkeys(rows.tolist()) if r not in self._known], dtype=np.int64)
        if len(missing):
            best = np.max([scorer.fused(missing)[0] for scorer in self.scorers], axis=0)
            self._known.update(zip(missing.tolist(), best.tolist()))
        return np.array([self._known[r] for r in rows.tolist()], dtype=np.float32)


@dataclass(frozen=True)
class Scores:
    """What the scoring hands to the selection and the passage fitting."""

    candidates: dict[int, tuple[float, float, float]]  # row -> (fused, dense cosine, raw BM25)
    parts: dict[int, np.ndarray] | None  # row -> fused score per question part
    best_by_row: BestScore | None  # any row's best fused score (question or any part)


class Scoring:
    """Reads questions and fuses their candidates' scores; one per loaded index."""

    def __init__(self, index: StoredIndex, embedder: Embedder, params: RetrievalParams, tables: RowTables):
        self.index = index
        self.embedder = embedder
        self.params = params
        self.tables = tables

    def understand(self, query: str) -> QueryHints:
        if not self.params.understand:
            return QueryHints()
        return parse_query(query, self.tables.source_matcher, self.tables._default_year)

    def read(self, query: str, filters: Filters | None, query_vector: np.ndarray | None) -> Question | None:
        """The question read for searching, or None when no row can answer it (an empty index,
        or filters that no article passes). ``query_vector``: the question's, when known."""
        params = self.params
        if len(self.index.vectors) == 0:
            return None
        allowed = self.tables.allowed_rows(filters or Filters())
        if allowed is not None and len(allowed) == 0:
            return None
        hints = self.understand(query)
        use_parts = bool(hints.parts) and params.part_weight > 0
        embed_parts = use_parts and params.embed_parts
        if query_vector is None:  # one model call for the question and (when embedded) its parts
            vectors = embed_questions(self.embedder, [query, *hints.parts] if embed_parts else [query])
        elif embed_parts:
            vectors = np.vstack([query_vector[None, :], embed_questions(self.embedder, list(hints.parts))])
        else:
            vectors = query_vector[None, :]
        check_dimension(vectors.shape[1], self.index.vectors.dimension, self.index.path)
        # One scorer per text searched: the question, then each part (a part without its own
        # vector keeps the question's cosine: its words decide).
        scorers = [TextScorer(self, vectors[0], self.index.lexical.scores(query), hints, None)]
        if use_parts:
            for i, (text, psources) in enumerate(zip(hints.parts, hints.part_sources)):
                scorers.append(TextScorer(self, vectors[i + 1] if embed_parts else vectors[0], self.index.lexical.scores(text),
                                          hints, psources or hints.sources))
        return Question(hints, scorers, allowed, use_parts)

    def fuse(self, question: Question, rows: np.ndarray) -> Scores:
        """Fusion and boosts over the candidate ``rows`` only: the question's best
        ``candidates`` rows and each part's best half as many, with their scores."""
        params = self.params
        scorers = question.scorers
        cosines = {id(v): self.cosines(rows, v) for v in (s.vector for s in scorers)}  # parts share the question's
        fused, dense = scorers[0].fused(rows, cosines[id(scorers[0].vector)])
        lexical = scorers[0].lexical[rows]
        n = min(params.candidates, len(rows))
        chosen = set(np.argpartition(-fused, n - 1)[:n].tolist())
        parts = np.stack([scorer.fused(rows, cosines[id(scorer.vector)])[0] for scorer in scorers[1:]]) if question.use_parts else None
        if parts is not None:
            for p in parts:
                chosen |= set(np.argpartition(-p, n - 1)[: n // 2].tolist())
        scored = {int(rows[i]): (float(fused[i]), float(dense[i]), float(lexical[i])) for i in chosen}
        part_scores = {int(rows[i]): parts[:, i] for i in chosen} if parts is not None else None
        best = fused if parts is None else np.maximum(fused, parts.max(axis=0))
        return Scores(scored, part_scores, BestScore(scorers, rows, best))

    def cosines(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Cosines of ``rows`` with ``vector``: one pass over every stored row when the rows are
        a large share of them (cheaper than gathering them), else from the rows' own vectors."""
        store = self.index.vectors
        if len(rows) * FULL_SCAN_SHARE >= len(store):
            return store.cosines(vector)[rows]
        return store.vectors_of(rows) @ vector

    def _fused(self, rows: np.ndarray, dense: np.ndarray, lexical: np.ndarray, lexical_top: float) -> np.ndarray:
        """Weighted fusion of cosine and max-normalized BM25 for ``rows`` (``dense`` theirs,
        ``lexical`` every row's, ``lexical_top`` its maximum over every row)."""
        params = self.params
        lex = lexical[rows]
        lex_norm = lex / lexical_top if lexical_top > 0 else np.zeros_like(lex)
        return params.dense_weight * dense + params.lexical_weight * lex_norm

    def _boosts(self, rows: np.ndarray, hints: QueryHints, sources: tuple[str, ...] | None = None) -> np.ndarray:
        """Lift of each of ``rows`` for the outlets and dates the question names."""
        params = self.params
        tables = self.tables
        boost = np.zeros(len(rows), dtype=np.float32)
        sources = hints.sources if sources is None else sources
        if sources and params.source_boost:
            boost += params.source_boost * np.isin(tables._row_source_name[rows], list(sources))
        if hints.dates and params.date_boost:
            days = set().union(*(near_dates(d) for d in hints.dates))
            boost += params.date_boost * np.isin(tables._row_date[rows], list(days))
        if params.month_boost and (hints.months or hints.since or hints.until):
            inside = np.zeros(len(boost), dtype=bool)
            if hints.months:
                inside |= np.isin(tables._row_month[rows], list(hints.months))
            if hints.since or hints.until:
                inside |= tables.dated_between(hints.since, hints.until, rows)
            boost += params.month_boost * inside
        return boost
