"""Same story, several outlets: group the articles that report one story.

An article's vector is the normalised mean of its chunks' vectors, read from the store
(no re-embedding). Two articles are *alike* when their cosine is at least
``StoryParams.threshold``, they come from different, known outlets, and (when both are dated)
they were published at most ``StoryParams.days`` apart. Groups are formed by complete
linkage: every pair inside a group is alike, so a chain A~B~C never joins A and C when
they are not alike themselves.

Computed once per loaded index (``bot.service``), never per question: 609 articles take
about 40 ms (``python -m bot eval stories``).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial.distance import squareform

from bot.rows import group_rows, rows_by_article
from bot.types import Article, Chunk


@dataclass(frozen=True)
class StoryParams:
    # Chosen by hand-checking samples of MultiHop-RAG's candidate pairs (different outlets,
    # <= 3 days apart) by band of cosine: in 0.70-0.75 most pairs were only the same beat
    # (two deal round-ups, two fantasy-football pieces of one week); from 0.80 most were one
    # event (the SBF trial, Biden's AI order, Altman's firing, the Steam Deck OLED). At 0.80,
    # 16 of the 21 groups are one event (``python -m bot eval stories``, README).
    threshold: float = 0.80
    # Reports of one event appear within a few days of each other; a later article on the
    # same topic is a new development, which a reader wants quoted, not folded away. 2 days
    # instead of 3 loses two true groups (the SBF trial's eve, Michigan's sign-stealing) and
    # one false one (two different days' ASX market wraps): no better, so the wider window.
    days: int = 3


@dataclass(frozen=True)
class Stories:
    """Which story group each article is in (articles alone in their story are absent)."""

    group_of: Mapping[str, int]  # article id -> group number
    groups: tuple[tuple[str, ...], ...]  # article ids of each group of two or more, oldest first

    def same_story(self, a: str, b: str) -> bool:
        group = self.group_of.get(a)
        return group is not None and group == self.group_of.get(b)


NO_STORIES = Stories({}, ())


def outlet_key(source: str | None) -> str | None:
    """The outlet an article comes from: "The Independent - Sports" and "The Independent -
    Travel" are one outlet (their sections), so they never count as two reports."""
    if not source:
        return None
    return source.split(" - ")[0].split(" | ")[0].strip().casefold() or None


def _day(article: Article) -> datetime.date | None:
    if not article.date:
        return None
    try:
        return datetime.date.fromisoformat(article.date[:10])
    except ValueError:
        return None


def article_vectors(chunks: Sequence[Chunk], vectors_of, article_ids: Sequence[str]) -> np.ndarray:
    """The normalised mean of each article's chunk vectors (rows in ``article_ids`` order;
    an article without chunks gets a zero vector, alike to nothing). ``vectors_of``: the
    store's ``VectorStore.vectors_of`` (row i is chunk i)."""
    rows = rows_by_article(chunks)
    means = []
    dimension = None
    for article_id in article_ids:
        if len(rows.get(article_id, ())):
            mean = np.asarray(vectors_of(rows[article_id]), dtype=np.float32).mean(axis=0)
            dimension = mean.shape[0]
            means.append(mean)
        else:
            means.append(None)
    if dimension is None:
        return np.zeros((len(article_ids), 0), dtype=np.float32)
    matrix = np.stack([m if m is not None else np.zeros(dimension, dtype=np.float32) for m in means])
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


PAIR_BLOCK = 1024  # articles whose cosines are computed at once: memory stays O(block x articles)


def alike_pairs(articles: Sequence[Article], vectors: np.ndarray, params: StoryParams,
                threshold: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(i, j, cosine) of every pair i < j that may be one story: cosine at least ``threshold``
    (default ``params.threshold``), different known outlets, dates within ``params.days``
    when both are known. Computed a block of rows at a time, never the whole n x n matrix."""
    threshold = params.threshold if threshold is None else threshold
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0))
    if len(articles) < 2 or vectors.ndim != 2 or vectors.shape[1] == 0:
        return empty
    # An article without an outlet is never another outlet's report: "also reported by" names
    # outlets (the seed corpus's unattributed MQM-P article is 0.83 alike to Dawn's on the
    # same beat, a year earlier).
    codes: dict[str, int] = {}
    outlets = np.array([-1 if (k := outlet_key(a.source)) is None else codes.setdefault(k, len(codes)) for a in articles])
    days = np.array([np.nan if (d := _day(a)) is None else float(d.toordinal()) for a in articles])
    # Blocks of articles in date order, each compared only with the articles dated within
    # ``params.days`` of it (and the undated ones): an archive of years costs days, not n x n.
    order = np.argsort(days, kind="stable")  # undated (NaN) last
    sorted_days = days[order]
    undated = order[np.isnan(sorted_days)]
    everyone = np.arange(len(articles))
    found = []
    for start in range(0, len(articles), PAIR_BLOCK):
        block = order[start : start + PAIR_BLOCK]
        block_days = days[block]
        if np.isnan(block_days).any():
            others = everyone
        else:
            lo = np.searchsorted(sorted_days, block_days.min() - params.days, "left")
            hi = np.searchsorted(sorted_days, block_days.max() + params.days, "right")
            others = np.concatenate([order[lo:hi], undated])
        cosines = vectors[block] @ vectors[others].T
        at, to = np.nonzero(cosines >= threshold)
        values = cosines[at, to]
        rows, cols = block[at], others[to]
        gap = np.abs(days[rows] - days[cols])
        keep = ((cols > rows) & (outlets[rows] >= 0) & (outlets[cols] >= 0) & (outlets[rows] != outlets[cols])
                & (np.isnan(gap) | (gap <= params.days)))
        found.append((rows[keep], cols[keep], values[keep]))
    return tuple(np.concatenate(parts) for parts in zip(*found))


# A connected set of alike articles larger than this is grouped greedily instead of by
# complete linkage over its m x m distances (memory m^2: a synthetic million-chunk archive made
# of repeated paragraphs joined 62,149 articles in one set, 28.8 GiB). News stories are told by
# a handful of outlets; a set this large is an archive repeating itself.
LINKAGE_MAX_ARTICLES = 2_000
# In such a set, each article keeps its most alike pairs only: a group's members are pairwise
# alike and come from different outlets, so a group never needs more.
GREEDY_NEIGHBOURS = 32


def _complete_linkage(members: np.ndarray, rows: np.ndarray, cols: np.ndarray, cosines: np.ndarray,
                      params: StoryParams) -> list[list[int]]:
    position = {int(m): n for n, m in enumerate(members)}
    distance = np.full((len(members), len(members)), 2.0)  # not alike: never in one group
    np.fill_diagonal(distance, 0.0)
    for i, j, cosine in zip(rows, cols, cosines):
        distance[position[int(i)], position[int(j)]] = distance[position[int(j)], position[int(i)]] = max(0.0, 1.0 - float(cosine))
    # Complete linkage merges two clusters only when their farthest pair is within the cut:
    # every pair of a group is then alike (distance <= 1 - threshold).
    labels = fcluster(linkage(squareform(distance, checks=False), method="complete"), t=1.0 - params.threshold + 1e-9,
                      criterion="distance")
    clusters = [[int(members[n]) for n in np.flatnonzero(labels == cluster)] for cluster in np.unique(labels)]
    return [c for c in clusters if len(c) > 1]


def _greedy_groups(rows: np.ndarray, cols: np.ndarray, cosines: np.ndarray) -> list[list[int]]:
    """Groups whose members are pairwise alike, merged from the most alike pair down (the
    order complete linkage follows), each article keeping its ``GREEDY_NEIGHBOURS`` most alike
    pairs: memory and time grow with the pairs, not with the set's size squared."""
    order = np.argsort(-cosines, kind="stable")
    neighbours: dict[int, set[int]] = {}
    kept = []
    for i, j in zip(rows[order].tolist(), cols[order].tolist()):
        near_i, near_j = neighbours.setdefault(i, set()), neighbours.setdefault(j, set())
        if len(near_i) < GREEDY_NEIGHBOURS and len(near_j) < GREEDY_NEIGHBOURS:
            near_i.add(j)
            near_j.add(i)
            kept.append((i, j))
    leader: dict[int, int] = {}
    members: dict[int, list[int]] = {}
    for i, j in kept:
        first, second = leader.get(i, i), leader.get(j, j)
        if first == second:
            continue
        joined, other = members.get(first, [first]), members.get(second, [second])
        if all(b in neighbours[a] for a in joined for b in other):
            members[first] = joined + other
            members.pop(second, None)
            for article in other:
                leader[article] = first
    return [group for group in members.values() if len(group) > 1]


def group_stories(articles: Sequence[Article], vectors: np.ndarray, params: StoryParams | None = None) -> Stories:
    """Complete-linkage groups of alike articles (row i of ``vectors`` is ``articles[i]``).

    Only articles joined by alike pairs can share a group, so linkage runs on each connected
    set of alike pairs alone (a few articles each), not on all n x n distances."""
    params = params or StoryParams()
    rows, cols, cosines = alike_pairs(articles, np.asarray(vectors, dtype=np.float32), params)
    if not len(rows):
        return NO_STORIES
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(articles), len(articles)))
    _, component = connected_components(graph, directed=False)
    members_of = group_rows(component)
    pairs_of = group_rows(component[rows])
    groups = []
    for label, at in pairs_of.items():
        members = members_of[label]
        if len(members) > LINKAGE_MAX_ARTICLES:
            clusters = _greedy_groups(rows[at], cols[at], cosines[at])
        else:
            clusters = _complete_linkage(members, rows[at], cols[at], cosines[at], params)
        for chosen in clusters:
            chosen.sort(key=lambda r: (articles[r].date or "", articles[r].article_id))
            groups.append(tuple(articles[r].article_id for r in chosen))
    groups.sort()
    group_of = {article_id: number for number, group in enumerate(groups) for article_id in group}
    return Stories(group_of, tuple(groups))


def stories_of_index(index, params: StoryParams | None = None) -> Stories:
    """The story groups of a loaded ``StoredIndex``, from the vectors its store holds."""
    articles = list(index.articles.metadata())  # outlets and dates: no text is read
    vectors = article_vectors(index.chunks, index.vectors.vectors_of, [a.article_id for a in articles])
    return group_stories(articles, vectors, params)


def fold_passages(passages, stories: Stories, keep_rank: int | None = None):
    """An answer's passages with each story quoted once.

    Of the passages from articles of one story group, those of the group's first article
    (the one quoted by ``keep_rank``, the lead's passage, when it is in the group; else the
    best ranked) are kept, the others dropped, and their articles returned as "also reported
    by", in ranking order. Kept passages are renumbered from the first rank, so citations
    stay consecutive. Returns (kept passages, also-reported articles, {old rank: new rank}).
    """
    representative: dict[int, str] = {}
    for passage in sorted(passages, key=lambda p: p.rank != keep_rank):
        group = stories.group_of.get(passage.article.article_id)
        if group is not None:
            representative.setdefault(group, passage.article.article_id)
    kept, also = [], []
    for passage in passages:
        article_id = passage.article.article_id
        group = stories.group_of.get(article_id)
        if group is not None and representative[group] != article_id:
            if article_id not in (a.article_id for a in also):
                also.append(passage.article)
            continue
        kept.append(passage)
    first = passages[0].rank if passages else 1
    ranks = {p.rank: first + n for n, p in enumerate(kept)}
    return [replace(p, rank=ranks[p.rank]) for p in kept], also, ranks
