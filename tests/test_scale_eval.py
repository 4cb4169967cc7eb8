"""``eval scale`` measures what it says on a small synthetic archive (speed itself is the
benchmark's to report, never asserted here)."""

from __future__ import annotations

import json

from bot.config import Settings
from bot.scale_eval import HASHING_MODEL, HashingEmbedder, _synthetic_corpus, format_scale, measure_size
from tests.helpers import MULTIHOP_DIR


def test_one_size_is_built_updated_loaded_and_answered(tmp_path):
    benchmark = json.loads((MULTIHOP_DIR / "corpus_train.json").read_text(encoding="utf-8"))[:20]
    articles = _synthetic_corpus(benchmark, 250, tmp_path / "corpus")
    settings = Settings.from_mapping({}).with_overrides(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index",
                                                        embedding_model=HASHING_MODEL)
    row = measure_size("small", settings, HashingEmbedder, ["Who reported on the benchmark?", "What did Amazon sell?"], build_full=True)
    assert articles == 20
    assert row["noop_loaded_model"] is False  # the no-op update never touched the model
    assert row["chunks"] > 100 and row["add_one_embed_s"] >= 0 and row["load_s"] > 0 and row["rss_mb"] > 0
    assert row["recall_at_10"] == 1.0 and row["store"] == "IndexFlatIP"  # exact search agrees with numpy
    assert 0 < row["answer_p50_ms"] <= row["answer_p95_ms"]
    table = format_scale({"rows": [row], "questions": 2})
    assert "small" in table and "recall@10" in table


def test_above_the_threshold_a_size_is_searched_through_the_graph_and_its_recall_reported(tmp_path):
    benchmark = json.loads((MULTIHOP_DIR / "corpus_train.json").read_text(encoding="utf-8"))[:20]
    _synthetic_corpus(benchmark, 250, tmp_path / "corpus")
    settings = Settings.from_mapping({}).with_overrides(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index",
                                                        embedding_model=HASHING_MODEL, approximate_above=100)
    row = measure_size("graph", settings, HashingEmbedder, ["Who reported on the benchmark?", "What did Amazon sell?"], build_full=True)
    # The full build's segment is searched through its graph, the added article's small segment exactly
    # (adding it built no graph).
    assert row["store"] == "IndexFlatIP+IndexHNSWFlat" and row["graph_s"] >= 0 and row["add_one_graph_s"] == 0
    assert row["build_recall_at_10"] >= 0.95 and row["recall_at_10"] >= 0.95 and row["ef_search"] > 0
    assert row["pool_recall_at_10"] >= 0.95
    assert "graph s" in format_scale({"rows": [row], "questions": 2})


def test_a_large_size_is_written_in_files_and_built_in_steps_like_one_build(tmp_path, monkeypatch):
    """Above BUILD_INCREMENT_CHUNKS the archive is written a share at a time and each share
    built (one segment each): the same chunks as one full build, and the add-one update reads
    only the added file."""
    import bot.corpus
    import bot.scale_eval as scale_eval
    from bot.indexing import build_index

    monkeypatch.setattr(scale_eval, "ARTICLES_PER_FILE", 4)
    monkeypatch.setattr(bot.corpus, "UNSETTLED_SECONDS", 0.0)
    benchmark = json.loads((MULTIHOP_DIR / "corpus_train.json").read_text(encoding="utf-8"))[:20]
    steps = _synthetic_corpus(benchmark, 250, tmp_path / "corpus", parts=3)
    assert not list((tmp_path / "corpus").iterdir())  # nothing written before its step
    settings = Settings.from_mapping({}).with_overrides(corpus_dir=tmp_path / "corpus", index_dir=tmp_path / "index",
                                                        embedding_model=HASHING_MODEL)
    row = measure_size("steps", settings, HashingEmbedder, ["What did Amazon sell?"], build_full=steps)
    assert row["builds"] == 3 and row["add_one_files_read"] == 1
    assert sorted(p.name for p in (tmp_path / "corpus").glob("archive-*.json")) == [f"archive-{i:05d}.json" for i in range(5)]
    one = _synthetic_corpus(benchmark, 250, tmp_path / "one")
    full = build_index(settings.with_overrides(corpus_dir=tmp_path / "one", index_dir=tmp_path / "one-index"), HashingEmbedder(),
                       full=True, progress=False)
    assert one == 20 and row["chunks"] == full.chunks_total
