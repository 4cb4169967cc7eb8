"""Rendering an Answer as plain text (console) or JSON (scripts). No Telegram here.

Telegram's HTML rendering lives in ``telegram_html``; both share the wording below so
the console and the chat say the same things.
"""

from __future__ import annotations

from bot.dialogue import SmallTalk
from bot.types import Answer, Article, Passage

NOT_FOUND = "I couldn't find this in the articles I have."
NOT_FOUND_HINT = "Try other names or spellings, or a more specific question; the list of articles shows what I know about."
NOT_FOUND_URDU = "مجھے یہ بات اپنے مضامین میں نہیں ملی۔"
NO_MENTION = "None of my articles mention {names}, so I can't answer this."
NOISE_REPLY = "I didn't catch a question there. Ask me about the news, for example: “{example}”"
NOTHING_TO_CONTINUE = "Ask me a question first; then “more” shows further passages about it."
RESET_REPLY = "Done: I've forgotten the previous questions. What would you like to know?"
_SMALL_TALK_REPLIES = {
    SmallTalk.GREETING: "Hello! Ask me about the news in my articles, for example: “{example}”",
    SmallTalk.THANKS: "You're welcome! Ask another question whenever you like.",
    SmallTalk.BYE: "Goodbye! Come back with more questions any time.",
    SmallTalk.ACK: "Anything else? You can ask a follow-up, like “and what about Farooq Sattar?”, or a new question.",
    SmallTalk.LAUGH: "🙂 Anything else you'd like to know from the articles?",
    SmallTalk.ABOUT_BOT: (
        "I'm a news bot: I answer questions about the articles I have by quoting them, with numbered "
        "citations. Try: “{example}”"
    ),
    SmallTalk.FEEDBACK: "Thanks for telling me. If an answer missed, try naming the person, party or date you mean.",
}


def small_talk_reply(kind: SmallTalk | None, example: str) -> str:
    """A short friendly reply with a hint of what to ask: never news quotes."""
    return _SMALL_TALK_REPLIES.get(kind or SmallTalk.ACK, _SMALL_TALK_REPLIES[SmallTalk.ACK]).format(example=example)


def not_found_text(answer: Answer) -> str:
    """Why there is no answer, in the question's language where we can say it."""
    if answer.unknown_names:
        names = ", ".join(f"“{n}”" for n in answer.unknown_names)
        return NO_MENTION.format(names=names)
    if answer.language == "ur":
        return f"{NOT_FOUND_URDU} {NOT_FOUND}"
    return NOT_FOUND


def citation_parts(article: Article) -> list[str]:
    """Title, outlet, date and link, skipping what is unknown (never invented)."""
    parts = [article.title]
    if article.source:
        parts.append(article.source)
    if article.date:
        parts.append(article.date)
    if article.url:
        parts.append(article.url)
    return parts


def answer_summary(answer: Answer) -> str:
    """The answer in one line: the best sentence with its citation, or the not-found reply."""
    if not answer.found:
        return not_found_text(answer)
    if answer.best_sentence:
        return f"{_one_line(answer.lead_dated or answer.best_sentence)} [{answer.best_passage_rank}]"
    return f"See the passages below [{answer.passages[0].rank}]."


def grouped_sources(passages) -> list[tuple[list[int], Article]]:
    """Each article once, with the citation numbers that quote it: ([1, 3], article)."""
    groups: dict[str, tuple[list[int], Article]] = {}
    for passage in passages:
        ranks, _ = groups.setdefault(passage.article.article_id, ([], passage.article))
        ranks.append(passage.rank)
    return list(groups.values())


ALSO_REPORTED = "Also reported by"


def reporter_name(article: Article) -> str:
    """How an "also reported by" line names an article: its outlet, else its title."""
    return article.source or article.title


def also_reported_text(answer: Answer) -> str | None:
    """``Also reported by Dawn (https://...), The News``: other outlets' reports of a quoted story."""
    if not answer.also_reported:
        return None
    names = [f"{reporter_name(a)} ({a.url})" if a.url else reporter_name(a) for a in answer.also_reported]
    return f"{ALSO_REPORTED} {', '.join(names)}"


def answer_to_text(answer: Answer, *, lead: bool = True) -> str:
    """``lead=False``: a page of "more", its passages whatever the not-found decision said."""
    if not lead:
        lines = []
    else:
        lines = [note for note in (answer.context_note, answer.coverage_note) if note]
        lines.append(answer_summary(answer))
        if not answer.found:
            lines.append(NOT_FOUND_HINT)
            return "\n".join(lines)
    for passage in answer.passages:
        if lines:
            lines.append("")
        lines.append(f"[{passage.rank}] “{_one_line(passage.text)}”")
    lines.append("")
    lines.append("Sources")
    for ranks, article in grouped_sources(answer.passages):
        lines.append(f"{''.join(f'[{r}]' for r in ranks)} {' · '.join(citation_parts(article))}")
    also = also_reported_text(answer)
    if also:
        lines.append(also)
    return "\n".join(lines)


def passage_to_dict(passage: Passage) -> dict:
    article = passage.article
    return {
        "rank": passage.rank,
        "score": round(passage.score, 4),
        "article_id": article.article_id,
        "title": article.title,
        "source": article.source,
        "date": article.date,
        "url": article.url,
        "text": passage.text,  # the quote a reader is shown
        "start": passage.start,
        "end": passage.end,
        "full_start": passage.chunk_start,  # the whole passage behind the Full button
        "full_end": passage.chunk_end,
        "full_text": article.text[passage.chunk_start : passage.chunk_end],
    }


def answer_to_dict(answer: Answer) -> dict:
    data = {
        "question": answer.question,
        "found": answer.found,
        "answer": answer_summary(answer),
        "passages": [passage_to_dict(p) for p in answer.passages] if answer.found else [],
    }
    if answer.found and answer.also_reported:
        data["also_reported"] = [
            {"article_id": a.article_id, "title": a.title, "source": a.source, "date": a.date, "url": a.url} for a in answer.also_reported
        ]
    if answer.filters:
        data["filters"] = answer.filters
    for key in ("coverage_note", "context_note"):
        if getattr(answer, key):
            data[key] = getattr(answer, key)
    if answer.language != "en":
        data["language"] = answer.language
    return data


def _one_line(text: str) -> str:
    return " ".join(text.split())
