"""The one object the edges talk to: load once, answer many, rebuild without stopping.

``QuestionAnswerer`` owns the embedding model (loaded once per process) and the index
now serving. Answering is blocking CPU work; async callers run it in a thread
(``asyncio.to_thread``). A rebuild or a reload swaps one reference, so a question
being answered keeps the index it started with and the next one gets the new one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection
from dataclasses import dataclass, field, replace

from bot import dialogue
from bot.answering import AnswerComposer, AnswerParams, acronym_keys
from bot.config import Settings
from bot.dialogue import Conversation, Turn
from bot.embedding import Embedder, LazyEmbedder
from bot.errors import BotError
from bot.formatting import NOISE_REPLY, small_talk_reply
from bot.indexing import BuildReport, build_index, index_identity
from bot.language import ENGLISH, not_understood_reply, understand
from bot.names import Vocabulary, expand_names, name_words
from bot.retrieval import Filters, RetrievalParams, Retriever
from bot.store import StoredIndex, current_build_id, load_index
from bot.stories import NO_STORIES, Stories, fold_passages, stories_of_index
from bot.types import Answer, Article, Hit

log = logging.getLogger(__name__)

MAX_QUESTION_CHARS = 1000  # longer input is cut: nobody types more, and it would dilute the search
# How deep ``ask(within=...)`` searches the whole index for passages of the given articles (a
# follow matched against one update's new articles). Not tuned yet: a new article none of whose
# passages ranks in the top 30 for a topic is a weak match for it, and is not pushed.
WITHIN_SEARCH_DEPTH = 30


# Above this many articles, story groups are found in the background after a load (at the
# synthetic million-chunk archive's 81,301 articles they took most of a 73 s load; at 16,260
# articles 3.4 of 5.7 s). Below it, a load finds them before it serves (0.04 s at 609).
STORIES_AT_LOAD_MAX_ARTICLES = 5_000


@dataclass(frozen=True)
class _Serving:
    index: StoredIndex
    retriever: Retriever
    vocabulary: Vocabulary = field(compare=False)
    synonyms: list = field(compare=False)  # the corpus's acronyms as (key, expansion keys), for the composer
    stories: Stories = field(compare=False, default=NO_STORIES)  # articles reporting one story (bot.stories)


def vector_store_for(settings: Settings):
    """The ``load_index`` vector store factory the settings choose (None: the local FAISS store)."""
    if settings.vector_store != "qdrant":
        return None
    from bot.qdrant_store import QdrantStore, drop_collections_of_removed_builds, open_client

    location = settings.qdrant_location or str(settings.index_dir / "qdrant")
    client = open_client(location)

    def mirror(vectors, dimension, build_id):
        store = QdrantStore.mirror(client, build_id, vectors, dimension)
        drop_collections_of_removed_builds(client, settings.index_dir)
        return store

    return mirror


def quoted_spans(answer: Answer) -> tuple[tuple[str, int, int], ...]:
    """Where each quote of an answer stands: what "more" must not quote again."""
    return tuple((p.article.article_id, p.start, p.end) for p in answer.passages)


def also_reported(answer: Answer, stories: Stories) -> Answer:
    """One quote per story: passages from other outlets' reports of a quoted story are named
    ("also reported by") instead of quoting the same facts twice."""
    passages, also, ranks = fold_passages(answer.passages, stories, answer.best_passage_rank)
    if not also:
        return answer
    best = ranks.get(answer.best_passage_rank, answer.best_passage_rank) if answer.best_passage_rank else None
    return replace(answer, passages=tuple(passages), also_reported=tuple(also), best_passage_rank=best)


def corpus_vocabulary(index: StoredIndex) -> Vocabulary:
    """Every word the articles use, titles and outlets included (names are matched against it):
    the counts the build stored, not a reading of every article (2 s at 609 articles)."""
    return Vocabulary.from_statistics(index.vocabulary, (note["acronyms"] for note in index.article_notes))


@dataclass(frozen=True)
class Reply:
    """What to say to one message: an answer, or a short reply of another kind.

    ``kind``: "answer" (``answer`` is set), "small_talk", "noise" or "not_understood" (``text``
    says it), or "command" (``command`` names it: help, sources, start are the edge's to
    render; reset has been done; more carries the next passages in ``answer``).
    """

    kind: str
    text: str | None = None
    answer: Answer | None = None
    command: str | None = None


@dataclass(frozen=True)
class CorpusSummary:
    articles: int
    chunks: int
    sources: tuple[str, ...]
    first_date: str | None
    last_date: str | None
    build_id: str


class QuestionAnswerer:
    def __init__(self, settings: Settings, embedder: Embedder | None = None, retrieval: RetrievalParams | None = None,
                 *, lazy_model: bool = False):
        """``lazy_model``: load the model at the first question instead of with the index
        (listing sources needs no model). Either way the index is loaded first, so a missing
        or mismatched index is reported without importing torch."""
        self.settings = settings
        self.embedder = embedder or LazyEmbedder.for_settings(settings)
        self._lazy_model = lazy_model
        self.retrieval_params = retrieval or RetrievalParams()
        self.composer = AnswerComposer(AnswerParams(found_threshold=settings.found_threshold))
        self._serving: _Serving | None = None
        self._rebuild_lock = threading.Lock()
        self._swap_lock = threading.Lock()
        self._passed_over: str | None = None  # a build on disk that failed to load or was older

    # -- index lifecycle -----------------------------------------------------------

    def load(self) -> QuestionAnswerer:
        """Load the serving index (raises IndexMissingError / IndexMismatchError with what to run).

        Loading happens outside any lock; the swap happens under one, and never replaces a
        newer build (by build sequence) with an older one: /reindex and the watcher may race.
        """
        index = load_index(self.settings.index_dir, index_identity(self.settings, self.embedder), vector_store_for(self.settings))
        if not self._lazy_model and isinstance(self.embedder, LazyEmbedder):
            self.embedder.load_question_encoder()  # a bot loads its model at start-up, not at its first question
        vocabulary = corpus_vocabulary(index)
        # Story groups of a large archive are found after the swap, in the background: the
        # index serves at once, answers fold "also reported by" once they are known.
        later = len(index.articles) > STORIES_AT_LOAD_MAX_ARTICLES
        serving = _Serving(index, Retriever(index, self.embedder, self.retrieval_params), vocabulary, acronym_keys(vocabulary.acronyms),
                           NO_STORIES if later else stories_of_index(index))
        with self._swap_lock:
            if self._serving is not None and not index.supersedes(self._serving.index):
                log.info("loaded %s but %s is newer; keeping it", index.build_id, self._serving.index.build_id)
                return self
            self._serving = serving
        log.info("serving index %s: %d articles, %d chunks", index.build_id, len(index.articles), len(index.chunks))
        if later:
            threading.Thread(target=self._find_stories, args=(serving,), name="stories", daemon=True).start()
        return self

    def _find_stories(self, serving: _Serving) -> None:
        try:
            stories = stories_of_index(serving.index)
        except Exception:  # noqa: BLE001 - answers go on without "also reported by"
            log.exception("story groups of %s could not be found", serving.index.build_id)
            return
        with self._swap_lock:
            if self._serving is serving:
                self._serving = replace(serving, stories=stories)
        log.info("story groups of %s: %d", serving.index.build_id, len(stories.groups))

    @property
    def serving(self) -> _Serving:
        if self._serving is None:
            self.load()
        return self._serving

    @property
    def build_id(self) -> str:
        return self.serving.index.build_id

    def reload_if_changed(self) -> bool:
        """Switch to an index rebuilt by another process (``python -m bot index``).

        A build that fails to load (damaged) or is older than the one serving is remembered
        and not read again on every poll, until ``current`` points elsewhere.
        """
        on_disk = current_build_id(self.settings.index_dir)
        before = self._serving
        if on_disk is None or on_disk == self._passed_over or (before is not None and on_disk == before.index.build_id):
            return False
        try:
            self.load()
        except BotError:
            self._passed_over = on_disk
            raise
        if self._serving is before:
            self._passed_over = on_disk
            return False
        return True

    def rebuild(self, full: bool = False, progress: bool | None = False) -> BuildReport:
        """Incremental build, then serve the result. Questions keep being answered meanwhile."""
        with self._rebuild_lock:  # two admins pressing /reindex must not race two builds
            report = build_index(self.settings, self.embedder, full=full, progress=progress)
            self.load()
            return report

    # -- conversation ----------------------------------------------------------------

    def reply(self, conversation: Conversation, message: str, *, top_k: int | None = None, filters: Filters | None = None,
              context: Turn | None = None) -> Reply:
        """One message of a conversation, classified and answered: what the bot, the console
        chat and ``eval conversation`` all call. ``context``: the turn a Telegram reply
        answers to, instead of the conversation's last one."""
        message = " ".join(message.split())[:MAX_QUESTION_CHARS]
        previous = context or conversation.context()
        classified = dialogue.classify(message, has_context=previous is not None)
        if classified.kind == dialogue.SMALL_TALK:
            return Reply("small_talk", small_talk_reply(classified.small_talk, self.settings.example_questions[0]))
        if classified.kind == dialogue.NOISE:
            return Reply("noise", NOISE_REPLY.format(example=self.settings.example_questions[0]))
        if classified.kind == dialogue.COMMAND:
            if classified.command == "reset":
                conversation.reset()
            if classified.command == "more":
                return Reply("command", command="more", answer=self.more(conversation, top_k, filters))
            return Reply("command", command=classified.command)
        understood = understand(classified.text, self.serving.vocabulary)
        if not understood.text:
            return Reply("not_understood", not_understood_reply(understood))
        question, note, focus = self.serving.vocabulary.names_capitalised(understood.text), None, None
        # A translated question is judged in English: "aur PSP ka leader kaun hai?" is a question of its own.
        follows = dialogue.looks_like_follow_up(question) if understood.language != ENGLISH else classified.kind == dialogue.FOLLOW_UP
        if previous is not None and follows:
            resolved = dialogue.resolve(question, previous)
            question, note, focus = resolved.question, resolved.note, resolved.focus
        # ``ask`` reads the (now English) question again; Urdu words it cannot know travel along.
        answer = self.ask(question, top_k, filters=filters, focus=focus, unknown_words=understood.unknown)
        answer = replace(answer, question=message, context_note=note, language=understood.language)
        if answer.found:
            conversation.remember(Turn(question, answer.best_sentence, len(answer.passages), understood.language, quoted_spans(answer)))
        return Reply("answer", answer=answer)

    def more(self, conversation: Conversation, top_k: int | None = None, filters: Filters | None = None) -> Answer | None:
        """The next passages about the conversation's last answered question (None: nothing asked yet)."""
        turn = conversation.context()
        if turn is None:
            return None
        answer = self.ask(turn.question, top_k, offset=turn.shown, filters=filters, all_passages=True, quoted=turn.quoted)
        conversation.showed_more(len(answer.passages), quoted_spans(answer))
        return answer

    # -- questions -----------------------------------------------------------------

    def ask(
        self,
        question: str,
        top_k: int | None = None,
        *,
        offset: int = 0,
        filters: Filters | None = None,
        focus: str | None = None,
        all_passages: bool = False,
        quoted: tuple[tuple[str, int, int], ...] = (),
        unknown_words: tuple[str, ...] = (),
        within: Collection[str] | None = None,
    ) -> Answer:
        """Answer one question on its own (English, Roman Urdu or Urdu script).

        ``offset`` skips passages already shown ("More sources"), which are then all shown
        (``all_passages``); ``focus``: what a "what about X?" follow-up is about (the lead must name it);
        ``quoted``: (article id, start, end) of quotes already shown, which are not quoted again;
        ``unknown_words``: words of an Urdu question (read before) that name nothing the articles know;
        ``within``: article ids; only their passages answer (a follow matched against new articles),
        ranked and judged exactly as a question over the whole index would rank and judge them.
        """
        question = " ".join(question.split())[:MAX_QUESTION_CHARS]
        understood = understand(question, self.serving.vocabulary)
        if not understood.text:
            return Answer(question, False, language=understood.language, understood=False)
        english = self.serving.vocabulary.names_capitalised(understood.text)  # "governor house" as the articles write it
        serving = self.serving
        vocabulary = serving.vocabulary
        search_text, corrected = expand_names(english, vocabulary)
        unknown = tuple(
            w for w in name_words(english)
            if len(w) > 2 and not vocabulary.knows(w) and not vocabulary.variants(w) and not vocabulary.spelled_out(w)
        ) + understood.unknown + unknown_words  # fmt: skip
        k = top_k or self.settings.top_k
        vector = serving.retriever.embed_query(search_text)
        if within is None:
            ranked = serving.retriever.search(search_text, offset + k, filters, vector, page=k)
        else:
            depth = max(offset + k, WITHIN_SEARCH_DEPTH)
            ranked = [h for h in serving.retriever.search(search_text, depth, filters, vector, page=k) if h.article_id in within]
        answer = self.composer.compose(
            corrected,
            ranked[offset:],
            serving.index.articles,
            first_rank=offset + 1,
            retrieval_query=search_text,
            filters=(filters or Filters()).to_dict(),
            term_weight=serving.index.lexical.idf,
            shown=[*ranked[:offset], *(Hit(article_id, start, end, 0.0) for article_id, start, end in quoted)],
            focus=focus,
            all_passages=all_passages or offset > 0,
            synonyms=serving.synonyms,
        )
        answer = replace(answer, question=question, language=understood.language, unknown_names=unknown)
        answer = also_reported(answer, serving.stories)
        if unknown and answer.found and offset == 0:
            # A question about someone or something no article mentions is not answered by
            # quotes about something else ("the Green Line fares", "پنجاب").
            answer = replace(answer, found=False)
        return answer

    # -- what the corpus holds -----------------------------------------------------

    def articles(self) -> list[Article]:
        """Every article, newest first (undated last), for listings like /sources (without
        their texts: ``article`` gives one with its text)."""
        articles = list(self.serving.index.articles.metadata())
        return sorted(articles, key=lambda a: (a.date is None, "" if a.date is None else _invert(a.date), a.title))

    def article(self, article_id: str) -> Article | None:
        return self.serving.index.articles.get(article_id)

    def summary(self) -> CorpusSummary:
        index = self.serving.index
        dates = sorted(a.date for a in index.articles.metadata() if a.date)
        sources = sorted({a.source for a in index.articles.metadata() if a.source})
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
