"""The index on disk: the only module that imports faiss.

An index is a directory that describes itself:

- ``manifest.json``: format version, model id, dimension, chunking settings, one
  content hash per article, counts, a build id, a build sequence number, the segments in
  row order and the size and sha256 of every other file of the build (plus its own hash);
- ``segments/<name>/``: the rows one build added, never changed afterwards, so the next
  build hard-links them instead of rewriting them: ``articles.jsonl`` (each article's
  metadata and where its cleaned text lies in ``texts.bin``, the text every chunk offset
  points into), ``chunks.npy`` (per chunk its article, ordinal, offsets, token count and the
  content hash of what was embedded: ``bot.rows.CHUNK_DTYPE``), ``vectors.npy`` (unit float32
  rows, so inner products are cosines), ``terms.jsonl`` (the BM25 terms per chunk, read only
  to merge segments), ``postings_*`` (their BM25 postings, ``bot.lexical.SegmentPostings``)
  and ``notes.jsonl``;
  an article a later build removed or replaced is listed as ``dead`` in its segment's
  manifest entry and skipped on load;
- ``vocabulary.json``: the word counts of the live rows. (BM25 has no global files: its
  statistics over the live rows are computed from the segments' postings on load.)

Row contract: the live rows of the segments, in manifest order, are FAISS ids 0..n-1 and
BM25 documents 0..n-1 (the positional contract the tests check).

The index folder (``index/`` by default) holds builds side by side and a ``current``
symlink. A build is written to a fresh folder and then ``current`` is swapped with one
atomic rename, so a reader never sees half an index and a crashed build leaves the
previous one serving.

Integrity: loading resolves ``current`` once to a concrete build folder and reads only
from it, and refuses a build whose files do not match the checksums its manifest
recorded (reordered chunk rows would otherwise answer with unrelated passages).

Builds are serialized by an exclusive ``flock`` on ``<index>/.build.lock``: a second build
waits (up to ``BUILD_LOCK_TIMEOUT`` seconds) and then starts from the first one's result.
Whoever holds the lock is the only writer, so any ``.build-*.partial`` folder found then
was left by a dead build and is removed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import io
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from bot.errors import BotError, IndexCorruptError, IndexMismatchError, IndexMissingError
from bot.lexical import POSTINGS_FILES, LexicalIndex, SegmentPostings, write_postings
from bot.rows import CHUNK_DTYPE, ArticleTable, ChunkTable, open_texts
from bot.types import Article, Chunk

log = logging.getLogger(__name__)

# 2: the manifest records build_seq, created_at, per-file sha256 ("files") and its own hash.
# 3: rows live in segments shared between builds, with dead (removed or replaced) articles
#    listed per segment; BM25 terms, per-article notes and the vocabulary counts are stored.
# 4: article texts in a segment's texts.bin (read when quoted), chunks as numpy columns in
#    chunks.npy, and each segment's BM25 postings (no global lexical/ folder, nothing
#    rebuilt from all terms): loading parses no per-chunk JSON and holds no text.
FORMAT_VERSION = 4
CURRENT_LINK = "current"
LOCK_FILE = ".build.lock"
SEQ_FILE = ".build.seq"  # the last build_seq handed out (written under the build lock)
# How long a build waits for another one to finish before giving up. A full MultiHop-size
# build takes a few minutes on two cores, so ten minutes covers a real one and still ends
# a wait on a hung process. Not a setting: tests patch this constant.
BUILD_LOCK_TIMEOUT = 600.0
_LOCK_POLL_SECONDS = 0.1
_BUILD_PREFIX = "build-"
MANIFEST = "manifest.json"
# Files a build cannot be loaded without: the manifest must list (and so vouch for) each.
SEGMENTS = "segments"
VOCABULARY = "vocabulary.json"
_SEGMENT_FILES = ("articles.jsonl", "texts.bin", "notes.jsonl", "chunks.npy", "terms.jsonl", "vectors.npy")
# Read when a build reuses or merges segments, never when loading for serving: checked then
# for presence and size only (the full checksum when a build reads them).
_BUILD_ONLY_FILES = ("terms.jsonl",)
_REQUIRED_FILES = (VOCABULARY,)
_REBUILD = "rebuild it with `python -m bot index --full`"

# Bound the threads FAISS uses: the machine has 2 cores and the bot also serves requests.
faiss.omp_set_num_threads(max(1, min(2, os.cpu_count() or 1)))


class IndexIntegrityError(IndexCorruptError):
    """A build's files do not match its manifest (missing, truncated, changed, reordered)."""

    def __init__(self, message: str, build: str = "", file: str = ""):
        super().__init__(message)
        self.build = build
        self.file = file

    def __reduce__(self):
        return (type(self), (str(self), self.build, self.file))


class IndexBusyError(BotError):
    """Another build held the index's build lock for longer than ``BUILD_LOCK_TIMEOUT``."""


class VectorStore(Protocol):
    """The seam retrieval searches through: the only holder of an index's vectors.

    Row ids are store rows (row i is chunk i of the index). Scores are inner products of
    unit vectors, so cosines. The local FAISS store is the default; another backend (a
    server) implements the same methods.
    """

    dimension: int

    def __len__(self) -> int: ...

    def search(self, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (cosines, row ids) per query, -1 ids padding; ``allowed_rows`` (metadata filters)
        is applied inside the search, so a filter never empties a top-k."""
        ...

    def cosines(self, query: np.ndarray) -> np.ndarray:
        """The cosine of every row with one query vector (row i at position i)."""
        ...

    def vectors_of(self, rows) -> np.ndarray:
        """The stored vectors of some rows (for near-duplicate checks), in the order given."""
        ...

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows; returns their ids."""
        ...

    def delete(self, rows: np.ndarray) -> None:
        """Remove rows; later rows move down to keep ids contiguous (the chunk table must drop
        the same rows)."""
        ...

    def describe(self) -> dict:
        """Backend, kind of index, rows and dimension: for logs and ``eval scale``."""
        ...


# The approximate index (issue 11): FAISS HNSW over the stored vectors, exact inner products.
# M=32 and efConstruction 40 (FAISS's default): at 100k clustered 384-d rows the graph builds in
# 19 s on two cores, holds 181 MB (vectors included) and reaches recall@10 0.975 at efSearch 32,
# 1.000 at 64 (0.13 / 0.31 ms a query). efSearch is chosen per build: the smallest of
# HNSW_EF_SEARCH whose recall@10 reaches RECALL_TARGET on RECALL_QUERIES probe queries made
# from the stored vectors (see ``graph_recall``).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = (16, 32, 64, 128, 256, 512, 1024)
# Questions are harder for the graph than the probes: on 6,455 hashing vectors of benchmark
# text, recall@10 at efSearch 16/32/64/128 was 0.95/0.98/0.99/1.00 with stored vectors as
# queries, 0.88/0.95/0.98/0.99 with blends of two, and 0.83/0.92/0.97/0.99 with 300 real
# questions; and the eval's 100k synthetic archive, tuned on stored vectors (efSearch 16, 1.000),
# gave the questions 0.495. So efSearch is chosen on blends, with a margin (0.99). At 100k
# synthetic rows the eval's 40 questions got 0.943 both at efSearch 256 (blends 0.986) and 512
# (blends 0.996): those misses do not come from the width of the search (not yet explained; the
# synthetic archive repeats each benchmark paragraph about 13 times).
RECALL_TARGET = 0.99
RECALL_QUERIES = 200
# The graph is stored with the build (and checksummed like every other file): reading it back
# takes 0.24 s at 100k rows where building it takes 19 s, so a load never builds it.
APPROXIMATE_FILE = "hnsw.faiss"


class FaissStore:
    """The local store: exact inner-product search over unit vectors, or above the build's
    ``APPROXIMATE_ABOVE`` an HNSW graph over the same vectors (``approximate``: how it was
    built and its measured recall@10, from the manifest).

    ``cosines`` reads FAISS's own vector buffer (no copy), so the vectors are held once. The
    scores an HNSW search returns are exact inner products with the stored vectors too; only
    which rows come back is approximate.
    """

    def __init__(self, index: faiss.Index, approximate: dict | None = None):
        self._index = index
        self.dimension = int(index.d)
        self.approximate = approximate if hasattr(index, "hnsw") else None
        if self.approximate is not None:
            index.hnsw.efSearch = int(self.approximate["ef_search"])

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, dimension: int) -> FaissStore:
        store = cls(faiss.IndexFlatIP(dimension))
        if len(vectors):
            store.add(vectors)
        return store

    def __len__(self) -> int:
        return int(self._index.ntotal)

    @property
    def ntotal(self) -> int:
        return len(self)

    def _view(self) -> np.ndarray:
        """FAISS's vector buffer as a read-only numpy array (valid until the next add/delete)."""
        return _vector_view(self._index)

    def search(self, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, len(self)))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        check_dimension(queries.shape[-1], self.dimension, "this store")
        if self.approximate is not None:
            return self._search_graph(queries, k, allowed_rows)
        if allowed_rows is None:
            return self._index.search(queries, k)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_rows, dtype=np.int64))
        return self._index.search(queries, k, params=faiss.SearchParameters(sel=selector))

    def _search_graph(self, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None):
        ef_search = int(self.approximate["ef_search"])
        if allowed_rows is None:
            return self._index.search(queries, k, params=faiss.SearchParametersHNSW(efSearch=max(ef_search, k)))
        allowed = np.unique(np.asarray(allowed_rows, dtype=np.int64))
        allowed = allowed[(allowed >= 0) & (allowed < len(self))]
        if len(allowed) <= int(self.approximate.get("above", 0)):
            # A filter leaving no more rows than exact search is used for: search them exactly,
            # cheaper than a walk widened to most of the graph (the results are the same).
            return _exact_top_k(queries, self._view(), allowed, k)
        # Fewer allowed rows means fewer of the nodes the walk visits count: widen it in proportion.
        widened = min(len(self), max(ef_search, k) * -(-len(self) // len(allowed)))
        params = faiss.SearchParametersHNSW(sel=faiss.IDSelectorBatch(allowed), efSearch=int(widened))
        return self._index.search(queries, k, params=params)

    def cosines(self, query: np.ndarray) -> np.ndarray:
        check_dimension(query.shape[-1], self.dimension, "this store")
        return self._view() @ np.asarray(query, dtype=np.float32)

    def vectors_of(self, rows) -> np.ndarray:
        return self._view()[np.asarray(rows, dtype=np.int64)]

    def add(self, vectors: np.ndarray) -> np.ndarray:
        start = len(self)
        self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        return np.arange(start, len(self), dtype=np.int64)

    def delete(self, rows: np.ndarray) -> None:
        if self.approximate is None:
            self._index.remove_ids(np.ascontiguousarray(rows, dtype=np.int64))
            return
        # FAISS cannot remove nodes from an HNSW graph: rebuild it from the remaining rows.
        keep = np.setdiff1d(np.arange(len(self)), np.asarray(rows, dtype=np.int64))
        self._index = build_graph(np.array(self._view()[keep]))
        self._index.hnsw.efSearch = int(self.approximate["ef_search"])

    def describe(self) -> dict:
        description = {"backend": "faiss", "index": type(self._index).__name__, "rows": len(self),
                       "dimension": self.dimension, "exact": self.approximate is None}
        if self.approximate is not None:
            description.update({key: self.approximate[key] for key in ("M", "ef_search", "recall_at_10", "recall_queries")})
        return description


def _vector_view(index: faiss.Index) -> np.ndarray:
    """An index's stored vectors (a flat index's, or an HNSW graph's storage) without a copy."""
    rows, dimension = int(index.ntotal), int(index.d)
    if rows == 0:
        return np.zeros((0, dimension), dtype=np.float32)
    flat = faiss.downcast_index(index.storage) if hasattr(index, "hnsw") else index
    view = faiss.rev_swig_ptr(flat.get_xb(), rows * dimension).reshape(rows, dimension)
    view.flags.writeable = False
    return view


def _exact_top_k(queries: np.ndarray, vectors: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (inner products, row ids) among ``rows`` by exact search, -1 padding like FAISS."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    ids = np.full((len(queries), k), -1, dtype=np.int64)
    if len(rows) == 0:
        return scores, ids
    products = queries @ vectors[rows].T
    take = min(k, len(rows))
    best = np.argpartition(-products, take - 1, axis=1)[:, :take]
    for q in range(len(queries)):
        order = best[q][np.argsort(-products[q, best[q]], kind="stable")]
        scores[q, :take], ids[q, :take] = products[q, order], rows[order]
    return scores, ids


def build_graph(vectors: np.ndarray, graph: faiss.Index | None = None) -> faiss.Index:
    """An HNSW graph (inner product) over ``vectors``, or ``graph`` with them appended."""
    if graph is None:
        graph = faiss.IndexHNSWFlat(int(vectors.shape[1]), HNSW_M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    if len(vectors):
        graph.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return graph


def recall_probes(vectors: np.ndarray, count: int = RECALL_QUERIES, seed: int = 0) -> np.ndarray:
    """``count`` unit queries, each the normalized sum of two stored vectors (a seeded sample)."""
    rng = np.random.default_rng(seed)
    count = min(count, len(vectors))
    probes = vectors[rng.choice(len(vectors), size=count, replace=False)] + vectors[rng.choice(len(vectors), size=count)]
    probes /= np.maximum(np.linalg.norm(probes, axis=1, keepdims=True), 1e-12)
    return np.ascontiguousarray(probes, dtype=np.float32)


def graph_recall(graph: faiss.Index, queries: int = RECALL_QUERIES, seed: int = 0) -> tuple[int, float]:
    """(efSearch, recall@10): the smallest ``HNSW_EF_SEARCH`` whose top 10 reaches ``RECALL_TARGET``
    against exact search on ``queries`` probes: each the normalized sum of two stored vectors
    (a seeded sample), which, like a question, is close to no stored row (a stored vector used
    as its own query finds itself and overstates recall, see ``RECALL_TARGET``).

    A returned row counts when exact search would rank it in the top 10: rows tied with the
    10th (the same text in two articles) are as right as the one exact search happened to list.
    """
    vectors = _vector_view(graph)
    sample = recall_probes(vectors, queries, seed)
    k = min(10, len(vectors))
    tenth = np.empty(len(sample), dtype=np.float32)
    for start in range(0, len(sample), 20):  # 20 x rows products at a time: bounded memory at 1M rows
        products = sample[start:start + 20] @ vectors.T
        tenth[start:start + 20] = -np.partition(-products, k - 1, axis=1)[:, k - 1]
    recall = 0.0
    for ef_search in HNSW_EF_SEARCH:
        scores, _ = graph.search(sample, k, params=faiss.SearchParametersHNSW(efSearch=ef_search))
        # The scores FAISS returns are the exact inner products of the rows it found.
        recall = float(np.mean(scores >= tenth[:, None] - 1e-5))
        if recall >= RECALL_TARGET:
            break
    return ef_search, round(recall, 4)


@dataclass
class StoredIndex:
    """Everything a query needs: row i of each table is the same chunk. Columns and metadata
    are in memory; article texts are read from disk when quoted."""

    manifest: dict
    articles: Mapping[str, Article]  # a ``bot.rows.ArticleTable`` when loaded: texts read on demand
    chunks: Sequence[Chunk]  # a ``bot.rows.ChunkTable`` when loaded: columns, text on demand
    vectors: VectorStore
    lexical: LexicalIndex
    path: Path  # the concrete build folder everything was read from (never ``current``)
    vocabulary: dict | None = None  # word counts of the live articles (``bot.names.Vocabulary.from_statistics``)
    article_notes: list[dict] | None = None  # per article, in ``articles`` order (e.g. its acronyms)

    @property
    def build_id(self) -> str:
        return self.manifest["build_id"]

    @property
    def build_seq(self) -> int:
        """1 for the first build of an index folder, previous + 1 after (0: unknown)."""
        return int(self.manifest.get("build_seq", 0))

    @property
    def created_at(self) -> float:
        """Unix time the build was written (0.0: unknown)."""
        return float(self.manifest.get("created_at", 0.0))

    def supersedes(self, other: StoredIndex | None) -> bool:
        """Whether a server holding ``other`` should switch to this build.

        True for a strictly later build of the same index folder; False for the same
        build or an older one (a slow load finishing after a newer one). When ``other``'s
        folder is gone from disk (the index folder was wiped and rebuilt, restarting the
        sequence), whatever is on disk now wins.
        """
        if other is None:
            return True
        if self.build_id == other.build_id:
            return False
        if other.path is not None and not (Path(other.path) / MANIFEST).is_file():
            return True
        if self.build_seq != other.build_seq:
            return self.build_seq > other.build_seq
        return self.created_at > other.created_at

    def search(self, query_vectors: np.ndarray, k: int, allowed_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products (cosines) and row ids from the vector store (see ``VectorStore.search``)."""
        return self.vectors.search(query_vectors, k, allowed_rows)

    def vectors_array(self) -> np.ndarray:
        """All stored vectors (row i is chunk i), a copy: for tests and tools, not for serving."""
        return np.array(self.vectors.vectors_of(np.arange(len(self.vectors))), dtype=np.float32).reshape(-1, self.vectors.dimension)


def check_dimension(query_width: int, index_width: int, where) -> None:
    """Refuse a query vector of another width than the index's (a model with another dimension)."""
    if query_width != index_width:
        raise IndexMismatchError(
            f"the index in {where} holds {index_width}-dimensional vectors but the model gives {query_width}; "
            "rebuild it with `python -m bot index --full`, or change EMBEDDING_MODEL back"
        )


def new_flat_index(vectors: np.ndarray, dimension: int) -> FaissStore:
    return FaissStore.from_vectors(vectors, dimension)


# -- finding the serving build ------------------------------------------------------------


def resolve_current(index_dir: Path) -> Path | None:
    """The concrete folder ``current`` points at, resolved once; None when nothing was built.

    Raises IndexCorruptError (never RuntimeError/OSError) for a symlink loop, a dangling
    link or a link to something that is not a folder.
    """
    link = Path(index_dir) / CURRENT_LINK
    if not os.path.lexists(link):
        return None
    try:
        target = link.resolve(strict=True)
    except FileNotFoundError:
        raise IndexCorruptError(
            f"{link} points to {_readlink(link)!r}, which does not exist; {_REBUILD}"
        ) from None
    except (RuntimeError, OSError) as exc:  # RuntimeError: "Symlink loop" (OSError ELOOP on newer Pythons)
        raise IndexCorruptError(
            f"{link} cannot be resolved: it is a symlink loop or unreadable ({exc}); {_REBUILD}"
        ) from None
    if not target.is_dir():
        raise IndexCorruptError(f"{link} points to {target}, which is not a build folder; {_REBUILD}")
    return target


def _readlink(link: Path) -> str:
    try:
        return os.readlink(link)
    except OSError:
        return "?"


def current_path(index_dir: Path) -> Path | None:
    """The folder of the build now serving, or None when nothing (usable) was ever built."""
    try:
        target = resolve_current(index_dir)
    except BotError:
        return None
    return target if target is not None and (target / MANIFEST).is_file() else None


def current_build_id(index_dir: Path) -> str | None:
    """Cheap to call often: lets a running bot notice a rebuild by another process."""
    path = current_path(index_dir)
    return path.name if path else None


# -- writing --------------------------------------------------------------------------------

_held_locks = threading.local()


@contextlib.contextmanager
def build_lock(index_dir: Path, timeout: float | None = None):
    """Hold the index folder's exclusive build lock (re-entrant within one thread).

    Waits for another build (logging "another build is running; waiting") for at most
    ``timeout`` seconds (default ``BUILD_LOCK_TIMEOUT``), then raises IndexBusyError. The
    lock is a ``flock`` on ``<index>/.build.lock``, so it is released by the kernel when its
    holder dies: a killed build never blocks the next one. On acquiring it, leftovers of
    dead builds (``.build-*.partial`` folders, temporary ``current`` links) are removed:
    every writer holds this lock, so none of them can belong to a live build.
    """
    index_dir = Path(index_dir)
    index_dir.mkdir(parents=True, exist_ok=True)
    key = str(index_dir.resolve())
    held: set[str] = _held_locks.__dict__.setdefault("dirs", set())
    if key in held:
        yield
        return
    limit = BUILD_LOCK_TIMEOUT if timeout is None else timeout
    fd = os.open(index_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + limit
        waited_since = None
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
            if waited_since is None:
                waited_since = time.monotonic()
                log.warning(
                    "another build is running; waiting (up to %.0f s) for it to finish (lock %s held by %s)",
                    limit, index_dir / LOCK_FILE, _lock_holder(fd),
                )
            if time.monotonic() >= deadline:
                raise IndexBusyError(
                    f"another build of {index_dir} has been running for over {limit:.0f} s "
                    f"(lock {index_dir / LOCK_FILE} held by {_lock_holder(fd)}); let it finish or stop it, then run "
                    "`python -m bot index` again"
                )
            time.sleep(_LOCK_POLL_SECONDS)
        if waited_since is not None:
            log.warning("the other build finished after %.1f s; building now", time.monotonic() - waited_since)
        held.add(key)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
            _remove_dead_leftovers(index_dir)
            yield
        finally:
            held.discard(key)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_holder(fd: int) -> str:
    try:
        return os.pread(fd, 64, 0).decode(errors="replace").strip() or "another process"
    except OSError:
        return "another process"


def _remove_dead_leftovers(index_dir: Path) -> None:
    """Under the build lock: partial folders and temporary links of builds that died."""
    for path in index_dir.glob(f".{_BUILD_PREFIX}*.partial"):
        log.info("removing %s, left by a build that did not finish", path.name)
        shutil.rmtree(path, ignore_errors=True)
    for path in index_dir.glob(f".{CURRENT_LINK}.*"):
        if path.is_symlink():
            with contextlib.suppress(OSError):
                path.unlink()


def _latest_seq(index_dir: Path) -> int:
    """The highest build_seq handed out in this folder (0 when none): the counter file, or any
    build's manifest if that is higher (the counter survives damaged or deleted manifests)."""
    latest = 0
    with contextlib.suppress(OSError, ValueError):
        latest = int((index_dir / SEQ_FILE).read_text().strip())
    for path in index_dir.iterdir():
        if not path.name.startswith(_BUILD_PREFIX) or not path.is_dir():
            continue
        try:
            seq = json.loads((path / MANIFEST).read_text(encoding="utf-8")).get("build_seq", 0)
            latest = max(latest, int(seq))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return latest


def _sha256_file(path: Path) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _manifest_digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


@dataclass
class Segment:
    """Rows one build adds, in order: an immutable folder ``segments/<name>/`` that later
    builds share (hard links) instead of rewriting.

    ``chunks``, ``embed_keys``, ``vectors`` and ``terms`` line up row for row (``terms[i]``:
    the BM25 terms of chunk i); ``articles`` and ``article_notes`` line up article for article
    (a note is a small JSON object the index keeps per article, e.g. its acronyms).
    """

    articles: list[Article]
    chunks: list[Chunk]
    embed_keys: list[str]
    vectors: np.ndarray
    terms: list[list[str]]
    article_notes: list[dict]

    def __post_init__(self):
        if not len(self.chunks) == len(self.vectors) == len(self.embed_keys) == len(self.terms):
            raise ValueError("chunks, keys, vectors and terms must line up row for row")
        if len(self.articles) != len(self.article_notes):
            raise ValueError("articles and their notes must line up")

    @classmethod
    def concatenate(cls, parts: list[Segment], dimension: int) -> Segment:
        vectors = [p.vectors for p in parts if len(p.vectors)]
        return cls(
            [a for p in parts for a in p.articles],
            [c for p in parts for c in p.chunks],
            [k for p in parts for k in p.embed_keys],
            np.concatenate(vectors) if vectors else np.zeros((0, dimension), np.float32),
            [t for p in parts for t in p.terms],
            [n for p in parts for n in p.article_notes],
        )


def segment_entry(name: str, segment: Segment) -> dict:
    """A segment as the manifest lists it: its articles (in order), rows, and the articles
    later builds removed or replaced (``dead``: their rows are skipped when loading;
    ``live_rows`` counts the others)."""
    rows = len(segment.chunks)
    return {"name": name, "articles": [a.article_id for a in segment.articles], "rows": rows, "live_rows": rows, "dead": []}


def _write_segment(folder: Path, segment: Segment) -> None:
    folder.mkdir(parents=True)
    position = {}
    with open(folder / "articles.jsonl", "w", encoding="utf-8") as out, open(folder / "texts.bin", "wb") as texts:
        offset = 0
        for number, article in enumerate(segment.articles):
            data = article.text.encode("utf-8")
            texts.write(data)
            record = article.to_dict()
            del record["text"]  # in texts.bin, read when quoted (see bot.rows)
            out.write(json.dumps({**record, "text_at": [offset, len(data)]}, ensure_ascii=False) + "\n")
            offset += len(data)
            position[article.article_id] = number
    with open(folder / "notes.jsonl", "w", encoding="utf-8") as out:
        for note in segment.article_notes:
            out.write(json.dumps(note, ensure_ascii=False) + "\n")
    rows = np.zeros(len(segment.chunks), dtype=CHUNK_DTYPE)
    if segment.chunks:
        rows["article"] = [position[c.article_id] for c in segment.chunks]
        for column in ("ordinal", "start", "end", "token_count"):
            rows[column] = [getattr(c, column) for c in segment.chunks]
        rows["embed_key"] = [key.encode("ascii") for key in segment.embed_keys]
    np.save(folder / "chunks.npy", rows, allow_pickle=False)
    with open(folder / "terms.jsonl", "w", encoding="utf-8") as out:
        for chunk, terms in zip(segment.chunks, segment.terms):  # the article id: dead rows are skipped unparsed
            out.write(json.dumps([chunk.article_id, terms], ensure_ascii=False) + "\n")
    np.save(folder / "vectors.npy", np.ascontiguousarray(segment.vectors, dtype=np.float32), allow_pickle=False)
    write_postings(folder, segment.terms, [c.article_id for c in segment.chunks], [a.article_id for a in segment.articles])


def _link_or_copy(source: Path, target: Path) -> None:
    """Share an immutable file with the previous build (a copy where links are not possible).
    No build ever writes into an existing file, so sharing is safe."""
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def write_build(
    index_dir: Path,
    manifest: dict,
    *,
    kept: list[dict],
    previous: dict | None,
    added: Segment | None,
    vocabulary: dict,
    approximate_above: int | None = None,
) -> Path:
    """Write a build beside the old one, then swap ``current`` to it atomically.

    ``kept``: manifest entries of the segments of the build ``previous`` (its manifest) that
    this build keeps, their ``dead`` lists updated; their files are hard-linked and their
    checksums carried over, so an update costs what it adds. ``added``: the new segment
    (its BM25 postings written with it: nothing lexical is rebuilt from the kept segments).
    ``vocabulary``: the running word counts of the live articles (``bot.names``).
    ``approximate_above``: with more live rows than this, an HNSW graph is stored as well
    (added to the previous build's graph when this build only appends rows) and its measured
    recall@10 recorded in the manifest's ``approximate`` entry (None: exact search only).
    Takes the build lock (re-entrant: ``build_index`` already holds it).
    """
    with build_lock(index_dir):
        serving = current_path(index_dir)
        build_id = f"{_BUILD_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
        staging = index_dir / f".{build_id}.partial"
        staging.mkdir()
        try:
            seq = _latest_seq(index_dir) + 1
            old_folder = index_dir / previous["build_id"] if previous else None
            old_files = previous["files"] if kept else {}
            files: dict[str, dict] = {}
            segments = []
            for entry in kept:
                prefix = f"{SEGMENTS}/{entry['name']}/"
                (staging / prefix).mkdir(parents=True)
                for name, checksum in old_files.items():
                    if name.startswith(prefix):
                        _link_or_copy(old_folder / name, staging / name)
                        files[name] = checksum
                segments.append(entry)
            written: list[Path] = []
            if added is not None and added.chunks:
                name = f"seg-{seq:06d}-{uuid.uuid4().hex[:8]}"
                _write_segment(staging / SEGMENTS / name, added)
                segments.append(segment_entry(name, added))
                written.extend((staging / SEGMENTS / name).iterdir())
            (staging / VOCABULARY).write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
            written.append(staging / VOCABULARY)
            live_rows = sum(int(e["live_rows"]) for e in segments)
            approximate = None
            if approximate_above is not None and live_rows > approximate_above:
                approximate = _write_graph(staging, index_dir, previous, kept, added, files, approximate_above)
                written.append(staging / APPROXIMATE_FILE)
            # Hash what is on disk (not what we meant to write), and make it durable: a
            # power cut after the rename must not leave a build whose files are empty.
            for path in written:
                _fsync(path)
                sha, size = _sha256_file(path)
                files[path.relative_to(staging).as_posix()] = {"sha256": sha, "bytes": size}
            manifest = {
                **manifest,
                "format_version": FORMAT_VERSION,
                "build_id": build_id,
                "build_seq": seq,
                "created_at": time.time(),
                "segments": segments,
                "chunks_total": live_rows,
                "articles_total": len(manifest.get("articles", {})),
                "files": dict(sorted(files.items())),
                "approximate": approximate,
            }
            manifest["manifest_sha256"] = _manifest_digest(manifest)
            # The manifest goes last: a folder without one is never taken for a build.
            with open(staging / MANIFEST, "w", encoding="utf-8") as out:
                out.write(json.dumps(manifest, indent=1, ensure_ascii=False))
                out.flush()
                os.fsync(out.fileno())
            for folder in {p.parent for p in written} | {staging}:
                _fsync(folder)
            final = index_dir / build_id
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _swap_current(index_dir, build_id)
        with contextlib.suppress(OSError):
            (index_dir / SEQ_FILE).write_text(f"{seq}\n")
        _remove_old_builds(index_dir, keep={build_id} | ({serving.name} if serving else set()))
        return final


def _write_graph(staging: Path, index_dir: Path, previous: dict | None, kept: list[dict], added: Segment | None,
                 files: dict[str, dict], above: int) -> dict:
    """Write the build's HNSW graph into ``staging`` and say how it was made and how good it is.

    When this build keeps every segment of a previous build that had a graph, with no new dead
    rows, the rows only grew: the previous graph is read (checked) and the new rows added to
    it, so adding an article does not rebuild the graph. Otherwise it is built from the live
    vectors of the kept segments (checked against their carried-over checksums) and the new one.
    """
    started = time.perf_counter()
    new_vectors = added.vectors if added is not None and added.chunks else np.zeros((0, 0), np.float32)
    graph = None
    old = (previous or {}).get("approximate")
    same_rows = [(e["name"], sorted(e.get("dead", ()))) for e in kept] == \
        [(e["name"], sorted(e.get("dead", ()))) for e in (previous or {}).get("segments", [])]
    if old and kept and same_rows and APPROXIMATE_FILE in previous.get("files", {}):
        old_folder = index_dir / previous["build_id"]
        raw = _Verifier(old_folder, index_dir).read(APPROXIMATE_FILE, previous["files"][APPROXIMATE_FILE])
        graph = faiss.deserialize_index(np.frombuffer(raw, dtype=np.uint8))
        if int(graph.ntotal) != int(old.get("rows", -1)):
            graph = None  # not the graph the manifest describes: build it again
    incremental = graph is not None
    if incremental:
        graph = build_graph(new_vectors, graph) if len(new_vectors) else graph
    else:
        verifier = _Verifier(staging, index_dir)
        parts = []
        for entry in kept:
            prefix = f"{SEGMENTS}/{entry['name']}/"
            data = {prefix + n: verifier.read(prefix + n, files[prefix + n]) for n in _SEGMENT_FILES if n != "terms.jsonl"}
            parts.append(_segment_rows(data, prefix, entry, terms=False).vectors)
        if len(new_vectors):
            parts.append(new_vectors)
        graph = build_graph(np.concatenate(parts))
    built_s = time.perf_counter() - started
    ef_search, recall = graph_recall(graph)
    faiss.write_index(graph, str(staging / APPROXIMATE_FILE))
    summary = {
        "kind": "HNSWFlat", "M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": ef_search,
        "recall_at_10": recall, "recall_queries": min(RECALL_QUERIES, int(graph.ntotal)), "rows": int(graph.ntotal),
        "above": int(above), "graph_seconds": round(built_s, 2), "incremental": incremental,
    }
    log.info("approximate index: HNSW over %d rows (%s) in %.1f s, recall@10 %.3f against exact at efSearch %d",
             graph.ntotal, "rows added to the previous graph" if incremental else "built", built_s, recall, ef_search)
    return summary


def approximate_summary(build_path: Path) -> dict | None:
    """The ``approximate`` entry of a written build's manifest (None: exact search only)."""
    return _parse_manifest(Path(build_path), Path(build_path).parent).get("approximate")


def _swap_current(index_dir: Path, build_id: str) -> None:
    tmp_link = index_dir / f".{CURRENT_LINK}.{uuid.uuid4().hex[:8]}"
    os.symlink(build_id, tmp_link)
    os.replace(tmp_link, index_dir / CURRENT_LINK)  # atomic on POSIX
    with contextlib.suppress(OSError):
        _fsync(index_dir)


def _remove_old_builds(index_dir: Path, keep: set[str]) -> None:
    """Drop superseded builds (under the build lock).

    The build just replaced is kept one generation longer, so a reader that resolved
    ``current`` a moment before the swap can still finish loading it.
    """
    for path in index_dir.iterdir():
        if path.name.startswith(_BUILD_PREFIX) and path.is_dir() and not path.is_symlink() and path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)


# -- reading --------------------------------------------------------------------------------


def _read_file(folder: Path, name: str) -> bytes:
    """One file of a build, as bytes (the single place a load reads a build file)."""
    return (folder / name).read_bytes()


def _parse_manifest(folder: Path, index_dir: Path) -> dict:
    try:
        raw = _read_file(folder, MANIFEST)
    except FileNotFoundError:
        raise IndexIntegrityError(
            f"index build {folder.name} in {index_dir} has no {MANIFEST}; {_REBUILD}", folder.name, MANIFEST
        ) from None
    except OSError as exc:
        raise IndexIntegrityError(
            f"cannot read {MANIFEST} of index build {folder.name} in {index_dir} ({exc}); {_REBUILD}", folder.name, MANIFEST
        ) from exc
    try:
        manifest = json.loads(raw.decode("utf-8"))
    except ValueError as exc:
        raise IndexIntegrityError(
            f"index build {folder.name} in {index_dir} is damaged: {MANIFEST} is not valid JSON ({exc}); {_REBUILD}",
            folder.name, MANIFEST,
        ) from exc
    if not isinstance(manifest, dict):
        raise IndexIntegrityError(
            f"index build {folder.name} in {index_dir} is damaged: {MANIFEST} is not a JSON object; {_REBUILD}",
            folder.name, MANIFEST,
        )
    return manifest


def read_manifest(index_dir: Path) -> dict | None:
    """The serving build's manifest (not verified: for cheap staleness checks), or None."""
    folder = resolve_current(index_dir)
    if folder is None:
        return None
    return _parse_manifest(folder, Path(index_dir))


def check_format(manifest: dict, index_dir: Path) -> None:
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index in {index_dir} has format version {manifest.get('format_version')}, this code reads "
            f"{FORMAT_VERSION}; rebuild it with `python -m bot index --full`"
        )


def check_compatible(manifest: dict, expected: dict, index_dir: Path) -> None:
    """Refuse an index built with other settings, saying what differs and what to run."""
    check_format(manifest, index_dir)
    differences = [
        f"{key}: index has {manifest.get(key)!r}, settings say {value!r}"
        for key, value in expected.items()
        if manifest.get(key) != value
    ]
    if differences:
        raise IndexMismatchError(
            f"the index in {index_dir} was built with other settings ({'; '.join(differences)}); "
            "rebuild it with `python -m bot index --full`, or change the settings back"
        )


class _Verifier:
    """Reads a build's files and checks each against the size and sha256 in its manifest."""

    def __init__(self, folder: Path, index_dir: Path):
        self.folder, self.index_dir = folder, index_dir
        self.build = folder.name

    def fail(self, name: str, what: str) -> IndexIntegrityError:
        return IndexIntegrityError(
            f"index build {self.build} in {self.index_dir} failed verification: {name} {what}; "
            f"the index is damaged, {_REBUILD}",
            self.build, name,
        )

    def check_manifest(self, manifest: dict) -> dict[str, dict]:
        if manifest.get("manifest_sha256") != _manifest_digest(manifest):
            raise self.fail(MANIFEST, "does not match its recorded hash (it was edited or damaged)")
        files = manifest.get("files")
        if not isinstance(files, dict):
            raise self.fail(MANIFEST, "lists no file checksums")
        for name, entry in files.items():
            parts = Path(name).parts
            if Path(name).is_absolute() or ".." in parts or not isinstance(entry, dict):
                raise self.fail(MANIFEST, f"has an invalid file entry {name!r}")
        segments = manifest.get("segments")
        if not isinstance(segments, list) or not all(isinstance(e, dict) and isinstance(e.get("name"), str) for e in segments):
            raise self.fail(MANIFEST, "lists no valid segments")
        required = [*_REQUIRED_FILES, *(f"{SEGMENTS}/{e['name']}/{n}" for e in segments for n in (*_SEGMENT_FILES, *POSTINGS_FILES))]
        if manifest.get("approximate"):
            required.append(APPROXIMATE_FILE)
        for name in required:
            if name not in files:
                raise self.fail(MANIFEST, f"does not list {name}")
        return files

    def read(self, name: str, entry: dict) -> bytes:
        try:
            data = _read_file(self.folder, name)
        except FileNotFoundError:
            raise self.fail(name, "is missing") from None
        except OSError as exc:
            raise self.fail(name, f"cannot be read ({exc})") from exc
        self.check(name, entry, data)
        return data

    def check_present(self, name: str, entry: dict) -> None:
        """Presence and size only: for a file this reader does not use (a build that reads it
        checks its sha256 then)."""
        try:
            size = (self.folder / name).stat().st_size
        except FileNotFoundError:
            raise self.fail(name, "is missing") from None
        if size != entry.get("bytes"):
            raise self.fail(name, f"has {size} bytes, the manifest recorded {entry.get('bytes')} (truncated or changed)")

    def open_mapped(self, name: str, entry: dict):
        """The file checked by streaming it (its bytes are not held), then memory-mapped."""
        self.check_present(name, entry)
        try:
            sha, _ = _sha256_file(self.folder / name)
            mapped = open_texts(self.folder / name)
        except OSError as exc:
            raise self.fail(name, f"cannot be read ({exc})") from exc
        if sha != entry.get("sha256"):
            raise self.fail(name, "does not match its sha256 checksum (changed, reordered or corrupted)")
        return mapped

    def check(self, name: str, entry: dict, data: bytes) -> None:
        if len(data) != entry.get("bytes"):
            raise self.fail(name, f"has {len(data)} bytes, the manifest recorded {entry.get('bytes')} (truncated or changed)")
        if hashlib.sha256(data).hexdigest() != entry.get("sha256"):
            raise self.fail(name, "does not match its sha256 checksum (changed, reordered or corrupted)")


def _open_build(index_dir: Path, expected: dict | None) -> tuple[Path, dict, _Verifier, dict[str, dict]]:
    """The serving build's folder (``current`` resolved once), its checked manifest, and its files."""
    index_dir = Path(index_dir)
    folder = resolve_current(index_dir)
    if folder is None:
        raise IndexMissingError(f"no index in {index_dir}/; build it with `python -m bot index`")
    manifest = _parse_manifest(folder, index_dir)
    check_format(manifest, index_dir)
    if expected:
        check_compatible(manifest, expected, index_dir)
    verifier = _Verifier(folder, index_dir)
    return folder, manifest, verifier, verifier.check_manifest(manifest)


def verify_build(index_dir: Path, expected: dict | None = None) -> dict:
    """The serving build's manifest once every file matches its checksum (raises like
    ``load_index``); what an index run with nothing to do checks before saying so."""
    _, manifest, verifier, files = _open_build(index_dir, expected)
    for name, entry in files.items():
        verifier.read(name, entry)
    return manifest


def _article_records(raw: bytes) -> list[tuple[Article, tuple[int, int]]]:
    """Each line of a segment's articles.jsonl: the article without its text, and where its
    text lies in texts.bin (byte offset, length)."""
    records = []
    for line in raw.decode("utf-8").splitlines():
        record = json.loads(line)
        offset, length = record.pop("text_at")
        records.append((Article.from_dict({**record, "text": ""}), (int(offset), int(length))))
    return records


def _chunk_rows(raw: bytes) -> np.ndarray:
    rows = np.load(io.BytesIO(raw), allow_pickle=False)
    if rows.dtype != CHUNK_DTYPE or rows.ndim != 1:
        raise ValueError(f"chunks.npy holds {rows.dtype} rows, not {CHUNK_DTYPE}")
    return rows


def _segment_rows(data: dict[str, bytes], prefix: str, entry: dict, *, terms: bool) -> Segment:
    """The live rows of one segment (articles the manifest marks dead skipped), texts included:
    what a build reuses or merges."""
    dead = set(entry.get("dead", ()))
    texts = data[prefix + "texts.bin"]
    records = _article_records(data[prefix + "articles.jsonl"])
    notes = data[prefix + "notes.jsonl"].decode("utf-8").splitlines()
    articles, live_notes = [], []
    for (meta, (offset, length)), note in zip(records, notes):
        if meta.article_id not in dead:
            articles.append(dataclasses.replace(meta, text=texts[offset : offset + length].decode("utf-8")))
            live_notes.append(json.loads(note))
    by_id = {a.article_id: a for a in articles}
    ids = [meta.article_id for meta, _ in records]
    rows = _chunk_rows(data[prefix + "chunks.npy"])
    vectors = np.load(io.BytesIO(data[prefix + "vectors.npy"]), allow_pickle=False)
    if len(vectors) != entry["rows"] or len(rows) != entry["rows"] or len(records) != len(entry["articles"]):
        raise ValueError(f"segment {entry['name']} holds {len(vectors)} vectors, {len(rows)} chunks and {len(records)} "
                         f"articles, the manifest says {entry['rows']} and {len(entry['articles'])}")
    chunks, keys, live = [], [], []
    for row, record in enumerate(rows):
        article_id = ids[int(record["article"])]
        if article_id in dead:
            continue
        start, end = int(record["start"]), int(record["end"])
        live.append(row)
        keys.append(record["embed_key"].decode("ascii"))
        chunks.append(Chunk(article_id, int(record["ordinal"]), start, end, by_id[article_id].text[start:end], int(record["token_count"])))
    vectors = vectors[live] if len(live) != len(vectors) else vectors
    row_terms = _live_terms(data[prefix + "terms.jsonl"], dead) if terms else [[]] * len(chunks)
    return Segment(articles, chunks, keys, np.ascontiguousarray(vectors, dtype=np.float32), row_terms, live_notes)


def _live_terms(raw: bytes, dead: set[str]) -> list[list[str]]:
    terms = []
    for line in raw.decode("utf-8").splitlines():
        article_id, row_terms = json.loads(line)
        if article_id not in dead:
            terms.append(row_terms)
    return terms


def read_vocabulary(index_dir: Path, manifest: dict) -> dict:
    """The word counts stored with the build ``manifest`` describes (checked)."""
    folder = Path(index_dir) / manifest["build_id"]
    data = _Verifier(folder, Path(index_dir)).read(VOCABULARY, manifest["files"][VOCABULARY])
    return json.loads(data.decode("utf-8"))


def read_segments(index_dir: Path, manifest: dict, entries: list[dict] | None = None, *, terms: bool = True) -> list[Segment]:
    """The live rows of some segments of the build ``manifest`` describes (all by default),
    checked against its checksums: what an incremental build reuses."""
    folder = Path(index_dir) / manifest["build_id"]
    verifier = _Verifier(folder, Path(index_dir))
    files = manifest["files"]
    segments = []
    try:
        for entry in manifest["segments"] if entries is None else entries:
            prefix = f"{SEGMENTS}/{entry['name']}/"
            names = [n for n in _SEGMENT_FILES if terms or n != "terms.jsonl"]
            data = {prefix + n: verifier.read(prefix + n, files[prefix + n]) for n in names}
            segments.append(_segment_rows(data, prefix, entry, terms=terms))
    except (KeyError, ValueError, TypeError) as exc:
        raise IndexCorruptError(f"the index in {folder} is damaged ({exc}); {_REBUILD}") from exc
    return segments


def load_index(index_dir: Path, expected: dict | None = None, vector_store=None) -> StoredIndex:
    """Load the serving build; ``expected`` manifest entries must match (model, chunking...).

    ``current`` is resolved once: the manifest, the data and the returned ``path`` all come
    from that one build folder, even if a rebuild swaps ``current`` meanwhile. Every file
    serving uses is checked against its manifest checksum before it is used (files only
    builds read, against their size). Rows are the segments' live rows in manifest order:
    row i is FAISS id i and BM25 document i. Article texts stay in the segments' texts.bin,
    memory-mapped, and chunks are columns (``bot.rows``). ``vector_store``:
    ``(vectors, dimension, build_id) -> VectorStore`` (default: the local FAISS store).
    """
    folder, manifest, verifier, files = _open_build(index_dir, expected)
    try:
        rows = _serving_rows(manifest, verifier, files)
        vocabulary = json.loads(verifier.read(VOCABULARY, files[VOCABULARY]).decode("utf-8"))
        if vector_store is None and manifest.get("approximate"):
            data = verifier.read(APPROXIMATE_FILE, files[APPROXIMATE_FILE])
            graph = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
            del data
            if int(graph.ntotal) != len(rows.vectors) or int(graph.d) != int(manifest["dimension"]):
                raise ValueError(f"{APPROXIMATE_FILE} holds {graph.ntotal} rows, the segments {len(rows.vectors)}")
            vectors = FaissStore(graph, manifest["approximate"])
        else:
            make_store = vector_store or (lambda rows_vectors, dimension, _build: new_flat_index(rows_vectors, dimension))
            vectors = make_store(rows.vectors, int(manifest["dimension"]), folder.name)
        lexical = LexicalIndex([
            SegmentPostings.read(lambda name, prefix=f"{SEGMENTS}/{e['name']}/": verifier.read(prefix + name, files[prefix + name]),
                                 e["articles"], e.get("dead", ()))
            for e in manifest["segments"]
        ])
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError) as exc:
        raise IndexCorruptError(f"the index in {folder} is damaged ({exc}); {_REBUILD}") from exc
    if not (len(vectors) == len(rows.chunks) == lexical.size):
        raise IndexCorruptError(
            f"the index in {folder} is inconsistent ({len(vectors)} vectors, {len(rows.chunks)} chunks, "
            f"{lexical.size} lexical documents); {_REBUILD}"
        )
    return StoredIndex(manifest, rows.articles, rows.chunks, vectors, lexical, folder, vocabulary, rows.notes)


@dataclass
class _ServingRows:
    articles: ArticleTable
    chunks: ChunkTable
    notes: list[dict]
    vectors: np.ndarray


def _serving_rows(manifest: dict, verifier: _Verifier, files: dict[str, dict]) -> _ServingRows:
    """The live rows of every segment as columns, and the live articles with their texts
    left in the (checked, memory-mapped) texts.bin files."""
    metadata: dict[str, Article] = {}
    text_at: dict[str, tuple[int, int, int]] = {}
    blobs, notes, article_ids = [], [], []
    article_no, columns, vector_parts = [], {c: [] for c in ("ordinal", "start", "end", "token_count")}, []
    for entry in manifest["segments"]:
        prefix = f"{SEGMENTS}/{entry['name']}/"
        dead = set(entry.get("dead", ()))
        for name in _BUILD_ONLY_FILES:
            verifier.check_present(prefix + name, files[prefix + name])
        blobs.append(verifier.open_mapped(prefix + "texts.bin", files[prefix + "texts.bin"]))
        records = _article_records(verifier.read(prefix + "articles.jsonl", files[prefix + "articles.jsonl"]))
        segment_notes = verifier.read(prefix + "notes.jsonl", files[prefix + "notes.jsonl"]).decode("utf-8").splitlines()
        number = np.full(len(records), -1, dtype=np.int64)  # segment article -> global number (-1: dead)
        for position, ((meta, (offset, length)), note) in enumerate(zip(records, segment_notes)):
            if meta.article_id in dead:
                continue
            number[position] = len(article_ids)
            article_ids.append(meta.article_id)
            metadata[meta.article_id] = meta
            text_at[meta.article_id] = (len(blobs) - 1, offset, length)
            notes.append(json.loads(note))
        rows = _chunk_rows(verifier.read(prefix + "chunks.npy", files[prefix + "chunks.npy"]))
        vectors = np.load(io.BytesIO(verifier.read(prefix + "vectors.npy", files[prefix + "vectors.npy"])), allow_pickle=False)
        if len(vectors) != entry["rows"] or len(rows) != entry["rows"] or len(records) != len(entry["articles"]):
            raise ValueError(f"segment {entry['name']} holds {len(vectors)} vectors, {len(rows)} chunks and {len(records)} "
                             f"articles, the manifest says {entry['rows']} and {len(entry['articles'])}")
        if len(rows) and not 0 <= int(rows["article"].min()) <= int(rows["article"].max()) < len(records):
            raise ValueError(f"segment {entry['name']} has chunks of articles it does not hold")
        owner = number[rows["article"]]
        live = owner >= 0
        article_no.append(owner[live])
        for column, parts in columns.items():
            parts.append(rows[column][live].astype(np.int64))
        vector_parts.append(vectors if live.all() else vectors[live])
    articles = ArticleTable(metadata, text_at, blobs)
    joined = {c: np.concatenate(p) if p else np.zeros(0, np.int64) for c, p in columns.items()}
    chunks = ChunkTable(article_ids, np.concatenate(article_no) if article_no else np.zeros(0, np.int64), joined, articles)
    dimension = int(manifest["dimension"])
    vectors = np.concatenate(vector_parts) if vector_parts else np.zeros((0, dimension), np.float32)
    return _ServingRows(articles, chunks, notes, np.ascontiguousarray(vectors, dtype=np.float32))
