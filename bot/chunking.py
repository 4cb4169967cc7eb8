"""Split an ``Article`` into ``Chunk`` spans that fit the embedding model's token budget.

Units are sentences (``bot.text.sentence_spans``), so a chunk never starts or ends
mid-sentence, except that a single sentence longer than the budget is cut into
word-boundary pieces (and a single "word" longer than the budget, such as a huge
URL, into character pieces). Units are packed greedily; a chunk that is already
at least ``PARAGRAPH_FILL`` full ends at a paragraph break rather than starting a
paragraph it cannot finish. Each next chunk repeats the trailing whole sentences of
the previous one that fit in ``overlap_tokens``, so a fact that straddles a chunk
border is still retrievable in one piece.

Token counting. ``count_tokens`` is the embedding model's tokenizer in production
and is slow per call, so it is called in batches, each text at most once: one call
for all sentences of the article (plus the empty string and the whitespace gaps
between sentences), one more for the words of over-long sentences if there are any
(plus one per halving round for words over the budget), and one for the finished
chunk texts. Costs are made additive: ``count_tokens([""])`` is taken as a per-text
overhead (e.g. a tokenizer's [CLS]/[SEP]) that a chunk pays once, and the gaps
between sentences are charged what they cost (nothing for word or WordPiece
tokenizers, their length for a character counter). For any counter for which the
count of a concatenation is the sum of the counts of its parts (word counters,
character counters, tokenizers that pre-split on whitespace) this makes the packing
exact, so every chunk's ``token_count`` is at most ``max_tokens``.

``Chunk.token_count`` is measured: ``count_tokens([chunk.text])[0]``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bot.text import paragraph_spans, sentence_spans
from bot.types import Article, Chunk

__all__ = ["PARAGRAPH_FILL", "chunk_article"]

TokenCounter = Callable[[list[str]], list[int]]

# A chunk at least this full ends at a paragraph break rather than take on a
# paragraph that does not fit whole.
PARAGRAPH_FILL = 0.6

_WORD = re.compile(r"\S+")


@dataclass(frozen=True)
class _Unit:
    """A span of the article packed as a whole: a sentence, or a piece of a long one."""

    start: int
    end: int
    cost: int  # tokens of the text alone, without the per-text overhead
    paragraph: int  # index of the paragraph the unit belongs to


def chunk_article(
    article: Article,
    count_tokens: TokenCounter,
    max_tokens: int,
    overlap_tokens: int,
) -> list[Chunk]:
    """The chunks of ``article``, in order, each within ``max_tokens`` (see module docstring).

    An article without any non-whitespace text gives no chunks.
    """
    if overlap_tokens < 0:
        raise ValueError("overlap_tokens must not be negative")
    text = article.text
    sentences = sentence_spans(text)
    if not sentences:
        return []
    counter = _Counter(count_tokens)
    sentence_texts = [text[start:end] for start, end in sentences]
    counter.measure([""] + sentence_texts + _gaps(text, sentences))
    budget = max_tokens - counter.overhead
    if budget < 1:
        raise ValueError(
            f"max_tokens ({max_tokens}) leaves no room after the tokenizer's {counter.overhead} fixed tokens"
        )

    units = _units(text, sentences, budget, counter)
    unit_spans = [(unit.start, unit.end) for unit in units]
    unit_gaps = [""] + _gaps(text, unit_spans)
    counter.measure(unit_gaps)
    gap_costs = [counter.cost(gap) if gap else 0 for gap in unit_gaps]
    groups = _pack(units, gap_costs, budget, overlap_tokens)

    chunk_texts = [text[units[first].start : units[last].end] for first, last in groups]
    measured = _counts(count_tokens, chunk_texts)
    return [
        Chunk(
            article_id=article.article_id,
            ordinal=ordinal,
            start=units[first].start,
            end=units[last].end,
            text=chunk_text,
            token_count=token_count,
        )
        for ordinal, ((first, last), chunk_text, token_count) in enumerate(zip(groups, chunk_texts, measured))
    ]


class _Counter:
    """Memoised, batched ``count_tokens``; costs are net of the per-text overhead.

    The overhead is the count of the empty string, so ``measure`` must first be
    called with ``""`` among the texts.
    """

    def __init__(self, count_tokens: TokenCounter) -> None:
        self._count_tokens = count_tokens
        self._counts: dict[str, int] = {}

    def measure(self, texts: Sequence[str]) -> None:
        """Count, in one call, every text not counted yet."""
        unknown = list(dict.fromkeys(text for text in texts if text not in self._counts))
        if unknown:
            self._counts.update(zip(unknown, _counts(self._count_tokens, unknown)))

    @property
    def overhead(self) -> int:
        return max(0, self._counts.get("", 0))

    def cost(self, text: str) -> int:
        return max(0, self._counts[text] - self.overhead)


def _counts(count_tokens: TokenCounter, texts: list[str]) -> list[int]:
    if not texts:
        return []
    counts = [int(count) for count in count_tokens(texts)]
    if len(counts) != len(texts):
        raise ValueError(f"count_tokens returned {len(counts)} counts for {len(texts)} texts")
    return counts


def _gaps(text: str, spans: Sequence[tuple[int, int]]) -> list[str]:
    """The text between each span and the next (whitespace, for trimmed adjacent spans)."""
    return [text[previous_end:start] for (_, previous_end), (start, _) in itertools.pairwise(spans)]


def _units(text: str, sentences: list[tuple[int, int]], budget: int, counter: _Counter) -> list[_Unit]:
    """Sentences as units, with any sentence over ``budget`` cut into pieces that fit."""
    paragraph_of = _paragraph_index(text, sentences)
    costs = [counter.cost(text[start:end]) for start, end in sentences]
    oversized = [index for index, cost in enumerate(costs) if cost > budget]
    pieces = _split_oversized(text, [sentences[index] for index in oversized], budget, counter)
    pieces_by_sentence = dict(zip(oversized, pieces))
    units: list[_Unit] = []
    for index, ((start, end), cost) in enumerate(zip(sentences, costs)):
        if index in pieces_by_sentence:
            units.extend(
                _Unit(piece_start, piece_end, piece_cost, paragraph_of[index])
                for piece_start, piece_end, piece_cost in pieces_by_sentence[index]
            )
        else:
            units.append(_Unit(start, end, cost, paragraph_of[index]))
    return units


def _paragraph_index(text: str, sentences: list[tuple[int, int]]) -> list[int]:
    """For each sentence, the index of the paragraph holding it."""
    paragraphs = paragraph_spans(text)
    result: list[int] = []
    paragraph = 0
    for start, _ in sentences:
        while paragraph + 1 < len(paragraphs) and paragraphs[paragraph + 1][0] <= start:
            paragraph += 1
        result.append(paragraph)
    return result


def _split_oversized(
    text: str,
    spans: list[tuple[int, int]],
    budget: int,
    counter: _Counter,
) -> list[list[tuple[int, int, int]]]:
    """For each span, ``(start, end, cost)`` pieces within ``budget``, cut at word boundaries.

    All words of all spans are counted in one batch; a word that alone exceeds the
    budget is halved by characters until its pieces fit (one batch per halving round).
    """
    if not spans:
        return []
    fragments_per_span = [[(m.start(), m.end()) for m in _WORD.finditer(text, start, end)] for start, end in spans]
    counter.measure([text[s:e] for fragments in fragments_per_span for s, e in fragments])
    fragments_per_span = _fit_long_words(text, fragments_per_span, budget, counter)
    gaps_per_span = [_gaps(text, fragments) for fragments in fragments_per_span]
    counter.measure([gap for gaps in gaps_per_span for gap in gaps])

    result: list[list[tuple[int, int, int]]] = []
    for fragments, gaps in zip(fragments_per_span, gaps_per_span):
        pieces: list[tuple[int, int, int]] = []
        piece_start, piece_end = fragments[0]
        piece_cost = counter.cost(text[piece_start:piece_end])
        for (start, end), gap in zip(fragments[1:], gaps):
            step = (counter.cost(gap) if gap else 0) + counter.cost(text[start:end])
            if piece_cost + step <= budget:
                piece_end, piece_cost = end, piece_cost + step
            else:
                pieces.append((piece_start, piece_end, piece_cost))
                piece_start, piece_end, piece_cost = start, end, counter.cost(text[start:end])
        pieces.append((piece_start, piece_end, piece_cost))
        result.append(pieces)
    return result


def _fit_long_words(
    text: str, fragments_per_span: list[list[tuple[int, int]]], budget: int, counter: _Counter
) -> list[list[tuple[int, int]]]:
    """Halve every fragment over ``budget`` by characters, round after round, until all fit."""
    while True:
        halves: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for fragments in fragments_per_span:
            for start, end in fragments:
                if end - start > 1 and counter.cost(text[start:end]) > budget:
                    middle = (start + end) // 2
                    halves[(start, end)] = [(start, middle), (middle, end)]
        if not halves:
            return fragments_per_span
        counter.measure([text[s:e] for pair in halves.values() for s, e in pair])
        fragments_per_span = [
            [half for fragment in fragments for half in halves.get(fragment, [fragment])]
            for fragments in fragments_per_span
        ]


def _pack(units: list[_Unit], gap_costs: list[int], budget: int, overlap_tokens: int) -> list[tuple[int, int]]:
    """Greedy packing into ``(first unit, last unit)`` groups, with sentence overlap.

    Each group must reach at least one unit past the previous group's end (the
    overlap is chosen so that this unit fits), so the loop always ends.
    """
    groups: list[tuple[int, int]] = []
    first, must_reach = 0, 0
    while True:
        last, used = first, units[first].cost
        while last + 1 < len(units):
            step = gap_costs[last + 1] + units[last + 1].cost
            if used + step > budget:
                break
            if last >= must_reach and _ends_at_paragraph(units, gap_costs, last, used, budget):
                break
            last, used = last + 1, used + step
        groups.append((first, last))
        if last + 1 >= len(units):
            return groups
        first, must_reach = _overlap_start(units, gap_costs, first, last, budget, overlap_tokens), last + 1


def _ends_at_paragraph(units: list[_Unit], gap_costs: list[int], last: int, used: int, budget: int) -> bool:
    """Whether a chunk at least ``PARAGRAPH_FILL`` full should stop before the next paragraph."""
    following = last + 1
    if units[following].paragraph == units[last].paragraph or used < PARAGRAPH_FILL * budget:
        return False
    paragraph_cost = 0
    index = following
    while index < len(units) and units[index].paragraph == units[following].paragraph:
        paragraph_cost += gap_costs[index] + units[index].cost
        index += 1
    return used + paragraph_cost > budget


def _overlap_start(
    units: list[_Unit], gap_costs: list[int], first: int, last: int, budget: int, overlap_tokens: int
) -> int:
    """First unit of the next chunk: the previous chunk's trailing units within ``overlap_tokens``.

    The tail stops growing when the next new unit would no longer fit after it, and
    never reaches back to the previous chunk's first unit (that would not make progress).
    """
    following = last + 1
    start, overlap = following, 0  # overlap: cost of units[start..last] and the gaps between them
    while start - 1 > first:
        candidate = start - 1
        grown = overlap + units[candidate].cost + (gap_costs[start] if start <= last else 0)
        if grown > overlap_tokens or grown + gap_costs[following] + units[following].cost > budget:
            break
        start, overlap = candidate, grown
    return start
