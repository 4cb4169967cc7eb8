"""The nouns of the system: plain frozen dataclasses, stdlib only.

Data flows one way: Article -> Chunk -> Hit -> Passage -> Answer.
Every Chunk and Passage carries character offsets into its article's cleaned
text, so ``article.text[start:end]`` is always exactly what is quoted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass(frozen=True)
class Article:
    """One cleaned article. ``text`` is the cleaned body every offset points into."""

    article_id: str  # stable id: the corpus-relative path, plus "#key" inside multi-article files
    title: str
    text: str
    source: str | None = None  # the outlet, e.g. "Dawn"
    date: str | None = None  # ISO date "YYYY-MM-DD" when known
    url: str | None = None
    author: str | None = None
    path: str = ""  # corpus-relative file the article came from

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Article:
        return cls(**data)


@dataclass(frozen=True)
class Chunk:
    """A contiguous span of one article: ``text == article.text[start:end]``."""

    article_id: str
    ordinal: int  # position of the chunk within its article, 0-based
    start: int
    end: int
    text: str
    token_count: int  # of ``text`` alone, by the embedding model's own tokenizer

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Chunk:
        return cls(**data)


@dataclass(frozen=True)
class Hit:
    """A retrieved span of an article with the scores of the chunks that found it.

    The span is what the reader is shown: the chunks' text, or (after passage fitting)
    the whole sentences of that article that best answer the question, within the cap."""

    article_id: str
    start: int
    end: int
    score: float  # the fused score the ranking used
    dense: float | None = None  # cosine similarity, when the dense side saw it
    lexical: float | None = None  # BM25 score, when the lexical side saw it
    chunk_rows: tuple[int, ...] = ()  # store rows that found this hit


@dataclass(frozen=True)
class Passage:
    """What a reader is shown: a quote trimmed to whole sentences, and its source."""

    rank: int  # 1-based; also the citation number
    article: Article
    start: int
    end: int
    score: float
    chunk_start: int  # the retrieved span the quote was trimmed from
    chunk_end: int

    @property
    def text(self) -> str:
        return self.article.text[self.start : self.end]


@dataclass(frozen=True)
class Answer:
    """The reply to one question. "Nothing relevant" is ``found=False``, not an error."""

    question: str
    found: bool
    passages: tuple[Passage, ...] = ()
    best_sentence: str | None = None  # the single sentence that best answers, when found
    best_passage_rank: int | None = None  # which passage the best sentence is quoted from
    retrieval_query: str | None = None  # what was searched, when it differs (follow-ups)
    filters: dict = field(default_factory=dict)  # outlet/date constraints that were applied
    coverage_note: str | None = None  # said first when the articles are too old to know the answer
    context_note: str | None = None  # how a follow-up was read ("Reading this as: ...")
    language: str = "en"  # the language the question was asked in (en, roman_ur, ur)
    unknown_names: tuple[str, ...] = ()  # names in the question that no article mentions
    understood: bool = True  # False: a language or script we cannot read
    confidence: float | None = None  # what the not-found decision read (see AnswerComposer.confidence)
    # The lead as shown, with the year made explicit ("Earlier in January [2023], ..."), when it differs
    lead_dated: str | None = None
    # Articles of the same story as a quoted one (other outlets), named instead of quoted again
    also_reported: tuple[Article, ...] = ()
