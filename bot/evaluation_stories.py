"""``python -m bot eval stories``: the story groups of MultiHop-RAG's 609 articles.

Prints how many groups and of what sizes, the time grouping takes on the loaded index
(what every index load pays), how many candidate pairs lie in each band of cosine (what
the threshold was chosen from), and every group with titles, outlets and dates, for a
check by hand.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from pathlib import Path

from bot.config import Settings

BANDS = (0.70, 0.75, 0.80, 0.85, 0.90)  # lower edges of the cosine bands counted
TIMING_RUNS = 5


def eval_stories(settings: Settings, benchmark_dir: Path | None = None, index_dir: Path | None = None) -> dict:
    import numpy as np

    from bot.evaluation import BENCH_DIR, _embedder, benchmark_paths, ensure_index, prepare_corpus
    from bot.indexing import index_identity
    from bot.store import load_index
    from bot.stories import StoryParams, alike_pairs, article_vectors, stories_of_index

    bench_root = BENCH_DIR / "multihop"
    corpus = prepare_corpus(benchmark_paths(benchmark_dir), bench_root)
    settings = settings.with_overrides(corpus_dir=corpus, index_dir=index_dir or bench_root / "index")
    embedder = _embedder(settings)
    ensure_index(settings, embedder)
    index = load_index(settings.index_dir, index_identity(settings, embedder))
    params = StoryParams()
    seconds = []
    for _ in range(TIMING_RUNS):
        started = time.perf_counter()
        stories = stories_of_index(index, params)
        seconds.append(time.perf_counter() - started)

    articles = list(index.articles.values())
    vectors = article_vectors(index.chunks, index.vectors.vectors_of, [a.article_id for a in articles])
    _, _, upper = alike_pairs(articles, vectors, params, threshold=BANDS[0])
    edges = (*BANDS, 1.01)
    bands = {f"{lo:.2f}-{hi:.2f}" if hi <= 1 else f">={lo:.2f}": int(((upper >= lo) & (upper < hi)).sum())
             for lo, hi in zip(edges, edges[1:])}

    groups = []
    for group in stories.groups:
        members = [index.articles[a] for a in group]
        first = vectors[[articles.index(m) for m in members]]
        cosines = first @ first.T
        groups.append({
            "min_cosine": round(float(cosines[np.triu_indices(len(members), 1)].min()), 3),
            "articles": [{"title": a.title, "source": a.source, "date": a.date, "url": a.url} for a in members],
        })
    return {
        "articles": len(articles),
        "threshold": params.threshold,
        "days": params.days,
        "groups": len(stories.groups),
        "articles_in_groups": sum(len(g) for g in stories.groups),
        "sizes": dict(sorted(Counter(len(g) for g in stories.groups).items())),
        "grouping_ms_median": round(statistics.median(seconds) * 1000, 1),
        "pairs_by_cosine": bands,
        "sample": groups,
    }


def format_stories(report: dict) -> str:
    lines = [
        f"Story groups on MultiHop-RAG: {report['articles']} articles, cosine >= {report['threshold']}, "
        f"different outlets, dates within {report['days']} days, complete linkage",
        f"  groups: {report['groups']} ({report['articles_in_groups']} articles); sizes: "
        + ", ".join(f"{n} of {size}" for size, n in report["sizes"].items()),
        f"  time to group (median of {TIMING_RUNS}, once per index load): {report['grouping_ms_median']} ms",
        "  candidate pairs (different outlets, within the days) by cosine: "
        + ", ".join(f"{band}: {n}" for band, n in report["pairs_by_cosine"].items()),
        "",
    ]
    for number, group in enumerate(report["sample"], 1):
        lines.append(f"[{number}] min cosine {group['min_cosine']}")
        for article in group["articles"]:
            lines.append(f"    {article['date'] or 'undated'} | {article['source'] or '?'} | {article['title']}")
    return "\n".join(lines)
