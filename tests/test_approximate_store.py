"""The approximate path of the FAISS store (issue 11): above APPROXIMATE_ABOVE rows a build
stores an HNSW graph, reports its recall@10 against exact search, and the store searches it
with filters still applied; at or below the threshold search stays exact."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bot.config import Settings
from bot.errors import IndexCorruptError
from bot.indexing import build_index
from bot.scale_eval import HASHING_MODEL, HashingEmbedder, _synthetic_corpus
from bot.store import APPROXIMATE_FILE, FaissStore, build_graph, graph_recall, load_index, recall_probes
from tests.helpers import MULTIHOP_DIR


def _unit(rows: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((rows, 384)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _recall_at_10(found: np.ndarray, queries: np.ndarray, vectors: np.ndarray, rows=None) -> float:
    exact = queries @ vectors.T
    if rows is not None:
        mask = np.full(len(vectors), -np.inf, dtype=np.float32)
        mask[rows] = 0
        exact = exact + mask
    tenth = -np.partition(-exact, 9, axis=1)[:, 9]
    return float(np.mean([np.mean(exact[q, found[q]] >= tenth[q] - 1e-5) for q in range(len(queries))]))


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A synthetic archive indexed with a tiny APPROXIMATE_ABOVE (the HNSW path) and with the
    default (exact search)."""
    root = tmp_path_factory.mktemp("approximate")
    benchmark = json.loads((MULTIHOP_DIR / "corpus_train.json").read_text(encoding="utf-8"))[:30]
    _synthetic_corpus(benchmark, 400, root / "corpus")
    base = Settings.from_mapping({}).with_overrides(corpus_dir=root / "corpus", embedding_model=HASHING_MODEL)
    graph = base.with_overrides(index_dir=root / "graph", approximate_above=100)
    exact = base.with_overrides(index_dir=root / "exact")
    return {"graph": (graph, build_index(graph, HashingEmbedder(), progress=False)),
            "exact": (exact, build_index(exact, HashingEmbedder(), progress=False))}


def test_above_the_threshold_the_build_stores_a_graph_reports_its_recall_and_the_store_searches_it(built):
    settings, report = built["graph"]
    assert report.chunks_total > 100
    assert report.approximate["rows"] == report.chunks_total and report.approximate["recall_at_10"] >= 0.95
    assert "recall@10" in report.describe()
    index = load_index(settings.index_dir)
    described = index.vectors.describe()
    assert described["index"] == "IndexHNSWFlat" and described["exact"] is False
    assert described["recall_at_10"] == report.approximate["recall_at_10"]
    vectors = index.vectors_array()
    queries = HashingEmbedder().embed(["Amazon sold more devices", "the court ruled on the merger", "a storm hit the coast"])
    scores, found = index.search(queries, 10)
    assert _recall_at_10(found, queries, vectors) >= 0.95
    # The cosines are the stored vectors' exact inner products with the question.
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ vectors.T, found, axis=1), atol=1e-5)


def test_below_the_threshold_search_is_exact_and_identical_to_numpy(built):
    settings, report = built["exact"]
    assert report.approximate is None
    index = load_index(settings.index_dir)
    assert index.vectors.describe()["index"] == "IndexFlatIP"
    assert not (index.path / APPROXIMATE_FILE).exists()
    queries = HashingEmbedder().embed(["Amazon sold more devices", "the court ruled on the merger"])
    exact = queries @ index.vectors_array().T
    scores, found = index.search(queries, 10)
    np.testing.assert_allclose(scores, -np.sort(-exact, axis=1)[:, :10], atol=1e-5)


def test_the_graph_reaches_the_recall_target_on_random_vectors_and_filters_still_apply():
    vectors = _unit(3000, seed=3)
    graph = build_graph(vectors)
    ef_search, recall = graph_recall(graph)
    assert recall >= 0.95
    store = FaissStore(graph, {"ef_search": ef_search, "recall_at_10": recall, "M": 32, "recall_queries": 200, "above": 100})
    queries = _unit(50, seed=4)
    _, found = store.search(queries, 10)
    assert _recall_at_10(found, queries, vectors) >= 0.95
    # efSearch 16 (where a graph walk that skips 97-99% of its nodes finds 4 in 10 of the true
    # top 10 and comes back short): the store widens the walk, or searches a filter leaving no
    # more than APPROXIMATE_ABOVE rows exactly.
    narrow = FaissStore(graph, {"ef_search": 16, "recall_at_10": recall, "M": 32, "recall_queries": 200, "above": 40})
    for allowed, stores in ((np.arange(0, 3000, 3), [store]), (np.arange(0, 3000, 30), [store, narrow]),
                            (np.arange(40, 80), [store, narrow])):
        for searched in stores:
            scores, found = searched.search(queries, 10, allowed)
            assert np.isin(found, allowed).all()  # a full top 10, every row allowed
            assert _recall_at_10(found, queries, vectors, allowed) >= 0.95


def test_recall_is_measured_with_probes_close_to_no_stored_row():
    # A stored vector used as its own query finds itself: on the eval's 100k archive that
    # measured recall 1.000 at efSearch 16 where real questions got 0.495.
    vectors = _unit(500, seed=5)
    probes = recall_probes(vectors)
    assert len(probes) == 200
    np.testing.assert_allclose(np.linalg.norm(probes, axis=1), 1.0, atol=1e-5)
    assert (probes @ vectors.T).max(axis=1).max() < 0.9


def test_adding_an_article_extends_the_graph_and_removing_one_rebuilds_it(built, tmp_path):
    settings, _ = built["graph"]
    settings = settings.with_overrides(index_dir=tmp_path / "index")
    build_index(settings, HashingEmbedder(), progress=False)
    extra = settings.corpus_dir.parent / "corpus-grown"
    import shutil
    shutil.copytree(settings.corpus_dir, extra)
    grown = settings.with_overrides(corpus_dir=extra)
    (extra / "zz-new.md").write_text("# A new storm\n\nA storm hit the coast on Monday and closed the port.\n", encoding="utf-8")
    added = build_index(grown, HashingEmbedder(), progress=False)
    assert added.approximate["incremental"] is True and added.approximate["rows"] == added.chunks_total
    assert len(load_index(grown.index_dir).vectors) == added.chunks_total
    (extra / "zz-new.md").unlink()
    removed = build_index(grown, HashingEmbedder(), progress=False)
    assert removed.approximate["incremental"] is False and removed.approximate["rows"] == removed.chunks_total
    index = load_index(grown.index_dir)
    assert len(index.vectors) == len(index.chunks) == removed.chunks_total


def test_a_damaged_graph_is_refused_like_any_damaged_file(built, tmp_path):
    import shutil
    settings, _ = built["graph"]
    copy = tmp_path / "index"
    shutil.copytree(settings.index_dir, copy, symlinks=True)
    graph_file = load_index(copy).path / APPROXIMATE_FILE
    data = bytearray(graph_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    graph_file.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match=APPROXIMATE_FILE):
        load_index(copy)
