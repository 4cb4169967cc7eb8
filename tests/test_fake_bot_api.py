"""Tests of the fake Bot API server itself, mostly driven by the real python-telegram-bot.

Why: the bot's end-to-end tests trust this server to behave like Telegram. These tests pin
down that (a) PTB can talk to it unmodified (getMe, polling, sending, callbacks) and (b) it
refuses what Telegram refuses, with Telegram's status codes and wording.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import time

import aiohttp
import pytest
from telegram import Bot, InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.constants import ParseMode
from telegram.error import BadRequest, Conflict, InvalidToken, NetworkError, RetryAfter
from telegram.ext import Application, CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

try:
    from tests.fake_bot_api import FakeBotApi, HtmlParseError, fake_bot_api, parse_telegram_html, utf16_len
except ImportError:  # only tests/ itself on sys.path
    from fake_bot_api import FakeBotApi, HtmlParseError, fake_bot_api, parse_telegram_html, utf16_len

__all__ = ["fake_bot_api"]  # the imported fixture, used through `server` below


@pytest.fixture
def server(fake_bot_api):
    """The module's reusable fixture (which also checks the server thread is gone after)."""
    return fake_bot_api


def make_bot(server: FakeBotApi, token: str | None = None) -> Bot:
    return Bot(token or server.token, base_url=server.base_url, base_file_url=server.base_file_url)


class RunningApp:
    """A tiny real PTB Application polling the fake server; started/stopped cleanly."""

    def __init__(self, server: FakeBotApi, *handlers):
        self.app = Application.builder().token(server.token).base_url(server.base_url).build()
        for handler in handlers:
            self.app.add_handler(handler)

    async def __aenter__(self) -> Application:
        await self.app.initialize()
        await self.app.start()
        await self.app.updater.start_polling(poll_interval=0, timeout=1)
        return self.app

    async def __aexit__(self, *exc_info) -> None:
        await self.app.updater.stop()
        await self.app.stop()
        await self.app.shutdown()


async def echo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await update.message.reply_text(f"echo: {update.message.text}")


# ------------------------------------------------------------------ the HTML parser


@pytest.mark.parametrize(
    ("html", "text", "entities"),
    [
        ("<b>bold</b> &amp; <i>it</i>", "bold & it", [("bold", 0, 4), ("italic", 7, 2)]),
        ("&lt;tag&gt; &quot;q&quot; &#39; &#x1F600;", '<tag> "q" \' 😀', []),
        ("😀 <u>é</u>", "😀 é", [("underline", 3, 1)]),  # offsets in UTF-16 units
        ('<a href="https://x.org/?a=1&amp;b=2">l</a>', "l", [("text_link", 0, 1)]),
        ('<pre><code class="language-py">x = 1</code></pre>', "x = 1", [("pre", 0, 5)]),
        ('<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>', "st", [("spoiler", 0, 1), ("spoiler", 1, 1)]),
        ("<blockquote expandable>q</blockquote>", "q", [("expandable_blockquote", 0, 1)]),
        ("<B>x</B><strong>y</>", "xy", [("bold", 0, 1), ("bold", 1, 1)]),
        ("a > b", "a > b", []),
    ],
)
def test_html_parser_accepts_telegram_html(html, text, entities):
    parsed, found = parse_telegram_html(html)
    assert parsed == text
    assert [(e["type"], e["offset"], e["length"]) for e in found] == entities


@pytest.mark.parametrize(
    ("html", "message"),
    [
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("é <br/>", 'Unsupported start tag "br/" at byte offset 3'),  # byte, not char, offset
        ("a < b", 'Unsupported start tag "" at byte offset 2'),
        ("x <b", "Unclosed start tag at byte offset 2"),
        ("<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ("<b><i>x</b></i>", 'Unmatched end tag at byte offset 7, expected "</i>", found "</b>"'),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
        ("<a href>x</a>", 'Expected equal sign in declaration of an attribute of the tag "a" at byte offset 0'),
        ("AT&T", 'Character "&" must be escaped as "&amp;" at byte offset 2'),
    ],
)
def test_html_parser_rejects_like_telegram(html, message):
    with pytest.raises(HtmlParseError) as info:
        parse_telegram_html(html)
    assert str(info.value) == message


def test_bare_ampersand_passes_in_tdlib_compatible_mode():
    assert parse_telegram_html("AT&T &lt", strict_ampersand=False) == ("AT&T <", [])


def test_utf16_length_counts_emoji_twice():
    assert utf16_len("a😀") == 3


# ------------------------------------------------------------------ PTB Bot against the server


@pytest.mark.asyncio
async def test_get_me(server):
    async with make_bot(server) as bot:
        me = await bot.get_me()
    assert (me.id, me.username, me.is_bot) == (123456, "newsbot", True)
    assert server.calls("getMe")[0].status == 200
    assert server.errors() == []


@pytest.mark.asyncio
async def test_wrong_token_is_invalid_token(server):
    with pytest.raises(InvalidToken):
        async with make_bot(server, token="654321:WRONG-token-abcdefghijklmnopqrstuvw"):
            pass
    [call] = server.errors()
    assert call.status == 401 and call.response == {"ok": False, "error_code": 401, "description": "Unauthorized"}


@pytest.mark.asyncio
async def test_echo_round_trip_through_polling(server):
    ann = server.user(1001, "Ann", username="ann")
    chat = server.private_chat(ann)
    async with RunningApp(server, MessageHandler(filters.TEXT & ~filters.COMMAND, echo)):
        sent = server.send_text(chat, ann, "hello <world> & co")
        [reply] = await server.async_wait_for_messages(chat["id"], 1)
    assert reply.text == "echo: hello <world> & co"
    assert reply.message["from"]["id"] == server.bot_user["id"]
    assert reply.message_id == sent["message_id"] + 1  # one id sequence per chat
    assert server.pending_updates() == []  # confirmed via offset, never redelivered
    assert server.errors() == []
    # PTB posts form-encoded strings and leaves out None parameters (limit, allowed_updates).
    assert server.calls("getUpdates")[0].params == {"timeout": "1", "offset": "0"}


@pytest.mark.asyncio
async def test_command_handler_sees_bot_command_entity(server):
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        await update.message.reply_html(f"<b>started</b> with {context.args}")

    group = server.group_chat(-100200, "News fans")
    bob = server.user(1002, "Bob")
    async with RunningApp(server, CommandHandler("start", start)):
        message = server.send_text(group, bob, "/start@newsbot now")
        [reply] = await server.async_wait_for_messages(group["id"], 1)
    assert message["entities"] == [{"type": "bot_command", "offset": 0, "length": 14}]
    assert reply.text == "started with ['now']"
    assert reply.html == "<b>started</b> with ['now']"
    assert reply.entities == [{"type": "bold", "offset": 0, "length": 7}]
    assert reply.reply_to_message_id == message["message_id"]  # reply_html quotes in groups
    # A user replying to the bot gets the bot's message embedded, "from" and all.
    follow_up = server.send_text(group, bob, "more?", reply_to_message_id=reply.message_id)
    assert follow_up["reply_to_message"]["from"]["username"] == "newsbot"
    assert follow_up["reply_to_message"]["text"] == reply.text


@pytest.mark.asyncio
async def test_html_errors_are_bad_requests_with_telegram_wording(server):
    chat = server.private_chat(server.user(1003))
    async with make_bot(server) as bot:
        with pytest.raises(BadRequest, match="(?i)can't parse entities: unsupported start tag"):
            await bot.send_message(chat["id"], "<foo>hi</foo>", parse_mode=ParseMode.HTML)
        with pytest.raises(BadRequest, match="(?i)can't parse entities"):
            await bot.send_message(chat["id"], "Q&A", parse_mode=ParseMode.HTML)
        # Without parse_mode the same text is literal and fine.
        await bot.send_message(chat["id"], "<foo> Q&A")
    descriptions = [c.description for c in server.errors()]
    assert descriptions == [
        'Bad Request: can\'t parse entities: Unsupported start tag "foo" at byte offset 0',
        'Bad Request: can\'t parse entities: Character "&" must be escaped as "&amp;" at byte offset 1',
    ]
    assert [m.text for m in server.sent_messages(chat["id"])] == ["<foo> Q&A"]


@pytest.mark.asyncio
async def test_length_limit_counts_parsed_text_in_utf16(server):
    chat = server.private_chat(server.user(1004))
    async with make_bot(server) as bot:
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(chat["id"], "x" * 4097)
        await bot.send_message(chat["id"], "x" * 4096)
        # Markup does not count: raw string > 4096, parsed text == 4096.
        await bot.send_message(chat["id"], "<b>" + "y" * 4000 + "</b>" + "&amp;" * 96, parse_mode="HTML")
        with pytest.raises(BadRequest, match="Message is too long"):
            await bot.send_message(chat["id"], "😀" * 2049)  # 2049 chars, 4098 UTF-16 units
        with pytest.raises(BadRequest, match="Message text is empty"):
            await bot.send_message(chat["id"], "<b> </b>", parse_mode="HTML")
    assert [utf16_len(m.text) for m in server.sent_messages()] == [4096, 4096]
    assert len(server.errors()) == 3


@pytest.mark.asyncio
async def test_callback_data_limit_is_64_utf8_bytes(server):
    chat = server.private_chat(server.user(1005))
    async with make_bot(server) as bot:
        too_long = InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="é" * 33)]])  # 66 bytes
        with pytest.raises(BadRequest, match="Button_data_invalid"):
            await bot.send_message(chat["id"], "pick", reply_markup=too_long)
        ok = InlineKeyboardMarkup([[InlineKeyboardButton("b", callback_data="x" * 64)]])
        message = await bot.send_message(chat["id"], "pick", reply_markup=ok)
        bad_url = InlineKeyboardMarkup([[InlineKeyboardButton("b", url="not a url")]])
        with pytest.raises(BadRequest, match="(?i)inline keyboard button url"):
            await bot.send_message(chat["id"], "go", reply_markup=bad_url)
    assert message.reply_markup == ok
    assert server.errors()[0].description == "Bad Request: BUTTON_DATA_INVALID"


@pytest.mark.asyncio
async def test_edit_rules(server):
    chat = server.private_chat(server.user(1006))
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("More", callback_data="more")]])
    async with make_bot(server) as bot:
        message = await bot.send_message(chat["id"], "<i>v1</i>", parse_mode="HTML", reply_markup=markup)
        # Different HTML, same parsed content and markup: Telegram says not modified.
        with pytest.raises(BadRequest, match="Message is not modified"):
            await bot.edit_message_text(
                "<em>v1</em>", chat["id"], message.message_id, parse_mode="HTML", reply_markup=markup
            )
        with pytest.raises(BadRequest, match="Message to edit not found"):
            await bot.edit_message_text("v2", chat["id"], 999)
        # Omitting reply_markup in an edit drops the keyboard, as on Telegram.
        edited = await bot.edit_message_text("v2", chat["id"], message.message_id)
        assert edited.text == "v2" and edited.reply_markup is None
        await bot.edit_message_reply_markup(chat["id"], message.message_id, reply_markup=markup)
    [current] = server.sent_messages(chat["id"])
    assert (current.text, current.html, current.callback_data, current.edit_count) == ("v2", "v2", ["more"], 2)
    assert [c.description for c in server.errors()] == [
        (
            "Bad Request: message is not modified: specified new message content and reply markup are exactly "
            "the same as a current content and reply markup of the message"
        ),
        "Bad Request: message to edit not found",
    ]


@pytest.mark.asyncio
async def test_callback_query_round_trip(server):
    async def ask(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Sources", callback_data="src:1")]])
        await update.message.reply_text("Answer", reply_markup=keyboard)

    async def on_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        query = update.callback_query
        await query.answer("Loading sources")
        await query.edit_message_text(f"Answer\n(sources for {query.data})")

    ann = server.user(1007, "Ann")
    chat = server.private_chat(ann)
    async with RunningApp(server, MessageHandler(filters.TEXT, ask), CallbackQueryHandler(on_button)):
        server.send_text(chat, ann, "what happened?")
        [answer] = await server.async_wait_for_messages(chat["id"], 1)
        assert answer.callback_data == ["src:1"]
        with pytest.raises(ValueError):
            server.press_button(answer, "no-such-button", ann)
        server.press_button(answer, "src:1", ann)
        await server.async_wait_for(lambda s: s.sent_messages(chat["id"])[0].edit_count == 1)
    assert server.callback_answers()[0]["text"] == "Loading sources"
    assert server.sent_messages(chat["id"])[0].text == "Answer\n(sources for src:1)"
    assert server.errors() == []


@pytest.mark.asyncio
async def test_other_method_rules(server):
    chat = server.private_chat(server.user(1008))
    async with make_bot(server) as bot:
        with pytest.raises(BadRequest, match="Query is too old"):
            await bot.answer_callback_query("12345")
        with pytest.raises(BadRequest):
            await bot.send_chat_action(chat["id"], "dancing")
        assert await bot.send_chat_action(chat["id"], "typing")
        with pytest.raises(BadRequest, match="Bot_command_invalid"):
            await bot.set_my_commands([("Ask", "Ask a question")])
        with pytest.raises(BadRequest, match="Chat not found"):
            await bot.send_message(424242, "hi")
        await bot.set_my_commands([("ask", "Ask a question about the news")])
        commands = await bot.get_my_commands()
        assert [(c.command, c.description) for c in commands] == [("ask", "Ask a question about the news")]
        assert await bot.delete_my_commands()
        assert await bot.get_my_commands() == ()
    assert len(server.errors()) == 4


@pytest.mark.asyncio
async def test_injected_flood_control_raises_retry_after(server, monkeypatch):
    # Without PTB_TIMEDELTA, PTB 22 builds RetryAfter with a PTBDeprecationWarning, which
    # -W error turns into the exception raised instead of RetryAfter.
    monkeypatch.setenv("PTB_TIMEDELTA", "1")
    chat = server.private_chat(server.user(1009))
    server.flood_next("sendMessage", retry_after=3)
    async with make_bot(server) as bot:
        with pytest.raises(RetryAfter) as info:
            await bot.send_message(chat["id"], "first")
        assert info.value.retry_after == datetime.timedelta(seconds=3)
        await bot.send_message(chat["id"], "second")
    assert server.errors() == []  # injected failures are not the bot's fault ...
    [flood] = server.errors(include_injected=True)  # ... but are recorded
    assert flood.response["parameters"] == {"retry_after": 3}


@pytest.mark.asyncio
async def test_long_poll_returns_when_an_update_arrives(server):
    ann = server.user(1010)
    async with make_bot(server) as bot:
        poll = asyncio.create_task(bot.get_updates(timeout=10))
        await asyncio.sleep(0.2)
        assert not poll.done()
        started = time.monotonic()
        server.send_text(server.private_chat(ann), ann, "hi")
        updates = await asyncio.wait_for(poll, 3)
        assert time.monotonic() - started < 1
        assert [u.message.text for u in updates] == ["hi"]
        # Not confirmed yet: redelivered; confirmed with offset: gone.
        assert len(await bot.get_updates()) == 1
        assert await bot.get_updates(offset=updates[-1].update_id + 1) == ()
    assert server.pending_updates() == []


@pytest.mark.asyncio
async def test_second_long_poll_conflicts_with_the_first(server):
    async with make_bot(server) as first, make_bot(server) as second:
        older = asyncio.create_task(first.get_updates(timeout=5))
        await asyncio.sleep(0.2)
        newer = asyncio.create_task(second.get_updates(timeout=1))
        with pytest.raises(Conflict, match="terminated by other getUpdates"):
            await asyncio.wait_for(older, 3)
        assert await newer == ()


@pytest.mark.asyncio
async def test_stop_releases_a_waiting_long_poll():
    srv = FakeBotApi().start()
    try:
        async with make_bot(srv) as bot:
            poll = asyncio.create_task(bot.get_updates(timeout=20))
            await asyncio.sleep(0.2)
            started = time.monotonic()
            await asyncio.to_thread(srv.stop)
            # Either an empty answer or, if the connection closed first, a NetworkError.
            with contextlib.suppress(NetworkError):
                assert await asyncio.wait_for(poll, 3) == ()
            assert time.monotonic() - started < 3
    finally:
        srv.stop()


@pytest.mark.asyncio
async def test_raw_json_and_form_bodies_and_unknown_methods(server):
    chat = server.private_chat(server.user(1011))
    markup = {"inline_keyboard": [[{"text": "a", "callback_data": "a"}]]}
    url = f"{server.base_url}{server.token}"
    async with aiohttp.ClientSession() as session:
        body = {"chat_id": chat["id"], "text": "j", "reply_markup": markup}
        async with session.post(f"{url}/sendMessage", json=body) as r:
            assert r.status == 200 and (await r.json())["result"]["reply_markup"] == markup
        form = {"chat_id": str(chat["id"]), "text": "f", "reply_markup": json.dumps(markup)}
        async with session.post(f"{url}/sendMessage", data=form) as r:
            assert r.status == 200
        async with session.post(f"{url}/sendmessage", data=aiohttp.FormData(form)) as r:  # multipart; any case
            assert r.status == 200
        async with session.post(f"{url}/getChat", json={"chat_id": chat["id"]}) as r:
            assert r.status == 404
            assert await r.json() == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
    assert [m.reply_markup for m in server.sent_messages()] == [markup] * 3
    assert [(c.method, c.status) for c in server.errors()] == [("getChat", 404)]


def test_sync_api_and_replies(server):
    ann = server.user(1012, "Ann")
    chat = server.private_chat(ann)
    first = server.send_text(chat, ann, "hi @newsbot and @someone_else")
    assert [e["type"] for e in first["entities"]] == ["mention", "mention"]
    reply = server.send_text(chat, ann, "again", reply_to_message_id=first["message_id"])
    assert reply["reply_to_message"]["message_id"] == first["message_id"]
    sticker = server.send_sticker(chat, ann)
    edited = server.edit_text(first, "hi again")
    ids = [u["update_id"] for u in server.pending_updates()]
    assert ids == sorted(ids) and len(ids) == 4
    assert "sticker" in sticker and edited["edit_date"] >= first["date"]
    assert server.wait_for(lambda s: len(s.pending_updates()) == 4, timeout=1)
    with pytest.raises(AssertionError, match="timed out"):
        server.wait_for(lambda s: s.sent_messages(), timeout=0.1, what="a bot message")


@pytest.mark.asyncio
async def test_sync_wait_for_refuses_to_block_the_event_loop(server):
    with pytest.raises(RuntimeError, match="async_wait_for"):
        server.wait_for(lambda s: True)


def test_group_privacy_mode_filters_what_the_bot_receives():
    with FakeBotApi(group_privacy=True) as srv:
        group, bob = srv.group_chat(-100300, "G"), srv.user(1013, "Bob")
        srv.send_text(group, bob, "chatter the bot never sees")
        srv.send_text(group, bob, "/ask@otherbot not for us")
        srv.send_text(group, bob, "@newsbot what happened?")
        srv.send_text(group, bob, "/ask what happened?")
        srv.send_text(srv.private_chat(bob), bob, "private chats are always delivered")
        texts = [u["message"]["text"] for u in srv.pending_updates()]
    assert texts == ["@newsbot what happened?", "/ask what happened?", "private chats are always delivered"]


@pytest.mark.asyncio
async def test_raw_callback_query_update_can_be_answered(server):
    ann = server.user(1014)
    update = server.send_update({"callback_query": {"id": "77", "from": ann, "chat_instance": "1", "data": "x"}})
    async with make_bot(server) as bot:
        [received] = await bot.get_updates()
        assert received.update_id == update["update_id"] and received.callback_query.data == "x"
        assert await received.callback_query.answer()
        with pytest.raises(BadRequest, match="Query is too old"):  # only one answer per query
            await received.callback_query.answer()
