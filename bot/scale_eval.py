"""``python -m bot eval scale``: what growing the archive costs, one table in one run.

For each size: the MultiHop-RAG corpus as it is (609 articles, real model), and synthetic
archives of about 10k / 100k chunks (articles made of benchmark paragraphs, vectors from a
hashing embedder: search cost is the same for any unit vectors, and embedding is excluded
from every number anyway). Per size, in a scratch folder:

- full build (synthetic sizes only; the 609 index is the benchmark's own, built once);
- no-op update: ``build_index`` when nothing changed (the model is never loaded);
- add one article: ``build_index`` after writing one new article (model load excluded and
  reported beside it);
- load: a fresh process loads the index the way the bot does (index, vocabulary,
  retriever; the model is lazy) and reports its wall time and resident memory;
- answer p50/p95: ``QuestionAnswerer.ask`` over a set of questions in that process, minus
  the time spent embedding the question;
- recall@10 of the store's dense search against exact (numpy) search on the same vectors
  (the questions' own vectors), asking the store for 10 rows and, as the retriever does, for
  1,000; and for sizes above ``SCALE_APPROXIMATE_ABOVE`` the HNSW graph's build time and the
  recall@10 the build measured on its probes.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from bot.config import Settings
from bot.embedding import normalize

HASHING_MODEL = "synthetic-hashing-384"
# Chunks per synthetic article: the hashing embedder counts words, not word pieces, so a
# MultiHop-RAG article (14.6 model chunks) gives 12.3 (measured: 1,684 chunks from 137).
CHUNKS_PER_ARTICLE = 12.3
SCALE_QUESTIONS = 40  # questions timed per size (p95 of 40 is the second slowest)
DEFAULT_SIZES = (609, 10_000, 100_000)
# The synthetic sizes are built with this APPROXIMATE_ABOVE (not the default 100,000), so the
# 100k archive is searched through the HNSW graph and the 10k one exactly: both paths measured.
SCALE_APPROXIMATE_ABOVE = 50_000

_WORD = re.compile(r"\w+")


class HashingEmbedder:
    """Deterministic bag-of-words hashing vectors (384 wide, unit length), for synthetic
    archives: costs nothing, so builds of 100k chunks finish in minutes; token counts are words."""

    model_id = HASHING_MODEL
    dimension = 384
    max_tokens = 256

    def __init__(self) -> None:
        self._slots: dict[str, int] = {}  # word -> its slot: a synthetic archive repeats its words

    def _slot(self, word: str) -> int:
        slot = self._slots.get(word)
        if slot is None:
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            slot = self._slots[word] = int.from_bytes(digest, "little") % self.dimension
        return slot

    def embed(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        cells: list[int] = []  # row * dimension + slot, once per word
        for row, text in enumerate(texts):
            offset = row * self.dimension
            cells.extend([offset + self._slot(word) for word in _WORD.findall(text.lower())])
        counts = np.bincount(np.asarray(cells, dtype=np.int64), minlength=len(texts) * self.dimension)
        return normalize(counts.reshape(len(texts), self.dimension).astype(np.float32))

    def count_tokens(self, texts: list[str]) -> list[int]:
        return [len(t.split()) for t in texts]


class TimedEmbedder:
    """Wraps an embedder and adds up the seconds spent embedding (to exclude them)."""

    def __init__(self, inner):
        self.inner = inner
        self.model_id = inner.model_id
        self.seconds = 0.0

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    @property
    def max_tokens(self) -> int:
        return self.inner.max_tokens

    def embed(self, texts, *, show_progress: bool = False):
        started = time.perf_counter()
        try:
            return self.inner.embed(texts, show_progress=show_progress)
        finally:
            self.seconds += time.perf_counter() - started

    def count_tokens(self, texts):
        return self.inner.count_tokens(texts)


# Synthetic articles are written this many to a JSON file (about 5 MB): generation holds one
# file's records at a time, and a file stays far below the JSON size limit (50 x 2 MB).
ARTICLES_PER_FILE = 1_000
# Above this many chunks a synthetic archive is built in increments of this many chunks (each
# build adds one segment), as an archive grows: one build of 1M chunks would hold every chunk,
# term list and vector of the archive in memory at once.
BUILD_INCREMENT_CHUNKS = 100_000


def _synthetic_articles(benchmark: list[dict], count: int, seed: int = 11):
    """``count`` records made by shuffling benchmark articles' paragraphs, one at a time."""
    rng = random.Random(seed)
    paragraphs_of = [[p for p in base["body"].split("\n\n") if p.strip()] for base in benchmark]
    for i in range(count):
        base = benchmark[i % len(benchmark)]
        paragraphs = list(paragraphs_of[i % len(benchmark)])
        rng.shuffle(paragraphs)
        yield {
            "title": f"{base['title']} (archive copy {i})",
            "body": "\n\n".join(paragraphs),
            "source": base.get("source"),
            "published_at": base.get("published_at"),
            "url": f"https://archive.example/{i}",
        }


def _synthetic_corpus(benchmark: list[dict], chunks: int, folder: Path, seed: int = 11, parts: int = 1):
    """About ``chunks`` chunks of articles made by shuffling benchmark articles' paragraphs,
    written ``ARTICLES_PER_FILE`` to a JSON file. With ``parts`` > 1, a generator that writes
    the files of each of ``parts`` equal shares in turn and yields the articles written so far
    (build between shares); else the number of articles, all written."""
    count = max(1, round(chunks / CHUNKS_PER_ARTICLE))
    folder.mkdir(parents=True, exist_ok=True)
    files = -(-count // ARTICLES_PER_FILE)
    bounds = [round(files * k / parts) for k in range(parts + 1)]
    records = _synthetic_articles(benchmark, count, seed)

    def write_files(first: int, last: int) -> int:
        for number in range(first, last):
            batch = [next(records) for _ in range(min(ARTICLES_PER_FILE, count - number * ARTICLES_PER_FILE))]
            (folder / f"archive-{number:05d}.json").write_text(json.dumps(batch), encoding="utf-8")
        return min(count, last * ARTICLES_PER_FILE)

    if parts <= 1:
        return write_files(0, files)

    def shares():
        for first, last in zip(bounds, bounds[1:]):
            yield write_files(first, last)

    return shares()


def _settle() -> None:
    """Wait until files just written count as settled for the scan cache (``corpus.UNSETTLED_SECONDS``):
    an archive's files are older than that; a benchmark that has just written them is not."""
    from bot.corpus import UNSETTLED_SECONDS

    time.sleep(UNSETTLED_SECONDS + 0.05)


_NEW_ARTICLE = (
    "---\ntitle: 'A new article for the scale benchmark'\nsource: 'Bench Wire'\ndate: '2023-12-31'\n---\n\n"
    + " ".join(f"Sentence number {i} of the added article reports on the benchmark." for i in range(60))
    + "\n"
)


def _questions(benchmark_dir: Path, count: int) -> list[str]:
    every = json.loads((benchmark_dir / "queries_train.json").read_text(encoding="utf-8"))
    return [item["query"] for item in every[:count]]


def measure_size(label: str, settings: Settings, embedder_factory, questions: list[str], build_full: bool) -> dict:
    """Build (when asked), no-op update, add one article, then load and answer in a fresh process.

    ``build_full``: True for one full build; an iterator (``_synthetic_corpus`` with parts) for
    a full build of its first share and then one incremental build per further share."""
    from bot.embedding import LazyEmbedder
    from bot.indexing import build_index

    row: dict = {"size": label}
    if build_full:
        builds = build_full if isinstance(build_full, Iterator) else iter([None])
        row["full_build_s"], row["builds"] = 0.0, 0
        for _ in builds:  # each step writes its share of the archive first (not timed)
            _settle()
            started = time.perf_counter()
            full = build_index(settings, embedder_factory(), full=row["builds"] == 0, progress=False)
            row["full_build_s"] = round(row["full_build_s"] + time.perf_counter() - started, 2)
            row["builds"] += 1
        row["chunks"] = full.chunks_total
        if full.approximate:
            row["graph_s"] = full.approximate["graph_seconds"]
            row["build_recall_at_10"] = full.approximate["recall_at_10"]
            row["ef_search"] = full.approximate["ef_search"]
    else:  # a corpus copied beside a copied index: its first build reads it once, then remembers it
        _settle()
        build_index(settings, LazyEmbedder(settings.embedding_model), progress=False)
    _settle()  # the scan cache remembers only files older than a moment (bot.corpus)
    lazy = LazyEmbedder(settings.embedding_model)
    started = time.perf_counter()
    noop = build_index(settings, lazy, progress=False)
    row["noop_update_s"] = round(time.perf_counter() - started, 3)
    row["noop_loaded_model"] = lazy.loaded
    row["chunks"] = noop.chunks_total
    started = time.perf_counter()
    embedder = embedder_factory()
    if hasattr(embedder, "load"):
        embedder.load()
    row["model_load_s"] = round(time.perf_counter() - started, 2)
    (Path(settings.corpus_dir) / "zz-added-article.md").write_text(_NEW_ARTICLE, encoding="utf-8")
    started = time.perf_counter()
    added = build_index(settings, embedder, progress=False)
    row["add_one_s"] = round(time.perf_counter() - started, 2)
    row["add_one_embed_s"] = round(added.embed_seconds, 2)
    row["add_one_files_read"] = added.files_read
    if added.approximate:
        row["add_one_graph_s"] = added.approximate["graph_seconds"]
    row.update(_load_and_answer(settings, questions))
    return row


def _load_and_answer(settings: Settings, questions: list[str]) -> dict:
    """Load time, memory, answer latency and recall, measured in a fresh process (so resident
    memory is the index's, not this process's model and builds)."""
    with tempfile.TemporaryDirectory(prefix="newsbot-scale-") as scratch:
        request = Path(scratch) / "request.json"
        request.write_text(json.dumps({"corpus": str(settings.corpus_dir), "index": str(settings.index_dir),
                                       "model": settings.embedding_model, "questions": questions}))
        result = subprocess.run(
            [sys.executable, "-c", "import sys; from bot.scale_eval import serve_child; serve_child(sys.argv[1])", str(request)],
            capture_output=True, text=True, timeout=1800,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the load/answer process failed: {result.stderr.strip()[-800:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def serve_child(request_path: str) -> None:
    """The fresh process of ``_load_and_answer``: prints one JSON line."""
    from bot.embedding import LazyEmbedder
    from bot.retrieval import RetrievalParams
    from bot.service import QuestionAnswerer

    request = json.loads(Path(request_path).read_text())
    settings = Settings.from_mapping({}).with_overrides(
        corpus_dir=Path(request["corpus"]), index_dir=Path(request["index"]), embedding_model=request["model"]
    )
    inner = HashingEmbedder() if request["model"] == HASHING_MODEL else LazyEmbedder(request["model"])
    embedder = TimedEmbedder(inner)
    started = time.perf_counter()
    answerer = QuestionAnswerer(settings, embedder, lazy_model=True).load()
    load_s = time.perf_counter() - started
    rss = _rss_mb()
    if isinstance(inner, LazyEmbedder):
        inner.load()  # the model's load is not an answer's cost
    answerer.ask(request["questions"][0])  # warm caches once
    latencies, vectors = [], []
    for question in request["questions"]:
        embedder.seconds = 0.0
        started = time.perf_counter()
        answerer.ask(question)
        latencies.append(time.perf_counter() - started - embedder.seconds)
        vectors.append(embedder.embed([question])[0])
    index = answerer.serving.index
    queries = np.stack(vectors)
    exact = queries @ index.vectors_array().T
    # A found row counts when exact search would rank it in the top 10: rows tied with the 10th
    # (the same text in two articles) are as right as the one exact search happened to list.
    tenth = -np.partition(-exact, 9, axis=1)[:, 9]

    def recall_of(k: int) -> float:
        found = index.vectors.search(queries, k)[1][:, :10]
        return float(np.mean([np.mean(exact[q, found[q]] >= tenth[q] - 1e-6) for q in range(len(queries))]))

    recall = recall_of(10)
    # The retriever's own path: it asks the store for candidate_pool (1,000) rows per searched text.
    pool_recall = recall_of(RetrievalParams().candidate_pool)
    print(json.dumps({
        "load_s": round(load_s, 2),
        "rss_mb": round(rss),
        "answer_p50_ms": round(1000 * float(np.percentile(latencies, 50)), 1),
        "answer_p95_ms": round(1000 * float(np.percentile(latencies, 95)), 1),
        "recall_at_10": round(recall, 3),
        "pool_recall_at_10": round(pool_recall, 3),
        "store": index.vectors.describe()["index"],
    }))


def eval_scale(settings: Settings, benchmark_dir: Path, bench_root: Path, sizes=DEFAULT_SIZES) -> dict:
    """One row per size (see the module docstring). ``bench_root``: the cached MultiHop-RAG
    corpus and index (``bench/multihop``), built first when stale and copied, never changed."""
    from bot.embedding import LazyEmbedder
    from bot.evaluation import ensure_index, prepare_corpus

    questions = _questions(benchmark_dir, SCALE_QUESTIONS)
    benchmark = json.loads((benchmark_dir / "corpus_train.json").read_text(encoding="utf-8"))
    rows = []
    scratch = Path(tempfile.mkdtemp(prefix="newsbot-scale-"))
    try:
        for size in sizes:
            folder = scratch / str(size)
            if size == len(benchmark):  # the benchmark itself, with the real model
                cached = settings.with_overrides(corpus_dir=prepare_corpus(benchmark_dir, bench_root), index_dir=bench_root / "index")
                ensure_index(cached, LazyEmbedder(settings.embedding_model, settings.embedding_batch_size), progress=False)
                corpus = folder / "corpus"
                corpus.mkdir(parents=True)
                shutil.copy(cached.corpus_dir / "corpus_train.json", corpus)
                shutil.copytree(cached.index_dir, folder / "index", symlinks=True)
                run = settings.with_overrides(corpus_dir=corpus, index_dir=folder / "index")
                factory = lambda run=run: LazyEmbedder(run.embedding_model, run.embedding_batch_size)  # noqa: E731
                rows.append(measure_size(f"{size} articles (MultiHop-RAG)", run, factory, questions, build_full=False))
            else:
                parts = -(-size // BUILD_INCREMENT_CHUNKS)
                articles = max(1, round(size / CHUNKS_PER_ARTICLE))
                written = _synthetic_corpus(benchmark, size, folder / "corpus", parts=parts)
                run = settings.with_overrides(corpus_dir=folder / "corpus", index_dir=folder / "index", embedding_model=HASHING_MODEL,
                                              approximate_above=SCALE_APPROXIMATE_ABOVE)
                steps = f", built in {parts} steps" if parts > 1 else ""
                rows.append(measure_size(f"~{size:,} chunks ({articles:,} synthetic articles{steps})", run, HashingEmbedder, questions,
                                         build_full=written if parts > 1 else True))
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"rows": rows, "questions": len(questions)}


TARGETS = ("targets at 609 articles: no-op <= 1 s, add one <= 2 s beyond model load; at 1M chunks: add one <= 5 s, "
           "load <= 10 s, RSS <= 3 GB, answer p95 <= 150 ms, recall@10 >= 0.95")


def format_scale(report: dict) -> str:
    columns = [
        ("size", "size", 44), ("chunks", "chunks", 8), ("full_build_s", "full build s", 12), ("noop_update_s", "no-op s", 8),
        ("builds", "builds", 7), ("add_one_s", "add one s", 10), ("add_one_embed_s", "(embed s)", 10),
        ("add_one_files_read", "(files read)", 13), ("model_load_s", "model load s", 13),
        ("load_s", "load s", 7), ("rss_mb", "RSS MB", 7), ("answer_p50_ms", "p50 ms", 7), ("answer_p95_ms", "p95 ms", 7),
        ("recall_at_10", "recall@10", 10), ("pool_recall_at_10", "(of 1000)", 10), ("store", "store", 26), ("graph_s", "graph s", 8),
        ("add_one_graph_s", "(+1 graph s)", 13), ("build_recall_at_10", "build recall", 13), ("ef_search", "efSearch", 9),
    ]
    columns = [(key, title, width + (1 if i else 0)) for i, (key, title, width) in enumerate(columns)]
    lines = ["".join(f"{title:>{width}}" if i else f"{title:<{width}}" for i, (_, title, width) in enumerate(columns))]
    for row in report["rows"]:
        cells = []
        for i, (key, _, width) in enumerate(columns):
            value = row.get(key, "")
            text = f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
            cells.append(f"{text:>{width}}" if i else f"{text:<{width}}")
        lines.append("".join(cells))
    lines.append(f"answer p50/p95 exclude the question's embedding ({report['questions']} questions); "
                 "load and RSS: a fresh process loading the index as the bot does (model not loaded); "
                 "recall@10: the store's top 10 against exact search, (of 1000): the top 10 of the 1,000 rows the "
                 "retriever asks per searched text; "
                 f"segments of synthetic sizes above {SCALE_APPROXIMATE_ABOVE:,} chunks are searched through their HNSW "
                 "graph (graph s: its build, build recall: measured by the build on 200 probes), the added article's "
                 "exactly; "
                 f"above {BUILD_INCREMENT_CHUNKS:,} chunks the full build is one build per {BUILD_INCREMENT_CHUNKS:,} "
                 "chunks written (builds: how many; full build s: their sum); " + TARGETS)
    return "\n".join(lines)
