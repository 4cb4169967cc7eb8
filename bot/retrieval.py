"""Finding the passages: dense (FAISS) and lexical (BM25) rankings, fused and tidied.

The pipeline for one question:
1. dense cosine top-N from FAISS and BM25 scores of every chunk;
2. a weighted fusion of the two on a common 0..1 scale (naive reciprocal-rank fusion
   measured *worse* than BM25 alone on news, so the weights are explicit and tuned);
3. metadata filters (outlet, date range) applied inside the search; outlets and dates the
   question itself names (``bot.query``) lift their articles, and a compound question's
   parts are scored too so that each part gets evidence in the selection;
4. the reader's view: near-duplicate chunks (syndicated copies, overlaps) collapsed,
   adjacent chunks of one article merged while they fit one passage, and a small
   penalty for piling many passages of one article on top when others score close.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from itertools import accumulate

import numpy as np

from bot.embedding import Embedder, embed_questions
from bot.errors import BotError
from bot.lexical import term_coverage, tokenize
from bot.query import QueryHints, SourceMatcher, near_dates, parse_query
from bot.store import StoredIndex, check_dimension
from bot.text import grow_window, sentence_spans
from bot.types import Hit


class DateFilterError(BotError, ValueError):
    """A --since/--until value that is not a date (the message says what is accepted)."""


_ISO_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?$")
DATE_FORMS = "YYYY, YYYY-MM, YYYY-MM-DD or a written date such as 'Dec 2023' or '1 December 2023'"


def parse_date_bound(value: str, *, end: bool, name: str = "date") -> str:
    """The ISO day a date filter means: a partial ``since`` its first day, a partial ``until`` its last.

    ``2023`` is 2023-01-01 as a start and 2023-12-31 as an end, ``2023-12`` (or ``Dec 2023``)
    2023-12-01 / 2023-12-31; full dates (``2023-12-05``, ``Dec 5 2023``, ``5 December 2023``)
    are that day. A date without a year, or anything unreadable, raises ``DateFilterError``.
    """
    import calendar
    from datetime import date, datetime

    text = " ".join(str(value).split())
    problem = DateFilterError(f"{name}: cannot read {text[:40]!r} as a date; use {DATE_FORMS}")
    if not text:
        raise problem
    iso = _ISO_PARTIAL.match(text)
    if iso:
        year, month, day = (int(g) if g else None for g in iso.groups())
    else:
        from dateutil import parser as date_parser

        try:  # parsed twice with different defaults: a field that follows the default was not given
            first = date_parser.parse(text, default=datetime(2000, 1, 1))
            second = date_parser.parse(text, default=datetime(2001, 2, 2))
        except (ValueError, OverflowError):
            raise problem from None
        if first.year != second.year:
            raise DateFilterError(f"{name}: {text[:40]!r} has no year; use {DATE_FORMS}")
        year = first.year
        month = first.month if first.month == second.month else None
        day = first.day if first.day == second.day else None
        if month is None and day is not None:
            raise problem
    try:
        if month is None:
            return (date(year, 12, 31) if end else date(year, 1, 1)).isoformat()
        if day is None:
            last = calendar.monthrange(year, month)[1]
            return date(year, month, last if end else 1).isoformat()
        return date(year, month, day).isoformat()
    except ValueError:  # 2023-13, 2023-02-30
        raise problem from None


@dataclass(frozen=True)
class Filters:
    """Constraints on which articles may answer. Empty means no constraint.

    ``since`` and ``until`` are read as dates (see ``parse_date_bound``) and kept as ISO days,
    inclusive: ``until="2023-12"`` keeps all of December.
    """

    sources: tuple[str, ...] = ()  # outlet names, matched case-insensitively
    since: str | None = None  # ISO date, inclusive
    until: str | None = None  # ISO date, inclusive

    def __post_init__(self) -> None:
        since = parse_date_bound(self.since, end=False, name="--since") if self.since else None
        until = parse_date_bound(self.until, end=True, name="--until") if self.until else None
        if since and until and since > until:
            raise DateFilterError(f"--since {since} is after --until {until}: no article can match")
        object.__setattr__(self, "since", since)
        object.__setattr__(self, "until", until)

    def __bool__(self) -> bool:
        return bool(self.sources or self.since or self.until)

    def to_dict(self) -> dict:
        data = {"sources": list(self.sources), "since": self.since, "until": self.until}
        return {k: v for k, v in data.items() if v}


@dataclass(frozen=True)
class RetrievalParams:
    """Knobs of the ranking; defaults chosen on the MultiHop-RAG dev split (see README)."""

    # dev: dense alone FR 0.335, BM25 alone 0.545, 0.35/0.65 0.562; 0.4/0.6 ties 0.35/0.65 on dev
    # with the boosts and parts (FR 0.615 vs 0.616) and gets the seed set right; 0.5 loses.
    dense_weight: float = 0.4
    lexical_weight: float = 0.6
    candidates: int = 200  # fused rows the selection starts from
    # Rows taken from each side (dense nearest, BM25 best) before fusion: fusing these (and
    # the rows of outlets and dates the question names) chooses the rows that fusing every
    # row chose. MultiHop-RAG test: 1,000 gives the same Hits@10/MRR as every row (0.9473 /
    # 0.7058); fusion then costs what the candidates cost, not what the archive holds.
    candidate_pool: int = 1000
    same_article_penalty: float = 0.03  # per passage already taken from that article
    # Beyond the penalty, a limit: past it an article's chunks come only after every other
    # candidate. A live blog or a long explainer that matches every word of the question
    # otherwise fills the page, and the other outlets a comparison needs never show.
    # dev: fact recall@10 0.686 -> 0.700 (3: 0.683, 5: 0.694).
    passages_per_article: int = 4
    duplicate_cosine: float = 0.97  # two chunks this similar say the same thing
    max_passage_tokens: int = 256  # a merged passage stays within what the model reads
    # Question understanding (bot.query): outlets and dates named in the question lift
    # their articles; a compound question's parts are searched too, and the selection
    # makes room for every part's best evidence.
    understand: bool = True
    source_boost: float = 0.2  # dev: fact recall@10 0.562 -> 0.582
    date_boost: float = 0.2  # dev: 0.582 -> 0.600 (temporal questions name their articles' days)
    month_boost: float = 0.1  # "in November 2023", "published after ..." (neutral on dev)
    part_weight: float = 0.5  # dev: 0.600 -> 0.616, MRR 0.633 -> 0.653
    part_decay: float = 0.5  # a part's pull once it already has a passage, per passage
    # Parts scored by their own words with the question's cosine: embedding them too gained
    # dev MRR 0.002 and Hits@4 0.013 for twice the model time (~20 ms a question here).
    embed_parts: bool = False
    # Each passage is placed in its chunk's article on the sentence that best matches the
    # question, grown to whole sentences up to max_passage_tokens toward the neighbours that
    # share the question's rarer words, never re-showing a sentence an earlier passage of
    # that article holds. dev: fact recall 0.615 -> 0.666, Hits@10 0.907 -> 0.953.
    fit_passages: bool = True
    # Where in the article a passage goes also listens to the ranking: each sentence gets
    # this share of the best fused score (question or part) of a chunk that holds it, beside
    # the question's words it shares. Lexical overlap alone cannot tell the paragraph that
    # paraphrases the question from one that repeats its names. dev: fact recall
    # 0.667 -> 0.686, Hits@10 0.953 -> 0.970 (0.5: 0.685).
    sentence_prior_weight: float = 0.3
    # Fitted passages are shown in the order of their own evidence: the best fused score of
    # a chunk under the passage as placed, plus this weight times the share of the
    # question's IDF weight the passage holds. The selection order served diversity; the
    # reader (and MRR) wants the best passage first. dev: MRR 0.690 -> 0.717, MAP 0.369 ->
    # 0.381 (0.5: 0.707; 2.0: 0.701; 0.0, the chunk score alone: 0.671).
    passage_order_lexical: float = 1.0


# Candidates at least 1/8 of the rows: one pass over every vector beats gathering theirs
# (609 articles, 8,885 rows, ~2,000 candidates: 1.1 ms against 3.6 ms a text).
FULL_SCAN_SHARE = 8
_LAST = 1e6  # far below any fused score: sorts a candidate after all others


def _normalize_source(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


class Retriever:
    """Ranks an index's chunks for a question. Built once per loaded index."""

    def __init__(self, index: StoredIndex, embedder: Embedder, params: RetrievalParams | None = None):
        self.index = index
        self.embedder = embedder
        self.params = params or RetrievalParams()
        chunks = index.chunks
        articles = index.articles
        self._row_source = np.array([_normalize_source(articles[c.article_id].source or "") for c in chunks], dtype=object)
        self._row_source_name = np.array([articles[c.article_id].source or "" for c in chunks], dtype=object)
        self._row_date = np.array([articles[c.article_id].date or "" for c in chunks], dtype=object)
        self._row_month = np.array([d[:7] for d in self._row_date], dtype=object)
        self._row_article = [c.article_id for c in chunks]
        ids = {aid: i for i, aid in enumerate(dict.fromkeys(self._row_article))}
        self._row_article_no = np.array([ids[a] for a in self._row_article], dtype=np.int64)
        self._n_articles = len(ids)
        self.source_matcher = SourceMatcher({a.source for a in articles.values() if a.source})
        years = sorted(a.date[:4] for a in articles.values() if a.date)
        self._default_year = int(years[len(years) // 2]) if years else None
        self._sentences: dict[str, _ArticleSentences] = {}
        self._row_start = np.array([c.start for c in chunks], dtype=np.int64)
        self._row_end = np.array([c.end for c in chunks], dtype=np.int64)
        self._rows_of_article: dict[str, np.ndarray] = {}
        for row, article_id in enumerate(self._row_article):
            self._rows_of_article.setdefault(article_id, []).append(row)
        self._rows_of_article = {a: np.array(r, dtype=np.int64) for a, r in self._rows_of_article.items()}
        # Per-value tables: the rows a named outlet, day or month lifts, without a scan.
        self._rows_by_source = _rows_by(self._row_source_name)
        self._rows_by_date = _rows_by(self._row_date)
        self._rows_by_month = _rows_by(self._row_month)
        dated = np.array([row for row, d in enumerate(self._row_date) if d], dtype=np.int64)
        order = np.argsort(self._row_date[dated].astype(str), kind="stable") if len(dated) else dated
        self._rows_by_day_order = dated[order]
        self._sorted_dates = self._row_date[self._rows_by_day_order].astype(str)

    # -- scoring -------------------------------------------------------------------

    def allowed_rows(self, filters: Filters) -> np.ndarray | None:
        if not filters:
            return None
        mask = np.ones(len(self._row_article), dtype=bool)
        if filters.sources:
            wanted = {_normalize_source(s) for s in filters.sources}
            mask &= np.array([src in wanted for src in self._row_source], dtype=bool)
        if filters.since or filters.until:
            mask &= self._dated_between(filters.since, filters.until)
        return np.flatnonzero(mask)

    def _dated_between(self, since: str | None, until: str | None, rows: np.ndarray | None = None) -> np.ndarray:
        """Whether each row (all, or ``rows``) has its article dated within [since, until]
        (ISO; either end may be open)."""
        lo, hi = since or "", (until or "9999")[:10]
        dates = self._row_date if rows is None else self._row_date[rows]
        return np.array([bool(d) and lo <= d <= hi for d in dates], dtype=bool)

    def embed_query(self, query: str) -> np.ndarray:
        return embed_questions(self.embedder, [query])[0]

    def understand(self, query: str) -> QueryHints:
        if not self.params.understand:
            return QueryHints()
        return parse_query(query, self.source_matcher, self._default_year)

    def _boosts(self, rows: np.ndarray, hints: QueryHints, sources: tuple[str, ...] | None = None) -> np.ndarray:
        """Lift of each of ``rows`` for the outlets and dates the question names."""
        params = self.params
        boost = np.zeros(len(rows), dtype=np.float32)
        sources = hints.sources if sources is None else sources
        if sources and params.source_boost:
            boost += params.source_boost * np.isin(self._row_source_name[rows], list(sources))
        if hints.dates and params.date_boost:
            days = set().union(*(near_dates(d) for d in hints.dates))
            boost += params.date_boost * np.isin(self._row_date[rows], list(days))
        if params.month_boost and (hints.months or hints.since or hints.until):
            inside = np.zeros(len(boost), dtype=bool)
            if hints.months:
                inside |= np.isin(self._row_month[rows], list(hints.months))
            if hints.since or hints.until:
                inside |= self._dated_between(hints.since, hints.until, rows)
            boost += params.month_boost * inside
        return boost

    def _named_rows(self, hints: QueryHints, sources: set[str]) -> np.ndarray:
        """Rows a boost can lift (the outlets, days, months and date range the question names),
        found through per-value tables rather than by scanning every row."""
        params = self.params
        found = []
        if params.source_boost:
            found += [self._rows_by_source.get(name, _NO_ROWS) for name in sources]
        if hints.dates and params.date_boost:
            found += [self._rows_by_date.get(day, _NO_ROWS) for day in set().union(*(near_dates(d) for d in hints.dates))]
        if params.month_boost:
            found += [self._rows_by_month.get(month, _NO_ROWS) for month in hints.months]
            if hints.since or hints.until:
                lo, hi = hints.since or "", (hints.until or "9999")[:10]
                dates = self._sorted_dates
                found.append(self._rows_by_day_order[np.searchsorted(dates, lo, "left") : np.searchsorted(dates, hi, "right")])
        return np.concatenate(found) if found else _NO_ROWS

    def _fused(self, rows: np.ndarray, dense: np.ndarray, lexical: np.ndarray, lexical_top: float) -> np.ndarray:
        """Weighted fusion of cosine and max-normalized BM25 for ``rows`` (``dense`` theirs,
        ``lexical`` every row's, ``lexical_top`` its maximum over every row)."""
        params = self.params
        lex = lexical[rows]
        lex_norm = lex / lexical_top if lexical_top > 0 else np.zeros_like(lex)
        return params.dense_weight * dense + params.lexical_weight * lex_norm

    def score(self, query: str, filters: Filters | None = None, query_vector: np.ndarray | None = None) -> dict[int, tuple[float, float, float]]:
        """Candidate rows -> (fused, dense cosine, raw BM25)."""
        return self._score(query, filters, query_vector).candidates

    def _score(self, query, filters, query_vector) -> _Scores:
        """The scoring stages: the question read (hints, vectors), candidates from each side,
        then fusion and boosts over the candidates only."""
        params = self.params
        if len(self.index.vectors) == 0:
            return _Scores({}, None, None)
        allowed = self.allowed_rows(filters or Filters())
        if allowed is not None and len(allowed) == 0:
            return _Scores({}, None, None)
        hints = self.understand(query)
        use_parts = bool(hints.parts) and params.part_weight > 0
        embed_parts = use_parts and params.embed_parts
        if query_vector is None:  # one model call for the question and (when embedded) its parts
            vectors = embed_questions(self.embedder, [query, *hints.parts] if embed_parts else [query])
        elif embed_parts:
            vectors = np.vstack([query_vector[None, :], embed_questions(self.embedder, list(hints.parts))])
        else:
            vectors = query_vector[None, :]
        check_dimension(vectors.shape[1], self.index.vectors.dimension, self.index.path)
        # One scorer per text searched: the question, then each part (a part without its own
        # vector keeps the question's cosine: its words decide).
        scorers = [_TextScorer(self, vectors[0], self.index.lexical.scores(query), hints, None)]
        if use_parts:
            for i, (text, psources) in enumerate(zip(hints.parts, hints.part_sources)):
                scorers.append(_TextScorer(self, vectors[i + 1] if embed_parts else vectors[0], self.index.lexical.scores(text),
                                           hints, psources or hints.sources))
        rows = self._candidates(scorers, hints, allowed)
        cosines = {id(v): self.cosines(rows, v) for v in (s.vector for s in scorers)}  # parts share the question's
        fused, dense = scorers[0].fused(rows, cosines[id(scorers[0].vector)])
        lexical = scorers[0].lexical[rows]
        n = min(params.candidates, len(rows))
        chosen = set(np.argpartition(-fused, n - 1)[:n].tolist())
        parts = np.stack([scorer.fused(rows, cosines[id(scorer.vector)])[0] for scorer in scorers[1:]]) if use_parts else None
        if parts is not None:
            for p in parts:
                chosen |= set(np.argpartition(-p, n - 1)[: n // 2].tolist())
        scored = {int(rows[i]): (float(fused[i]), float(dense[i]), float(lexical[i])) for i in chosen}
        part_scores = {int(rows[i]): parts[:, i] for i in chosen} if parts is not None else None
        best = fused if parts is None else np.maximum(fused, parts.max(axis=0))
        return _Scores(scored, part_scores, _BestScore(scorers, rows, best))

    def cosines(self, rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
        """Cosines of ``rows`` with ``vector``: one pass over every stored row when the rows are
        a large share of them (cheaper than gathering them), else from the rows' own vectors."""
        store = self.index.vectors
        if len(rows) * FULL_SCAN_SHARE >= len(store):
            return store.cosines(vector)[rows]
        return store.vectors_of(rows) @ vector

    def _candidates(self, scorers: list[_TextScorer], hints: QueryHints, allowed: np.ndarray | None) -> np.ndarray:
        """The rows worth fusing: each text's nearest rows from the vector store and its best
        BM25 rows (``candidate_pool`` a side, filters applied inside both), and the rows the
        question's outlets and dates lift. Fusion over them picks what fusion over every row
        picks (see ``RetrievalParams.candidate_pool``)."""
        pool = self.params.candidate_pool
        found = []
        for vector in {id(s.vector): s.vector for s in scorers}.values():
            _, ids = self.index.vectors.search(vector[None, :], pool, allowed)
            found.append(ids[0][ids[0] >= 0])
        for scorer in scorers:
            lexical = scorer.lexical if allowed is None else scorer.lexical[allowed]
            top = np.argpartition(-lexical, pool - 1)[:pool] if len(lexical) > pool else np.arange(len(lexical))
            top = top[lexical[top] > 0]
            found.append(top if allowed is None else allowed[top])
        named = self._named_rows(hints, {name for s in scorers for name in (s.sources if s.sources is not None else hints.sources)})
        if allowed is not None and len(named):
            named = named[np.isin(named, allowed)]
        found.append(named)
        return np.unique(np.concatenate(found).astype(np.int64))

    def dense_only(self, query: str, k: int) -> list[int]:
        """Rows of the k nearest chunks by cosine alone (for latency and ablations)."""
        _, ids = self.index.search(self.embed_query(query)[None, :], k)
        return [int(i) for i in ids[0] if i >= 0]

    def lexical_only(self, query: str, k: int) -> list[int]:
        """Rows of the k best chunks by BM25 alone (for latency and ablations)."""
        scores = self.index.lexical.scores(query)
        top = np.argpartition(-scores, min(k, len(scores) - 1))[:k] if len(scores) > k else np.arange(len(scores))
        return [int(i) for i in top[np.argsort(-scores[top])] if scores[i] > 0]

    # -- the reader's view ---------------------------------------------------------

    def search(
        self, query: str, k: int, filters: Filters | None = None, query_vector: np.ndarray | None = None, *, page: int | None = None
    ) -> list[Hit]:
        """The k best passages, tidied for a reader (deduplicated, merged, diversified).

        ``page``: the passages come in pages of this size (default: one page of k). A
        search with a larger k returns the same earlier pages, so "More sources" can search
        again and skip what was shown.
        """
        scores = self._score(query, filters, query_vector)
        scored = scores.candidates
        if not scored:
            return []
        order = sorted(scored, key=lambda r: -scored[r][0])
        hits = self._select(order, scored, k, scores.parts)
        if self.params.fit_passages:
            weights = self._term_weights(query)
            fitted = self._fit_passages(hits, weights, k, scores.best_by_row)[:k]
            hits = self._by_evidence(fitted, weights, scores.best_by_row, page or k)
        return hits[:k]

    def _select(self, order: list[int], scored: dict[int, tuple[float, float, float]], k: int, part_scores: dict | None = None) -> list[Hit]:
        """Greedy picks: fused score, minus a penalty per passage already taken from the same
        article, plus the pull of the question part this chunk serves best (which decays as
        that part gets passages), skipping near-duplicates of what was taken."""
        params = self.params
        chunks = self.index.chunks
        taken_rows: list[int] = []
        pool = order[: max(k * 8, 40)]
        if part_scores is not None:
            extra = set()
            n_parts = len(next(iter(part_scores.values())))
            for p in range(n_parts):
                extra.update(sorted(part_scores, key=lambda r: -part_scores[r][p])[: max(k * 2, 10)])
            pool = list(dict.fromkeys(pool + sorted(extra - set(pool))))
            covered = np.zeros(n_parts)
        # The greedy loop runs on arrays: it weighs ~100 candidates up to 2k times per question.
        pool_rows = np.array(pool, dtype=np.int64)
        base = np.array([scored[r][0] for r in pool], dtype=np.float64)
        article_no = self._row_article_no[pool_rows]
        ordinal = np.array([chunks[r].ordinal for r in pool], dtype=np.int64)
        part_matrix = np.stack([part_scores[r] for r in pool]) if part_scores is not None else None
        alive = np.ones(len(pool), dtype=bool)
        beside_taken = np.zeros(len(pool), dtype=bool)  # a neighbour joins its passage: no penalty
        taken_per_article = np.zeros(self._n_articles, dtype=np.float64)
        while alive.any() and len(taken_rows) < k * 2:
            penalty = params.same_article_penalty * taken_per_article[article_no]
            value = base - np.where(beside_taken, 0.0, penalty)
            # Past the limit an article only comes once every other candidate is taken.
            value = np.where(taken_per_article[article_no] >= params.passages_per_article, value - _LAST, value)
            if part_matrix is not None:
                pull = part_matrix * params.part_decay**covered
                value = value + params.part_weight * pull.max(axis=1)
            value[~alive] = -np.inf
            i = int(np.argmax(value))
            alive[i] = False
            best = pool[i]
            if self._duplicates_taken(best, taken_rows):
                continue
            taken_rows.append(best)
            taken_per_article[article_no[i]] += 1
            beside_taken |= (article_no == article_no[i]) & (np.abs(ordinal - ordinal[i]) == 1)
            if part_matrix is not None:
                covered[int(np.argmax(part_matrix[i] * params.part_decay**covered))] += 1
        return self._merge_adjacent(taken_rows, scored)  # up to 2k: fitting may drop some

    def _duplicates_taken(self, row: int, taken: list[int]) -> bool:
        if not taken:
            return False
        text = " ".join(self.index.chunks[row].text.split())
        for other in taken:
            if " ".join(self.index.chunks[other].text.split()) == text:
                return True
        sims = self.index.vectors.vectors_of(taken) @ self.index.vectors.vectors_of([row])[0]
        return bool(np.max(sims) >= self.params.duplicate_cosine)

    def _merge_adjacent(self, rows: list[int], scored: dict[int, tuple[float, float, float]]) -> list[Hit]:
        """Join neighbouring chunks of one article into one passage while it fits the cap."""
        chunks = self.index.chunks
        hits: list[Hit] = []
        groups: list[list[int]] = []
        for row in rows:
            chunk = chunks[row]
            for group in groups:
                first, last = chunks[group[0]], chunks[group[-1]]
                if first.article_id != chunk.article_id:
                    continue
                adjacent = chunk.ordinal in (first.ordinal - 1, last.ordinal + 1)
                tokens = sum(chunks[r].token_count for r in group) + chunk.token_count
                if adjacent and tokens <= self.params.max_passage_tokens:
                    group.append(row)
                    group.sort(key=lambda r: chunks[r].ordinal)
                    break
            else:
                groups.append([row])
        for group in groups:
            best = max(group, key=lambda r: scored[r][0])
            hits.append(
                Hit(
                    article_id=chunks[group[0]].article_id,
                    start=min(chunks[r].start for r in group),
                    end=max(chunks[r].end for r in group),
                    score=scored[best][0],
                    dense=max(scored[r][1] for r in group),
                    lexical=max(scored[r][2] for r in group),
                    chunk_rows=tuple(group),
                )
            )
        return hits  # in selection order: the ranking already weighed diversity and parts

    # -- passages that fill what the reader (and the paper's protocol) allows ------

    def _article_sentences(self, article_id: str) -> _ArticleSentences:
        cached = self._sentences.get(article_id)
        if cached is None:
            text = self.index.articles[article_id].text
            spans = sentence_spans(text)
            # A sentence's cost includes the gap before it: what lies between sentences
            # (a stray bullet, a bracket) is tokenized too once the passage is joined.
            pieces = [text[s:e] for s, e in spans]
            gaps = [text[spans[i - 1][1] : s] if i else "" for i, (s, _) in enumerate(spans)]
            counts = self.embedder.count_tokens(pieces + gaps)
            costs = [c + g for c, g in zip(counts[: len(spans)], counts[len(spans) :])]
            terms = [frozenset(tokenize(piece)) for piece in pieces]
            cached = self._sentences[article_id] = _ArticleSentences(spans, [0, *accumulate(costs)], terms)
        return cached

    def _fit_passages(self, hits: list[Hit], weights: dict[str, float], k: int, row_scores: np.ndarray | None = None) -> list[Hit]:
        """Place each hit's passage in its article and fill it to the cap, tiling the article.

        Chunks are cut for embedding, not for reading, and they are good at finding the
        right article but often hold the wrong part of it (on MultiHop-RAG dev, half the
        missed facts sat in an article already in the top 10). So a passage starts at the
        article's not-yet-shown sentence that shares most of the question's informative
        (IDF-weighted) words, keeping the chunk's own sentences when they are as good, and
        grows by whole sentences toward the more relevant side until the cap. Sentences an
        earlier passage of the same article holds are never repeated; a hit with nothing
        new left is dropped, which frees its place for the next one.

        ``weights``: the question's terms (``_term_weights``). ``row_scores`` (every chunk's
        best fused score) lends each sentence a prior; without them, words alone place the
        passages.
        """
        cap = self.params.max_passage_tokens
        shown: dict[str, set[int]] = {}
        relevance_of: dict[str, list[float]] = {}
        fitted: list[tuple[Hit, list[float] | None, int, int]] = []
        for hit in hits:
            if len(fitted) == k:
                break
            sentences = self._article_sentences(hit.article_id)
            taken = shown.setdefault(hit.article_id, set())
            core = [i for i, (s, e) in enumerate(sentences.spans) if s < hit.end and e > hit.start]
            if not core:  # no sentence found in the chunk's span: show it as it is
                fitted.append((hit, None, 0, 0))
                continue
            fresh = [i for i in core if i not in taken]
            if not fresh:
                continue
            relevance = relevance_of.get(hit.article_id)
            if relevance is None:
                relevance = relevance_of[hit.article_id] = self._sentence_relevance(hit.article_id, weights, row_scores)
            # The chunk found the article; the passage goes where the article best answers:
            # its unshown sentence sharing most of the question's informative words (the
            # chunk's own sentences win ties). dev: Hits@10 0.920 -> 0.953, MRR 0.660 -> 0.691.
            inside = set(fresh)
            pivot = max(
                (i for i in range(len(sentences.spans)) if i not in taken),
                key=lambda i: (relevance[i], i in inside, -i),
            )
            span = _grow(pivot, fresh if pivot in inside else [pivot], sentences, relevance, taken, cap)
            if span is None:  # one sentence longer than the cap (the chunker split it): keep the chunk
                taken.update(core)
                fitted.append((hit, None, 0, 0))
                continue
            taken.update(range(span[0], span[1] + 1))
            fitted.append((hit, relevance, *span))
        return self._within_cap(fitted)

    def _by_evidence(self, passages: list[Hit], weights: dict[str, float], row_scores: np.ndarray, page: int) -> list[Hit]:
        """Each page of passages in the order of their own evidence (see
        ``passage_order_lexical``). Pages are ordered apart: a later page is searched with a
        larger k, and what an earlier page showed must stay on that page."""
        evidence = [self._passage_evidence(p, weights, row_scores) for p in passages]
        ordered: list[Hit] = []
        for first in range(0, len(passages), page):
            block = range(first, min(first + page, len(passages)))
            ordered.extend(passages[i] for i in sorted(block, key=lambda i: -evidence[i]))  # stable on ties
        return ordered

    def _term_weights(self, query: str) -> dict[str, float]:
        """The question's lexical terms, each weighted by its IDF: rare names count most."""
        return {t: self.index.lexical.idf(t) for t in set(tokenize(query))}

    def _sentence_relevance(self, article_id: str, weights: dict[str, float], row_scores: np.ndarray | None) -> list[float]:
        """Per sentence: the share of the question's IDF weight it holds, plus the prior."""
        sentences = self._article_sentences(article_id)
        query_terms = weights.keys()
        total = sum(weights.values()) or 1.0
        words = np.array([sum(weights[t] for t in terms & query_terms) for terms in sentences.terms]) / total
        if row_scores is None or not self.params.sentence_prior_weight:
            return words.tolist()
        rows = self._rows_of_article[article_id]
        starts, ends = self._row_start[rows], self._row_end[rows]
        spans = np.array(sentences.spans).reshape(-1, 2)
        overlaps = (spans[:, :1] < ends[None, :]) & (spans[:, 1:] > starts[None, :])
        prior = np.where(overlaps, row_scores(rows)[None, :], 0.0).max(axis=1, initial=0.0)
        return (words + self.params.sentence_prior_weight * prior).tolist()

    def _passage_evidence(self, hit: Hit, weights: dict[str, float], row_scores: np.ndarray) -> float:
        """The best fused score of a chunk under the passage, plus the question's words in it."""
        rows = self._rows_of_article[hit.article_id]
        under = (self._row_start[rows] < hit.end) & (self._row_end[rows] > hit.start)
        ranked = float(row_scores(rows[under]).max()) if under.any() else hit.score
        return ranked + self.params.passage_order_lexical * term_coverage(weights, self._text(hit))

    def _within_cap(self, fitted: list[tuple[Hit, list[float] | None, int, int]]) -> list[Hit]:
        """Sentence costs make an estimate; the joined text is what gets counted (one batch)."""
        hits = [hit if relevance is None else self._sentence_range(hit, lo, hi) for hit, relevance, lo, hi in fitted]
        counts = self.embedder.count_tokens([self._text(h) for h in hits])
        for i, ((hit, relevance, lo, hi), count) in enumerate(zip(fitted, counts)):
            while relevance is not None and count > self.params.max_passage_tokens and hi > lo:
                if relevance[lo] < relevance[hi]:  # drop the less relevant end
                    lo += 1
                else:
                    hi -= 1
                hits[i] = self._sentence_range(hit, lo, hi)
                count = self.embedder.count_tokens([self._text(hits[i])])[0]
        return hits

    def _sentence_range(self, hit: Hit, lo: int, hi: int) -> Hit:
        spans = self._article_sentences(hit.article_id).spans
        return replace(hit, start=spans[lo][0], end=spans[hi][1])

    def _text(self, hit: Hit) -> str:
        return self.index.articles[hit.article_id].text[hit.start : hit.end]


_NO_ROWS = np.zeros(0, dtype=np.int64)


def _rows_by(values: np.ndarray) -> dict[str, np.ndarray]:
    rows: dict[str, list[int]] = {}
    for row, value in enumerate(values):
        if value:
            rows.setdefault(value, []).append(row)
    return {value: np.array(r, dtype=np.int64) for value, r in rows.items()}


class _TextScorer:
    """Fused scores of one searched text (the question or a part) for any rows: its cosine
    from the vector store, its BM25 (every row's, computed once), its boosts."""

    def __init__(self, retriever: Retriever, vector: np.ndarray, lexical: np.ndarray, hints: QueryHints,
                 sources: tuple[str, ...] | None):
        self.retriever, self.vector, self.lexical, self.hints, self.sources = retriever, vector, lexical, hints, sources
        self.lexical_top = float(lexical.max()) if lexical.size else 0.0

    def fused(self, rows: np.ndarray, dense: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(fused score with boosts, cosine) of each of ``rows`` (``dense``: their cosines, when known)."""
        if dense is None:
            dense = self.retriever.cosines(rows, self.vector)
        fused = self.retriever._fused(rows, dense, self.lexical, self.lexical_top)
        return fused + self.retriever._boosts(rows, self.hints, self.sources), dense


class _BestScore:
    """Any row's best fused score (the question's or any part's): the prior that places a
    passage inside its article, computed once per row and only for the rows asked about
    (the candidates' are known from the scoring)."""

    def __init__(self, scorers: list[_TextScorer], rows: np.ndarray, best: np.ndarray):
        self.scorers = scorers
        self._known: dict[int, float] = dict(zip(rows.tolist(), best.tolist()))

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        missing = np.array([r for r in dict.fromkeys(rows.tolist()) if r not in self._known], dtype=np.int64)
        if len(missing):
            best = np.max([scorer.fused(missing)[0] for scorer in self.scorers], axis=0)
            self._known.update(zip(missing.tolist(), best.tolist()))
        return np.array([self._known[r] for r in rows.tolist()], dtype=np.float32)


@dataclass(frozen=True)
class _Scores:
    candidates: dict[int, tuple[float, float, float]]  # row -> (fused, dense cosine, raw BM25)
    parts: dict[int, np.ndarray] | None  # row -> fused score per question part
    best_by_row: _BestScore | None  # any row's best fused score (question or any part)


@dataclass(frozen=True)
class _ArticleSentences:
    spans: list[tuple[int, int]]
    prefix_costs: list[int]  # word pieces of sentences [0, i), each with the gap before it
    terms: list[frozenset[str]]  # lexical terms per sentence

    def cost(self, lo: int, hi: int) -> int:
        """Word pieces of sentences lo..hi joined (an estimate: see ``_within_cap``)."""
        return self.prefix_costs[hi + 1] - self.prefix_costs[lo]


def _grow(pivot: int, seed: list[int], sentences: _ArticleSentences, relevance: list[float], taken: set[int], cap: int) -> tuple[int, int] | None:
    """Sentence range [lo, hi]: the run of ``seed`` sentences around ``pivot``, trimmed to
    the cap, then extended over untaken neighbours toward the more relevant side."""
    if sentences.cost(pivot, pivot) > cap:
        return None
    members = set(seed)
    lo = hi = pivot
    while lo - 1 in members:
        lo -= 1
    while hi + 1 in members:
        hi += 1
    while sentences.cost(lo, hi) > cap:  # shrink toward the pivot, dropping the less relevant end
        if hi > pivot and (lo == pivot or relevance[hi] <= relevance[lo]):
            hi -= 1
        else:
            lo += 1
    return grow_window(
        lo,
        hi,
        len(sentences.spans) - 1,
        fits=lambda a, b: a not in taken and b not in taken and sentences.cost(a, b) <= cap,
        score=relevance.__getitem__,
    )
