"""Telegram HTML rendering: escaping, the 4096 limit after parsing, balanced tags per part."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from dataclasses import replace

from hypothesis import given, settings, strategies as st

from bot.telegram_html import (
    MESSAGE_LIMIT,
    Block,
    pack,
    parsed_length,
    render_answer,
    render_sources_page,
    telegram_length,
)
from bot.types import Answer, Article, Passage


class _TagChecker(HTMLParser):
    """Fails on unbalanced or misnested tags, like Telegram does."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.ok = True

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.ok = False


def balanced(fragment: str) -> bool:
    checker = _TagChecker()
    checker.feed(fragment)
    checker.close()
    return checker.ok and not checker.stack


def _answer(texts: list[str], url: str | None = "https://example.com/a?x=1&y=2") -> Answer:
    body = "\n\n".join(texts)
    article = Article("a.md", "Tom & Jerry <live>", body, source="Dawn", date="2023-12-10", url=url)
    passages, offset = [], 0
    for rank, text in enumerate(texts, 1):
        start = body.index(text, offset)
        passages.append(Passage(rank, article, start, start + len(text), 1.0 / rank, start, start + len(text)))
        offset = start + len(text)
    return Answer("q", True, tuple(passages), texts[0][:80], 1)


def test_article_text_is_escaped_and_links_quoted():
    answer = _answer(["Prices rose 5% <b>fast</b> & the 3 > 2 rule held.", "Second passage."])
    parts = render_answer(answer)
    joined = "\n".join(parts)
    assert "&lt;b&gt;fast&lt;/b&gt;" in joined and "&amp; the 3 &gt; 2" in joined
    assert "<b>fast</b>" not in joined
    assert 'href="https://example.com/a?x=1&amp;y=2"' in joined
    assert "Tom &amp; Jerry &lt;live&gt;" in joined
    assert all(balanced(p) for p in parts)


def test_answer_shows_citations_and_sources():
    answer = _answer(["First passage text.", "Second passage text."], url=None)
    (message,) = render_answer(answer)
    plain = html.unescape(re.sub(r"<[^>]+>", "", message))
    assert "[1] First passage text." in plain and "[2] Second passage text." in plain
    assert "Sources" in plain
    # both passages come from one article: it is listed once, with both citation numbers
    assert "[1][2] Tom & Jerry <live> — Dawn, 2023-12-10" in plain
    assert plain.count("Tom & Jerry") == 1
    assert "<a href" not in message  # no link when the article has no URL


def test_sources_list_each_article_once_with_its_numbers():
    answer = _answer(["First passage text.", "Second passage text.", "Third passage text."], url=None)
    other = Article("b.md", "Another story", "Third passage text.", source="The News", date="2024-01-02")
    third = Passage(3, other, 0, len(other.text), 0.3, 0, len(other.text))
    answer = Answer("q", True, (answer.passages[0], third, answer.passages[1]), "First passage text.", 1)
    plain = html.unescape(re.sub(r"<[^>]+>", "", render_answer(answer)[0]))
    assert "[1][2] Tom & Jerry <live> — Dawn, 2023-12-10" in plain
    assert "[3] Another story — The News, 2024-01-02" in plain


def test_notes_come_first_and_long_quotes_are_expandable():
    long_quote = "A long sentence that goes on about the merger and its consequences. " * 8
    answer = _answer([long_quote.strip(), "Short one."], url=None)
    answer = Answer(
        "q", True, answer.passages, "A long sentence", 1,
        coverage_note="My newest article on this is from 10 Dec 2023 <old>", context_note="Reading this as: “why?”",
    )  # fmt: skip
    (message,) = render_answer(answer)
    assert message.startswith("<i>Reading this as: “why?”</i>\n<b>My newest article on this is from 10 Dec 2023 &lt;old&gt;</b>")
    assert "<blockquote expandable>[1] A long sentence" in message
    assert "<blockquote>[2] Short one.</blockquote>" in message
    assert balanced(message)


def test_long_answer_is_split_on_passage_boundaries_within_the_limit():
    passages = [f"Passage {i}: " + ("word & <tag> " * 250) for i in range(6)]
    parts = render_answer(_answer(passages))
    assert len(parts) > 1
    for part in parts:
        assert parsed_length(part) <= MESSAGE_LIMIT
        assert balanced(part)
    assert sum(p.count("<blockquote expandable>") for p in parts) == 6  # no passage was cut in two


def test_one_huge_passage_is_split_inside_with_tags_reopened():
    huge = " ".join(f"Sentence {i} has some words in it & more." for i in range(600))
    parts = pack([Block(huge, "<blockquote>", "</blockquote>")])
    assert len(parts) >= 2
    for part in parts:
        assert parsed_length(part) <= MESSAGE_LIMIT
        assert part.startswith("<blockquote>") and part.endswith("</blockquote>")
        assert balanced(part)
    rejoined = " ".join(html.unescape(re.sub(r"<[^>]+>", "", p)) for p in parts)
    assert " ".join(rejoined.split()) == " ".join(huge.split())


def test_length_counts_utf16_units_like_telegram():
    assert telegram_length("😀") == 2
    assert parsed_length("<b>&lt;😀&gt;</b>") == 4
    emoji_text = "😀" * 3000  # 3000 characters, 6000 UTF-16 units
    parts = pack([Block(emoji_text)])
    assert len(parts) == 2 and all(parsed_length(p) <= MESSAGE_LIMIT for p in parts)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=3000), min_size=1, max_size=6))
def test_any_text_renders_within_limits_and_balanced(texts):
    parts = pack([Block(t, "<blockquote>", "</blockquote>") for t in texts])
    for part in parts:
        assert parsed_length(part) <= MESSAGE_LIMIT
        assert balanced(part)


def test_sources_page_paginates_and_escapes():
    articles = [Article(f"a{i}", f"Title {i} <&>", "x", source="Out&let", date="2024-01-01") for i in range(20)]
    text, pages = render_sources_page(articles, 1, 8)
    assert pages == 3
    assert "page 2 of 3" in text and "9. Title 8 &lt;&amp;&gt;" in text and "Out&amp;let" in text
    assert "Title 16" not in text and balanced(text)


def test_the_lead_is_shown_with_its_year_made_explicit():
    answer = replace(_answer(["Earlier in January, the parties merged."]), lead_dated="Earlier in January [2023], the parties merged.")
    first = render_answer(answer)[0]
    assert "Earlier in January [2023], the parties merged. <b>[1]</b>" in first
