"""Finding the passages: dense (FAISS) and lexical (BM25) rankings, fused and tidied.

The pipeline for one question:
1. dense cosine top-N from FAISS and BM25 scores of every chunk;
2. a weighted fusion of the two on a common 0..1 scale (naive reciprocal-rank fusion
   measured *worse* than BM25 alone on news, so the weights are explicit and tuned);
3. metadata filters (outlet, date range) applied inside the search;
4. the reader's view: near-duplicate chunks (syndicated copies, overlaps) collapsed,
   adjacent chunks of one article merged while they fit one passage, and a small
   penalty for piling many passages of one article on top when others score close.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from bot.embedding import Embedder
from bot.store import StoredIndex
from bot.types import Hit


@dataclass(frozen=True)
class Filters:
    """Constraints on which articles may answer. Empty means no constraint."""

    sources: tuple[str, ...] = ()  # outlet names, matched case-insensitively
    since: str | None = None  # ISO date, inclusive
    until: str | None = None  # ISO date, inclusive

    def __bool__(self) -> bool:
        return bool(self.sources or self.since or self.until)

    def to_dict(self) -> dict:
        data = {"sources": list(self.sources), "since": self.since, "until": self.until}
        return {k: v for k, v in data.items() if v}


@dataclass(frozen=True)
class RetrievalParams:
    """Knobs of the ranking; defaults chosen on the MultiHop-RAG dev split (see README)."""

    dense_weight: float = 0.35
    lexical_weight: float = 0.65
    candidates: int = 200  # from each side before fusion
    same_article_penalty: float = 0.03  # per passage already taken from that article
    duplicate_cosine: float = 0.97  # two chunks this similar say the same thing
    max_passage_tokens: int = 256  # a merged passage stays within what the model reads
    extra: dict = field(default_factory=dict)


def _normalize_source(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


class Retriever:
    """Ranks an index's chunks for a question. Built once per loaded index."""

    def __init__(self, index: StoredIndex, embedder: Embedder, params: RetrievalParams | None = None):
        self.index = index
        self.embedder = embedder
        self.params = params or RetrievalParams()
        self._vectors = index.vectors_array()  # for exact re-scoring of lexical-only candidates
        chunks = index.chunks
        articles = index.articles
        self._row_source = np.array([_normalize_source(articles[c.article_id].source or "") for c in chunks], dtype=object)
        self._row_date = np.array([articles[c.article_id].date or "" for c in chunks], dtype=object)
        self._row_article = [c.article_id for c in chunks]

    # -- scoring -------------------------------------------------------------------

    def allowed_rows(self, filters: Filters) -> np.ndarray | None:
        if not filters:
            return None
        mask = np.ones(len(self._row_article), dtype=bool)
        if filters.sources:
            wanted = {_normalize_source(s) for s in filters.sources}
            mask &= np.array([src in wanted for src in self._row_source], dtype=bool)
        if filters.since:
            mask &= np.array([bool(d) and d >= filters.since for d in self._row_date], dtype=bool)
        if filters.until:
            mask &= np.array([bool(d) and d <= filters.until[:10] for d in self._row_date], dtype=bool)
        return np.flatnonzero(mask)

    def embed_query(self, query: str) -> np.ndarray:
        return self.embedder.embed([query])[0]

    def score(self, query: str, filters: Filters | None = None, query_vector: np.ndarray | None = None) -> dict[int, tuple[float, float, float]]:
        """Candidate rows -> (fused, dense cosine, raw BM25)."""
        params = self.params
        if self.index.vectors.ntotal == 0:
            return {}
        allowed = self.allowed_rows(filters or Filters())
        if allowed is not None and len(allowed) == 0:
            return {}
        vector = self.embed_query(query) if query_vector is None else query_vector
        _, ids = self.index.search(vector[None, :], params.candidates, allowed)
        dense_rows = [int(i) for i in ids[0] if i >= 0]

        lexical = self.index.lexical.scores(query)
        if allowed is not None:
            masked = np.zeros_like(lexical)
            masked[allowed] = lexical[allowed]
            lexical = masked
        top_lex = np.argsort(-lexical)[: params.candidates]
        lexical_rows = [int(i) for i in top_lex if lexical[i] > 0]

        rows = np.array(sorted(set(dense_rows) | set(lexical_rows)), dtype=np.int64)
        dense = self._vectors[rows] @ vector
        max_lex = float(lexical.max()) if lexical.size else 0.0
        lex_norm = lexical[rows] / max_lex if max_lex > 0 else np.zeros(len(rows), dtype=np.float32)
        fused = params.dense_weight * dense + params.lexical_weight * lex_norm
        return {int(r): (float(f), float(d), float(lexical[r])) for r, f, d in zip(rows, fused, dense)}

    # -- the reader's view ---------------------------------------------------------

    def search(self, query: str, k: int, filters: Filters | None = None, query_vector: np.ndarray | None = None) -> list[Hit]:
        """The k best passages, tidied for a reader (deduplicated, merged, diversified)."""
        scored = self.score(query, filters, query_vector)
        if not scored:
            return []
        order = sorted(scored, key=lambda r: -scored[r][0])
        return self._select(order, scored, k)

    def _select(self, order: list[int], scored: dict[int, tuple[float, float, float]], k: int) -> list[Hit]:
        params = self.params
        chunks = self.index.chunks
        taken_rows: list[int] = []
        per_article: dict[str, int] = {}
        pool = order[: max(k * 8, 40)]
        adjusted = {r: scored[r][0] for r in pool}
        while pool and len(taken_rows) < k * 2:
            # Re-rank the remaining pool with the diversity penalty as it stands now.
            best = max(pool, key=lambda r: adjusted[r] - params.same_article_penalty * per_article.get(chunks[r].article_id, 0))
            pool.remove(best)
            if self._duplicates_taken(best, taken_rows):
                continue
            taken_rows.append(best)
            aid = chunks[best].article_id
            per_article[aid] = per_article.get(aid, 0) + 1
        return self._merge_adjacent(taken_rows, scored)[:k]

    def _duplicates_taken(self, row: int, taken: list[int]) -> bool:
        if not taken:
            return False
        text = " ".join(self.index.chunks[row].text.split())
        for other in taken:
            if " ".join(self.index.chunks[other].text.split()) == text:
                return True
        sims = self._vectors[taken] @ self._vectors[row]
        return bool(np.max(sims) >= self.params.duplicate_cosine)

    def _merge_adjacent(self, rows: list[int], scored: dict[int, tuple[float, float, float]]) -> list[Hit]:
        """Join neighbouring chunks of one article into one passage while it fits the cap."""
        chunks = self.index.chunks
        hits: list[Hit] = []
        groups: list[list[int]] = []
        for row in rows:
            chunk = chunks[row]
            for group in groups:
                first, last = chunks[group[0]], chunks[group[-1]]
                if first.article_id != chunk.article_id:
                    continue
                adjacent = chunk.ordinal in (first.ordinal - 1, last.ordinal + 1)
                tokens = sum(chunks[r].token_count for r in group) + chunk.token_count
                if adjacent and tokens <= self.params.max_passage_tokens:
                    group.append(row)
                    group.sort(key=lambda r: chunks[r].ordinal)
                    break
            else:
                groups.append([row])
        for group in groups:
            best = max(group, key=lambda r: scored[r][0])
            hits.append(
                Hit(
                    article_id=chunks[group[0]].article_id,
                    start=min(chunks[r].start for r in group),
                    end=max(chunks[r].end for r in group),
                    score=scored[best][0],
                    dense=max(scored[r][1] for r in group),
                    lexical=max(scored[r][2] for r in group),
                    chunk_rows=tuple(group),
                )
            )
        hits.sort(key=lambda h: -h.score)
        return hits
