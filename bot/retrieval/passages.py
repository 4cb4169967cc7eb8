"""Passages: each selected hit placed in its article, filled to the cap, and ordered.

Chunks are cut for embedding, not for reading: they find the right article but often hold
the wrong part of it (on MultiHop-RAG dev, half the missed facts sat in an article already in
the top 10). So each passage is placed on its article's not-yet-shown sentence that best
matches the question (its IDF-weighted words, plus a prior from the fused scores of the
chunks that hold it), grown by whole sentences toward the more relevant side up to
``max_passage_tokens`` (counted on the joined text), never repeating a sentence an earlier
passage of that article shows. Then each page of passages is ordered by its own evidence:
the selection's order served diversity, the reader (and MRR) wants the best passage first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import accumulate

import numpy as np

from bot.embedding import Embedder
from bot.lexical import term_coverage, tokenize
from bot.retrieval.params import RetrievalParams
from bot.retrieval.rows import RowTables
from bot.retrieval.scoring import BestScore
from bot.store import StoredIndex
from bot.text import grow_window, sentence_spans
from bot.types import Hit

# Articles whose sentences (spans, token costs, terms) stay cached: as many as the article
# texts kept decoded (``bot.rows.ARTICLE_TEXT_CACHE``), so memory stays flat as questions
# touch more of a large archive.
SENTENCE_CACHE = 512


class Passages:
    """Fits and orders a question's passages; one per loaded index (it caches each article's
    sentences, their costs and terms, in ``RowTables``)."""

    def __init__(self, index: StoredIndex, embedder: Embedder, params: RetrievalParams, tables: RowTables):
        self.index = index
        self.embedder = embedder
        self.params = params
        self.tables = tables

    def fit(self, query: str, hits: list[Hit], k: int, row_scores: BestScore | None, page: int) -> list[Hit]:
        """At most k of ``hits`` placed and filled in their articles (``fit_passages``), each
        page of ``page`` passages in the order of its own evidence (``_by_evidence``)."""
        weights = self.term_weights(query)
        fitted = self.fit_passages(hits, weights, k, row_scores)[:k]
        return self._by_evidence(fitted, weights, row_scores, page)

    def _article_sentences(self, article_id: str) -> _ArticleSentences:
        tables = self.tables
        with tables._sentences_lock:
            cached = tables._sentences.get(article_id)
            if cached is not None:
                tables._sentences.move_to_end(article_id)
                return cached
        text = self.index.articles[article_id].text
        spans = sentence_spans(text)
        # A sentence's cost includes the gap before it: what lies between sentences
        # (a stray bullet, a bracket) is tokenized too once the passage is joined.
        pieces = [text[s:e] for s, e in spans]
        gaps = [text[spans[i - 1][1] : s] if i else "" for i, (s, _) in enumerate(spans)]
        counts = self.embedder.count_tokens(pieces + gaps)
        costs = [c + g for c, g in zip(counts[: len(spans)], counts[len(spans) :])]
        terms = [frozenset(tokenize(piece)) for piece in pieces]
        cached = _ArticleSentences(spans, [0, *accumulate(costs)], terms)
        with tables._sentences_lock:
            tables._sentences[article_id] = cached
            if len(tables._sentences) > SENTENCE_CACHE:
                tables._sentences.popitem(last=False)
        return cached

    def fit_passages(self, hits: list[Hit], weights: dict[str, float], k: int, row_scores: np.ndarray | None = None) -> list[Hit]:
        """Place each hit's passage in its article and fill it to the cap, tiling the article.

        Chunks are cut for embedding, not for reading, and they are good at finding the
        right article but often hold the wrong part of it (on MultiHop-RAG dev, half the
        missed facts sat in an article already in the top 10). So a passage starts at the
        article's not-yet-shown sentence that shares most of the question's informative
        (IDF-weighted) words, keeping the chunk's own sentences when they are as good, and
        grows by whole sentences toward the more relevant side until the cap. Sentences an
        earlier passage of the same article holds are never repeated; a hit with nothing
        new left is dropped, which frees its place for the next one.

        ``weights``: the question's terms (``term_weights``). ``row_scores`` (every chunk's
        best fused score) lends each sentence a prior; without them, words alone place the
        passages.
        """
        cap = self.params.max_passage_tokens
        shown: dict[str, set[int]] = {}
        relevance_of: dict[str, list[float]] = {}
        fitted: list[tuple[Hit, list[float] | None, int, int]] = []
        for hit in hits:
            if len(fitted) == k:
                break
            sentences = self._article_sentences(hit.article_id)
            taken = shown.setdefault(hit.article_id, set())
            core = [i for i, (s, e) in enumerate(sentences.spans) if s < hit.end and e > hit.start]
            if not core:  # no sentence found in the chunk's span: show it as it is
                fitted.append((hit, None, 0, 0))
                continue
            fresh = [i for i in core if i not in taken]
            if not fresh:
                continue
            relevance = relevance_of.get(hit.article_id)
            if relevance is None:
                relevance = relevance_of[hit.article_id] = self._sentence_relevance(hit.article_id, weights, row_scores)
            # The chunk found the article; the passage goes where the article best answers:
            # its unshown sentence sharing most of the question's informative words (the
            # chunk's own sentences win ties). dev: Hits@10 0.920 -> 0.953, MRR 0.660 -> 0.691.
            inside = set(fresh)
            pivot = max(
                (i for i in range(len(sentences.spans)) if i not in taken),
                key=lambda i: (relevance[i], i in inside, -i),
            )
            span = _grow(pivot, fresh if pivot in inside else [pivot], sentences, relevance, taken, cap)
            if span is None:  # one sentence longer than the cap (the chunker split it): keep the chunk
                taken.update(core)
                fitted.append((hit, None, 0, 0))
                continue
            taken.update(range(span[0], span[1] + 1))
            fitted.append((hit, relevance, *span))
        return self._within_cap(fitted)

    def _by_evidence(self, passages: list[Hit], weights: dict[str, float], row_scores: np.ndarray, page: int) -> list[Hit]:
        """Each page of passages in the order of their own evidence (see
        ``passage_order_lexical``). Pages are ordered apart: a later page is searched with a
        larger k, and what an earlier page showed must stay on that page."""
        evidence = [self.passage_evidence(p, weights, row_scores) for p in passages]
        ordered: list[Hit] = []
        for first in range(0, len(passages), page):
            block = range(first, min(first + page, len(passages)))
            ordered.extend(passages[i] for i in sorted(block, key=lambda i: -evidence[i]))  # stable on ties
        return ordered

    def term_weights(self, query: str) -> dict[str, float]:
        """The question's lexical terms, each weighted by its IDF: rare names count most."""
        return {t: self.index.lexical.idf(t) for t in set(tokenize(query))}

    def _sentence_relevance(self, article_id: str, weights: dict[str, float], row_scores: np.ndarray | None) -> list[float]:
        """Per sentence: the share of the question's IDF weight it holds, plus the prior."""
        sentences = self._article_sentences(article_id)
        query_terms = weights.keys()
        total = sum(weights.values()) or 1.0
        words = np.array([sum(weights[t] for t in terms & query_terms) for terms in sentences.terms]) / total
        if row_scores is None or not self.params.sentence_prior_weight:
            return words.tolist()
        rows = self.tables._rows_of_article[article_id]
        starts, ends = self.tables._row_start[rows], self.tables._row_end[rows]
        spans = np.array(sentences.spans).reshape(-1, 2)
        overlaps = (spans[:, :1] < ends[None, :]) & (spans[:, 1:] > starts[None, :])
        prior = np.where(overlaps, row_scores(rows)[None, :], 0.0).max(axis=1, initial=0.0)
        return (words + self.params.sentence_prior_weight * prior).tolist()

    def passage_evidence(self, hit: Hit, weights: dict[str, float], row_scores: np.ndarray) -> float:
        """The best fused score of a chunk under the passage, plus the question's words in it."""
        rows = self.tables._rows_of_article[hit.article_id]
        under = (self.tables._row_start[rows] < hit.end) & (self.tables._row_end[rows] > hit.start)
        ranked = float(row_scores(rows[under]).max()) if under.any() else hit.score
        return ranked + self.params.passage_order_lexical * term_coverage(weights, self._text(hit))

    def _within_cap(self, fitted: list[tuple[Hit, list[float] | None, int, int]]) -> list[Hit]:
        """Sentence costs make an estimate; the joined text is what gets counted (one batch)."""
        hits = [hit if relevance is None else self._sentence_range(hit, lo, hi) for hit, relevance, lo, hi in fitted]
        counts = self.embedder.count_tokens([self._text(h) for h in hits])
        for i, ((hit, relevance, lo, hi), count) in enumerate(zip(fitted, counts)):
            while relevance is not None and count > self.params.max_passage_tokens and hi > lo:
                if relevance[lo] < relevance[hi]:  # drop the less relevant end
                    lo += 1
                else:
                    hi -= 1
                hits[i] = self._sentence_range(hit, lo, hi)
                count = self.embedder.count_tokens([self._text(hits[i])])[0]
        return hits

    def _sentence_range(self, hit: Hit, lo: int, hi: int) -> Hit:
        spans = self._article_sentences(hit.article_id).spans
        return replace(hit, start=spans[lo][0], end=spans[hi][1])

    def _text(self, hit: Hit) -> str:
        return self.index.articles[hit.article_id].text[hit.start : hit.end]


@dataclass(frozen=True)
class _ArticleSentences:
    spans: list[tuple[int, int]]
    prefix_costs: list[int]  # word pieces of sentences [0, i), each with the gap before it
    terms: list[frozenset[str]]  # lexical terms per sentence

    def cost(self, lo: int, hi: int) -> int:
        """Word pieces of sentences lo..hi joined (an estimate: see ``_within_cap``)."""
        return self.prefix_costs[hi + 1] - self.prefix_costs[lo]


def _grow(pivot: int, seed: list[int], sentences: _ArticleSentences, relevance: list[float], taken: set[int], cap: int) -> tuple[int, int] | None:
    """Sentence range [lo, hi]: the run of ``seed`` sentences around ``pivot``, trimmed to
    the cap, then extended over untaken neighbours toward the more relevant side."""
    if sentences.cost(pivot, pivot) > cap:
        return None
    members = set(seed)
    lo = hi = pivot
    while lo - 1 in members:
        lo -= 1
    while hi + 1 in members:
        hi += 1
    while sentences.cost(lo, hi) > cap:  # shrink toward the pivot, dropping the less relevant end
        if hi > pivot and (lo == pivot or relevance[hi] <= relevance[lo]):
            hi -= 1
        else:
            lo += 1
    return grow_window(
        lo,
        hi,
        len(sentences.spans) - 1,
        fits=lambda a, b: a not in taken and b not in taken and sentences.cost(a, b) <= cap,
        score=relevance.__getitem__,
    )
