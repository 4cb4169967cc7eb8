"""BM25 over chunks, with our own tokenizer so queries and documents agree.

Positional contract, as in the dense store: document i of the lexical index is
store row i. News questions hinge on names, outlets and dates, where exact word
matching beats this size of embedding model, so this half of retrieval matters.

Incremental: each index segment stores its own postings (``SegmentPostings``), written
once with the segment. A loaded ``LexicalIndex`` combines them with statistics over the
live rows only (document count, average length, document frequencies without the rows
of removed or replaced articles), so its scores are those of one BM25 index over every
live chunk: bm25s's (method "lucene", k1 1.5, b 0.75), which a test checks, without
rebuilding anything from all the terms when one article is added.
"""

from __future__ import annotations

import io
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)
# bm25s's defaults, which every index so far was built and tuned with.
K1 = 1.5
B = 0.75
# A segment's postings files (in ``segments/<name>/``, checksummed with the segment's others).
POSTINGS_FILES = ("postings_vocabulary.json", "postings_indptr.npy", "postings_rows.npy", "postings_tf.npy",
                  "postings_lengths.npy", "postings_articles.npy")


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer  # PyStemmer: Snowball stemmers in C, fast enough for 10k chunks a second

    return Stemmer.Stemmer("english")


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN)


def tokenize(text: str) -> list[str]:
    """Lower-cased, stop words dropped, stemmed; single letters dropped but digits kept (years, counts)."""
    stop = _stopwords()
    words = [
        w
        for w in _WORD.findall(text.lower().replace("’", "'").replace("'s", ""))
        if w not in stop and (len(w) > 1 or w.isdigit())
    ]
    return _stemmer().stemWords(words)


def term_coverage(weights: dict[str, float], text: str) -> float:
    """Weighted share of the question's terms (tokenized, with weights) that the text contains."""
    total = sum(weights.values())
    if total <= 0:
        return 0.0
    present = set(tokenize(text))
    return sum(w for term, w in weights.items() if term in present) / total


class SegmentPostings:
    """The BM25 postings of one segment, written once with it and never changed.

    Columns by term (CSC): the documents of term ``t`` are ``rows[indptr[t]:indptr[t+1]]``
    (rows of the segment, ascending) with term frequencies ``tf`` alongside; ``lengths[r]``
    is row r's number of terms; ``row_articles[r]`` the position of row r's article in the
    segment's article list (so rows of dead articles are found without reading any text).
    ``live``: which rows a build still serves (all of them until articles die).
    """

    def __init__(self, vocabulary: list[str], indptr: np.ndarray, rows: np.ndarray, tf: np.ndarray,
                 lengths: np.ndarray, row_articles: np.ndarray, live: np.ndarray | None = None):
        if not (len(indptr) == len(vocabulary) + 1 and indptr[0] == 0 and indptr[-1] == len(rows) == len(tf)
                and len(row_articles) == len(lengths) and np.all(np.diff(indptr) > 0)
                and (not len(rows) or 0 <= rows.min() and rows.max() < len(lengths))):
            raise ValueError("the lexical postings of a segment do not line up")
        self.vocabulary, self.indptr, self.rows, self.tf = vocabulary, indptr, rows, tf
        self.lengths, self.row_articles = lengths, row_articles
        self.live = np.ones(len(lengths), dtype=bool) if live is None else live
        self.term_ids = dict(zip(vocabulary, range(len(vocabulary))))

    @classmethod
    def from_terms(cls, terms: list[list[str]], row_articles=None) -> SegmentPostings:
        """Postings of documents already tokenized: document i is ``terms[i]``.

        An empty document counts as the one term "" (bm25s indexes ``t or [""]``: length 1)."""
        vocabulary: dict[str, int] = {}
        term_ids: list[int] = []
        rows: list[int] = []
        tf: list[int] = []
        lengths = np.empty(len(terms), dtype=np.int32)
        for row, document in enumerate(terms):
            document = document or [""]
            lengths[row] = len(document)
            counts = Counter(document)
            term_ids.extend(vocabulary.setdefault(term, len(vocabulary)) for term in counts)
            rows.extend([row] * len(counts))
            tf.extend(counts.values())
        ids = np.asarray(term_ids, dtype=np.int64)
        order = np.argsort(ids, kind="stable")  # by term; rows stay ascending within a term
        indptr = np.zeros(len(vocabulary) + 1, dtype=np.int64)
        np.cumsum(np.bincount(ids, minlength=len(vocabulary)), out=indptr[1:])
        articles = np.zeros(len(terms), np.int32) if row_articles is None else np.asarray(row_articles, dtype=np.int32)
        return cls(list(vocabulary), indptr, np.asarray(rows, dtype=np.int32)[order],
                   np.asarray(tf, dtype=np.int32)[order], lengths, articles)

    def save(self, folder: Path) -> None:
        """Write the postings as ``POSTINGS_FILES`` in ``folder`` (a segment's folder)."""
        (folder / "postings_vocabulary.json").write_text(json.dumps(self.vocabulary, ensure_ascii=False), encoding="utf-8")
        for name, array in (("postings_indptr.npy", self.indptr), ("postings_rows.npy", self.rows), ("postings_tf.npy", self.tf),
                            ("postings_lengths.npy", self.lengths), ("postings_articles.npy", self.row_articles)):
            np.save(folder / name, array, allow_pickle=False)

    @classmethod
    def read(cls, read: Callable[[str], bytes], articles: Sequence[str], dead: Iterable[str]) -> SegmentPostings:
        """The postings ``read(name)`` returns the files of (checked by the caller), with the rows
        of ``dead`` articles (ids, of the segment's ``articles`` in order) marked not live."""
        arrays = [np.load(io.BytesIO(read(name)), allow_pickle=False) for name in POSTINGS_FILES[1:]]
        postings = cls(json.loads(read(POSTINGS_FILES[0]).decode("utf-8")), *arrays)
        if len(postings.row_articles) and postings.row_articles.max() >= len(articles):
            raise ValueError("the lexical postings name more articles than the segment holds")
        dead = set(dead)
        dead_positions = [i for i, article_id in enumerate(articles) if article_id in dead]
        if dead_positions:
            postings.live = ~np.isin(postings.row_articles, dead_positions)
        return postings

    def live_document_frequency(self) -> np.ndarray:
        """Per term of ``vocabulary``: how many live rows hold it."""
        frequency = np.diff(self.indptr)
        if self.live.all() or not len(self.rows):
            return frequency
        dead_postings = (~self.live[self.rows]).astype(np.int64)
        return frequency - np.add.reduceat(dead_postings, self.indptr[:-1])


class LexicalIndex:
    """A BM25 index whose document i is store row i: the live rows of its segments, in order.

    Scores equal those of bm25s (method "lucene", ``K1``, ``B``) over the same live rows: idf
    ``log(1 + (N - df + 0.5) / (df + 0.5))``, term frequency normalised by the row's length over
    the average, a repeated query term counted each time, unknown terms ignored. Scoring a
    query walks the postings of its terms only.
    """

    def __init__(self, segments: list[SegmentPostings]):
        self._segments = segments
        self._targets = []  # per segment: the index row of each of its rows (-1: dead)
        offset, total_length = 0, 0
        for segment in segments:
            live_rows = np.cumsum(segment.live) - 1 + offset
            self._targets.append(np.where(segment.live, live_rows, -1))
            offset += int(segment.live.sum())
            total_length += int(segment.lengths[segment.live].sum())
        self.size = offset
        self._average_length = total_length / offset if offset else 0.0
        self._live_frequency = [segment.live_document_frequency() for segment in segments]

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        return cls.from_terms([tokenize(t) for t in texts])

    @classmethod
    def from_terms(cls, terms: list[list[str]]) -> LexicalIndex:
        """The index of documents already tokenized (``tokenize``): document i is ``terms[i]``."""
        return cls([SegmentPostings.from_terms(terms)])

    def _frequency(self, term: str) -> int:
        frequency = 0
        for segment, live_frequency in zip(self._segments, self._live_frequency):
            term_id = segment.term_ids.get(term)
            if term_id is not None:
                frequency += int(live_frequency[term_id])
        return frequency

    @cached_property
    def document_frequency(self) -> dict[str, int]:
        """How many live documents hold each term (terms of dead rows only are absent)."""
        frequency: Counter[str] = Counter()
        for segment, live_frequency in zip(self._segments, self._live_frequency):
            frequency.update({term: int(n) for term, n in zip(segment.vocabulary, live_frequency.tolist()) if n})
        return dict(frequency)

    def idf(self, term: str) -> float:
        """How informative a (tokenized) term is here: rare names weigh more than "party"."""
        df = self._frequency(term)
        return math.log(1 + (self.size - df + 0.5) / (df + 0.5))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document (zeros when no query term is known)."""
        return self.term_scores(tokenize(query))

    def term_scores(self, terms: list[str]) -> np.ndarray:
        """BM25 score of every document for tokenized query terms (float32, as bm25s computes it)."""
        scores = np.zeros(self.size, dtype=np.float32)
        for term in terms:  # in order, a repeated term again: the float32 sums bm25s makes
            df = self._frequency(term)
            if df == 0:
                continue  # not in any live row: bm25s has no such term
            idf = np.float32(math.log(1 + (self.size - df + 0.5) / (df + 0.5)))
            for segment, targets in zip(self._segments, self._targets):
                term_id = segment.term_ids.get(term)
                if term_id is None:
                    continue
                start, end = segment.indptr[term_id], segment.indptr[term_id + 1]
                rows = segment.rows[start:end]
                where = targets[rows]
                tf = segment.tf[start:end].astype(np.float32)
                live = where >= 0
                if not live.all():
                    rows, where, tf = rows[live], where[live], tf[live]
                normalised = tf / (K1 * ((1 - B) + B * segment.lengths[rows] / self._average_length) + tf)
                scores[where] += (idf * normalised).astype(np.float32)
        return scores


def write_postings(folder: Path, terms: list[list[str]], row_article_ids: Sequence[str], article_ids: Sequence[str]) -> None:
    """Write a segment's postings into its ``folder``: ``terms[i]`` are row i's BM25 terms,
    ``row_article_ids[i]`` its article, ``article_ids`` the segment's articles in order."""
    position = {article_id: i for i, article_id in enumerate(article_ids)}
    SegmentPostings.from_terms(terms, [position[a] for a in row_article_ids]).save(folder)
