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
        arrays = (indptr, rows, tf, lengths, row_articles)
        if not (isinstance(vocabulary, list) and all(a.ndim == 1 and a.dtype.kind in "iu" for a in arrays)
                and len(indptr) == len(vocabulary) + 1 and indptr[0] == 0 and indptr[-1] == len(rows) == len(tf)
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
        (folder / POSTINGS_FILES[0]).write_text(json.dumps(self.vocabulary, ensure_ascii=False), encoding="utf-8")
        for name, array in zip(POSTINGS_FILES[1:], (self.indptr, self.rows, self.tf, self.lengths, self.row_articles)):
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


class _ScoredSegment:
    """One segment's postings as a loaded index uses them: each row's index row (``targets``,
    -1 for dead rows) and each term's live document frequency."""

    def __init__(self, postings: SegmentPostings, offset: int):
        self.postings = postings
        self.term_ids, self.vocabulary = postings.term_ids, postings.vocabulary
        self.live_frequency = postings.live_document_frequency()
        self.all_live = bool(postings.live.all())
        self.targets = np.where(postings.live, np.cumsum(postings.live) - 1 + offset, -1).astype(np.int32)

    def term_scores(self, term_id: int, idf: np.float32, average_length: float) -> tuple[np.ndarray, np.ndarray]:
        """(index rows, BM25 scores) of the live rows holding term ``term_id``, as bm25s computes
        them: idf and term frequency as float32, the length normalisation in float64, the
        product stored as float32."""
        postings = self.postings
        start, end = postings.indptr[term_id], postings.indptr[term_id + 1]
        rows, tf = postings.rows[start:end], postings.tf[start:end].astype(np.float32)
        targets = self.targets[rows]
        if not self.all_live:
            live = targets >= 0
            rows, tf, targets = rows[live], tf[live], targets[live]
        normalised = tf / (K1 * ((1 - B) + B * postings.lengths[rows] / average_length) + tf)
        return targets, (idf * normalised).astype(np.float32)


class LexicalIndex:
    """A BM25 index whose document i is store row i: the live rows of its segments, in order.

    Scores equal those of bm25s (method "lucene", ``K1``, ``B``) over the same live rows: idf
    ``log(1 + (N - df + 0.5) / (df + 0.5))``, term frequency normalised by the row's length over
    the average, a repeated query term counted each time, unknown terms ignored. Loading reads
    the postings and counts the live rows' statistics; a term's scores (over every segment) are
    computed when a query first uses it and kept, so scoring a query adds up the postings of
    its terms only, at a cost that does not grow with the number of segments.
    """

    def __init__(self, segments: list[SegmentPostings]):
        self._segments: list[_ScoredSegment] = []
        offset, total_length = 0, 0
        for postings in segments:
            self._segments.append(_ScoredSegment(postings, offset))
            offset += int(postings.live.sum())
            total_length += int(postings.lengths[postings.live].sum())
        self.size = offset
        self._average_length = total_length / offset if offset else 0.0
        self._scored: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # term -> (index rows, scores)

    @classmethod
    def build(cls, texts: list[str]) -> LexicalIndex:
        return cls.from_terms([tokenize(t) for t in texts])

    @classmethod
    def from_terms(cls, terms: list[list[str]]) -> LexicalIndex:
        """The index of documents already tokenized (``tokenize``): document i is ``terms[i]``."""
        return cls([SegmentPostings.from_terms(terms)])

    def _frequency(self, term: str) -> int:
        frequency = 0
        for segment in self._segments:
            term_id = segment.term_ids.get(term)
            if term_id is not None:
                frequency += int(segment.live_frequency[term_id])
        return frequency

    @cached_property
    def document_frequency(self) -> dict[str, int]:
        """How many live documents hold each term (terms of dead rows only are absent)."""
        frequency: Counter[str] = Counter()
        for segment in self._segments:
            frequency.update({term: n for term, n in zip(segment.vocabulary, segment.live_frequency.tolist()) if n})
        return dict(frequency)

    def idf(self, term: str) -> float:
        """How informative a (tokenized) term is here: rare names weigh more than "party"."""
        df = self._frequency(term)
        return math.log(1 + (self.size - df + 0.5) / (df + 0.5))

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every document (zeros when no query term is known)."""
        return self.term_scores(tokenize(query))

    def _term(self, term: str) -> tuple[np.ndarray, np.ndarray] | None:
        """(index rows, BM25 scores) of the live rows holding ``term``; None when none does."""
        scored = self._scored.get(term)
        if scored is not None:
            return scored
        found = [(segment, segment.term_ids.get(term)) for segment in self._segments]
        found = [(segment, term_id) for segment, term_id in found if term_id is not None]
        df = sum(int(segment.live_frequency[term_id]) for segment, term_id in found)
        if df == 0:
            return None  # not cached: any text may be asked, and this costs a dict lookup per segment
        idf = np.float32(math.log(1 + (self.size - df + 0.5) / (df + 0.5)))
        parts = [segment.term_scores(term_id, idf, self._average_length) for segment, term_id in found]
        scored = self._scored[term] = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
        return scored

    def term_scores(self, terms: list[str]) -> np.ndarray:
        """BM25 score of every document for tokenized query terms (float32, summed as bm25s does:
        term by term in query order, a repeated term again; a term no live row holds adds nothing)."""
        scores = np.zeros(self.size, dtype=np.float32)
        known = [scored for scored in map(self._term, terms) if scored is not None]
        if known:  # one add.at in term order: the same float32 sums as one call per term
            np.add.at(scores, np.concatenate([k[0] for k in known]), np.concatenate([k[1] for k in known]))
        return scores


def write_postings(folder: Path, terms: list[list[str]], row_article_ids: Sequence[str], article_ids: Sequence[str]) -> None:
    """Write a segment's postings into its ``folder``: ``terms[i]`` are row i's BM25 terms,
    ``row_article_ids[i]`` its article, ``article_ids`` the segment's articles in order."""
    position = {article_id: i for i, article_id in enumerate(article_ids)}
    SegmentPostings.from_terms(terms, [position[a] for a in row_article_ids]).save(folder)
