"""Updates cost what changed: segments shared between builds, dead articles skipped, BM25 and
the names vocabulary kept equal to a build from scratch. Mechanics only: the fake embedder."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from bot import indexing
from bot.faulttest import reorder_chunk_rows
from bot.indexing import build_index, header
from bot.lexical import LexicalIndex
from bot.names import Vocabulary
from bot.service import corpus_vocabulary
from bot.store import current_build_id, load_index
from tests.helpers import FakeEmbedder, make_settings, small_corpus, write_article


class NoModel(FakeEmbedder):
    """An embedder whose model must not be needed: any use of it fails the test."""

    @property
    def dimension(self):
        raise AssertionError("the model was needed")

    @dimension.setter
    def dimension(self, value):
        pass

    def embed(self, texts, *, show_progress=False):
        raise AssertionError("the model was needed")

    def count_tokens(self, texts):
        raise AssertionError("the model was needed")


@pytest.fixture
def settings(tmp_path):
    settings = make_settings(tmp_path, small_corpus(tmp_path, count=9), CHUNK_TOKENS="40", CHUNK_OVERLAP_TOKENS="5")
    build_index(settings, FakeEmbedder(), progress=False)
    return settings


def _manifest(settings) -> dict:
    return json.loads((settings.index_dir / "current" / "manifest.json").read_text())


def _rows(index) -> dict:
    """Each row by what it is (article, span): its vector and BM25 score for its own text."""
    vectors = index.vectors_array()
    return {(c.article_id, c.start, c.end): (vectors[row], c.text) for row, c in enumerate(index.chunks)}


def _assert_same_as_a_build_from_scratch(settings, tmp_path):
    """The incremental index holds exactly the rows, vectors, BM25 scores and vocabulary of a
    full build of the same corpus (rows may come in another order)."""
    incremental = load_index(settings.index_dir)
    fresh_settings = settings.with_overrides(index_dir=tmp_path / "fresh-index")
    build_index(fresh_settings, FakeEmbedder(), full=True, progress=False)
    fresh = load_index(fresh_settings.index_dir)
    mine, theirs = _rows(incremental), _rows(fresh)
    assert mine.keys() == theirs.keys()
    for key, (vector, _) in mine.items():
        assert np.allclose(vector, theirs[key][0], atol=1e-6)
    order = {key: row for row, key in enumerate(theirs)}
    for query in ("topic1 item3", "article 4 second sentence", "zebras"):
        ours, reference = incremental.lexical.scores(query), fresh.lexical.scores(query)
        for row, key in enumerate(mine):
            assert ours[row] == pytest.approx(reference[order[key]], rel=1e-5, abs=1e-6)
    texts = [t for a in incremental.articles.values() for t in (a.title, a.source, a.text) if t]
    vocabulary, expected = corpus_vocabulary(incremental), Vocabulary(texts)
    assert vocabulary.counts == expected.counts and vocabulary.names == expected.names
    assert vocabulary.acronyms == expected.acronyms
    assert incremental.manifest["articles"] == fresh.manifest["articles"]


def test_nothing_changed_is_answered_from_the_manifest(settings):
    before = current_build_id(settings.index_dir)
    files = {p: p.stat().st_mtime_ns for p in settings.index_dir.rglob("build-*/**/*") if p.is_file()}
    report = build_index(settings, NoModel(), progress=False)  # no model, nothing embedded or chunked
    assert not report.changed_anything and report.chunks_embedded == 0
    assert report.chunks_total == report.chunks_reused == _manifest(settings)["chunks_total"] > 0
    assert current_build_id(settings.index_dir) == before
    assert {p: p.stat().st_mtime_ns for p in settings.index_dir.rglob("build-*/**/*") if p.is_file()} == files and files


def test_a_damaged_build_is_not_taken_for_a_no_op(settings):
    manifest = _manifest(settings)
    name = f"segments/{manifest['segments'][0]['name']}/chunks.npy"
    reorder_chunk_rows(settings.index_dir / "current" / name)
    report = build_index(settings, FakeEmbedder(), progress=False)
    assert report.full and report.chunks_embedded > 0
    load_index(settings.index_dir)


def test_adding_an_article_writes_one_segment_and_links_the_rest(settings, tmp_path):
    first = settings.index_dir / current_build_id(settings.index_dir)
    old_segment = _manifest(settings)["segments"][0]["name"]
    write_article(settings.corpus_dir, "new.md", "A new article", "Fresh news about zebras. " * 30, source="Wire")
    report = build_index(settings, FakeEmbedder(), progress=False)
    assert report.articles_added == ["new.md"]
    manifest = _manifest(settings)
    assert [s["name"] for s in manifest["segments"]][0] == old_segment and len(manifest["segments"]) == 2
    assert manifest["segments"][1]["articles"] == ["new.md"]
    second = settings.index_dir / current_build_id(settings.index_dir)
    for name in ("chunks.npy", "texts.bin", "vectors.npy", "articles.jsonl", "terms.jsonl"):
        old, new = first / "segments" / old_segment / name, second / "segments" / old_segment / name
        assert os.path.samefile(old, new)  # shared, not rewritten
    _assert_same_as_a_build_from_scratch(settings, tmp_path)


def test_changed_and_removed_articles_are_dead_rows_and_the_index_equals_a_full_build(settings, tmp_path):
    path = settings.corpus_dir / "a1.md"
    path.write_text(path.read_text().replace("Paragraph 11 of article 1", "A rewritten (RC) Rewritten Closing paragraph"))
    (settings.corpus_dir / "a4.md").unlink()
    report = build_index(settings, FakeEmbedder(), progress=False)
    assert report.articles_changed == ["a1.md"] and report.articles_removed == ["a4.md"]
    first = _manifest(settings)["segments"][0]
    assert first["dead"] == ["a1.md", "a4.md"] and first["live_rows"] < first["rows"]
    index = load_index(settings.index_dir)
    assert "a4.md" not in index.articles and "A rewritten" in index.articles["a1.md"].text
    assert [c.article_id for c in index.chunks].count("a1.md") == sum(1 for c in index.chunks if c.article_id == "a1.md")
    for row, chunk in enumerate(index.chunks):  # the row contract over segments with dead rows
        article = index.articles[chunk.article_id]
        assert article.text[chunk.start : chunk.end] == chunk.text
        assert np.allclose(index.vectors_array()[row], FakeEmbedder().embed([header(article) + chunk.text])[0], atol=1e-6)
    _assert_same_as_a_build_from_scratch(settings, tmp_path)


def test_removing_articles_needs_no_model(settings):
    (settings.corpus_dir / "a5.md").unlink()
    report = build_index(settings, NoModel(), progress=False)
    assert report.articles_removed == ["a5.md"]
    assert "a5.md" not in load_index(settings.index_dir).articles


def test_segments_are_merged_when_too_many_or_mostly_dead(settings, tmp_path, monkeypatch):
    monkeypatch.setattr(indexing, "MAX_SEGMENTS", 3)
    for i in range(4):
        write_article(settings.corpus_dir, f"n{i}.md", f"New {i}", f"News number {i} about giraffes. " * 10)
        build_index(settings, FakeEmbedder(), progress=False)
    segments = _manifest(settings)["segments"]
    assert len(segments) <= 3
    _assert_same_as_a_build_from_scratch(settings, tmp_path)

    monkeypatch.setattr(indexing, "MAX_SEGMENTS", 16)
    for name in ("a0.md", "a1.md", "a2.md", "a3.md", "a5.md"):  # half of the first segment's articles
        (settings.corpus_dir / name).unlink()
    build_index(settings, FakeEmbedder(), progress=False)
    merged = _manifest(settings)["segments"]
    assert len(merged) == 1 and merged[0]["dead"] == [] and merged[0]["rows"] == merged[0]["live_rows"]
    _assert_same_as_a_build_from_scratch(settings, tmp_path / "again")


def test_bm25_from_stored_terms_scores_like_one_built_from_the_texts():
    texts = ["Karachi mayor elected", "the mayor of Lahore", "", "MQM-P and PPP in Karachi"]
    from bot.lexical import tokenize

    built, from_terms = LexicalIndex.build(texts), LexicalIndex.from_terms([tokenize(t) for t in texts])
    assert np.allclose(built.scores("Karachi mayor"), from_terms.scores("Karachi mayor"))
    assert built.document_frequency == from_terms.document_frequency


def test_bm25_of_segments_with_dead_rows_equals_bm25s_over_the_live_rows(settings):
    import bm25s

    from bot import store

    write_article(settings.corpus_dir, "new.md", "A new article", "Fresh news about zebras in Karachi. " * 30, source="Wire")
    build_index(settings, FakeEmbedder(), progress=False)
    path = settings.corpus_dir / "a1.md"
    path.write_text(path.read_text().replace("Paragraph 11 of article 1", "Zebras rewritten closing paragraph"))
    (settings.corpus_dir / "a4.md").unlink()
    build_index(settings, FakeEmbedder(), progress=False)
    manifest = _manifest(settings)
    assert len(manifest["segments"]) == 3 and manifest["segments"][0]["dead"] == ["a1.md", "a4.md"]
    index = load_index(settings.index_dir)
    live_terms = [t for segment in store.read_segments(settings.index_dir, manifest) for t in segment.terms]
    reference = bm25s.BM25()
    reference.index([t or [""] for t in live_terms], show_progress=False)
    for query in ("zebras zebras Karachi", "article 4 second sentence", "paragraph 11 of article 1", "topic1 item3 nothing-such"):
        from bot.lexical import tokenize

        ids = reference.get_tokens_ids(tokenize(query))
        assert ids, query
        assert np.allclose(index.lexical.scores(query), reference.get_scores_from_ids(ids), rtol=1e-6, atol=1e-7)


def test_adding_an_article_indexes_only_its_rows_and_loading_reads_no_terms(settings, monkeypatch):
    from bot import lexical, store

    indexed: list[int] = []
    original = lexical.SegmentPostings.from_terms.__func__

    def counting(cls, terms, row_articles=None):
        indexed.append(len(terms))
        return original(cls, terms, row_articles)

    monkeypatch.setattr(lexical.SegmentPostings, "from_terms", classmethod(counting))
    write_article(settings.corpus_dir, "new.md", "A new article", "Fresh news about zebras. " * 30, source="Wire")
    build_index(settings, FakeEmbedder(), progress=False)
    new_rows = _manifest(settings)["segments"][-1]["rows"]
    assert indexed == [new_rows] and new_rows < _manifest(settings)["chunks_total"]

    def parsing_terms(*args):
        raise AssertionError("terms.jsonl parsed on load")

    monkeypatch.setattr(store, "_live_terms", parsing_terms)
    index = load_index(settings.index_dir)
    assert index.lexical.size == len(index.chunks) and index.lexical.scores("zebras").max() > 0


def test_an_update_hashes_only_files_it_has_not_verified_and_still_catches_damage(settings, monkeypatch):
    """Builds share segment files by hard links; an update checks each once, not the whole
    archive every time, and a file damaged after its check is caught by the next update."""
    from bot import store

    hashed = []
    original = store._sha256_file
    monkeypatch.setattr(store, "_sha256_file", lambda path: hashed.append(path) or original(path))
    build_index(settings, FakeEmbedder(), progress=False)  # no-op: every file checked once
    assert hashed
    hashed.clear()
    report = build_index(settings, FakeEmbedder(), progress=False)
    assert not report.changed_anything and hashed == []

    write_article(settings.corpus_dir, "new.md", "A new article", "Fresh news about zebras. " * 30, source="Wire")
    build_index(settings, FakeEmbedder(), progress=False)
    hashed.clear()
    build_index(settings, FakeEmbedder(), progress=False)  # the new build's own files: checked once more
    new_files = {p.name for p in hashed}
    hashed.clear()
    build_index(settings, FakeEmbedder(), progress=False)
    assert hashed == [] and "vectors.npy" in new_files

    manifest = _manifest(settings)
    reorder_chunk_rows(settings.index_dir / "current" / f"segments/{manifest['segments'][0]['name']}/chunks.npy")
    report = build_index(settings, FakeEmbedder(), progress=False)
    assert report.full and report.chunks_embedded > 0
    load_index(settings.index_dir)
