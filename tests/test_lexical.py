"""BM25 from per-segment postings equals bm25s (the reference, method "lucene") over the live rows."""

from __future__ import annotations

from collections import Counter

import bm25s
import numpy as np
import pytest

from bot.lexical import LexicalIndex, SegmentPostings


def _bm25s_scores(documents: list[list[str]], query: list[str]) -> np.ndarray:
    reference = bm25s.BM25()
    reference.index([d or [""] for d in documents], show_progress=False)
    ids = reference.get_tokens_ids(query)
    return reference.get_scores_from_ids(ids) if ids else np.zeros(len(documents), np.float32)


def _random_segments(seed: int):
    """Segments of random documents (some empty, some terms only in dead rows), articles of 1-6
    rows, some articles dead; and the live documents in row order."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(200)]
    segments, live_documents = [], []
    for number in range(rng.integers(2, 6)):
        rows = int(rng.integers(1, 80))
        documents = [list(rng.choice(words, size=int(rng.integers(0, 25)))) for _ in range(rows)]
        documents[0] = documents[0] + [f"only-in-segment-{number}"]
        articles = np.sort(rng.integers(0, 8, size=rows))
        postings = SegmentPostings.from_terms(documents, articles)
        dead = rng.choice(8, size=int(rng.integers(0, 4)), replace=False)
        postings.live = ~np.isin(articles, dead)
        segments.append(postings)
        live_documents += [d for d, alive in zip(documents, postings.live) if alive]
    return segments, live_documents, words


@pytest.mark.parametrize("seed", range(6))
def test_scores_equal_bm25s_over_the_live_rows_of_segments(seed):
    segments, live_documents, words = _random_segments(seed)
    index = LexicalIndex(segments)
    assert index.size == len(live_documents)
    rng = np.random.default_rng(100 + seed)
    vocabulary = words + ["unknown-word", "only-in-segment-0", "only-in-segment-1"]
    for _ in range(30):  # repeated terms count twice; unknown ones and those of dead rows only, not at all
        query = list(rng.choice(vocabulary, size=int(rng.integers(1, 7))))
        assert np.allclose(index.term_scores(query), _bm25s_scores(live_documents, query), rtol=1e-6, atol=1e-7)
    frequency = Counter(t for d in live_documents for t in set(d or [""]))
    assert index.document_frequency == dict(frequency)
    for term in ("w1", "w50", "unknown-word", "only-in-segment-0"):
        df = frequency.get(term, 0)
        assert index.idf(term) == pytest.approx(np.log(1 + (len(live_documents) - df + 0.5) / (df + 0.5)))


def test_a_term_held_only_by_dead_rows_scores_nothing_and_counts_no_document():
    postings = SegmentPostings.from_terms([["karachi", "mayor"], ["lahore", "mayor"], ["mayor"]], [0, 1, 2])
    postings.live = np.array([False, True, True])  # article 0 removed
    index = LexicalIndex([postings])
    assert index.size == 2 and "karachi" not in index.document_frequency
    assert not index.term_scores(["karachi"]).any()
    assert np.allclose(index.term_scores(["lahore", "mayor"]), _bm25s_scores([["lahore", "mayor"], ["mayor"]], ["lahore", "mayor"]))


def test_postings_survive_a_save_and_read(tmp_path):
    documents = [["a", "b", "a"], [], ["c"], ["b", "c", "d"]]
    SegmentPostings.from_terms(documents, [0, 0, 1, 2]).save(tmp_path)
    read = SegmentPostings.read(lambda name: (tmp_path / name).read_bytes(), ["x", "y", "z"], dead=["y"])
    assert read.live.tolist() == [True, True, False, True]
    index = LexicalIndex([read])
    live = [documents[0], documents[1], documents[3]]
    for query in (["a"], ["b", "c"], ["d", "d"]):
        assert np.allclose(index.term_scores(query), _bm25s_scores(live, query))


def test_an_empty_index_scores_nothing():
    assert LexicalIndex([]).scores("anything").shape == (0,)
    assert LexicalIndex.from_terms([]).size == 0
