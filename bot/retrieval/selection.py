"""Selection: which candidates a reader sees, in which order (diversity, duplicates, merging).

Greedy picks over the fused candidates: each pick is the best fused score, minus a small
penalty per passage already taken from the same article (and, past ``passages_per_article``,
after every other candidate), plus the pull of the question part it serves best, which decays
as that part gets passages. Near-duplicates of a pick (syndicated copies, overlaps) are
skipped; neighbouring picks of one article are merged into one passage while it fits
``max_passage_tokens``. Up to 2k passages leave here: the passage fitting may drop some.
"""

from __future__ import annotations

import numpy as np

from bot.retrieval.params import RetrievalParams
from bot.retrieval.rows import RowTables
from bot.retrieval.scoring import Scores
from bot.store import StoredIndex
from bot.types import Hit

_LAST = 1e6  # far below any fused score: sorts a candidate after all others


class Selection:
    """Chooses and merges a question's passages from its scored candidates; one per loaded index."""

    def __init__(self, index: StoredIndex, params: RetrievalParams, tables: RowTables):
        self.index = index
        self.params = params
        self.tables = tables

    def select(self, scores: Scores, k: int) -> list[Hit]:
        """Up to 2k passages in selection order: the greedy picks, neighbours merged."""
        scored = scores.candidates
        order = sorted(scored, key=lambda r: -scored[r][0])
        rows = self._pick(order, scored, k, scores.parts)
        return self._merge_adjacent(rows, scored)

    def _pick(self, order: list[int], scored: dict[int, tuple[float, float, float]], k: int, part_scores: dict | None = None) -> list[int]:
        """Rows picked greedily, in order: fused score, minus a penalty per passage already taken from the same
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
        article_no = self.tables._row_article_no[pool_rows]
        ordinal = np.array([chunks[r].ordinal for r in pool], dtype=np.int64)
        part_matrix = np.stack([part_scores[r] for r in pool]) if part_scores is not None else None
        alive = np.ones(len(pool), dtype=bool)
        beside_taken = np.zeros(len(pool), dtype=bool)  # a neighbour joins its passage: no penalty
        taken_per_article = np.zeros(self.tables._n_articles, dtype=np.float64)
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
        return taken_rows  # up to 2k: fitting may drop some

    def _duplicates_taken(self, row: int, taken: list[int]) -> bool:
        """Whether ``row`` says what a taken row says: the same text, or ``duplicate_cosine``."""
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

