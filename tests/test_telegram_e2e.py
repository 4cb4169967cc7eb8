"""End-to-end tests of the Telegram bot: the real ``Application`` from ``build_application``,
the real model over a real index, talking HTTP to ``FakeBotApi`` on 127.0.0.1.

Every test ends with ``assert_telegram_rules(server)``: no request Telegram would have refused
(``server.errors() == []``), every callback_data within 64 bytes, and neither the token nor a
traceback in any message a user saw.

Shared, read-only: the session's seed index (``seed_answerer``) and a module-wide index of the
seed corpus plus one article full of ``<``, ``&`` and ``>`` with a URL (``special``). Tests that
change a corpus (/reindex, the index watcher) clone the seed corpus and index into their own
temporary folder. Each test starts its own bot (its own memory, rate limits and answer keys),
so no test depends on another's order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import ConfigError
from bot.dialogue import SmallTalk
from bot.formatting import NOT_FOUND, RESET_REPLY, small_talk_reply
from bot.indexing import build_index
from bot.service import QuestionAnswerer
from bot.telegram_app import (
    EDITED_REPLY,
    EMPTY_REPLY,
    ERROR_REPLY,
    EXPIRED_REPLY,
    NON_TEXT_REPLY,
    REFUSED_REPLY,
    UNKNOWN_COMMAND_REPLY,
    build_application,
    install_token_redaction,
    run_bot,
    serving,
)
from tests.fake_bot_api import FakeBotApi, SentMessage, fake_bot_api, utf16_len
from tests.helpers import REPO, FakeEmbedder, copy_seed_corpus, make_settings, write_article

__all__ = ["fake_bot_api"]  # the imported fixture, used through `server` below

EXAMPLE_QUESTIONS = Settings().example_questions
WAIT = 60.0  # seconds; generous because the model runs on a shared, sometimes busy CPU
BAHADURABAD = "Who leads the Bahadurabad group?"
MAYOR = "Who is the mayor of Karachi?"
OSLO = "What is the weather in Oslo today?"
SEED_TITLE = "MQM-P groups increasingly separate"
LEADER_SENTENCE = "The Bahadurabad group, led by MQM-P president Dr Khalid Maqbool Siddiqui"

SPECIAL_URL = "https://example.org/tidal?id=7&lang=en"
SPECIAL_TITLE = "Q&A: <Tidal> power & the Indus delta"
SPECIAL_QUESTION = "How much power will the Indus delta tidal barrage produce?"
SPECIAL_BODY = (
    "The Indus delta tidal barrage will produce 300 megawatts of power when the tide is > 2 metres "
    "& the sluice gates are open, engineers at the <Sindh Energy Board> said on Tuesday.\n\n"
    "In the design brief the rule is written as output = flow < capacity & head > 2m, and the board "
    "calls the project <b>not bold</b> & ambitious.\n\n"
    "Construction of the tidal barrage near Keti Bandar is to begin in 2025, the board said."
)
NEW_ARTICLE_QUESTION = "Which animal was chosen as the mascot of the Karachi marathon?"
NEW_ARTICLE_TITLE = "Karachi marathon picks a mascot"
NEW_ARTICLE_BODY = (
    "The organisers of the Karachi marathon chose a flamingo named Gulabi as the race mascot, "
    "they announced on Monday.\n\n"
    "The flamingo mascot will greet the 12,000 runners at the finish line on Sea View."
)


# ------------------------------------------------------------------ fixtures and helpers


@pytest.fixture
def server(fake_bot_api: FakeBotApi) -> FakeBotApi:
    return fake_bot_api


def clone_seed(root: Path, seed_settings: Settings) -> Settings:
    """A private copy of the built seed corpus and index (cheaper than embedding it again)."""
    corpus = copy_seed_corpus(root / "corpus")
    shutil.copytree(seed_settings.index_dir, root / "index", symlinks=True)
    return dataclasses.replace(seed_settings, corpus_dir=corpus, index_dir=root / "index")


@pytest.fixture
def fresh_answerer(tmp_path, seed_settings, seed_answerer, real_embedder) -> QuestionAnswerer:
    """A real answerer over a private clone of the seed corpus, free to be changed."""
    return QuestionAnswerer(clone_seed(tmp_path, seed_settings), real_embedder).load()


@pytest.fixture(scope="module")
def special(tmp_path_factory, seed_settings, seed_answerer, real_embedder) -> QuestionAnswerer:
    """The seed corpus plus an article whose title and text are full of <, & and >, with a URL."""
    settings = clone_seed(tmp_path_factory.mktemp("special"), seed_settings)
    write_article(
        settings.corpus_dir, "tidal.md", SPECIAL_TITLE, SPECIAL_BODY,
        source="Coastal Review", date="2024-03-05", url=SPECIAL_URL,
    )
    build_index(settings, real_embedder, progress=False)
    return QuestionAnswerer(settings, real_embedder).load()


@contextlib.asynccontextmanager
async def running_bot(server: FakeBotApi, answerer: QuestionAnswerer, **overrides):
    """The real Application, started as ``Application.run_polling`` does, and stopped cleanly."""
    overrides.setdefault("index_poll_seconds", 0)
    settings = dataclasses.replace(
        answerer.settings, telegram_bot_token=server.token, telegram_base_url=server.base_url, **overrides
    )
    app = build_application(settings, answerer)
    try:
        async with serving(app):
            yield app
    finally:
        await app.shutdown()


async def replies(server: FakeBotApi, chat_id: int, before: int, count: int = 1) -> list[SentMessage]:
    """The bot's messages to ``chat_id`` after the first ``before`` (waits for ``count``)."""
    messages = await server.async_wait_for_messages(chat_id, before + count, WAIT)
    return messages[before:]


async def answer_to(server: FakeBotApi, chat: dict, user: dict, text: str, **kwargs) -> tuple[dict, list[SentMessage]]:
    """Send ``text`` and wait for the complete reply: up to a message with buttons (an answer's
    last part) or one without quotes (not found, instructions). Returns (the user's message, the bot's messages)."""
    before = len(server.sent_messages(chat["id"]))
    sent = server.send_text(chat, user, text, **kwargs)
    return sent, await complete_reply(server, chat["id"], before)


async def complete_reply(server: FakeBotApi, chat_id: int, before: int) -> list[SentMessage]:
    def done(s: FakeBotApi):
        new = s.sent_messages(chat_id)[before:]
        if new and (new[-1].buttons or not quotes(new[-1])):  # a part of an answer quotes, without buttons
            return new
        return None

    return await server.async_wait_for(done, WAIT, f"a complete reply in chat {chat_id}")


def full_text(messages: list[SentMessage]) -> str:
    return "\n".join(m.text for m in messages)


def quotes(message: SentMessage) -> list[str]:
    """The texts of the message's blockquotes, as the user sees them."""
    units = message.text.encode("utf-16-le")
    return [
        units[2 * e["offset"] : 2 * (e["offset"] + e["length"])].decode("utf-16-le")
        for e in message.entities
        if e["type"] in ("blockquote", "expandable_blockquote")
    ]


def button(message: SentMessage, text_start: str) -> dict:
    found = [b for b in message.buttons if b["text"].startswith(text_start)]
    assert found, f"no button starting {text_start!r} in {message.buttons}"
    return found[0]


def assert_telegram_rules(server: FakeBotApi) -> None:
    assert server.errors() == [], "\n".join(str(c) for c in server.errors())
    for message in server.sent_messages():
        assert utf16_len(message.text) <= 4096
        assert all(1 <= len(data.encode()) <= 64 for data in message.callback_data)
        assert server.token not in message.html and server.token not in message.text
        assert "Traceback" not in message.text
    for call in server.calls("answerCallbackQuery"):
        assert server.token not in str(call.params)


class AskSpy:
    """Wraps ``answerer.ask`` (every search) to record how the bot called it, and what came back."""

    def __init__(self, answerer: QuestionAnswerer, monkeypatch):
        self.calls: list[tuple[tuple, dict]] = []
        self.answers: list = []
        original = answerer.ask

        def ask(*args, **kwargs):
            self.calls.append((args, kwargs))
            self.answers.append(original(*args, **kwargs))
            return self.answers[-1]

        monkeypatch.setattr(answerer, "ask", ask)


# ------------------------------------------------------------------ answers


@pytest.mark.asyncio
async def test_cited_answer_with_typing_first_and_buttons(server, seed_answerer):
    ann = server.user(1001, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        _, [reply] = await answer_to(server, chat, ann, BAHADURABAD)

    assert LEADER_SENTENCE in reply.text
    assert any("Khalid Maqbool Siddiqui" in q for q in quotes(reply)), "the passage is quoted"
    assert any(q.startswith("[1] ") for q in quotes(reply))
    assert "Sources" in reply.text and f"] {SEED_TITLE}" in reply.text
    assert reply.text.count(SEED_TITLE) == 1  # each article once in the Sources list
    assert reply.parse_mode == "HTML" and reply.reply_to_message_id is None  # private: no quoting
    # typing went out before the answer
    calls = server.calls()
    typing = [i for i, c in enumerate(calls) if c.method == "sendChatAction" and c.params.get("action") == "typing"]
    answer = [i for i, c in enumerate(calls) if c.method == "sendMessage"]
    assert typing and answer and typing[0] < answer[0]
    # buttons: Full per passage, More sources; no Open button (the seed articles have no URL)
    ranks = [int(b["text"][6:-1]) for b in reply.buttons if b["text"].startswith("Full [")]
    assert ranks == list(range(1, len(quotes(reply)) + 1)) and 1 <= len(ranks) <= 3
    assert button(reply, "More sources")["callback_data"].startswith("m:")
    assert not [b for b in reply.buttons if "url" in b]
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_not_found_is_plain_with_a_hint(server, seed_answerer):
    ann = server.user(1002, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        _, [reply] = await answer_to(server, chat, ann, OSLO)
        _, [bread] = await answer_to(server, chat, ann, "How do I bake sourdough bread?")
    # Oslo is in no article: the bot says so rather than quoting something else
    assert reply.text.startswith("None of my articles mention “Oslo”")
    assert "Try other names" in reply.text and "/sources" in reply.text
    assert reply.buttons == [] and reply.reply_markup is None
    assert "[1]" not in reply.text  # nothing quoted, nothing made up
    assert bread.text.startswith(NOT_FOUND) and "[1]" not in bread.text and bread.buttons == []
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_long_answer_is_split_within_limits(server, seed_answerer):
    ann = server.user(1003, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer, top_k=30):
        _, [first] = await answer_to(server, chat, ann, BAHADURABAD)  # passages above the floor only
        before = len(server.sent_messages(chat["id"]))
        server.press_button(first, button(first, "More sources")["callback_data"], ann)
        messages = await complete_reply(server, chat["id"], before)  # up to 30 more: every one shown
    assert len(messages) > 1
    assert all(0 < utf16_len(m.text) <= 4096 for m in messages)
    assert all(m.buttons == [] for m in messages[:-1]) and messages[-1].buttons  # buttons under the last part
    text = full_text(messages)
    shown = len(quotes(first))
    numbers = [int(q[1 : q.index("]")]) for m in messages for q in quotes(m)]
    assert numbers == list(range(shown + 1, shown + 1 + len(numbers))) and len(numbers) > 12
    assert all(f"[{n}]" in text for n in numbers)
    assert "Sources" in messages[-1].text
    assert max(len(row) for row in messages[-1].reply_markup["inline_keyboard"]) <= 8
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_article_text_with_markup_characters_is_escaped_and_open_buttons_follow_urls(server, special):
    ann = server.user(1004, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, special):
        _, [reply] = await answer_to(server, chat, ann, SPECIAL_QUESTION)
    # the server's parser accepted it, and the user sees the literal characters
    assert "tide is > 2 metres & the sluice gates" in reply.text
    assert "<Sindh Energy Board>" in reply.text
    assert SPECIAL_TITLE in reply.text
    assert "<b>not bold</b> & ambitious" in reply.text  # shown, not interpreted
    links = [e["url"] for e in reply.entities if e["type"] == "text_link"]
    assert SPECIAL_URL in links  # the title links to the article
    # "Open [n]" exactly for the passages from the article with a URL
    expected = special.ask(SPECIAL_QUESTION)
    with_url = {p.rank for p in expected.passages if p.article.url}
    assert with_url, "the answer quotes the article with a URL"
    opens = {int(b["text"][6:-1]): b["url"] for b in reply.buttons if b["text"].startswith("Open [")}
    assert set(opens) == with_url and set(opens.values()) == {SPECIAL_URL}
    assert all("callback_data" not in b for b in reply.buttons if "url" in b)
    assert_telegram_rules(server)


# ------------------------------------------------------------------ buttons


@pytest.mark.asyncio
async def test_more_sources_and_full_passage_buttons(server, seed_answerer):
    ann = server.user(1005, "Ann")
    chat = server.private_chat(ann)
    expected = seed_answerer.ask(BAHADURABAD, 3)
    async with running_bot(server, seed_answerer):
        _, [reply] = await answer_to(server, chat, ann, BAHADURABAD)

        before = len(server.sent_messages(chat["id"]))
        server.press_button(reply, button(reply, "More sources")["callback_data"], ann)
        more = await complete_reply(server, chat["id"], before)
        more_text = full_text(more)
        shown = len(quotes(reply))  # the first answer shows the passages above the relevance floor
        following = [shown + 1, shown + 2, shown + 3]
        assert all(f"[{n}] " in more_text for n in following)  # the numbering goes on, three more
        assert "[1] " not in more_text and LEADER_SENTENCE not in more_text  # no lead sentence, new passages
        assert set(quotes(more[0])).isdisjoint(quotes(reply))
        assert {b["text"] for b in more[-1].buttons} >= {*(f"Full [{n}]" for n in following), "More sources"}

        # Full passage: the whole retrieved span of [1], with its source line
        before = len(server.sent_messages(chat["id"]))
        server.press_button(reply, button(reply, "Full [1]")["callback_data"], ann)
        [full] = await replies(server, chat["id"], before)
        passage = expected.passages[0]
        span = " ".join(passage.article.text[passage.chunk_start : passage.chunk_end].split())
        assert quotes(full) == [span]
        assert len(span) >= len(" ".join(passage.text.split()))
        assert f"[1] {passage.article.title}" in full.text

        # a Full button of the "More sources" message works too
        before = len(server.sent_messages(chat["id"]))
        later = following[1]
        server.press_button(more[-1], button(more[-1], f"Full [{later}]")["callback_data"], ann)
        [full_later] = await replies(server, chat["id"], before)
        [shown_later] = [q for m in more for q in quotes(m) if q.startswith(f"[{later}] ")]
        assert shown_later[len(f"[{later}] "):] in quotes(full_later)[0] and f"[{later}] " in full_later.text

        # a stale or unknown key, or a nonsense button, says it has expired
        for data in ("m:nokey123", "f:nokey123:1", "f:" + reply.callback_data[0].split(":")[1] + ":99", "zz"):
            server.press_button(reply, data, ann, check=False)
        answers = await server.async_wait_for(
            lambda s: (a := s.callback_answers()) and len(a) >= 7 and a, WAIT, "callback answers"
        )
    assert [a["text"] for a in answers[-4:]] == [EXPIRED_REPLY] * 4
    assert all(a["show_alert"] for a in answers[-4:])
    assert all(a["text"] is None for a in answers[:3])  # the real presses were acknowledged quietly
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_sources_pages_edit_the_message(server, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i in range(12):
        write_article(
            corpus, f"a{i:02}.md", f"Story {i:02} <about> rates & prices", f"Body of story {i} about rates.",
            source="Outlet & Co", date=f"2024-01-{i + 1:02}", url=f"https://example.org/s/{i}?a=1&b=2",
        )
    settings = make_settings(tmp_path, corpus)
    embedder = FakeEmbedder()
    build_index(settings, embedder, progress=False)
    answerer = QuestionAnswerer(settings, embedder).load()
    ann = server.user(1006, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, answerer):
        _, [page] = await answer_to(server, chat, ann, "/sources")
        assert "page 1 of 2, 12 in all" in page.text
        assert "Story 11 <about> rates & prices — Outlet & Co, 2024-01-12" in page.text  # newest first
        assert "https://example.org/s/11?a=1&b=2" in [e.get("url") for e in page.entities]
        assert page.callback_data == ["s:1"]

        server.press_button(page, "s:1", ann)
        page = await server.async_wait_for(
            lambda s: (m := s.sent_messages(chat["id"])[0]).edit_count == 1 and m, WAIT, "page 2"
        )
        assert "page 2 of 2" in page.text and "Story 00" in page.text and "Story 11" not in page.text
        assert page.callback_data == ["s:0"]

        server.press_button(page, "s:1", ann, check=False)  # a double tap on Next: nothing to change
        await server.async_wait_for(lambda s: len(s.callback_answers()) == 2, WAIT, "second answer")
        server.press_button(page, "s:0", ann)
        page = await server.async_wait_for(
            lambda s: (m := s.sent_messages(chat["id"])[0]).edit_count == 2 and m, WAIT, "page 1 again"
        )
        assert "page 1 of 2" in page.text and page.callback_data == ["s:1"]
    assert len(server.sent_messages(chat["id"])) == 1  # pages are edits, not new messages
    assert len(server.callback_answers()) == 3
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_start_help_commands_and_example_buttons(server, seed_answerer):
    ann = server.user(1007, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        names = [c["command"] for c in server.commands()]
        assert names == ["start", "help", "sources", "ask", "more", "reset", "reindex", "follow", "following", "unfollow", "update", "gaps"]
        assert all(c["description"] for c in server.commands())

        _, [start] = await answer_to(server, chat, ann, "/start")
        assert "2 news articles" in start.text and "2023-12-10" in start.text and "Dawn" in start.text
        assert [b["text"] for b in start.buttons] == list(EXAMPLE_QUESTIONS)
        assert start.callback_data == ["e:0", "e:1", "e:2"]

        _, [help_] = await answer_to(server, chat, ann, "/help")
        assert "How to ask" in help_.text and "[1]" in help_.text and "/sources" in help_.text

        before = len(server.sent_messages(chat["id"]))
        server.press_button(start, "e:2", ann)  # "Who is the mayor of Karachi?"
        messages = await complete_reply(server, chat["id"], before + 1)
        echo = server.sent_messages(chat["id"])[before]
    assert echo.text == f"“{MAYOR}”"
    text = full_text(messages)
    assert "Murtaza Wahab" in text
    assert "Dawn, 2023-12-10" in text and "Sources" in text
    assert messages[-1].callback_data[-1].startswith("m:")
    assert_telegram_rules(server)


# ------------------------------------------------------------------ follow-ups


@pytest.mark.asyncio
async def test_private_follow_up_and_reply_to_an_answer(server, seed_answerer, monkeypatch):
    spy = AskSpy(seed_answerer, monkeypatch)
    ann = server.user(1008, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        _, [first] = await answer_to(server, chat, ann, BAHADURABAD)
        _, follow = await answer_to(server, chat, ann, "who are his allies?")
        # resolved, not glued on: "his" is the man the first answer named (with his title), and the bot says so
        assert spy.calls[-1][0][0] == "who are Dr Khalid Maqbool Siddiqui’s allies?"
        assert "Reading this as: “who are Dr Khalid Maqbool Siddiqui’s allies?”" in follow[0].text
        assert "Farooq Sattar" in full_text(follow) or "Kamran Tessori" in full_text(follow)

        _, mayor = await answer_to(server, chat, ann, MAYOR)
        assert "Murtaza Wahab" in full_text(mayor)
        # replying to the first answer brings its question back, not the latest one
        _, replied = await answer_to(server, chat, ann, "who are his allies?", reply_to_message_id=first.message_id)
        assert spy.calls[-1][0][0] == "who are Dr Khalid Maqbool Siddiqui’s allies?"
        assert "Farooq Sattar" in full_text(replied) or "Kamran Tessori" in full_text(replied)

        # /reset drops the context: the same vague question is no longer read as a follow-up
        _, [done] = await answer_to(server, chat, ann, "/reset")
        _, after = await answer_to(server, chat, ann, "when was that?")
    assert done.text == RESET_REPLY
    assert "Reading this as" not in full_text(after)
    assert spy.calls[-1][0][0] == "when was that?"
    assert_telegram_rules(server)


# ------------------------------------------------------------------ groups


@pytest.mark.asyncio
async def test_group_answers_only_when_addressed(server, seed_answerer):
    ann = server.user(1009, "Ann")
    bob = server.user(1010, "Bob")
    group = server.group_chat(-100200, "Karachi politics")
    gid = group["id"]
    async with running_bot(server, seed_answerer):
        server.send_text(group, bob, f"{BAHADURABAD} asks my cousin, and nobody knows")  # chatter
        server.send_text(group, bob, "@newsbotfan do you know?")  # another account's mention
        server.send_sticker(group, bob)
        asked, [answer] = await answer_to(server, group, ann, f"@newsbot {MAYOR}")
        assert "Murtaza Wahab" in answer.text
        assert answer.reply_to_message_id == asked["message_id"]  # quotes whom it answers
        await server.async_wait_for(lambda s: not s.pending_updates(), WAIT, "all updates fetched")
        assert len(server.sent_messages(gid)) == 1  # the chatter got nothing

        asked, [followed] = await answer_to(
            server, group, bob, "and who leads the Bahadurabad group?", reply_to_message_id=answer.message_id
        )
        assert "Khalid Maqbool Siddiqui" in followed.text and followed.reply_to_message_id == asked["message_id"]

        _, [via_ask] = await answer_to(server, group, bob, f"/ask {BAHADURABAD}")
        assert LEADER_SENTENCE in via_ask.text

        _, [start] = await answer_to(server, group, bob, "/start@newsbot")
        assert "news articles" in start.text and start.callback_data == ["e:0", "e:1", "e:2"]
        server.send_text(group, bob, "/start@otherbot")
        _, [usage] = await answer_to(server, group, bob, "/ask")
        assert usage.text.startswith("Usage: /ask")
    assert len(server.sent_messages(gid)) == 5
    assert_telegram_rules(server)


# ------------------------------------------------------------------ odd input


@pytest.mark.asyncio
async def test_non_text_edited_and_empty_messages_get_instructions(server, seed_answerer, monkeypatch):
    spy = AskSpy(seed_answerer, monkeypatch)
    ann = server.user(1011, "Ann")
    chat = server.private_chat(ann)
    cid = chat["id"]
    async with running_bot(server, seed_answerer):
        server.send_sticker(chat, ann)
        [sticker] = await replies(server, cid, 0)
        server.send_photo(chat, ann, caption="what is this?")
        [photo] = await replies(server, cid, 1)
        server.send_voice(chat, ann)
        [voice] = await replies(server, cid, 2)
        _, [blank] = await answer_to(server, chat, ann, "   ")
        _, [emoji] = await answer_to(server, chat, ann, "🤔🙂")
        server.edit_text(server.send_text(chat, ann, "/help"), "Who leads the group?")
        last_two = {m.text.split("\n")[0] for m in await replies(server, cid, 5, 2)}
    instruction = NON_TEXT_REPLY.format(example=EXAMPLE_QUESTIONS[0])
    assert sticker.text == photo.text == voice.text == instruction
    assert blank.text == EMPTY_REPLY.format(example=EXAMPLE_QUESTIONS[0])
    assert emoji.text == small_talk_reply(SmallTalk.ACK, EXAMPLE_QUESTIONS[0])  # an emoji is a reaction, not a question
    assert EDITED_REPLY in last_two and "How to ask" in last_two
    assert spy.calls == []  # nothing was searched
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_unknown_commands_point_to_help_unless_meant_for_another_bot(server, seed_answerer, monkeypatch):
    spy = AskSpy(seed_answerer, monkeypatch)
    ann = server.user(1040, "Ann")
    bob = server.user(1041, "Bob")
    chat = server.private_chat(ann)
    group = server.group_chat(-100300, "Readers")
    async with running_bot(server, seed_answerer):
        _, [unknown] = await answer_to(server, chat, ann, "/unknowncommand")
        server.send_text(chat, ann, "/weather@otherbot")  # another bot's command: not ours to answer
        _, [addressed] = await answer_to(server, chat, ann, "/weather@newsbot Karachi")
        _, [new] = await answer_to(server, chat, ann, "/new")  # a command the bot has still works
        _, [long_] = await answer_to(server, chat, ann, "/" + "x" * 60)

        server.send_text(group, bob, "/unknowncommand")  # in a group it may be for any bot
        server.send_text(group, bob, "/unknowncommand@otherbot")
        asked, [in_group] = await answer_to(server, group, bob, "/unknowncommand@newsbot")
        await server.async_wait_for(lambda s: not s.pending_updates(), WAIT, "all updates fetched")
        await asyncio.sleep(0.5)
    assert unknown.text == UNKNOWN_COMMAND_REPLY.format(command="/unknowncommand")
    assert "/help" in unknown.text and len(unknown.text) < 200
    assert addressed.text == UNKNOWN_COMMAND_REPLY.format(command="/weather")
    assert new.text == RESET_REPLY
    assert long_.text == UNKNOWN_COMMAND_REPLY.format(command="/" + "x" * 32 + "…")
    assert len(server.sent_messages(chat["id"])) == 4  # nothing for /weather@otherbot
    assert in_group.text == UNKNOWN_COMMAND_REPLY.format(command="/unknowncommand")
    assert len(server.sent_messages(group["id"])) == 1
    assert spy.calls == []  # nothing was searched
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_double_tap_on_more_sources_sends_the_page_once(server, seed_answerer, monkeypatch):
    spy = AskSpy(seed_answerer, monkeypatch)
    searched = seed_answerer.ask

    def slow_ask(*args, **kwargs):  # the two presses surely overlap
        time.sleep(1.0)
        return searched(*args, **kwargs)

    ann = server.user(1042, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        _, [reply] = await answer_to(server, chat, ann, BAHADURABAD)
        monkeypatch.setattr(seed_answerer, "ask", slow_ask)
        before = len(server.sent_messages(chat["id"]))
        data = button(reply, "More sources")["callback_data"]
        server.press_button(reply, data, ann)
        server.press_button(reply, data, ann)
        more = await complete_reply(server, chat["id"], before)
        await server.async_wait_for(lambda s: len(s.callback_answers()) == 2, WAIT, "both presses answered")
        await server.async_wait_for(lambda s: not s.pending_updates(), WAIT, "all updates fetched")
        await asyncio.sleep(2.5)  # room for a second page, if one were coming
    assert len(server.sent_messages(chat["id"])) == before + len(more)
    assert len(spy.calls) == 2  # the question and one "more" search
    assert all(a["text"] is None for a in server.callback_answers())
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_buttons_that_search_count_toward_the_rate_limit(server, seed_answerer, monkeypatch):
    spy = AskSpy(seed_answerer, monkeypatch)
    ann = server.user(1043, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer, questions_per_minute=2):
        _, [answer] = await answer_to(server, chat, ann, BAHADURABAD)  # 1
        _, [start] = await answer_to(server, chat, ann, "/start")  # free
        before = len(server.sent_messages(chat["id"]))
        server.press_button(start, "e:2", ann)  # 2: an example question is a question
        example = await complete_reply(server, chat["id"], before + 1)
        assert "Murtaza Wahab" in full_text(example)
        after = len(server.sent_messages(chat["id"]))
        server.press_button(answer, button(answer, "More sources")["callback_data"], ann)  # 3: over
        server.press_button(start, "e:0", ann)  # 4: over
        answers = await server.async_wait_for(
            lambda s: (a := s.callback_answers()) and len(a) >= 3 and a, WAIT, "the callback answers"
        )
        await server.async_wait_for(lambda s: not s.pending_updates(), WAIT, "all updates fetched")
        await asyncio.sleep(0.5)
    assert answers[0]["text"] is None
    for waited in answers[1:]:
        assert waited["show_alert"] is True and waited["text"].startswith("You are asking faster")
        assert 1 <= int(waited["text"].split("please wait ")[1].split()[0]) <= 60
    assert len(server.sent_messages(chat["id"])) == after  # the refusals were alerts, not messages
    assert len(spy.calls) == 2
    assert_telegram_rules(server)


# ------------------------------------------------------------------ who may use it


@pytest.mark.asyncio
async def test_allow_list_refuses_once_politely_and_logs(server, seed_answerer, caplog):
    caplog.set_level(logging.INFO)
    ann = server.user(1012, "Ann")
    eve = server.user(6666, "Eve")
    ann_chat, eve_chat = server.private_chat(ann), server.private_chat(eve)
    async with running_bot(server, seed_answerer, allowed_user_ids=frozenset({1012})):
        _, [refusal] = await answer_to(server, eve_chat, eve, "/start")
        server.send_text(eve_chat, eve, BAHADURABAD)
        _, [answer] = await answer_to(server, ann_chat, ann, BAHADURABAD)
        await server.async_wait_for(lambda s: not s.pending_updates(), WAIT, "all updates fetched")
    assert refusal.text == REFUSED_REPLY
    assert len(server.sent_messages(eve_chat["id"])) == 1  # the second attempt got silence
    assert LEADER_SENTENCE in answer.text
    refused = [r for r in caplog.records if "refused update from user 6666" in r.getMessage()]
    assert len(refused) == 2 and all(r.levelno == logging.WARNING for r in refused)
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_rate_limit_asks_to_wait(server, seed_answerer, monkeypatch):
    spy = AskSpy(seed_answerer, monkeypatch)
    ann = server.user(1013, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer, questions_per_minute=2):
        await answer_to(server, chat, ann, BAHADURABAD)
        await answer_to(server, chat, ann, MAYOR)
        _, [wait] = await answer_to(server, chat, ann, OSLO)
        _, [wait_more] = await answer_to(server, chat, ann, "more")  # "more" searches too
    assert wait.text.startswith("You are asking faster") and "please wait" in wait.text
    assert wait_more.text.startswith("You are asking faster")
    seconds = int(wait.text.split("please wait ")[1].split()[0])
    assert 1 <= seconds <= 60
    assert len(spy.calls) == 2  # the third question and the "more" were not searched
    assert_telegram_rules(server)


# ------------------------------------------------------------------ index changes


@pytest.mark.asyncio
async def test_reindex_in_background_keeps_answering_then_swaps(server, fresh_answerer, monkeypatch):
    gate, started = threading.Event(), threading.Event()
    rebuild = fresh_answerer.rebuild

    def slow_rebuild(*args, **kwargs):
        started.set()
        assert gate.wait(WAIT), "the test never released the rebuild"
        return rebuild(*args, **kwargs)

    monkeypatch.setattr(fresh_answerer, "rebuild", slow_rebuild)
    admin, ann = server.user(1, "Admin"), server.user(1014, "Ann")
    admin_chat, chat = server.private_chat(admin), server.private_chat(ann)
    old_build = fresh_answerer.build_id
    write_article(fresh_answerer.settings.corpus_dir, "marathon.md", NEW_ARTICLE_TITLE, NEW_ARTICLE_BODY,
                  source="Dawn", date="2024-02-01")
    async with running_bot(server, fresh_answerer, admin_user_ids=frozenset({1})):
        _, [refused] = await answer_to(server, chat, ann, "/reindex")
        assert refused.text == "Only the bot's admins can rebuild the index."

        _, [accepted] = await answer_to(server, admin_chat, admin, "/reindex")
        assert "background" in accepted.text
        await asyncio.to_thread(started.wait, WAIT)
        # during the rebuild: answered from the old index
        _, [during] = await answer_to(server, chat, ann, BAHADURABAD)
        assert LEADER_SENTENCE in during.text and fresh_answerer.build_id == old_build
        _, [busy] = await answer_to(server, admin_chat, admin, "/reindex")
        assert "already running" in busy.text

        gate.set()
        [report] = await replies(server, admin_chat["id"], 2)
        assert "1 added" in report.text and "2 unchanged" in report.text
        assert fresh_answerer.build_id != old_build
        _, [new] = await answer_to(server, chat, ann, NEW_ARTICLE_QUESTION)
        assert "flamingo" in new.text and NEW_ARTICLE_TITLE in new.text

        # buttons of the answer given before the swap still work
        before = len(server.sent_messages(chat["id"]))
        server.press_button(during, button(during, "Full [1]")["callback_data"], ann)
        [full] = await replies(server, chat["id"], before)
        assert quotes(full) and f"[1] {SEED_TITLE}" in full.text
        server.press_button(during, button(during, "More sources")["callback_data"], ann)
        more = await complete_reply(server, chat["id"], before + 1)
        assert "[4] " in full_text(more)
    # after a restart the old buttons say they expired instead of failing
    async with running_bot(server, fresh_answerer):
        server.press_button(during, button(during, "More sources")["callback_data"], ann)
        answer = await server.async_wait_for(
            lambda s: [a for a in s.callback_answers() if a["text"] == EXPIRED_REPLY], WAIT, "expired"
        )
        assert answer[0]["show_alert"] is True
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_index_rebuilt_outside_the_bot_is_picked_up(server, fresh_answerer, real_embedder):
    ann = server.user(1015, "Ann")
    chat = server.private_chat(ann)
    settings = fresh_answerer.settings
    old_build = fresh_answerer.build_id
    async with running_bot(server, fresh_answerer, index_poll_seconds=0.3):
        write_article(settings.corpus_dir, "marathon.md", NEW_ARTICLE_TITLE, NEW_ARTICLE_BODY,
                      source="Dawn", date="2024-02-01")
        # `python -m bot index` in another process, as far as the bot can tell
        await asyncio.to_thread(build_index, settings, real_embedder, progress=False)
        await server.async_wait_for(lambda s: fresh_answerer.build_id != old_build, WAIT, "the bot to reload")
        _, [new] = await answer_to(server, chat, ann, NEW_ARTICLE_QUESTION)
    assert "flamingo" in new.text and NEW_ARTICLE_TITLE in new.text
    assert_telegram_rules(server)


# ------------------------------------------------------------------ errors and the token


@pytest.mark.asyncio
async def test_errors_are_logged_with_traceback_and_apologised_for(server, seed_answerer, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    ann = server.user(1016, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        _, [answer] = await answer_to(server, chat, ann, BAHADURABAD)

        def broken(*args, **kwargs):
            raise RuntimeError("the index exploded at offset 42")

        monkeypatch.setattr(seed_answerer, "ask", broken)
        _, [apology] = await answer_to(server, chat, ann, MAYOR)
        assert apology.text == ERROR_REPLY
        # a failure after the button press was acknowledged: the apology comes as a message
        before = len(server.sent_messages(chat["id"]))
        server.press_button(answer, button(answer, "More sources")["callback_data"], ann)
        [apology2] = await replies(server, chat["id"], before)
        assert apology2.text == ERROR_REPLY
    failures = [r for r in caplog.records if r.getMessage() == "error while handling an update"]
    assert len(failures) == 2 and all(r.levelno == logging.ERROR and r.exc_info for r in failures)
    assert "Traceback" in caplog.text and "RuntimeError: the index exploded at offset 42" in caplog.text
    assert all("exploded" not in m.text for m in server.sent_messages())
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_token_never_reaches_logs_or_messages(server, seed_answerer, monkeypatch, caplog):
    token = server.token
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "telegram", "telegram.ext", "bot"):
        caplog.set_level(logging.DEBUG, logger=name)  # restored after the test
    redactor = install_token_redaction(token)
    logging.getLogger("httpx").setLevel(logging.DEBUG)  # the redactor must work even when httpx talks
    try:
        ann = server.user(1017, "Ann")
        chat = server.private_chat(ann)
        async with running_bot(server, seed_answerer):
            _, [start] = await answer_to(server, chat, ann, "/start")
            assert "news articles" in start.text

            def broken(*args, **kwargs):
                try:
                    raise ConnectionError(f"cannot reach {server.base_url}{token}/sendMessage")
                except ConnectionError as exc:
                    raise RuntimeError(f"request to {server.base_url}{token} failed") from exc

            monkeypatch.setattr(seed_answerer, "ask", broken)
            _, [apology] = await answer_to(server, chat, ann, BAHADURABAD)
        assert apology.text == ERROR_REPLY
        text = caplog.text
        assert "[redacted-token]" in text  # the request URLs were logged, with the token taken out
        assert "getUpdates" in text and "ConnectionError" in text
        assert token not in text
        assert all(token not in r.getMessage() for r in caplog.records)
        assert token.split(":")[1] not in text
    finally:
        for handler in logging.getLogger().handlers:
            handler.removeFilter(redactor)
    assert_telegram_rules(server)


def test_missing_or_malformed_token_is_one_line_without_echo(tmp_path):
    secret = "not-a-token-SECRET-VALUE-12345"
    for token in ("", "   ", secret, "123456:short"):
        settings = make_settings(tmp_path, TELEGRAM_BOT_TOKEN=token) if token.strip() else make_settings(tmp_path)
        for call in (settings.require_token, lambda s=settings: run_bot(s), lambda s=settings: build_application(s, None)):
            with pytest.raises(ConfigError) as caught:
                call()
            message = str(caught.value)
            assert "\n" not in message and "TELEGRAM_BOT_TOKEN" in message
            assert (token.strip() or "\0") not in message and "SECRET" not in message
    assert "123456:" not in repr(make_settings(tmp_path, TELEGRAM_BOT_TOKEN="123456:" + "a" * 30))


# ------------------------------------------------------------------ the real entry point


def _bot_env(**values: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TELEGRAM_", "INDEX_", "CORPUS_"))}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PTB_TIMEDELTA="1")
    env.update(values)
    return env


def test_cli_run_explains_a_malformed_token(tmp_path):
    secret = "SECRET-shaped-wrongly"
    result = subprocess.run(
        [sys.executable, "-m", "bot", "run"], check=False, cwd=tmp_path, env=_bot_env(TELEGRAM_BOT_TOKEN=secret),
        capture_output=True, text=True, timeout=WAIT,
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "TELEGRAM_BOT_TOKEN" in result.stderr
    assert secret not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_python_m_bot_run_serves_a_spec_following_bot_api_server(tmp_path, seed_settings, seed_answerer):
    with FakeBotApi() as server:
        ann = server.user(1018, "Ann")
        chat = server.private_chat(ann)
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp_path,
            env=_bot_env(
                TELEGRAM_BOT_TOKEN=server.token, TELEGRAM_BASE_URL=server.base_url,
                CORPUS_DIR=str(seed_settings.corpus_dir), INDEX_DIR=str(seed_settings.index_dir),
                INDEX_POLL_SECONDS="1",
            ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            server.send_text(chat, ann, BAHADURABAD)
            deadline = time.monotonic() + 2 * WAIT
            while time.monotonic() < deadline and process.poll() is None:
                if [m for m in server.sent_messages(chat["id"]) if m.buttons]:
                    break
                time.sleep(0.1)
            messages = server.sent_messages(chat["id"])
            names = [c["command"] for c in server.commands()]
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                out, err = process.communicate(timeout=WAIT)
            except subprocess.TimeoutExpired:
                process.kill()
                out, err = process.communicate()
        assert process.returncode == 0, err[-3000:]
        assert len(messages) == 1, err[-3000:]
        [answer] = messages
        assert LEADER_SENTENCE in answer.text and "[1]" in answer.text and SEED_TITLE in answer.text
        assert answer.callback_data[-1].startswith("m:")
        assert names == ["start", "help", "sources", "ask", "more", "reset", "reindex", "follow", "following", "unfollow", "update", "gaps"]
        assert "serving by long polling" in err and "Traceback" not in err
        assert server.token not in out + err
        assert server.errors() == [], "\n".join(str(c) for c in server.errors())


# ------------------------------------------------------------------ flood control


@pytest.mark.asyncio
async def test_flood_control_retries_after_telegram_says_wait(server, seed_answerer):
    """Telegram answers 429 "retry after 1" to the reply; the rate limiter waits and resends."""
    ann = server.user(1031, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        server.flood_next("sendMessage", retry_after=1)
        started = time.monotonic()
        _, messages = await answer_to(server, chat, ann, BAHADURABAD)
        waited = time.monotonic() - started
    assert LEADER_SENTENCE in full_text(messages)
    refused = [c for c in server.errors(include_injected=True) if c.method == "sendMessage"]
    assert len(refused) == 1 and refused[0].status == 429
    assert waited >= 1.0  # it honoured retry_after instead of hammering the server
    assert_telegram_rules(server)


# ------------------------------------------------------------------ conversation


@pytest.mark.asyncio
async def test_small_talk_gets_a_short_reply_never_news_quotes(server, seed_answerer, monkeypatch):
    spy = AskSpy(seed_answerer, monkeypatch)
    ann = server.user(1020, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer, questions_per_minute=2):  # the question and "more"
        _, [hello] = await answer_to(server, chat, ann, "hi")
        _, [answer] = await answer_to(server, chat, ann, BAHADURABAD)
        _, [thanks] = await answer_to(server, chat, ann, "thanks!")
        _, [ok] = await answer_to(server, chat, ann, "ok 👍")
        _, [more] = await answer_to(server, chat, ann, "more")  # a command in words: the next passages
    assert hello.text == small_talk_reply(SmallTalk.GREETING, EXAMPLE_QUESTIONS[0])
    assert thanks.text == small_talk_reply(SmallTalk.THANKS, EXAMPLE_QUESTIONS[0])
    assert ok.text == small_talk_reply(SmallTalk.ACK, EXAMPLE_QUESTIONS[0])
    for reply in (hello, thanks, ok):
        assert quotes(reply) == [] and reply.buttons == [] and "Sources" not in reply.text
    assert LEADER_SENTENCE in answer.text
    assert len(spy.calls) == 2  # one question, one "more": small talk searched nothing
    assert quotes(more) and not set(quotes(more)) & set(quotes(answer))
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_coverage_note_comes_first_when_the_articles_are_too_old(server, seed_answerer):
    ann = server.user(1021, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        _, [reply] = await answer_to(server, chat, ann, "Who won the 2024 election in Karachi?")
    first_line = reply.text.split("\n")[0]
    assert first_line.startswith("My newest article on this is from 10 Dec 2023")
    assert "bold" in [e["type"] for e in reply.entities]
    assert "Header image" not in reply.text  # a caption is never a lead or a quote
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_urdu_script_question_is_answered_and_unreadable_scripts_are_told_so(server, seed_answerer):
    ann = server.user(1022, "Ann")
    chat = server.private_chat(ann)
    async with running_bot(server, seed_answerer):
        _, [urdu] = await answer_to(server, chat, ann, "بہادرآباد گروپ کی قیادت کون کرتا ہے؟")
        _, [hindi] = await answer_to(server, chat, ann, "बहादराबाद समूह का नेता कौन है?")
    assert LEADER_SENTENCE in urdu.text and quotes(urdu)
    assert "समझ" in hindi.text and quotes(hindi) == []  # said in the question's own language
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_reindex_from_an_unlisted_user_is_refused_once_like_anything_else(server, seed_answerer):
    eve = server.user(6667, "Eve")
    eve_chat = server.private_chat(eve)
    async with running_bot(server, seed_answerer, allowed_user_ids=frozenset({1})):
        _, [refusal] = await answer_to(server, eve_chat, eve, "/reindex")
        server.send_text(eve_chat, eve, "/reindex")
        await server.async_wait_for(lambda s: not s.pending_updates(), WAIT, "all updates fetched")
    assert refusal.text == REFUSED_REPLY  # the allow-list's refusal, not the admin one
    assert len(server.sent_messages(eve_chat["id"])) == 1  # the second attempt got silence
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_buttons_work_only_in_the_chat_their_answer_was_sent_to(server, seed_answerer):
    ann, eve = server.user(1030, "Ann"), server.user(1031, "Eve")
    ann_chat, eve_chat = server.private_chat(ann), server.private_chat(eve)
    async with running_bot(server, seed_answerer):
        _, [anns] = await answer_to(server, ann_chat, ann, BAHADURABAD)
        _, [eves] = await answer_to(server, eve_chat, eve, MAYOR)
        key = button(anns, "More sources")["callback_data"].split(":")[1]
        before = len(server.sent_messages(eve_chat["id"]))
        for data in (f"f:{key}:1", f"m:{key}"):  # Ann's key, pressed under Eve's own answer
            server.press_button(eves, data, eve, check=False)
        answers = await server.async_wait_for(lambda s: (a := s.callback_answers()) and len(a) >= 2 and a, WAIT, "callback answers")
    assert [a["text"] for a in answers[-2:]] == [EXPIRED_REPLY] * 2
    assert len(server.sent_messages(eve_chat["id"])) == before  # nothing of Ann's answer reached Eve
    assert_telegram_rules(server)
