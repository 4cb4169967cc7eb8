"""Rendering an Answer as plain text (console) or JSON (scripts). No Telegram here.

Telegram's HTML rendering lives in ``telegram_html``; both share the wording below so
the console and the chat say the same things.
"""

from __future__ import annotations

from bot.types import Answer, Article, Passage

NOT_FOUND = "I couldn't find this in the articles I have."
NOT_FOUND_HINT = "Try other names or spellings, or a more specific question; the list of articles shows what I know about."


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
        return NOT_FOUND
    if answer.best_sentence:
        return f"{answer.best_sentence} [{answer.best_passage_rank}]"
    return f"See the passages below [{answer.passages[0].rank}]."


def answer_to_text(answer: Answer) -> str:
    lines = [answer_summary(answer)]
    if not answer.found:
        lines.append(NOT_FOUND_HINT)
        return "\n".join(lines)
    for passage in answer.passages:
        lines.append("")
        lines.append(f"[{passage.rank}] “{_one_line(passage.text)}”")
        lines.append(f"    — {' · '.join(citation_parts(passage.article))}")
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
        "text": passage.text,
        "start": passage.start,
        "end": passage.end,
    }


def answer_to_dict(answer: Answer) -> dict:
    data = {
        "question": answer.question,
        "found": answer.found,
        "answer": answer_summary(answer),
        "passages": [passage_to_dict(p) for p in answer.passages] if answer.found else [],
    }
    if answer.filters:
        data["filters"] = answer.filters
    return data


def _one_line(text: str) -> str:
    return " ".join(text.split())
