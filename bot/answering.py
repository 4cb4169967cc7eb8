"""Turning retrieved spans into an Answer a person can read.

No text is generated: the answer is the corpus's own words. For each retrieved span
the sentences are scored against the question (cosine of sentence vectors plus how
many of the question's words they contain), the single best sentence leads the
answer, and each passage is trimmed to whole sentences around its best one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bot.embedding import Embedder
from bot.lexical import tokenize
from bot.text import sentence_spans
from bot.types import Answer, Article, Hit, Passage

# Pronoun-led or very short questions lean on what was asked before ("and Kamal?").
_FOLLOW_UP_OPENERS = ("and ", "what about", "how about", "and what", "why", "when was that", "who else", "what else")
_FOLLOW_UP_WORDS = {"he", "she", "they", "him", "her", "them", "his", "their", "it", "its", "that", "this", "those", "these", "there", "then"}


def looks_like_follow_up(question: str) -> bool:
    """A cheap guess that a question only makes sense with the previous one."""
    text = question.strip().lower()
    words = [w.strip("?.,!'\"") for w in text.split()]
    if text.startswith(_FOLLOW_UP_OPENERS):
        return True
    content = tokenize(question)
    return len(content) <= 2 or (len(words) <= 8 and bool(_FOLLOW_UP_WORDS & set(words)))


@dataclass(frozen=True)
class AnswerParams:
    max_quote_chars: int = 700  # a quote longer than this is trimmed to sentences around its best one
    sentence_lexical_weight: float = 0.3  # share of a sentence's score from word overlap
    # Calibrated on the seed gold questions vs. out-of-corpus questions (see README, "Not found").
    found_threshold: float = 0.40


def term_coverage(query_terms: set[str], text: str) -> float:
    """Share of the question's content words (stemmed) that the text contains."""
    if not query_terms:
        return 0.0
    return len(query_terms & set(tokenize(text))) / len(query_terms)


@dataclass(frozen=True)
class _Sentence:
    hit_index: int
    start: int
    end: int
    score: float


class AnswerComposer:
    def __init__(self, embedder: Embedder, params: AnswerParams | None = None):
        self.embedder = embedder
        self.params = params or AnswerParams()

    def compose(
        self,
        question: str,
        hits: list[Hit],
        articles: dict[str, Article],
        query_vector: np.ndarray,
        *,
        first_rank: int = 1,
        retrieval_query: str | None = None,
        filters: dict | None = None,
    ) -> Answer:
        extras = {"retrieval_query": retrieval_query if retrieval_query != question else None, "filters": filters or {}}
        if not hits:
            return Answer(question=question, found=False, **extras)
        query_terms = set(tokenize(retrieval_query or question))
        sentences = self._score_sentences(hits, articles, query_vector, query_terms)
        best_by_hit: dict[int, _Sentence] = {}
        for sentence in sentences:
            current = best_by_hit.get(sentence.hit_index)
            if current is None or sentence.score > current.score:
                best_by_hit[sentence.hit_index] = sentence
        passages = []
        for i, hit in enumerate(hits):
            article = articles[hit.article_id]
            spans = [s for s in sentences if s.hit_index == i]
            start, end = self._trim(spans, best_by_hit.get(i), hit)
            passages.append(Passage(first_rank + i, article, start, end, hit.score, hit.start, hit.end))
        top = max(best_by_hit.values(), key=lambda s: s.score) if best_by_hit else None
        confidence = self.confidence(hits, top)
        if confidence < self.params.found_threshold:
            return Answer(question=question, found=False, passages=tuple(passages), **extras)
        best_text = None
        best_rank = None
        if top is not None:
            best_text = articles[hits[top.hit_index].article_id].text[top.start : top.end]
            best_rank = first_rank + top.hit_index
        return Answer(question, True, tuple(passages), best_text, best_rank, **extras)

    def confidence(self, hits: list[Hit], top_sentence: _Sentence | None) -> float:
        """How sure we are the corpus answers: the best of passage and sentence evidence.

        A single cosine is a poor judge on its own (short questions score low against long
        chunks), so the best sentence's combined score counts too.
        """
        passage = max((h.dense or 0.0) for h in hits)
        sentence = top_sentence.score if top_sentence else 0.0
        return max(passage, sentence)

    def _score_sentences(self, hits: list[Hit], articles: dict[str, Article], query_vector: np.ndarray, query_terms: set[str]) -> list[_Sentence]:
        spans: list[tuple[int, int, int]] = []
        for i, hit in enumerate(hits):
            text = articles[hit.article_id].text
            for start, end in sentence_spans(text, hit.start, hit.end):
                spans.append((i, start, end))
        if not spans:
            return []
        texts = [articles[hits[i].article_id].text[s:e] for i, s, e in spans]
        cosines = self.embedder.embed(texts) @ query_vector
        w = self.params.sentence_lexical_weight
        return [
            _Sentence(i, s, e, float((1 - w) * cos + w * term_coverage(query_terms, t)))
            for (i, s, e), cos, t in zip(spans, cosines, texts)
        ]

    def _trim(self, spans: list[_Sentence], best: _Sentence | None, hit: Hit) -> tuple[int, int]:
        """Whole sentences around the best one, growing toward the better neighbour."""
        if best is None or not spans:
            return hit.start, hit.end
        spans = sorted(spans, key=lambda s: s.start)
        lo = hi = spans.index(best)
        limit = self.params.max_quote_chars
        while True:
            options = []
            if lo > 0 and spans[hi].end - spans[lo - 1].start <= limit:
                options.append((spans[lo - 1].score, "lo"))
            if hi + 1 < len(spans) and spans[hi + 1].end - spans[lo].start <= limit:
                options.append((spans[hi + 1].score, "hi"))
            if not options:
                break
            if max(options)[1] == "lo":
                lo -= 1
            else:
                hi += 1
        return spans[lo].start, spans[hi].end
