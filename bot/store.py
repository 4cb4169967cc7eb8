"""The index on disk (with ``bot.vector_store``, the only modules that import faiss).

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
  and ``notes.jsonl``; a segment of more than ``APPROXIMATE_ABOVE`` rows also holds its HNSW
  graph (``hnsw.faiss``, written with the segment, see ``bot.vector_store``); an article a
  later build removed or replaced is listed as ``dead`` in its segment's manifest entry and
  skipped on load (and in search);
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
A load reads and checks the files serving uses: a graph segment's vectors come from its
graph, so its ``vectors.npy`` is read (and checked) only by builds that reuse its rows;
``terms.jsonl`` likewise (a load checks its size).

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

import numpy as np

from bot.errors import BotError, IndexCorruptError, IndexMismatchError, IndexMissingError
from bot.lexical import POSTINGS_FILES, LexicalIndex, SegmentPostings, write_postings
from bot.rows import CHUNK_DTYPE, ArticleTable, ChunkTable, open_texts
from bot.types import Article, Chunk
from bot.vector_store import (  # noqa: F401  (re-exported: the store's public names)
    APPROXIMATE_FILE,
    FaissStore,
    StorePart,
    VectorStore,
    build_graph,
    check_dimension,
    flat_index,
    graph_recall,
    read_graph,
    recall_probes,
    write_segment_graph,
)

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
VERIFIED_FILE = ".verified.json"  # files an update already checked (see ``verify_build``)
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
    for path in index_dir.glob(f"{VERIFIED_FILE}.*.tmp"):
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
    ``live_rows`` counts the others). ``article_rows``: each article's number of rows (an
    article's chunks are consecutive)."""
    rows = len(segment.chunks)
    per_article = {a.article_id: 0 for a in segment.articles}
    for chunk in segment.chunks:
        per_article[chunk.article_id] += 1
    return {"name": name, "articles": list(per_article), "rows": rows, "live_rows": rows, "dead": [],
            "article_rows": list(per_article.values())}


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
    ``approximate_above``: a new segment of more rows than this gets its own HNSW graph, its
    measured recall@10 recorded in its segment entry (``graph``); kept segments keep theirs
    (hard-linked). The manifest's ``approximate`` entry sums up the graphs (None: exact search).
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
                if approximate_above is not None and len(added.chunks) > approximate_above:
                    segments[-1]["graph"] = write_segment_graph(staging / SEGMENTS / name, added.vectors, approximate_above)
                    log.info("segment %s: HNSW graph over %d rows in %.1f s, recall@10 %.3f against exact at efSearch %d",
                             name, len(added.chunks), segments[-1]["graph"]["graph_seconds"],
                             segments[-1]["graph"]["recall_at_10"], segments[-1]["graph"]["ef_search"])
                written.extend((staging / SEGMENTS / name).iterdir())
            (staging / VOCABULARY).write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
            written.append(staging / VOCABULARY)
            live_rows = sum(int(e["live_rows"]) for e in segments)
            approximate = approximate_of(segments, built=added is not None and bool(added.chunks) and "graph" in segments[-1])
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


def approximate_of(segments: list[dict], built: bool) -> dict | None:
    """The manifest's summary of the segments' graphs (None when every row is searched exactly):
    rows in graphs, the widest efSearch and the lowest recall@10 measured; ``graph_seconds``:
    the time this build spent building a graph (0 when it only reused them)."""
    graphs = [(e, e["graph"]) for e in segments if e.get("graph")]
    if not graphs:
        return None
    return {
        "kind": "HNSWFlat per segment", "M": graphs[0][1]["M"], "ef_construction": graphs[0][1]["ef_construction"],
        "ef_search": max(g["ef_search"] for _, g in graphs), "recall_at_10": min(g["recall_at_10"] for _, g in graphs),
        "recall_queries": min(g["recall_queries"] for _, g in graphs), "segments": len(graphs),
        "rows": sum(g["rows"] for _, g in graphs), "live_rows": sum(e["live_rows"] for e, _ in graphs),
        "exact_rows": sum(e["live_rows"] for e in segments if not e.get("graph")), "above": graphs[-1][1]["above"],
        "graph_seconds": graphs[-1][1]["graph_seconds"] if built else 0.0, "built": built,
    }


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
        required += [f"{SEGMENTS}/{e['name']}/{APPROXIMATE_FILE}" for e in segments if e.get("graph")]
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

    def check_file(self, name: str, entry: dict) -> None:
        """Check a file another library reads itself (a graph) or that is memory-mapped (texts),
        hashing it in blocks (no copy in memory)."""
        self.check_present(name, entry)
        try:
            sha, _ = _sha256_file(self.folder / name)
        except OSError as exc:
            raise self.fail(name, f"cannot be read ({exc})") from exc
        if sha != entry.get("sha256"):
            raise self.fail(name, "does not match its sha256 checksum (changed, reordered or corrupted)")

    def open_mapped(self, name: str, entry: dict):
        """The file checked by streaming it (its bytes are not held), then memory-mapped."""
        self.check_file(name, entry)
        try:
            return open_texts(self.folder / name)
        except OSError as exc:
            raise self.fail(name, f"cannot be read ({exc})") from exc

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
    ``load_index``); what an update checks before extending the build.

    A file this check already hashed is not hashed again while it is the same file, unchanged
    (``VERIFIED_FILE``: device, inode, size and modification time -> its sha256). Builds share
    their segments' files through hard links, so an update re-hashes what is new, not the
    whole archive (3.3 GB at a million chunks); a file written again or damaged in place has a
    new modification time (or inode) and is hashed again. Loading for serving hashes every file
    it reads regardless (``load_index``)."""
    _, manifest, verifier, files = _open_build(index_dir, expected)
    known = _read_verified(Path(index_dir))
    verified: dict[str, list] = {}
    for name, entry in files.items():
        try:
            stat = (verifier.folder / name).stat()
        except FileNotFoundError:
            raise verifier.fail(name, "is missing") from None
        key, seen = f"{stat.st_dev}:{stat.st_ino}", [stat.st_size, stat.st_mtime_ns, entry.get("sha256")]
        if known.get(key) != seen:
            verifier.check_file(name, entry)
        verified[key] = seen
    _write_verified(Path(index_dir), verified)
    return manifest


def _read_verified(index_dir: Path) -> dict[str, list]:
    try:
        known = json.loads((index_dir / VERIFIED_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def _write_verified(index_dir: Path, verified: dict[str, list]) -> None:
    """Remember what was verified (best effort: without it the next update hashes everything)."""
    temporary = index_dir / f"{VERIFIED_FILE}.{os.getpid()}.tmp"
    with contextlib.suppress(OSError):
        temporary.write_text(json.dumps(verified), encoding="utf-8")
        os.replace(temporary, index_dir / VERIFIED_FILE)


def _article_records(raw: bytes) -> list[tuple[Article, tuple[int, int]]]:
    """Each line of a segment's articles.jsonl: the article without its text, and where its
    text lies in texts.bin (byte offset, length)."""
    records = []
    for line in raw.decode("utf-8").splitlines():
        record = json.loads(line)
        offset, length = record.pop("text_at")
        records.append((Article.from_dict({**record, "text": ""}), (int(offset), int(length))))
    return records


def _chunk_rows(raw: bytes, entry: dict, articles: int) -> np.ndarray:
    """A segment's chunks.npy, checked against its manifest entry and its ``articles`` records."""
    rows = np.load(io.BytesIO(raw), allow_pickle=False)
    if rows.dtype != CHUNK_DTYPE or rows.ndim != 1:
        raise ValueError(f"chunks.npy holds {rows.dtype} rows, not {CHUNK_DTYPE}")
    if len(rows) != entry["rows"] or articles != len(entry["articles"]):
        raise ValueError(f"segment {entry['name']} holds {len(rows)} chunks and {articles} articles, "
                         f"the manifest says {entry['rows']} and {len(entry['articles'])}")
    if len(rows) and not 0 <= int(rows["article"].min()) <= int(rows["article"].max()) < articles:
        raise ValueError(f"segment {entry['name']} has chunks of articles it does not hold")
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
    rows = _chunk_rows(data[prefix + "chunks.npy"], entry, len(records))
    vectors = np.load(io.BytesIO(data[prefix + "vectors.npy"]), allow_pickle=False)
    if len(vectors) != entry["rows"]:
        raise ValueError(f"segment {entry['name']} holds {len(vectors)} vectors, the manifest says {entry['rows']}")
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


def _segment_vectors(verifier: _Verifier, files: dict[str, dict], entry: dict) -> np.ndarray:
    """Every stored row's vector of one segment (``vectors.npy``, checked)."""
    name = f"{SEGMENTS}/{entry['name']}/vectors.npy"
    vectors = np.load(io.BytesIO(verifier.read(name, files[name])), allow_pickle=False)
    if len(vectors) != entry["rows"]:
        raise ValueError(f"{name} holds {len(vectors)} vectors, the manifest says {entry['rows']}")
    return vectors


def _faiss_store(folder: Path, manifest: dict, verifier: _Verifier, files: dict[str, dict], live_masks: list[np.ndarray]) -> FaissStore:
    """The local store of a build: each graph segment's graph (checked; its ``vectors.npy`` is
    not read), and one flat index over the live rows of the other segments (``live_masks``:
    per segment, which stored rows are live)."""
    dimension = int(manifest["dimension"])
    parts, flat_vectors, flat_rows = [], [], []
    start = 0
    for entry, live in zip(manifest["segments"], live_masks):
        rows = np.full(len(live), -1, dtype=np.int64)
        rows[live] = np.arange(start, start + int(live.sum()))
        start += int(live.sum())
        if entry.get("graph"):
            name = f"{SEGMENTS}/{entry['name']}/{APPROXIMATE_FILE}"
            verifier.check_file(name, files[name])
            parts.append(StorePart(read_graph(folder / name, int(entry["rows"]), dimension), rows, entry["graph"]))
        else:
            flat_vectors.append(_segment_vectors(verifier, files, entry)[live])
            flat_rows.append(rows[live])
    if flat_vectors or not parts:
        vectors = np.concatenate(flat_vectors) if flat_vectors else np.zeros((0, dimension), np.float32)
        parts.append(StorePart(flat_index(vectors, dimension), np.concatenate(flat_rows) if flat_rows else np.zeros(0, np.int64)))
    return FaissStore(parts)


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
        # Vectors and graphs are read (and checked) for the vector store: a graph segment's
        # vectors.npy is not read at all (its graph holds the vectors).
        if vector_store is None:
            vectors = _faiss_store(folder, manifest, verifier, files, rows.live_masks)
        else:
            live = [_segment_vectors(verifier, files, e)[mask] for e, mask in zip(manifest["segments"], rows.live_masks)]
            dimension = int(manifest["dimension"])
            vectors = vector_store(np.concatenate(live) if live else np.zeros((0, dimension), np.float32), dimension, folder.name)
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
    live_masks: list[np.ndarray]  # per segment: which stored rows are live (their article not dead)


def _serving_rows(manifest: dict, verifier: _Verifier, files: dict[str, dict]) -> _ServingRows:
    """The live rows of every segment as columns, and the live articles with their texts
    left in the (checked, memory-mapped) texts.bin files."""
    metadata: dict[str, Article] = {}
    text_at: dict[str, tuple[int, int, int]] = {}
    blobs, notes, article_ids = [], [], []
    article_no, columns, live_masks = [], {c: [] for c in ("ordinal", "start", "end", "token_count")}, []
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
        rows = _chunk_rows(verifier.read(prefix + "chunks.npy", files[prefix + "chunks.npy"]), entry, len(records))
        owner = number[rows["article"]]
        live = owner >= 0
        live_masks.append(live)
        article_no.append(owner[live])
        for column, parts in columns.items():
            parts.append(rows[column][live].astype(np.int64))
    articles = ArticleTable(metadata, text_at, blobs)
    joined = {c: np.concatenate(p) if p else np.zeros(0, np.int64) for c, p in columns.items()}
    chunks = ChunkTable(article_ids, np.concatenate(article_no) if article_no else np.zeros(0, np.int64), joined, articles)
    return _ServingRows(articles, chunks, notes, live_masks)
