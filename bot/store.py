"""The index on disk: the only module that imports faiss.

An index is a directory that describes itself:

- ``manifest.json``: format version, model id, dimension, chunking settings, one
  content hash per article, counts and a build id;
- ``vectors.faiss``: a flat inner-product index over unit vectors (so scores are cosines);
- ``chunks.jsonl``: line i is the chunk whose vector is FAISS id i, and whose lexical
  document is BM25 document i (the positional contract the tests check);
- ``articles.jsonl``: the cleaned articles every chunk offset points into;
- ``lexical/``: the BM25 index.

The index folder (``index/`` by default) holds builds side by side and a ``current``
symlink. A build is written to a fresh folder and then ``current`` is swapped with one
atomic rename, so a reader never sees half an index and a crashed build leaves the
previous one serving.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

from bot.errors import IndexCorruptError, IndexMismatchError, IndexMissingError
from bot.lexical import LexicalIndex
from bot.types import Article, Chunk

FORMAT_VERSION = 1
CURRENT_LINK = "current"
_BUILD_PREFIX = "build-"

# Bound the threads FAISS uses: the machine has 2 cores and the bot also serves requests.
faiss.omp_set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@dataclass
class StoredIndex:
    """Everything a query needs, in memory. Row i of each table is the same chunk."""

    manifest: dict
    articles: dict[str, Article]
    chunks: list[Chunk]
    embed_keys: list[str]  # content hash of the text each vector was computed from
    vectors: faiss.Index
    lexical: LexicalIndex
    path: Path

    @property
    def build_id(self) -> str:
        return self.manifest["build_id"]

    def search(self, query_vectors: np.ndarray, k: int, allowed_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k inner products (cosines) and row ids; -1 ids pad when k exceeds the size.

        ``allowed_rows`` restricts the search (metadata filters) inside FAISS, so a filter
        never empties a top-k that unfiltered neighbours crowded out.
        """
        k = max(1, min(k, self.vectors.ntotal))
        queries = np.ascontiguousarray(query_vectors, dtype=np.float32)
        if allowed_rows is None:
            return self.vectors.search(queries, k)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed_rows, dtype=np.int64))
        return self.vectors.search(queries, k, params=faiss.SearchParameters(sel=selector))

    def vectors_array(self) -> np.ndarray:
        """All stored vectors (row i is chunk i), for reuse by an incremental build."""
        if self.vectors.ntotal == 0:
            return np.zeros((0, self.vectors.d), dtype=np.float32)
        return self.vectors.reconstruct_n(0, self.vectors.ntotal)


def new_flat_index(vectors: np.ndarray, dimension: int) -> faiss.Index:
    index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


def current_path(index_dir: Path) -> Path | None:
    """The folder of the build now serving, or None when nothing was ever built."""
    link = index_dir / CURRENT_LINK
    if not link.is_symlink() and not link.is_dir():
        return None
    target = link.resolve()
    return target if (target / "manifest.json").is_file() else None


def current_build_id(index_dir: Path) -> str | None:
    """Cheap to call often: lets a running bot notice a rebuild by another process."""
    path = current_path(index_dir)
    return path.name if path else None


def write_index(
    index_dir: Path,
    manifest: dict,
    articles: list[Article],
    chunks: list[Chunk],
    embed_keys: list[str],
    vectors: np.ndarray,
    lexical_texts: list[str],
) -> Path:
    """Write a complete build beside the old one, then swap ``current`` to it atomically.

    ``lexical_texts[i]`` is what BM25 indexes for chunk i (the chunk, maybe with a header).
    """
    if not len(chunks) == len(vectors) == len(embed_keys) == len(lexical_texts):
        raise ValueError("chunks, keys and vectors must line up row for row")
    index_dir.mkdir(parents=True, exist_ok=True)
    build_id = f"{_BUILD_PREFIX}{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    staging = index_dir / f".{build_id}.partial"
    staging.mkdir()
    try:
        manifest = {**manifest, "format_version": FORMAT_VERSION, "build_id": build_id}
        manifest["chunks_total"] = len(chunks)
        manifest["articles_total"] = len(articles)
        faiss.write_index(new_flat_index(vectors, int(manifest["dimension"])), str(staging / "vectors.faiss"))
        with open(staging / "chunks.jsonl", "w", encoding="utf-8") as out:
            for chunk, key in zip(chunks, embed_keys):
                out.write(json.dumps({**chunk.to_dict(), "embed_key": key}, ensure_ascii=False) + "\n")
        with open(staging / "articles.jsonl", "w", encoding="utf-8") as out:
            for article in articles:
                out.write(json.dumps(article.to_dict(), ensure_ascii=False) + "\n")
        LexicalIndex.build(lexical_texts).save(staging / "lexical")
        # The manifest goes last: a folder without one is never taken for a build.
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
        final = index_dir / build_id
        os.rename(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _swap_current(index_dir, build_id)
    _remove_old_builds(index_dir, keep={build_id})
    return final


def _swap_current(index_dir: Path, build_id: str) -> None:
    tmp_link = index_dir / f".{CURRENT_LINK}.{uuid.uuid4().hex[:8]}"
    os.symlink(build_id, tmp_link)
    os.replace(tmp_link, index_dir / CURRENT_LINK)  # atomic on POSIX


def _remove_old_builds(index_dir: Path, keep: set[str]) -> None:
    """Drop superseded builds and leftovers of crashed ones.

    The build just replaced is kept one generation longer, so a reader that resolved
    ``current`` a moment before the swap can still finish loading it.
    """
    builds = sorted(p for p in index_dir.iterdir() if p.name.startswith(_BUILD_PREFIX) and p.is_dir())
    previous = [b for b in builds if b.name not in keep][-1:]
    for path in builds:
        if path.name not in keep and path not in previous:
            shutil.rmtree(path, ignore_errors=True)
    for path in index_dir.glob(f".{_BUILD_PREFIX}*.partial"):
        if time.time() - path.stat().st_mtime > 3600:  # surely dead; a live build is younger
            shutil.rmtree(path, ignore_errors=True)


def read_manifest(index_dir: Path) -> dict | None:
    path = current_path(index_dir)
    if path is None:
        return None
    try:
        return json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IndexCorruptError(f"cannot read {path}/manifest.json ({exc}); rebuild with `python -m bot index --full`") from exc


def check_compatible(manifest: dict, expected: dict, index_dir: Path) -> None:
    """Refuse an index built with other settings, saying what differs and what to run."""
    if manifest.get("format_version") != FORMAT_VERSION:
        raise IndexMismatchError(
            f"the index in {index_dir} has format version {manifest.get('format_version')}, this code reads "
            f"{FORMAT_VERSION}; rebuild it with `python -m bot index --full`"
        )
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


def load_index(index_dir: Path, expected: dict | None = None) -> StoredIndex:
    """Load the serving build; ``expected`` manifest entries must match (model, chunking...)."""
    path = current_path(index_dir)
    if path is None:
        raise IndexMissingError(f"no index in {index_dir}/; build it with `python -m bot index`")
    manifest = read_manifest(index_dir)
    if expected:
        check_compatible(manifest, expected, index_dir)
    try:
        articles = {}
        with open(path / "articles.jsonl", encoding="utf-8") as lines:
            for line in lines:
                article = Article.from_dict(json.loads(line))
                articles[article.article_id] = article
        chunks, keys = [], []
        with open(path / "chunks.jsonl", encoding="utf-8") as lines:
            for line in lines:
                record = json.loads(line)
                keys.append(record.pop("embed_key"))
                chunks.append(Chunk.from_dict(record))
        vectors = faiss.read_index(str(path / "vectors.faiss"))
        lexical = LexicalIndex.load(path / "lexical")
    except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise IndexCorruptError(f"the index in {path} is damaged ({exc}); rebuild it with `python -m bot index --full`") from exc
    if not (vectors.ntotal == len(chunks) == lexical.size):
        raise IndexCorruptError(
            f"the index in {path} is inconsistent ({vectors.ntotal} vectors, {len(chunks)} chunks, "
            f"{lexical.size} lexical documents); rebuild it with `python -m bot index --full`"
        )
    return StoredIndex(manifest, articles, chunks, keys, vectors, lexical, path)
