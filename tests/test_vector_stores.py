"""The vector store seam: FAISS (the default) and Qdrant (local mode here; a server in
production) pass the same oracle tests, and the Qdrant store answers the seed gold set, the
filters and an incremental update exactly as FAISS does."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from bot.indexing import build_index
from bot.qdrant_store import QdrantStore, open_client
from bot.retrieval import Filters
from bot.service import QuestionAnswerer
from bot.store import FaissStore
from tests.helpers import GOLD_FILE, write_article

GOLD = json.loads(GOLD_FILE.read_text(encoding="utf-8"))


def _faiss(vectors, dimension):
    return FaissStore.from_vectors(vectors, dimension)


def _qdrant(vectors, dimension):
    return QdrantStore.mirror(open_client(":memory:"), "build-test", vectors, dimension)


@pytest.mark.parametrize("make_store", [_faiss, _qdrant], ids=["faiss", "qdrant"])
def test_a_store_agrees_with_numpy_filters_inside_and_adds_and_deletes_rows(make_store):
    rng = np.random.default_rng(5)
    vectors = rng.normal(size=(120, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:3] + 0.05
    store = make_store(vectors[:100], 16)
    assert len(store) == 100 and store.dimension == 16
    scores, ids = store.search(queries, 10)
    exact = queries @ vectors[:100].T
    assert np.array_equal(ids, np.argsort(-exact, axis=1)[:, :10])
    assert np.allclose(scores, np.take_along_axis(exact, ids, axis=1), atol=1e-5)
    allowed = np.arange(1, 100, 9)
    _, filtered = store.search(queries, 4, allowed)
    assert set(filtered.ravel()) <= set(allowed.tolist())
    masked = np.full_like(exact, -np.inf)
    masked[:, allowed] = exact[:, allowed]
    assert np.array_equal(filtered, np.argsort(-masked, axis=1)[:, :4])
    assert np.allclose(store.vectors_of([9, 2]), vectors[[9, 2]], atol=1e-6)
    assert list(store.add(vectors[100:])) == list(range(100, 120))
    store.delete(np.array([0, 50]))
    remaining = np.delete(vectors, [0, 50], axis=0)
    assert len(store) == 118 and np.allclose(store.cosines(queries[0]), remaining @ queries[0], atol=1e-5)
    assert store.describe()["rows"] == 118


@pytest.fixture(scope="module")
def qdrant_answerer(seed_settings, seed_answerer, real_embedder, tmp_path_factory):
    folder = tmp_path_factory.mktemp("qdrant")
    settings = seed_settings.with_overrides(vector_store="qdrant", qdrant_location=str(folder / "local"))
    return QuestionAnswerer(settings, real_embedder).load()


def _passages(answer):
    return [(p.article.article_id, p.start, p.end) for p in answer.passages]


def test_qdrant_answers_the_seed_gold_set_as_faiss_does(qdrant_answerer, seed_answerer):
    assert qdrant_answerer.serving.index.vectors.describe()["backend"] == "qdrant"
    for item in GOLD["answerable"]:
        assert _passages(qdrant_answerer.ask(item["question"], 3)) == _passages(seed_answerer.ask(item["question"], 3))
    for question in GOLD["out_of_corpus"]:
        assert qdrant_answerer.ask(question, 3).found is False


def test_qdrant_pushes_filters_down_as_faiss_does(qdrant_answerer, seed_answerer):
    question = GOLD["answerable"][0]["question"]
    for filters in (Filters(since="2024-01"), Filters(until="2023-12-31"), Filters(sources=("Nowhere Times",))):
        assert _passages(qdrant_answerer.ask(question, 3, filters=filters)) == _passages(seed_answerer.ask(question, 3, filters=filters))


def test_qdrant_follows_an_incremental_update(seed_settings, real_embedder, tmp_path):
    corpus = shutil.copytree(seed_settings.corpus_dir, tmp_path / "corpus")
    settings = seed_settings.with_overrides(corpus_dir=corpus, index_dir=tmp_path / "index", vector_store="qdrant",
                                            qdrant_location=str(tmp_path / "qdrant"))
    build_index(settings, real_embedder, progress=False)
    answerer = QuestionAnswerer(settings, real_embedder).load()
    first = answerer.build_id
    write_article(corpus, "zebra.md", "Zebras cross the Lyari river", "A herd of zebras crossed the Lyari river on Sunday, "
                  "residents of Karachi said, and the wildlife department counted forty animals.", source="Dawn", date="2024-01-07")
    answerer.rebuild()
    answer = answerer.ask("How many zebras crossed the Lyari river?", 3)
    assert answer.found and answer.passages[0].article.article_id == "zebra.md"
    collections = {c.name for c in open_client(str(tmp_path / "qdrant")).get_collections().collections}
    assert answerer.build_id in collections and answerer.build_id != first
    assert len(answerer.serving.index.vectors) == len(answerer.serving.index.chunks)
