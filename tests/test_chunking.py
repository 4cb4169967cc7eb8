"""Chunking: exact offsets, nothing lost, budgets and overlap respected, batched counting."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.chunking import chunk_article
from bot.corpus import load_corpus
from bot.types import Article, Chunk

CORPUS = Path(__file__).resolve().parents[1] / "corpus"


def count_words(texts: list[str]) -> list[int]:
    return [len(text.split()) for text in texts]


def count_chars(texts: list[str]) -> list[int]:
    return [len(text) for text in texts]


def count_words_with_specials(texts: list[str]) -> list[int]:
    """Like a model tokenizer: every text pays two fixed tokens ([CLS], [SEP])."""
    return [len(text.split()) + 2 for text in texts]


class RecordingCounter:
    """A word counter that remembers how it was called."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, texts: list[str]) -> list[int]:
        self.calls.append(len(texts))
        return count_words(texts)


def article_of(text: str) -> Article:
    return Article(article_id="a.txt", title="T", text=text, path="a.txt")


def assert_chunk_invariants(article: Article, chunks: list[Chunk], counter, max_tokens: int, overlap: int) -> None:
    text = article.text
    assert [chunk.ordinal for chunk in chunks] == list(range(len(chunks)))
    covered = set()
    for index, chunk in enumerate(chunks):
        assert chunk.article_id == article.article_id
        assert 0 <= chunk.start < chunk.end <= len(text)
        assert chunk.text == text[chunk.start : chunk.end]
        assert chunk.text == chunk.text.strip()
        assert chunk.token_count == counter([chunk.text])[0]
        assert chunk.token_count <= max_tokens
        covered.update(range(chunk.start, chunk.end))
        if index:
            previous = chunks[index - 1]
            assert chunk.start >= previous.start
            assert chunk.end > previous.end
            if chunk.start < previous.end:  # the overlap is whole trailing text of the previous chunk
                shared = text[chunk.start : previous.end]
                assert count_words([shared])[0] <= overlap
    lost = [i for i, char in enumerate(text) if not char.isspace() and i not in covered]
    assert not lost, f"characters outside every chunk: {text[lost[0] : lost[0] + 20]!r}"


# ---------------------------------------------------------------------- random articles

WORDS = st.text(alphabet="abcdefghij", min_size=1, max_size=8)


@st.composite
def sentence(draw) -> str:
    words = draw(st.lists(WORDS, min_size=1, max_size=30))
    words[0] = words[0].capitalize()
    return " ".join(words) + draw(st.sampled_from([".", "!", "?", ".”", "", ";"]))


@st.composite
def article_text(draw) -> str:
    paragraphs = draw(st.lists(st.lists(sentence(), min_size=1, max_size=6), min_size=1, max_size=8))
    separators = draw(
        st.lists(st.sampled_from(["\n\n", "\n \n\n", "\n"]), min_size=len(paragraphs), max_size=len(paragraphs))
    )
    joined = ""
    for paragraph, separator in zip(paragraphs, separators):
        joined += draw(st.sampled_from([" ", "  ", "\n"])).join(paragraph) + separator
    return draw(st.sampled_from(["", "  ", "\n"])) + joined


BUDGETS = st.integers(min_value=3, max_value=60)


@given(article_text(), BUDGETS, st.integers(min_value=0, max_value=30))
@settings(max_examples=200, deadline=None)
def test_random_articles_chunk_within_budget_losing_nothing(text, max_tokens, overlap):
    article = article_of(text)
    chunks = chunk_article(article, count_words, max_tokens, overlap)
    assert chunks
    assert_chunk_invariants(article, chunks, count_words, max_tokens, overlap)


@given(article_text(), st.integers(min_value=10, max_value=400), st.integers(min_value=0, max_value=60))
@settings(max_examples=150, deadline=None)
def test_character_budgets_hold_including_the_spaces_between_sentences(text, max_tokens, overlap):
    article = article_of(text)
    chunks = chunk_article(article, count_chars, max_tokens, overlap)
    for chunk in chunks:
        assert chunk.token_count == len(chunk.text) <= max_tokens
    assert_nothing_lost(article, chunks)


@given(article_text(), st.integers(min_value=4, max_value=60), st.integers(min_value=0, max_value=20))
@settings(max_examples=150, deadline=None)
def test_fixed_tokens_per_text_are_paid_once_per_chunk(text, max_tokens, overlap):
    article = article_of(text)
    chunks = chunk_article(article, count_words_with_specials, max_tokens, overlap)
    for chunk in chunks:
        assert chunk.token_count == len(chunk.text.split()) + 2 <= max_tokens
    assert_nothing_lost(article, chunks)


def assert_nothing_lost(article: Article, chunks: list[Chunk]) -> None:
    covered = set()
    for previous, chunk in zip([None, *chunks], chunks):
        assert chunk.text == article.text[chunk.start : chunk.end]
        if previous is not None:
            assert chunk.start >= previous.start and chunk.end > previous.end
        covered.update(range(chunk.start, chunk.end))
    assert all(char.isspace() or i in covered for i, char in enumerate(article.text))


# -------------------------------------------------------------------------------- examples


def test_one_short_sentence_gives_one_chunk():
    article = article_of("Just one sentence.")
    (chunk,) = chunk_article(article, count_words, 200, 25)
    assert (chunk.start, chunk.end, chunk.text, chunk.token_count, chunk.ordinal) == (0, 18, "Just one sentence.", 3, 0)


def test_empty_text_gives_no_chunks():
    assert chunk_article(article_of("  \n\n "), count_words, 200, 25) == []


def test_chunks_end_on_sentence_boundaries_and_overlap_by_whole_sentences():
    text = " ".join(f"Sentence number {n} has six words." for n in range(1, 11))
    chunks = chunk_article(article_of(text), count_words, 20, 7)
    assert [c.text.count("Sentence") for c in chunks] == [3, 3, 3, 3, 2]
    for chunk in chunks:
        assert chunk.text.startswith("Sentence") and chunk.text.endswith("words.")
    # each next chunk starts with the last sentence of the previous one (6 words <= 7)
    for previous, chunk in itertools.pairwise(chunks):
        assert chunk.text.startswith(previous.text[previous.text.rindex("Sentence") :])


def test_zero_overlap_gives_disjoint_chunks():
    text = " ".join(f"Sentence number {n} has six words." for n in range(1, 11))
    chunks = chunk_article(article_of(text), count_words, 20, 0)
    for previous, chunk in itertools.pairwise(chunks):
        assert chunk.start > previous.end


def test_prefers_to_end_at_a_paragraph_break_when_mostly_full():
    first = "One two three four five six seven. Eight nine ten eleven twelve thirteen fourteen."
    second = "Alpha beta gamma delta. Epsilon zeta eta theta. Iota kappa lambda mu."
    text = f"{first}\n\n{second}"
    chunks = chunk_article(article_of(text), count_words, 20, 0)
    # 14 words fill 70% of 20; the 12-word next paragraph does not fit whole, so stop here
    assert chunks[0].text == first
    assert chunks[1].text == second


def test_long_sentence_is_split_at_word_boundaries():
    words = [f"w{n}" for n in range(95)]
    text = "Short start. " + " ".join(words) + ". Short end."
    article = article_of(text)
    chunks = chunk_article(article, count_words, 20, 5)
    assert_chunk_invariants(article, chunks, count_words, 20, 5)
    for chunk in chunks:
        assert not chunk.text[0].isspace()
        assert text[chunk.start - 1 : chunk.start].isspace() or chunk.start == 0  # starts on a word
        assert chunk.end == len(text) or text[chunk.end].isspace() or text[chunk.end] == "."


def test_word_longer_than_the_budget_is_cut_by_characters():
    text = "See https://example.com/" + "x" * 120 + " for details."
    article = article_of(text)
    chunks = chunk_article(article, count_chars, 50, 0)
    assert all(chunk.token_count <= 50 for chunk in chunks)
    assert_nothing_lost(article, chunks)


def test_count_tokens_is_called_in_a_few_batches():
    text = "\n\n".join(" ".join(f"Sentence {p}-{n} is here." for n in range(8)) for p in range(20))
    counter = RecordingCounter()
    chunks = chunk_article(article_of(text), counter, 40, 8)
    assert len(chunks) > 5
    assert len(counter.calls) <= 3  # sentences (+ gaps), then the finished chunks
    assert counter.calls[0] >= 160


def test_budget_must_leave_room_after_fixed_tokens():
    with pytest.raises(ValueError, match="no room"):
        chunk_article(article_of("A sentence."), count_words_with_specials, 2, 0)
    with pytest.raises(ValueError, match="overlap"):
        chunk_article(article_of("A sentence."), count_words, 20, -1)


@pytest.mark.parametrize("max_tokens, overlap", [(200, 25), (64, 16), (30, 0)])
def test_seed_articles_chunk_within_budget(max_tokens, overlap):
    seeds = [article for article in load_corpus(CORPUS).articles if article.article_id.startswith(("000_", "001_"))]
    assert len(seeds) == 2
    for article in seeds:
        chunks = chunk_article(article, count_words, max_tokens, overlap)
        assert len(chunks) >= 2
        assert_chunk_invariants(article, chunks, count_words, max_tokens, overlap)
