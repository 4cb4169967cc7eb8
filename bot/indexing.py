"""Building the index from the corpus: incremental by default.

Only chunks whose embedded text is new are embedded: vectors are cached by a hash of
(model, embedded text), so an unchanged article costs nothing and a changed one costs
only its own chunks. The build writes a new folder and swaps it in (see ``store``).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from bot.chunking import chunk_article
from bot.config import Settings
from bot.corpus import scan_corpus
from bot.embedding import Embedder
from bot.errors import ArticleError, BotError, CorpusError, IndexMissingError
from bot.lexical import tokenize
from bot.names import add_statistics, empty_statistics, vocabulary_statistics
from bot.store import (
    FORMAT_VERSION,
    Segment,
    approximate_summary,
    build_lock,
    read_manifest,
    read_segments,
    read_vocabulary,
    verify_build,
    write_build,
)
from bot.types import Article, Chunk

log = logging.getLogger(__name__)


@dataclass
class BuildReport:
    """What a build did, for people (``describe``) and machines (``to_dict``)."""

    articles_added: list[str] = field(default_factory=list)
    articles_changed: list[str] = field(default_factory=list)
    articles_removed: list[str] = field(default_factory=list)
    articles_unchanged: list[str] = field(default_factory=list)
    chunks_embedded: int = 0
    chunks_reused: int = 0
    chunks_total: int = 0
    seconds: float = 0.0
    embed_seconds: float = 0.0
    full: bool = False
    problems: list[ArticleError] = field(default_factory=list)
    # Corpus files parsed by this build: new or changed since the last scan (the scan cache),
    # plus those of articles the index lacks; the others were only stat'ed.
    files_read: int = 0
    index_path: str = ""
    # The segments' HNSW graphs (how many, rows, efSearch, the lowest recall@10 against exact
    # search), or None when every segment is searched exactly (none above APPROXIMATE_ABOVE rows).
    approximate: dict | None = None

    @property
    def changed_anything(self) -> bool:
        return bool(self.articles_added or self.articles_changed or self.articles_removed)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "problems"}
        for key in ("articles_added", "articles_changed", "articles_removed", "articles_unchanged"):
            data[key] = len(data[key])
            data[f"{key}_ids"] = getattr(self, key)
        data["problems"] = [{"path": p.path, "reason": p.reason} for p in self.problems]
        data["seconds"] = round(self.seconds, 3)
        data["embed_seconds"] = round(self.embed_seconds, 3)
        return data

    def describe(self) -> str:
        lines = [
            f"{'Full rebuild' if self.full else 'Index updated'} in {self.seconds:.1f}s: "
            f"{len(self.articles_added)} added, {len(self.articles_changed)} changed, "
            f"{len(self.articles_removed)} removed, {len(self.articles_unchanged)} unchanged; "
            f"{self.chunks_embedded} chunks embedded, {self.chunks_total} in the index."
        ]
        if self.approximate:
            graph = self.approximate
            lines.append(  # .get: a build made before graphs were per segment lacks the per-segment counts
                f"Approximate search (HNSW, M={graph['M']}, efSearch {graph['ef_search']}) over "
                f"{graph.get('live_rows', graph['rows'])} rows in {graph.get('segments', 1)} segment graph(s), "
                f"{graph.get('exact_rows', 0)} rows searched exactly: recall@10 {graph['recall_at_10']:.3f} against "
                f"exact search on {graph['recall_queries']} probes; "
                + (f"graph built in {graph['graph_seconds']:.1f}s." if graph.get("built") else "no graph built.")
            )
        for problem in self.problems:
            lines.append(f"skipped {problem.path}: {problem.reason}")
        return "\n".join(lines)


def index_identity(settings: Settings, embedder: Embedder) -> dict:
    """The manifest entries a query-time configuration must agree with.

    Only what is known without loading the model (the dimension follows from the model; the
    store refuses a query vector of another width)."""
    return {
        "model": embedder.model_id,
        "chunking": chunking_settings(settings),
    }


def chunking_settings(settings: Settings) -> dict:
    return {
        "chunk_tokens": settings.chunk_tokens,
        "overlap_tokens": settings.chunk_overlap_tokens,
        "embed_header": settings.embed_header,
        "lexical_header": settings.lexical_header,
        "splitter": "sentence-paragraph-v1",
    }


def header(article: Article) -> str:
    """The article's context line(s) prefixed to what is embedded and indexed, never shown."""
    byline = ", ".join(part for part in (article.source, article.date) if part)
    return f"{article.title}\n{byline}\n" if byline else f"{article.title}\n"


def embed_key(model_id: str, text: str) -> str:
    return hashlib.sha256(f"{model_id}\0{text}".encode("utf-8")).hexdigest()[:32]


def _chunk_budget(settings: Settings, embedder: Embedder, header_tokens: int) -> int:
    """Chunk size such that header + chunk + [CLS]/[SEP] fit what the model reads.

    Past ``max_tokens`` the model silently truncates, so a longer chunk would be
    retrieved by text it was never embedded with.
    """
    room = embedder.max_tokens - 2 - (header_tokens if settings.embed_header else 0)
    return max(16, min(settings.chunk_tokens, room))


def chunk_articles(articles: list[Article], settings: Settings, embedder: Embedder) -> list[Chunk]:
    """Chunks of each article, in order, sized so header + chunk fit what the model reads."""
    headers = embedder.count_tokens([header(a) for a in articles]) if settings.embed_header else [0] * len(articles)
    chunks: list[Chunk] = []
    for article, header_tokens in zip(articles, headers):
        budget = _chunk_budget(settings, embedder, header_tokens)
        overlap = min(settings.chunk_overlap_tokens, budget // 2 - 1)
        chunks.extend(chunk_article(article, embedder.count_tokens, budget, max(0, overlap)))
    return chunks


# Segments are merged when a build would leave more than this many (each costs a little on
# every load and search), or when more than this share of the stored rows belong to removed
# or replaced articles (they take disk and load time and serve nothing). A merge takes the
# small segments (searched exactly) and those with more than this share dead, so the big
# segments' graphs are not rebuilt because articles keep arriving; only when that is not
# enough is everything merged (see ``_to_merge``).
MAX_SEGMENTS = 16
SCAN_CACHE = ".corpus-scan.sqlite3"
MAX_DEAD_SHARE = 0.25


def _reusable_manifest(settings: Settings, embedder: Embedder, full: bool) -> dict | None:
    """The serving build's manifest when this build can extend it; None for a full build.

    A build that is damaged, of another format, model or chunking is not extended: its rows
    cannot be trusted to match, so everything is chunked and embedded again.
    """
    if full:
        return None
    try:
        manifest = verify_build(settings.index_dir)
    except IndexMissingError:
        return None
    except BotError as exc:
        log.warning("previous index not reused, embedding everything: %s", exc)
        return None
    if manifest.get("model") != embedder.model_id:
        log.info("model changed (%s -> %s): embedding everything", manifest.get("model"), embedder.model_id)
        return None
    if manifest.get("chunking") != chunking_settings(settings):
        log.info("chunking settings changed: chunking and embedding everything")
        return None
    return manifest


def build_index(settings: Settings, embedder: Embedder, *, full: bool = False, progress: bool | None = None) -> BuildReport:
    """Bring ``settings.index_dir`` up to date with ``settings.corpus_dir``: the one entry
    point for every way articles arrive (the CLI, /reindex, the intake).

    Costs what changed: nothing changed is answered from the manifest (no model, nothing
    written); new and changed articles go into a new segment, embedding only chunks whose
    text was never embedded; removed and replaced articles are marked dead in their
    segments; BM25 postings are written for the new segment only (``bot.lexical``).

    Holds the index folder's build lock throughout (see ``store.build_lock``): a second
    build of the same folder waits for this one (up to ``store.BUILD_LOCK_TIMEOUT``, then
    IndexBusyError) and then starts from its result, embedding only what is still new.
    """
    with build_lock(settings.index_dir):  # the time spent waiting for it is not build time
        return _build_locked(settings, embedder, full=full, progress=progress)


def _build_locked(settings: Settings, embedder: Embedder, *, full: bool, progress: bool | None) -> BuildReport:
    started = time.perf_counter()
    ingest = scan_corpus(settings.corpus_dir, max_article_bytes=settings.max_article_bytes,
                         cache=scan_cache_path(settings))
    if not ingest.entries:
        reasons = "; ".join(str(p) for p in ingest.problems[:5])
        raise CorpusError(
            f"no readable article in {settings.corpus_dir}/ ({ingest.files_seen} files seen"
            f"{': ' + reasons if reasons else ''}); add .txt, .md, .html or .json articles there"
        )
    seen_ids: set[str] = set()
    for entry in ingest.entries:  # two files must never claim one id
        if entry.article_id in seen_ids:
            raise CorpusError(f"two articles share the id {entry.article_id!r}; rename one of the files")
        seen_ids.add(entry.article_id)

    old = _reusable_manifest(settings, embedder, full)
    old_hashes: dict[str, str] = old.get("articles", {}) if old else {}
    new_hashes = ingest.hashes
    report = BuildReport(full=old is None, problems=list(ingest.problems), files_read=ingest.files_read)
    for article_id, digest in new_hashes.items():
        if article_id not in old_hashes:
            report.articles_added.append(article_id)
        elif old_hashes[article_id] != digest:
            report.articles_changed.append(article_id)
        else:
            report.articles_unchanged.append(article_id)
    report.articles_removed = sorted(set(old_hashes) - set(new_hashes))

    if old is not None and not report.changed_anything:  # answered from the manifest
        report.chunks_total = report.chunks_reused = int(old.get("chunks_total", 0))
        report.index_path = str(Path(settings.index_dir) / old["build_id"])
        report.approximate = old.get("approximate")
        ingest.save()
        report.seconds = time.perf_counter() - started
        log.info("%s", report.describe())
        return report

    dimension = int(old["dimension"]) if old is not None else embedder.dimension  # a removal needs no model
    replaced = set(report.articles_changed) | set(report.articles_removed)
    kept, old_versions, cached_vectors = _retire(settings, old, replaced)
    fresh = ingest.articles([*report.articles_added, *report.articles_changed])  # only these are read in full
    report.files_read = ingest.files_read
    added, statistics = _new_segment(fresh, settings, embedder, cached_vectors, progress, report)

    vocabulary = read_vocabulary(settings.index_dir, old) if old is not None else empty_statistics()
    for article in old_versions:
        add_statistics(vocabulary, vocabulary_statistics(_vocabulary_texts(article)), -1)
    for part in statistics:
        add_statistics(vocabulary, part)

    merged = _to_merge(kept, len(added.chunks), settings.approximate_above)
    if merged:
        log.info("merging %d of %d segments (%d of their %d stored rows dead)", len(merged) + 1, len(kept) + 1,
                 sum(e["rows"] - e["live_rows"] for e in merged), sum(e["rows"] for e in merged) + len(added.chunks))
        added = Segment.concatenate([*read_segments(settings.index_dir, old, merged), added], dimension)
        kept = [e for e in kept if e not in merged]
    report.chunks_total = sum(e["live_rows"] for e in kept) + len(added.chunks)
    report.chunks_reused = report.chunks_total - report.chunks_embedded

    manifest = {
        **index_identity(settings, embedder),
        "dimension": dimension,
        "articles": {**{k: v for k, v in old_hashes.items() if k not in replaced}, **{a.article_id: new_hashes[a.article_id] for a in fresh}},
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "corpus_dir": str(settings.corpus_dir),
    }
    path = write_build(settings.index_dir, manifest, kept=kept, previous=old, added=added,
                       vocabulary=vocabulary, approximate_above=settings.approximate_above)
    ingest.save()  # the files read are remembered once their articles are in a build
    report.index_path = str(path)
    report.approximate = approximate_summary(path)
    report.seconds = time.perf_counter() - started
    log.info("%s", report.describe())
    return report


def _to_merge(kept: list[dict], added_rows: int, small: int) -> list[dict]:
    """The kept segments to merge with the new one (none when no merge is due): segments of no
    more than ``small`` rows (no graph) and those with more than ``MAX_DEAD_SHARE`` dead rows;
    all of them when merging those would still leave too many segments or dead rows."""
    stored = sum(e["rows"] for e in kept) + added_rows
    dead = sum(e["rows"] - e["live_rows"] for e in kept)
    if not kept or (len(kept) + 1 <= MAX_SEGMENTS and dead <= MAX_DEAD_SHARE * stored):
        return []
    chosen = [e for e in kept if e["rows"] <= small or e["rows"] - e["live_rows"] > MAX_DEAD_SHARE * e["rows"]]
    left = [e for e in kept if e not in chosen]
    if len(left) + 1 > MAX_SEGMENTS or sum(e["rows"] - e["live_rows"] for e in left) > MAX_DEAD_SHARE * stored:
        return kept
    return chosen


def _retire(settings: Settings, old: dict | None, replaced: set[str]) -> tuple[list[dict], list[Article], dict[str, np.ndarray]]:
    """The old build's segments with ``replaced`` articles marked dead; the old versions of
    those articles (their word counts leave the vocabulary); and their chunks' vectors by
    content hash (an edit usually leaves most chunks as they were)."""
    if old is None:
        return [], [], {}
    touched = [e for e in old["segments"] if replaced.intersection(e["articles"]) - set(e["dead"])]
    old_versions: list[Article] = []
    cached: dict[str, np.ndarray] = {}
    dead_rows: dict[str, int] = {}
    for entry, segment in zip(touched, read_segments(settings.index_dir, old, touched, terms=False)):
        old_versions.extend(a for a in segment.articles if a.article_id in replaced)
        for chunk, key, vector in zip(segment.chunks, segment.embed_keys, segment.vectors):
            if chunk.article_id in replaced:
                cached[key] = vector
                dead_rows[entry["name"]] = dead_rows.get(entry["name"], 0) + 1
    kept = []
    for entry in old["segments"]:
        dead = sorted(set(entry["dead"]) | replaced.intersection(entry["articles"]))
        kept.append({**entry, "dead": dead, "live_rows": entry["live_rows"] - dead_rows.get(entry["name"], 0)})
    return kept, old_versions, cached


def _new_segment(articles: list[Article], settings: Settings, embedder: Embedder, cached: dict[str, np.ndarray],
                 progress: bool | None, report: BuildReport) -> tuple[Segment, list[dict]]:
    """Chunks, vectors (embedding only what ``cached`` lacks), BM25 terms and word counts of
    new or changed articles."""
    if not articles:
        return Segment([], [], [], np.zeros((0, 1), np.float32), [], []), []
    chunks = chunk_articles(articles, settings, embedder)
    by_id = {a.article_id: a for a in articles}
    embed_texts = [_embedded_text(by_id[c.article_id], c, settings.embed_header) for c in chunks]
    keys = [embed_key(embedder.model_id, t) for t in embed_texts]
    missing = sorted({k: i for i, k in enumerate(keys) if k not in cached}.values())
    embed_started = time.perf_counter()
    if missing:
        show = sys.stderr.isatty() if progress is None else progress
        fresh = embedder.embed([embed_texts[i] for i in missing], show_progress=show)
        cached = {**cached, **{keys[row]: vector for row, vector in zip(missing, fresh)}}
    report.embed_seconds = time.perf_counter() - embed_started
    report.chunks_embedded = len(missing)
    vectors = np.stack([cached[k] for k in keys]) if keys else np.zeros((0, embedder.dimension), np.float32)
    terms = [tokenize(_embedded_text(by_id[c.article_id], c, settings.lexical_header)) for c in chunks]
    statistics = [vocabulary_statistics(_vocabulary_texts(a)) for a in articles]
    notes = [{"acronyms": s.pop("acronyms")} for s in statistics]
    return Segment(articles, chunks, keys, vectors, terms, notes), statistics


def _vocabulary_texts(article: Article) -> list[str]:
    """What the names vocabulary reads of an article: its title, outlet and text."""
    return [t for t in (article.title, article.source, article.text) if t]


def _embedded_text(article: Article, chunk: Chunk, with_header: bool) -> str:
    return header(article) + chunk.text if with_header else chunk.text


def index_is_stale(settings: Settings, model_id: str | None = None) -> bool:
    """True when the corpus, model, chunking or index format differ from what the serving index
    was built from, or its manifest cannot be read (file checksums are checked by ``load_index``)."""
    try:
        manifest = read_manifest(settings.index_dir)
    except BotError:
        return True
    if manifest is None or manifest.get("format_version") != FORMAT_VERSION:
        return True
    if manifest.get("chunking") != chunking_settings(settings):
        return True
    if manifest.get("model") != (model_id or settings.embedding_model):
        return True
    ingest = scan_corpus(Path(settings.corpus_dir), max_article_bytes=settings.max_article_bytes,
                         cache=scan_cache_path(settings))  # read only: builds write the cache
    return manifest.get("articles") != ingest.hashes


def scan_cache_path(settings: Settings) -> Path:
    """Where builds remember what each corpus file gave (``corpus.scan_corpus``): beside the
    builds, outside any one of them (it describes the corpus, not a build)."""
    return Path(settings.index_dir) / SCAN_CACHE
