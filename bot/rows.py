"""The articles and chunks of a loaded index, held as columns and read lazily.

A million chunks as Python objects cost gigabytes and minutes to parse; a question needs the
text of a few dozen articles. So a loaded index keeps:

- per article: its metadata (title, outlet, date, link: small) and where its text lies in
  its segment's ``texts.bin``, which stays on disk (memory-mapped) until a passage is quoted;
- per chunk: numpy columns (article number, ordinal, start, end, token count).

``ArticleTable`` is a read-only mapping ``article_id -> Article`` and ``ChunkTable`` a
sequence of ``Chunk``, so code written against lists and dicts keeps working; code that
walks every row (the retriever's per-row tables) reads the columns instead.
"""

from __future__ import annotations

import dataclasses
import mmap
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np

from bot.types import Article, Chunk

# Article texts decoded and kept at once: a question quotes from a handful of articles and
# the passage fitting walks their sentences, so a few hundred cover any burst of questions.
ARTICLE_TEXT_CACHE = 512

# What a segment's chunks.npy holds per row (``article``: the article's position in the
# segment's articles.jsonl; ``start``/``end``: character offsets into its text).
CHUNK_DTYPE = np.dtype([
    ("article", "<i4"), ("ordinal", "<i4"), ("start", "<i8"), ("end", "<i8"),
    ("token_count", "<i4"), ("embed_key", "S32"),
])


def open_texts(path: Path) -> mmap.mmap | bytes:
    """A segment's texts.bin, memory-mapped (an empty file cannot be mapped: empty bytes)."""
    with open(path, "rb") as handle:
        if handle.seek(0, 2) == 0:
            return b""
        return mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)


class ArticleTable(Mapping[str, Article]):
    """``article_id -> Article`` with each text read from its segment's texts.bin on demand.

    ``metadata()`` gives the articles without their texts (``text == ""``) for listings."""

    def __init__(self, metadata: dict[str, Article], text_at: dict[str, tuple[int, int, int]], blobs: list):
        self._metadata = metadata
        self._text_at = text_at  # article id -> (blob number, byte offset, byte length)
        self._blobs = blobs
        self._cache: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def __getitem__(self, article_id: str) -> Article:
        meta = self._metadata[article_id]
        return dataclasses.replace(meta, text=self.text(article_id))

    def __contains__(self, article_id: object) -> bool:
        return article_id in self._metadata

    def __iter__(self) -> Iterator[str]:
        return iter(self._metadata)

    def __len__(self) -> int:
        return len(self._metadata)

    def metadata(self) -> Iterator[Article]:
        """Every article without its text, in row order: what listings and summaries need."""
        return iter(self._metadata.values())

    def text(self, article_id: str) -> str:
        with self._lock:
            text = self._cache.get(article_id)
            if text is not None:
                self._cache.move_to_end(article_id)
                return text
        blob, offset, length = self._text_at[article_id]
        text = bytes(self._blobs[blob][offset : offset + length]).decode("utf-8")
        with self._lock:
            self._cache[article_id] = text
            if len(self._cache) > ARTICLE_TEXT_CACHE:
                self._cache.popitem(last=False)
        return text


class ChunkTable(Sequence[Chunk]):
    """Row i is chunk i of the index, built on access from the columns and its article's text."""

    def __init__(self, article_ids: list[str], article_no: np.ndarray, columns: dict[str, np.ndarray], articles: ArticleTable):
        self.article_ids = article_ids  # article number -> id, in row order of first appearance
        self.article_no = article_no
        self.ordinal = columns["ordinal"]
        self.start = columns["start"]
        self.end = columns["end"]
        self.token_count = columns["token_count"]
        self._articles = articles

    def __len__(self) -> int:
        return len(self.article_no)

    def article_id(self, row: int) -> str:
        return self.article_ids[int(self.article_no[row])]

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        if row < 0:
            row += len(self)
        if not 0 <= row < len(self):
            raise IndexError(row)
        article_id = self.article_id(row)
        start, end = int(self.start[row]), int(self.end[row])
        return Chunk(article_id, int(self.ordinal[row]), start, end, self._articles.text(article_id)[start:end], int(self.token_count[row]))


def group_rows(keys: np.ndarray) -> dict[int, np.ndarray]:
    """key -> the rows holding it (ascending), for integer keys, without a Python loop over rows."""
    keys = np.asarray(keys)
    if not len(keys):
        return {}
    order = np.argsort(keys, kind="stable")
    values, starts = np.unique(keys[order], return_index=True)
    return {int(v): rows for v, rows in zip(values, np.split(order, starts[1:]))}


def rows_by_article(chunks: Sequence[Chunk]) -> dict[str, np.ndarray]:
    """article id -> its chunk rows (ascending): from the columns for a ``ChunkTable``."""
    if isinstance(chunks, ChunkTable):
        return {chunks.article_ids[no]: rows for no, rows in group_rows(chunks.article_no).items()}
    ids: dict[str, int] = {}
    numbers = np.array([ids.setdefault(c.article_id, len(ids)) for c in chunks], dtype=np.int64)
    names = list(ids)
    return {names[no]: rows for no, rows in group_rows(numbers).items()}
