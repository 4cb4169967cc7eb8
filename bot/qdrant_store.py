"""The vector store seam on Qdrant (``VECTOR_STORE=qdrant``): for several bot replicas serving
one index from a Qdrant server, or Qdrant's local mode (a folder, or ``:memory:``).

The index folder stays the source of truth (segments, manifest, checksums, BM25); a build's
live vectors are mirrored into one collection per build (named after the build id), uploaded
by whichever process loads that build first. Point ids are store rows, so the row contract
holds; search runs inside Qdrant with the allowed rows (metadata filters) pushed down as an
id filter. Like ``bot.store``, this is the only module that imports its library.
"""

from __future__ import annotations

import atexit
from pathlib import Path

import numpy as np

from bot.errors import ConfigError

UPLOAD_BATCH = 1024  # points per upsert: a few MB per request


_clients: dict[str, object] = {}  # one client per location and process (local mode locks its folder)


@atexit.register
def close_clients() -> None:
    """Release local-mode folder locks before the interpreter tears down (not in ``__del__``)."""
    while _clients:
        _, client = _clients.popitem()
        client.close()


def open_client(location: str):
    """A client for ``location``: ``:memory:``, a local folder (local mode), or an http(s) URL."""
    try:
        from qdrant_client import QdrantClient
    except ImportError:
        raise ConfigError("VECTOR_STORE=qdrant needs the package qdrant-client; run `make install`") from None
    if location == ":memory:":
        return QdrantClient(location=":memory:")
    if location not in _clients:
        _clients[location] = QdrantClient(url=location) if location.startswith(("http://", "https://")) else QdrantClient(path=location)
    return _clients[location]


def drop_collections_of_removed_builds(client, index_dir: Path) -> None:
    """Collections whose build folder is gone (superseded builds are removed by the next build)."""
    for collection in client.get_collections().collections:
        if collection.name.startswith("build-") and not (Path(index_dir) / collection.name).is_dir():
            client.delete_collection(collection.name)


class QdrantStore:
    """A collection of unit vectors whose point id i is store row i (dot product = cosine)."""

    def __init__(self, client, collection: str, dimension: int):
        self.client, self.collection, self.dimension = client, collection, int(dimension)

    @classmethod
    def mirror(cls, client, collection: str, vectors: np.ndarray, dimension: int) -> QdrantStore:
        """The collection holding exactly ``vectors`` (row i as point i), created and filled
        unless another process already did (a build's vectors never change)."""
        from qdrant_client import models

        store = cls(client, collection, dimension)
        if client.collection_exists(collection):
            if len(store) == len(vectors):
                return store
            client.delete_collection(collection)  # a half-finished upload: start again
        client.create_collection(collection, vectors_config=models.VectorParams(size=dimension, distance=models.Distance.DOT))
        store.add(vectors)
        return store

    def __len__(self) -> int:
        return int(self.client.count(self.collection, exact=True).count)

    def search(self, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        from qdrant_client import models

        from bot.store import check_dimension

        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        check_dimension(queries.shape[-1], self.dimension, f"collection {self.collection}")
        k = max(1, min(k, len(self)))
        where = None
        if allowed_rows is not None:
            where = models.Filter(must=[models.HasIdCondition(has_id=[int(r) for r in allowed_rows])])
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        for i, query in enumerate(queries):
            found = self.client.query_points(self.collection, query=query.tolist(), limit=k, query_filter=where).points
            for j, point in enumerate(found):
                scores[i, j], ids[i, j] = point.score, point.id
        return scores, ids

    def vectors_of(self, rows) -> np.ndarray:
        rows = [int(r) for r in np.asarray(rows).reshape(-1)]
        if not rows:
            return np.zeros((0, self.dimension), dtype=np.float32)
        points = {p.id: p.vector for p in self.client.retrieve(self.collection, ids=rows, with_vectors=True)}
        return np.array([points[r] for r in rows], dtype=np.float32)

    def cosines(self, query: np.ndarray) -> np.ndarray:
        return self.vectors_of(np.arange(len(self))) @ np.asarray(query, dtype=np.float32)

    def add(self, vectors: np.ndarray) -> np.ndarray:
        from qdrant_client import models

        start = len(self)
        vectors = np.asarray(vectors, dtype=np.float32)
        for first in range(0, len(vectors), UPLOAD_BATCH):
            block = vectors[first : first + UPLOAD_BATCH]
            ids = list(range(start + first, start + first + len(block)))
            self.client.upsert(self.collection, points=models.Batch(ids=ids, vectors=block.tolist()), wait=True)
        return np.arange(start, start + len(vectors), dtype=np.int64)

    def delete(self, rows: np.ndarray) -> None:
        """Remove rows; later rows move down (re-written under their new ids), as in FAISS."""
        from qdrant_client import models

        gone = sorted({int(r) for r in np.asarray(rows).reshape(-1)})
        if not gone:
            return
        total = len(self)
        after = np.arange(gone[0], total)
        kept = np.array([r for r in after if r not in set(gone)], dtype=np.int64)
        moved = self.vectors_of(kept)
        self.client.delete(self.collection, points_selector=models.PointIdsList(points=[int(r) for r in after]), wait=True)
        if len(moved):
            self.add(moved)

    def describe(self) -> dict:
        return {"backend": "qdrant", "index": f"collection {self.collection}", "rows": len(self), "dimension": self.dimension,
                "exact": True}
