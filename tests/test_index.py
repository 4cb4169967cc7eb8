"""The index on disk: FAISS against a numpy oracle, the row contract, manifests,
incremental builds and crash safety. Mechanics only, so the fake embedder is enough."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bot import store
from bot.errors import CorpusError, IndexMismatchError, IndexMissingError
from bot.indexing import build_index, header, index_identity, index_is_stale
from bot.store import current_build_id, load_index, new_flat_index
from tests.helpers import FakeEmbedder, make_settings, small_corpus, write_article


@pytest.fixture
def built(tmp_path, fake_embedder):
    settings = make_settings(tmp_path, small_corpus(tmp_path), CHUNK_TOKENS="40", CHUNK_OVERLAP_TOKENS="5")
    report = build_index(settings, fake_embedder, progress=False)
    return settings, report


def test_faiss_search_agrees_with_brute_force_numpy():
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(500, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = rng.normal(size=(20, 32)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    stored = store.StoredIndex({}, {}, [], new_flat_index(vectors, 32), None, None)

    scores, ids = stored.search(queries, 10)
    brute = queries @ vectors.T
    expected_ids = np.argsort(-brute, axis=1)[:, :10]
    assert np.array_equal(ids, expected_ids)
    assert np.allclose(scores, np.take_along_axis(brute, expected_ids, axis=1), atol=1e-5)

    allowed = np.arange(0, 500, 7)
    _, filtered = stored.search(queries, 5, allowed)
    masked = np.full_like(brute, -np.inf)
    masked[:, allowed] = brute[:, allowed]
    assert np.array_equal(filtered, np.argsort(-masked, axis=1)[:, :5])


def test_row_i_is_faiss_id_i_and_bm25_document_i(built, fake_embedder):
    settings, _ = built
    index = load_index(settings.index_dir)
    vectors = index.vectors_array()
    assert len(index.chunks) == len(vectors) == index.lexical.size > 3
    for row, chunk in enumerate(index.chunks):
        article = index.articles[chunk.article_id]
        assert article.text[chunk.start : chunk.end] == chunk.text
        expected = FakeEmbedder().embed([header(article) + chunk.text])[0]
        assert np.allclose(vectors[row], expected, atol=1e-6)
        lexical = index.lexical.scores(chunk.text)
        assert lexical[row] == pytest.approx(lexical.max())


def test_manifest_records_model_dimension_chunking_and_hashes(built, fake_embedder):
    settings, _ = built
    manifest = json.loads((settings.index_dir / "current" / "manifest.json").read_text())
    assert manifest["model"] == "fake-hash-64"
    assert manifest["dimension"] == 64
    assert manifest["chunking"]["chunk_tokens"] == 40
    assert manifest["chunking"]["overlap_tokens"] == 5
    assert set(manifest["articles"]) == {"a0.md", "a1.md", "a2.md"}
    assert all(len(h) == 64 for h in manifest["articles"].values())
    assert manifest["format_version"] == store.FORMAT_VERSION


def test_loading_with_another_model_is_refused_with_what_to_run(built):
    settings, _ = built
    other = FakeEmbedder(dimension=32, model_id="another-model")
    with pytest.raises(IndexMismatchError) as err:
        load_index(settings.index_dir, index_identity(settings, other))
    message = str(err.value)
    assert "another-model" in message and "fake-hash-64" in message
    assert "python -m bot index --full" in message


def test_loading_with_other_chunking_is_refused(built, fake_embedder):
    settings, _ = built
    changed = settings.with_overrides(chunk_tokens=80)
    with pytest.raises(IndexMismatchError, match="chunk_tokens"):
        load_index(settings.index_dir, index_identity(changed, fake_embedder))


def test_no_index_says_how_to_build_one(tmp_path):
    with pytest.raises(IndexMissingError, match="python -m bot index"):
        load_index(tmp_path / "nothing")


def test_empty_corpus_is_a_clear_error(tmp_path, fake_embedder):
    (tmp_path / "corpus").mkdir()
    with pytest.raises(CorpusError, match="no readable article"):
        build_index(make_settings(tmp_path), fake_embedder)


def test_incremental_build_embeds_only_the_new_article(built):
    settings, first = built
    assert first.full and first.chunks_embedded == first.chunks_total
    write_article(settings.corpus_dir, "new.md", "A new article", " ".join(f"Fresh news number {i} about zebras." for i in range(40)), source="Wire")
    embedder = FakeEmbedder()
    report = build_index(settings, embedder, progress=False)

    index = load_index(settings.index_dir)
    new_rows = [c for c in index.chunks if c.article_id == "new.md"]
    assert report.articles_added == ["new.md"]
    assert report.articles_unchanged == ["a0.md", "a1.md", "a2.md"]
    assert report.chunks_embedded == len(new_rows) > 0
    assert len(embedder.embedded_texts) == len(new_rows)
    assert all(t.startswith("A new article") for t in embedder.embedded_texts)
    assert report.chunks_total == len(index.chunks) == first.chunks_total + len(new_rows)


def test_changed_and_removed_articles(built):
    settings, first = built
    (settings.corpus_dir / "a2.md").unlink()
    path = settings.corpus_dir / "a1.md"
    path.write_text(path.read_text().replace("Paragraph 11 of article 1", "A rewritten closing paragraph"))
    embedder = FakeEmbedder()
    report = build_index(settings, embedder, progress=False)
    assert report.articles_changed == ["a1.md"]
    assert report.articles_removed == ["a2.md"]
    assert report.articles_unchanged == ["a0.md"]
    # Only chunks whose text changed are embedded again: the rest of a1 comes from the cache.
    assert 0 < report.chunks_embedded < len([c for c in load_index(settings.index_dir).chunks if c.article_id == "a1.md"])
    assert all("a2.md" != c.article_id for c in load_index(settings.index_dir).chunks)


def test_full_rebuild_embeds_everything(built):
    settings, first = built
    embedder = FakeEmbedder()
    report = build_index(settings, embedder, full=True, progress=False)
    assert report.full and report.chunks_embedded == first.chunks_total


def test_unchanged_corpus_is_not_stale_and_rebuild_embeds_nothing(built):
    settings, _ = built
    assert not index_is_stale(settings, "fake-hash-64")
    assert index_is_stale(settings)  # the configured real model did not build it
    report = build_index(settings, FakeEmbedder(), progress=False)
    assert report.chunks_embedded == 0 and not report.changed_anything
    write_article(settings.corpus_dir, "x.md", "X", "Something new.")
    assert index_is_stale(settings, "fake-hash-64")


def test_crash_mid_build_leaves_the_previous_index_serving(built, monkeypatch):
    settings, _ = built
    before = current_build_id(settings.index_dir)
    write_article(settings.corpus_dir, "new.md", "New", "Breaking news about the crash test. " * 20)

    def explode(*args, **kwargs):
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(store, "write_postings", explode)
    with pytest.raises(RuntimeError, match="simulated"):
        build_index(settings, FakeEmbedder(), progress=False)
    monkeypatch.undo()

    assert current_build_id(settings.index_dir) == before
    index = load_index(settings.index_dir)
    assert "new.md" not in index.articles and len(index.articles) == 3
    assert not list(settings.index_dir.glob(".*partial"))


def test_old_builds_are_cleaned_but_one_previous_is_kept(built):
    settings, _ = built
    for _ in range(3):
        write_article(settings.corpus_dir, "churn.md", "Churn", f"Text {np.random.rand()}.")
        build_index(settings, FakeEmbedder(), progress=False)
    builds = [p for p in settings.index_dir.iterdir() if p.name.startswith("build-")]
    assert len(builds) == 2
    assert (settings.index_dir / "current").resolve() in [b.resolve() for b in builds]


def test_a_bad_article_is_reported_and_the_rest_indexed(tmp_path, fake_embedder):
    corpus = small_corpus(tmp_path, count=2)
    (corpus / "broken.txt").write_bytes(b"\xff\xfe\x00\x01binary\x00junk")
    report = build_index(make_settings(tmp_path, corpus), fake_embedder, progress=False)
    assert [p.path for p in report.problems] == ["broken.txt"]
    assert report.problems[0].reason
    assert sorted(report.articles_added) == ["a0.md", "a1.md"]
    assert "skipped broken.txt" in report.describe()


def test_token_counts_are_remembered_but_never_lost_to_the_cache_limit(real_embedder, monkeypatch):
    """A batch larger than the cache (a whole corpus at build time) still counts every text."""
    from bot import embedding

    monkeypatch.setattr(embedding, "TOKEN_COUNT_CACHE", 3)
    texts = ["", "one", "two words", "three small words", "four words here now", "one"]
    assert real_embedder.count_tokens(texts) == [0, 1, 2, 3, 4, 1]
    assert len(real_embedder._counts) <= 3


def test_a_query_vector_of_another_width_is_refused_with_what_to_run(built):
    settings, _ = built
    index = load_index(settings.index_dir)
    with pytest.raises(IndexMismatchError, match="python -m bot index --full"):
        index.search(np.ones((1, 32), dtype=np.float32), 3)


def test_the_faiss_store_seam_agrees_with_numpy_and_adds_and_deletes_rows():
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(300, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    query = vectors[5] + 0.1
    faiss_store = store.FaissStore.from_vectors(vectors[:200], 16)
    assert np.allclose(faiss_store.cosines(query), vectors[:200] @ query, atol=1e-5)
    assert np.array_equal(faiss_store.vectors_of([7, 3]), vectors[[7, 3]])
    assert list(faiss_store.add(vectors[200:])) == list(range(200, 300))
    faiss_store.delete(np.array([0, 10]))
    remaining = np.delete(vectors, [0, 10], axis=0)
    assert len(faiss_store) == 298 and np.allclose(faiss_store.cosines(query), remaining @ query, atol=1e-5)
    _, ids = faiss_store.search(query[None, :], 5)
    assert list(ids[0]) == list(np.argsort(-(remaining @ query))[:5])
    assert faiss_store.describe() == {"backend": "faiss", "index": "IndexFlatIP", "rows": 298, "dimension": 16, "exact": True,
                                      "parts": 1, "graph_rows": 0}


def test_the_retriever_holds_no_copy_of_the_vectors(built, fake_embedder):
    from bot.retrieval import Retriever

    settings, _ = built
    index = load_index(settings.index_dir)
    retriever = Retriever(index, fake_embedder)
    shape = (len(index.chunks), 64)
    assert not [name for name, value in vars(retriever).items() if isinstance(value, np.ndarray) and value.shape == shape]
    assert retriever.search("topic1 item3", 3)  # and it still searches, through the store


def test_loading_holds_no_article_text_until_a_chunk_is_read(tmp_path, fake_embedder):
    """Texts stay in the segments' texts.bin (memory-mapped) when an index is loaded: what the
    loaded index holds in Python is far less than the texts, and reading a chunk gives its text."""
    import tracemalloc

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(4):
        # Long texts of few distinct words: what loading may hold grows with the vocabulary and
        # the rows, not with the length of the texts.
        sentences = " ".join(f"A sentence of report {i} names the council and its budget." for _ in range(3000))
        write_article(corpus, f"long{i}.md", f"Long report {i}", sentences, source="Wire", date="2024-01-0" + str(i + 1))
    settings = make_settings(tmp_path, corpus, CHUNK_TOKENS="200", CHUNK_OVERLAP_TOKENS="0")
    build_index(settings, fake_embedder, progress=False)
    text_bytes = sum(p.stat().st_size for p in (settings.index_dir / "current").glob("segments/*/texts.bin"))
    assert text_bytes > 600_000

    tracemalloc.start()
    try:
        index = load_index(settings.index_dir)
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held < text_bytes / 4
    row = len(index.chunks) // 2
    chunk = index.chunks[row]
    assert chunk.text and chunk.text == index.articles[chunk.article_id].text[chunk.start : chunk.end]
    assert [a.text for a in index.articles.metadata()] == [""] * 4  # listings read no text
