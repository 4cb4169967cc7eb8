"""The one object the edges talk to: load once, answer many, rebuild without stopping.

``QuestionAnswerer`` owns the embedding model (loaded once per process) and the index
now serving. Answering is blocking CPU work; async callers run it in a thread
(``asyncio.to_thread``). A rebuild or a reload swaps one reference, so a question
being answered keeps the index it started with and the next one gets the new one.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from bot.answering import AnswerComposer, AnswerParams, looks_like_follow_up
from bot.config import Settings
from bot.embedding import Embedder, load_embedder
from bot.indexing import BuildReport, build_index, index_identity
from bot.retrieval import Filters, RetrievalParams, Retriever
from bot.store import StoredIndex, current_build_id, load_index
from bot.types import Answer, Article

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 1000  # longer input is cut: nobody types more, and it would dilute the search


@dataclass(frozen=True)
class _Serving:
    index: StoredIndex
    retriever: Retriever


@dataclass(frozen=True)
class CorpusSummary:
    articles: int
    chunks: int
    sources: tuple[str, ...]
    first_date: str | None
    last_date: str | None
    build_id: str


class QuestionAnswerer:
    def __init__(self, settings: Settings, embedder: Embedder | None = None, retrieval: RetrievalParams | None = None):
        self.settings = settings
        self.embedder = embedder or load_embedder(settings.embedding_model, settings.embedding_batch_size)
        self.retrieval_params = retrieval or RetrievalParams()
        self.composer = AnswerComposer(self.embedder, AnswerParams(found_threshold=settings.found_threshold))
        self._serving: _Serving | None = None
        self._rebuild_lock = threading.Lock()

    # -- index lifecycle -----------------------------------------------------------

    def load(self) -> QuestionAnswerer:
        """Load the serving index (raises IndexMissingError / IndexMismatchError with what to run)."""
        index = load_index(self.settings.index_dir, index_identity(self.settings, self.embedder))
        self._serving = _Serving(index, Retriever(index, self.embedder, self.retrieval_params))
        log.info("serving index %s: %d articles, %d chunks", index.build_id, len(index.articles), len(index.chunks))
        return self

    @property
    def serving(self) -> _Serving:
        if self._serving is None:
            self.load()
        return self._serving

    @property
    def build_id(self) -> str:
        return self.serving.index.build_id

    def reload_if_changed(self) -> bool:
        """Switch to an index rebuilt by another process (``python -m bot index``)."""
        on_disk = current_build_id(self.settings.index_dir)
        if on_disk is None or (self._serving is not None and on_disk == self._serving.index.build_id):
            return False
        self.load()
        return True

    def rebuild(self, full: bool = False, progress: bool | None = False) -> BuildReport:
        """Incremental build, then serve the result. Questions keep being answered meanwhile."""
        with self._rebuild_lock:  # two admins pressing /reindex must not race two builds
            report = build_index(self.settings, self.embedder, full=full, progress=progress)
            self.load()
            return report

    # -- questions -----------------------------------------------------------------

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        *,
        offset: int = 0,
        filters: Filters | None = None,
        previous_question: str | None = None,
        force_context: bool = False,
    ) -> Answer:
        """Answer one question. ``offset`` skips passages already shown ("More sources").

        With ``previous_question``, a question that reads like a follow-up (or any question
        when ``force_context``, e.g. a reply to the bot's answer) is searched together
        with the previous one.
        """
        question = " ".join(question.split())[:MAX_QUESTION_CHARS]
        serving = self.serving
        k = top_k or self.settings.top_k
        query = question
        if previous_question and (force_context or looks_like_follow_up(question)):
            query = f"{previous_question} {question}"
        vector = serving.retriever.embed_query(query)
        ranked = serving.retriever.search(query, offset + k, filters, vector, page=k)
        return self.composer.compose(
            question,
            ranked[offset:],
            serving.index.articles,
            vector,
            first_rank=offset + 1,
            retrieval_query=query,
            filters=(filters or Filters()).to_dict(),
            term_weight=serving.index.lexical.idf,
            shown=ranked[:offset],
        )

    # -- what the corpus holds -----------------------------------------------------

    def articles(self) -> list[Article]:
        """Every article, newest first (undated last), for listings like /sources."""
        articles = list(self.serving.index.articles.values())
        return sorted(articles, key=lambda a: (a.date is None, "" if a.date is None else _invert(a.date), a.title))

    def article(self, article_id: str) -> Article | None:
        return self.serving.index.articles.get(article_id)

    def summary(self) -> CorpusSummary:
        index = self.serving.index
        dates = sorted(a.date for a in index.articles.values() if a.date)
        sources = sorted({a.source for a in index.articles.values() if a.source})
        return CorpusSummary(
            articles=len(index.articles),
            chunks=len(index.chunks),
            sources=tuple(sources),
            first_date=dates[0] if dates else None,
            last_date=dates[-1] if dates else None,
            build_id=index.build_id,
        )


def _invert(date: str) -> str:
    """A key that sorts ISO dates newest first."""
    return "".join(chr(0x10FFFF - ord(c)) for c in date)
