"""The local vector store: FAISS over the index's segments (with ``bot.store``, the only
module that imports faiss).

Each segment of an index is searched on its own, like Lucene's: a segment with more rows
than ``APPROXIMATE_ABOVE`` has its own HNSW graph (``hnsw.faiss`` in its immutable folder,
written once with the segment, holding its vectors), the small ones (what adding an article
creates) are searched exactly in one flat index. A search asks every part for its top k among
its live, allowed rows and merges them by score; the scores are exact inner products with the
stored vectors, only which rows a graph returns is approximate. Rows of removed articles stay
in their graph and are skipped (a graph is never rebuilt for a removal; a merge of segments
writes the merged segment's graph).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import faiss
import numpy as np

from bot.errors import IndexMismatchError

# Bound the threads FAISS uses: the machine has 2 cores and the bot also serves requests.
faiss.omp_set_num_threads(max(1, min(2, os.cpu_count() or 1)))

# The graph file inside a segment's folder (checksummed in the manifest like its other files).
APPROXIMATE_FILE = "hnsw.faiss"

# HNSW parameters, chosen on the eval's synthetic 100k archive (90,081 hashing vectors of
# benchmark text) with the benchmark's first 500 questions, recall@10 against exact search,
# one run each on this 2-core machine under load 6-12:
#
#   M / efConstruction   build   top 10 asked at efSearch 128 / 256 / 512   top 10 of 1,000 asked
#   16 / 40              62 s    0.861 / 0.931 / 0.969                       0.992
#   32 / 40              46 s    0.915 / 0.968 / 0.991                       0.997 (40 questions: 0.998)
#   32 / 80              108 s   0.943 / 0.978 / 0.995                       0.998
#
# The retriever asks 1,000 rows per searched text, so it walks with efSearch 1,000: M=32 and
# efConstruction 40 (FAISS's default) reach 0.997 there; efConstruction 80 gains 0.001 for 2.3x
# the build, M=16 saves 128 of ~1,800 bytes a row and loses 0.005. efSearch for smaller k is
# chosen per graph: the smallest of HNSW_EF_SEARCH whose recall@10 reaches RECALL_TARGET on
# RECALL_QUERIES probe queries made from the stored vectors (see ``graph_recall``).
# The 0.943 the 100k eval reported before (the eval's 40 questions, top 10 asked): this graph
# gives them 0.943 at efSearch 256 and 0.990 at 512, and 0.998 on the retriever's path. It does
# not come from duplicates, which are rare here (8 exact duplicates in 90,081 rows; a row has on
# average 0.21 others above cosine 0.99 and 0.72 above 0.95).
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 40
HNSW_EF_SEARCH = (16, 32, 64, 128, 256, 512, 1024)
# Questions are harder for the graph than the probes: on 6,455 hashing vectors of benchmark
# text, recall@10 at efSearch 16/32/64/128 was 0.95/0.98/0.99/1.00 with stored vectors as
# queries, 0.88/0.95/0.98/0.99 with blends of two, and 0.83/0.92/0.97/0.99 with 300 real
# questions. So efSearch is chosen on blends, with a margin (0.99).
RECALL_TARGET = 0.99
RECALL_QUERIES = 200


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


def check_dimension(query_width: int, index_width: int, where) -> None:
    """Refuse a query vector of another width than the index's (a model with another dimension)."""
    if query_width != index_width:
        raise IndexMismatchError(
            f"the index in {where} holds {index_width}-dimensional vectors but the model gives {query_width}; "
            "rebuild it with `python -m bot index --full`, or change EMBEDDING_MODEL back"
        )


@dataclass
class StorePart:
    """One FAISS index the store searches: a segment's HNSW graph, or a flat index (exact).

    ``rows[i]`` is the store row of the index's id i, -1 for a dead one (an article removed
    after the graph was written). ``graph``: the segment's manifest entry for its graph
    (efSearch, measured recall), None for a flat part.
    """

    index: faiss.Index
    rows: np.ndarray
    graph: dict | None = None

    def __post_init__(self):
        self.rows = np.asarray(self.rows, dtype=np.int64)
        if len(self.rows) != int(self.index.ntotal):
            raise ValueError(f"a store part maps {len(self.rows)} rows for an index of {self.index.ntotal}")
        self._refresh()

    def _refresh(self) -> None:
        live = self.rows >= 0
        self.live = int(live.sum())
        # Skipping dead rows costs nothing when there are none; else one bitmap kept per part.
        self._live_bitmap = None if self.live == len(self.rows) else np.packbits(live, bitorder="little")

    def renumber(self, new_row_of: np.ndarray) -> None:
        """Store rows changed (rows deleted): ``new_row_of[old]`` is the new row, -1 for a deleted one."""
        self.rows = np.where(self.rows >= 0, new_row_of[np.maximum(self.rows, 0)], -1)
        self._refresh()

    def view(self) -> np.ndarray:
        return _vector_view(self.index)

    def search(self, queries: np.ndarray, k: int, local_allowed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (inner products, local ids) among the live rows (and ``local_allowed``, sorted)."""
        if local_allowed is None and self._live_bitmap is None:
            if self.graph is None:
                return self.index.search(queries, k)
            ef_search = max(int(self.graph["ef_search"]), k)
            return self.index.search(queries, k, params=faiss.SearchParametersHNSW(efSearch=ef_search))
        count = self.live if local_allowed is None else len(local_allowed)
        if local_allowed is None:
            bitmap = self._live_bitmap
        else:
            mask = np.zeros(len(self.rows), dtype=bool)
            mask[local_allowed] = True
            bitmap = np.packbits(mask, bitorder="little")
        selector = faiss.IDSelectorBitmap(len(self.rows), faiss.swig_ptr(bitmap))
        if self.graph is None:
            return self.index.search(queries, k, params=faiss.SearchParameters(sel=selector))
        if count <= int(self.graph.get("above", 0)):
            # A filter leaving no more rows than exact search is used for: search them exactly in
            # the graph's own vector storage (no copy), cheaper than a walk widened to most of the
            # graph (the results are the same). At 1M rows, 100k allowed: 209 ms a search (load 8),
            # 627 ms copying the rows' vectors out first.
            storage = faiss.downcast_index(self.index.storage)
            return storage.search(queries, k, params=faiss.SearchParameters(sel=selector))
        # Fewer allowed rows means fewer of the nodes the walk visits count: widen it in proportion
        # (1% dead rows: efSearch 1,000 -> 1,011; rounding the ratio up doubled it).
        ef_search = max(int(self.graph["ef_search"]), k)
        widened = min(len(self.rows), -(-ef_search * len(self.rows) // max(count, 1)))
        params = faiss.SearchParametersHNSW(sel=selector, efSearch=int(widened))
        return self.index.search(queries, k, params=params)


class FaissStore:
    """The local store: a list of parts (segment graphs and a flat index), see the module
    docstring. ``FaissStore(index)`` is one part holding every row (a flat index, or a graph
    with its ``approximate`` entry).

    ``cosines`` and ``vectors_of`` read FAISS's own vector buffers (no copy), so the vectors
    are held once.
    """

    def __init__(self, parts: list[StorePart] | faiss.Index, approximate: dict | None = None):
        if isinstance(parts, faiss.Index):
            graph = approximate if hasattr(parts, "hnsw") else None
            parts = [StorePart(parts, np.arange(int(parts.ntotal)), graph)]
        if not parts:
            raise ValueError("a store needs at least one part")
        self._parts = list(parts)
        self.dimension = int(self._parts[0].index.d)
        self._map_rows()

    def _map_rows(self) -> None:
        """Which part and which local id each store row is (rows must be 0..n-1, each once)."""
        total = sum(p.live for p in self._parts)
        self._part_of = np.full(total, -1, dtype=np.int32)
        self._local_of = np.zeros(total, dtype=np.int64)
        for number, part in enumerate(self._parts):
            local = np.flatnonzero(part.rows >= 0)
            rows = part.rows[local]
            if len(rows) and (rows.max() >= total or (self._part_of[rows] != -1).any()):
                raise ValueError("store parts must map every row 0..n-1 exactly once")
            self._part_of[rows], self._local_of[rows] = number, local
        if (self._part_of == -1).any():
            raise ValueError("store parts must map every row 0..n-1 exactly once")

    @property
    def approximate(self) -> dict | None:
        """The graph parts' summary (the smallest measured recall), None when every row is searched exactly."""
        graphs = [p.graph for p in self._parts if p.graph is not None]
        if not graphs:
            return None
        return {"M": graphs[0].get("M", HNSW_M), "ef_search": max(int(g["ef_search"]) for g in graphs),
                "recall_at_10": min(float(g["recall_at_10"]) for g in graphs),
                "recall_queries": min(int(g["recall_queries"]) for g in graphs),
                "graph_rows": sum(int(p.index.ntotal) for p in self._parts if p.graph is not None)}

    @classmethod
    def from_vectors(cls, vectors: np.ndarray, dimension: int) -> FaissStore:
        store = cls(faiss.IndexFlatIP(dimension))
        if len(vectors):
            store.add(vectors)
        return store

    def __len__(self) -> int:
        return len(self._part_of)

    @property
    def ntotal(self) -> int:
        return len(self)

    def search(self, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = max(1, min(k, len(self)))
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        check_dimension(queries.shape[-1], self.dimension, "this store")
        if allowed_rows is not None:
            allowed = np.unique(np.asarray(allowed_rows, dtype=np.int64))
            allowed = allowed[(allowed >= 0) & (allowed < len(self))]
            allowed_parts = self._part_of[allowed]
        found_scores, found_rows = [], []
        for number, part in enumerate(self._parts):
            local = None if allowed_rows is None else np.sort(self._local_of[allowed[allowed_parts == number]])
            available = part.live if local is None else len(local)
            if available == 0:
                continue
            scores, ids = part.search(queries, min(k, available), local)
            found_scores.append(np.where(ids >= 0, scores, -np.inf))
            found_rows.append(np.where(ids >= 0, part.rows[np.maximum(ids, 0)], -1))
        if not found_scores:
            return np.full((len(queries), k), -np.inf, dtype=np.float32), np.full((len(queries), k), -1, dtype=np.int64)
        scores, rows = np.hstack(found_scores), np.hstack(found_rows)
        if len(found_scores) > 1 or scores.shape[1] < k:
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            scores, rows = np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)
            if scores.shape[1] < k:  # fewer candidates than k: pad like FAISS
                pad = k - scores.shape[1]
                scores = np.hstack([scores, np.full((len(queries), pad), -np.inf, dtype=np.float32)])
                rows = np.hstack([rows, np.full((len(queries), pad), -1, dtype=np.int64)])
        return scores.astype(np.float32, copy=False), rows.astype(np.int64, copy=False)

    def cosines(self, query: np.ndarray) -> np.ndarray:
        check_dimension(query.shape[-1], self.dimension, "this store")
        query = np.asarray(query, dtype=np.float32)
        out = np.empty(len(self), dtype=np.float32)
        for part in self._parts:
            live = np.flatnonzero(part.rows >= 0)
            products = part.view() @ query
            out[part.rows[live]] = products[live] if len(live) != len(part.rows) else products
        return out

    def vectors_of(self, rows) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        out = np.empty((len(rows), self.dimension), dtype=np.float32)
        parts = self._part_of[rows]
        for number in np.unique(parts):
            where = parts == number
            out[where] = self._parts[number].view()[self._local_of[rows[where]]]
        return out

    def add(self, vectors: np.ndarray) -> np.ndarray:
        """Append rows (to the flat part, created when there is none)."""
        start = len(self)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        flat = next((p for p in self._parts if p.graph is None), None)
        if flat is None:
            flat = StorePart(faiss.IndexFlatIP(self.dimension), np.zeros(0, dtype=np.int64))
            self._parts.append(flat)
        flat.index.add(vectors)
        flat.rows = np.concatenate([flat.rows, np.arange(start, start + len(vectors), dtype=np.int64)])
        flat._refresh()
        self._map_rows()
        return np.arange(start, len(self), dtype=np.int64)

    def delete(self, rows: np.ndarray) -> None:
        """Rows are marked dead in their part (no graph is rebuilt) and later rows renumbered."""
        gone = np.zeros(len(self), dtype=bool)
        gone[np.asarray(rows, dtype=np.int64)] = True
        new_row_of = np.where(gone, -1, np.cumsum(~gone) - 1)
        for part in self._parts:
            part.renumber(new_row_of)
        self._map_rows()

    def describe(self) -> dict:
        graphs = [p for p in self._parts if p.graph is not None]
        kinds = sorted({type(p.index).__name__ for p in self._parts if p.live})
        description = {"backend": "faiss", "index": "+".join(kinds) or "IndexFlatIP", "rows": len(self),
                       "dimension": self.dimension, "exact": not graphs, "parts": len(self._parts),
                       "graph_rows": sum(p.live for p in graphs)}
        approximate = self.approximate
        if approximate is not None:
            description.update({key: approximate[key] for key in ("M", "ef_search", "recall_at_10", "recall_queries")})
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


def build_graph(vectors: np.ndarray) -> faiss.Index:
    """An HNSW graph (inner product) over ``vectors``."""
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


def write_segment_graph(folder: Path, vectors: np.ndarray, above: int) -> dict:
    """Build the HNSW graph of one segment's rows, write it into the segment's ``folder`` and
    return its manifest entry: how it was made, the efSearch chosen and its measured recall@10."""
    started = time.perf_counter()
    graph = build_graph(vectors)
    built_s = time.perf_counter() - started
    ef_search, recall = graph_recall(graph)
    faiss.write_index(graph, str(Path(folder) / APPROXIMATE_FILE))
    return {"kind": "HNSWFlat", "M": HNSW_M, "ef_construction": HNSW_EF_CONSTRUCTION, "ef_search": ef_search,
            "recall_at_10": recall, "recall_queries": min(RECALL_QUERIES, len(vectors)), "rows": len(vectors),
            "above": int(above), "graph_seconds": round(built_s, 2)}


def read_graph(path: Path, rows: int, dimension: int) -> faiss.Index:
    """A segment's stored graph (its checksum already verified), checked to hold ``rows`` rows."""
    graph = faiss.read_index(str(path))
    if int(graph.ntotal) != rows or int(graph.d) != dimension or not hasattr(graph, "hnsw"):
        raise ValueError(f"{path.name} holds {graph.ntotal} rows of width {graph.d}, the manifest says {rows} of {dimension}")
    return graph


def flat_index(vectors: np.ndarray, dimension: int) -> faiss.Index:
    index = faiss.IndexFlatIP(dimension)
    if len(vectors):
        index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index
