"""Answers and listings as Telegram HTML, within Telegram's rules. No ``telegram`` import.

Rules kept here, for every message:
- every piece of article text (and of user input) is escaped, so a ``<`` or ``&`` in
  a passage can never break parsing or inject markup;
- every message is at most 4096 characters *after entity parsing*, counted as Telegram
  counts them (UTF-16 code units): long answers are split between blocks (passages,
  source lines), and one over-long block is split at sentence or word boundaries with
  its tags re-opened in each part, so tags are balanced in every message.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass

from bot.formatting import ALSO_REPORTED, citation_parts, grouped_sources, not_found_text, reporter_name
from bot.language import Understood, not_understood_reply
from bot.types import Answer, Article, Passage

MESSAGE_LIMIT = 4096
TITLE_LIMIT = 200
TELEGRAM_NOT_FOUND_HINT = "Try other names or spellings, or a more specific question. /sources lists the articles I know."
# Quotes longer than this go in an expandable blockquote: a phone shows its first lines and
# a tap opens the rest.
EXPANDABLE_QUOTE_CHARS = 300
_TAG = re.compile(r"<[^>]+>")


def escape(text: str) -> str:
    return html.escape(text, quote=True)


def telegram_length(text: str) -> int:
    """Length as Telegram counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le")) // 2


def parsed_length(html_text: str) -> int:
    """Length of the text Telegram shows after parsing our HTML (tags dropped, entities decoded)."""
    return telegram_length(html.unescape(_TAG.sub("", html_text)))


def plain_text(html_text: str) -> str:
    """The text Telegram shows for our HTML (tags dropped, entities decoded, ends stripped)."""
    return html.unescape(_TAG.sub("", html_text)).strip()


@dataclass(frozen=True)
class Block:
    """A piece of a message that is kept whole when it fits: ``open`` + escaped text + ``close``."""

    text: str  # plain text, escaped on rendering
    open: str = ""
    close: str = ""
    raw: bool = False  # ``text`` is already HTML (short, trusted markup we built)

    def render(self) -> str:
        body = self.text if self.raw else escape(self.text)
        return f"{self.open}{body}{self.close}"


def pack(blocks: list[Block], limit: int = MESSAGE_LIMIT, separator: str = "\n") -> list[str]:
    """Blocks into as few messages as fit ``limit`` after parsing; never splits inside a tag."""
    messages: list[str] = []
    current = ""
    for block in blocks:
        for piece in _fit(block, limit):
            candidate = f"{current}{separator}{piece}" if current else piece
            if parsed_length(candidate) <= limit:
                current = candidate
            else:
                messages.append(current)
                current = piece
    if current:
        messages.append(current)
    return messages


def _fit(block: Block, limit: int) -> list[str]:
    """One block as one or more rendered pieces, each within the limit."""
    rendered = block.render()
    if parsed_length(rendered) <= limit or block.raw:
        return [rendered]
    room = limit - parsed_length(f"{block.open}{block.close}") - 1
    pieces = []
    rest = block.text
    while rest:
        cut = _cut_point(rest, room)
        pieces.append(f"{block.open}{escape(rest[:cut].rstrip())}{block.close}")
        rest = rest[cut:].lstrip()
    return pieces


def _cut_point(text: str, room: int) -> int:
    """Where to cut ``text`` so the head fits ``room`` UTF-16 units: a sentence end, else a space."""
    if telegram_length(text) <= room:
        return len(text)
    hi = room
    while telegram_length(text[:hi]) > room:  # astral characters count double
        hi -= 1
    head = text[:hi]
    for pattern in (r"[.!?][”’\"')\]]*\s", r"\s"):
        ends = [m.end() for m in re.finditer(pattern, head)]
        if ends and ends[-1] > room // 2:
            return ends[-1]
    return hi


# -- answers ----------------------------------------------------------------------


def source_line(passage: Passage) -> str:
    """``[n] Title (linked when known) — outlet, date``, escaped."""
    return article_line([passage.rank], passage.article)


def article_line(ranks: list[int], article: Article) -> str:
    """``[1][3] Title (linked when known) — outlet, date``, escaped: one line per article."""
    title = escape(_clip(article.title, TITLE_LIMIT))  # a title is one line, but a corpus may say otherwise
    if article.url and article.url.startswith(("http://", "https://")):
        title = f'<a href="{escape(article.url)}">{title}</a>'
    details = ", ".join(escape(p) for p in citation_parts(article)[1:] if p != article.url)
    return "".join(f"[{r}]" for r in ranks) + f" {title}" + (f" — {details}" if details else "")


def _quote_block(passage: Passage) -> Block:
    text = _one_line(passage.text)
    opening = "<blockquote expandable>" if len(text) > EXPANDABLE_QUOTE_CHARS else "<blockquote>"
    return Block(f"[{passage.rank}] {text}", opening, "</blockquote>")


def answer_blocks(answer: Answer, *, lead: bool = True) -> list[Block]:
    """Notes, the lead sentence with its citation, the quotes, then each source article once."""
    blocks: list[Block] = []
    if lead and answer.context_note:
        blocks.append(Block(answer.context_note, "<i>", "</i>"))
    if lead and answer.coverage_note:
        blocks.append(Block(answer.coverage_note, "<b>", "</b>"))
    if lead and answer.best_sentence:
        sentence = _one_line(answer.lead_dated or answer.best_sentence)
        blocks.append(Block(f"{escape(sentence)} <b>[{answer.best_passage_rank}]</b>", raw=True)
                      if telegram_length(sentence) < 1000 else Block(f"{sentence} [{answer.best_passage_rank}]"))
    blocks.extend(_quote_block(passage) for passage in answer.passages)
    blocks.append(Block("<b>Sources</b>", raw=True))
    for ranks, article in grouped_sources(answer.passages):
        blocks.append(Block(article_line(ranks, article), raw=True))
    if answer.also_reported:
        blocks.append(Block(also_reported_line(answer.also_reported), raw=True))
    return blocks


def also_reported_line(articles) -> str:
    """``Also reported by <a>Dawn</a>, <a>The News</a>``, escaped, each name linked when its URL is known."""
    names = []
    for article in articles:
        name = escape(_clip(reporter_name(article), TITLE_LIMIT))
        if article.url and article.url.startswith(("http://", "https://")):
            name = f'<a href="{escape(article.url)}">{name}</a>'
        names.append(name)
    return f"{ALSO_REPORTED} " + ", ".join(names)


def render_answer(answer: Answer, *, lead: bool = True) -> list[str]:
    """The answer as one or more HTML messages, each within Telegram's limit."""
    if not answer.found:
        return [render_not_found(answer)]
    return _pack_answer(answer_blocks(answer, lead=lead))


def render_reply(reply) -> list[str]:
    """A ``service.Reply`` as HTML messages: an answer, or a short reply in plain words."""
    if reply.answer is not None:
        return render_answer(reply.answer)
    return [escape(reply.text or "")]


def render_more(answer: Answer) -> list[str]:
    """Further passages for "More sources": shown as passages, without a lead sentence."""
    return _pack_answer(answer_blocks(answer, lead=False))


def _pack_answer(blocks: list[Block]) -> list[str]:
    """Like ``pack``, but the Sources list is kept in one message whenever it fits in one."""
    split = next((i for i, b in enumerate(blocks) if b.raw and b.text == "<b>Sources</b>"), len(blocks))
    messages, sources = pack(blocks[:split]), pack(blocks[split:])
    if len(sources) == 1 and messages and parsed_length(f"{messages[-1]}\n{sources[0]}") > MESSAGE_LIMIT:
        return messages + sources  # whole, in a message of its own
    return pack(blocks)


def render_not_found(answer: Answer) -> str:
    if not answer.understood:
        return escape(not_understood_reply(Understood(answer.language, "", answer.language)))
    filters = ""
    if answer.filters:
        filters = " (with the filters " + escape(", ".join(f"{k}={v}" for k, v in answer.filters.items())) + ")"
    return f"{escape(not_found_text(answer))}{filters}\n{escape(TELEGRAM_NOT_FOUND_HINT)}"


def render_full_passage(passage: Passage, start: int, end: int) -> list[str]:
    """The whole retrieved span of one passage, with its source line."""
    text = passage.article.text[start:end]
    blocks = [Block(_one_line(text), "<blockquote>", "</blockquote>"), Block(source_line(passage), raw=True)]
    return pack(blocks)


# -- listings -------------------------------------------------------------------------


def render_sources_page(articles: list[Article], page: int, per_page: int) -> tuple[str, int]:
    """One page of the article list; returns (html, number of pages)."""
    pages = max(1, -(-len(articles) // per_page))
    page = min(max(page, 0), pages - 1)
    lines = [f"<b>Articles</b> (page {page + 1} of {pages}, {len(articles)} in all)"]
    for number, article in enumerate(articles[page * per_page : (page + 1) * per_page], page * per_page + 1):
        title = escape(_clip(article.title, 200))
        if article.url and article.url.startswith(("http://", "https://")):
            title = f'<a href="{escape(article.url)}">{title}</a>'
        details = ", ".join(escape(p) for p in (article.source, article.date) if p)
        lines.append(f"{number}. {title}" + (f" — {details}" if details else ""))
    return pack([Block(line, raw=True) for line in lines])[0], pages


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


# -- adding news and follows ------------------------------------------------------------


def render_intake(report) -> list[str]:
    """What an update, a link or a document did: ``Added: <b>Title</b> — Outlet, date; N passages
    indexed`` per article, then what was not added and why (``bot.ingest.IntakeReport``)."""
    blocks = []
    for feed in report.feeds:
        if feed.status == "failed":
            blocks.append(Block(f"Feed {feed.url}: {feed.reason}"))
    for outcome in report.outcomes:
        if outcome.stored:
            word = "Added" if outcome.status == "added" else "Updated"
            details = ", ".join(escape(p) for p in (outcome.source, outcome.date) if p)
            passages = f"; {outcome.passages} passages indexed" if outcome.passages is not None else ""
            line = f"{word}: <b>{escape(_clip(outcome.title or '', TITLE_LIMIT))}</b>" + (f" — {details}" if details else "") + passages
            blocks.append(Block(line, raw=True))
        else:
            word = "Already there" if outcome.status == "duplicate" else ("Not added yet" if outcome.status == "deferred" else "Not added")
            blocks.append(Block(f"{word}: {_clip(outcome.where, 300)} — {outcome.reason}"))
    if not blocks:
        checked = len(report.feeds)
        blocks.append(Block(f"Nothing new in {checked} feed{'s' if checked != 1 else ''}." if checked else "Nothing to add."))
    return pack(blocks)


def render_follow_push(push) -> list[str]:
    """A new article for a follow: the topic, the best sentence quoted, its citation (``bot.follows.Push``)."""
    blocks = [
        Block(f"🔔 New on “{_clip(_one_line(push.follow.topic), 200)}”:"),
        Block(f"[1] {_one_line(push.sentence)}", "<blockquote>", "</blockquote>"),
        Block(source_line(push.passage), raw=True),
    ]
    return pack(blocks)


def render_follows(topics: list[str]) -> str:
    if not topics:
        return "This chat follows nothing yet. /follow a topic or a question, e.g. /follow Karachi local elections"
    lines = ["<b>Following</b> (new articles about these are sent here):"]
    lines.extend(f"{n}. {escape(_clip(_one_line(t), 200))}" for n, t in enumerate(topics, 1))
    lines.append("/unfollow and a number (or the topic) stops one.")
    return pack([Block(line, raw=True) for line in lines])[0]


def render_gaps(gaps: list[tuple[str, int, int, int]], days: int) -> str:
    """/gaps: (question, times asked, not found, voted down), most wanted first."""
    if not gaps:
        return f"No question of the last {days} days went unanswered or was voted down."
    lines = [f"<b>Asked but not answered</b> (last {days} days; add articles about these):"]
    for number, (question, asked, not_found, down) in enumerate(gaps, 1):
        why = ", ".join(p for p in (f"{not_found}× not found" if not_found else "", f"{down}× 👎" if down else "") if p)
        lines.append(f"{number}. {escape(_clip(_one_line(question), 200))} — asked {asked}×; {why}")
    return pack([Block(line, raw=True) for line in lines])[0]
