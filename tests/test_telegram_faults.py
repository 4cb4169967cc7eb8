"""Telegram under faults: the real bot behind ``bot.faultproxy.FaultProxy`` (HTTP 500s, dropped
connections and delays on sendMessage) in front of the Bot API server on 127.0.0.1.

What must hold: every answer is delivered, none twice, and nobody gets an apology for an
answer they did get. A send that certainly failed (a 500, a connection dropped before an
answer) is sent again with backoff and a bound; one whose answer is only late is waited for
(the server has it), and one that times out is neither sent again nor apologised for.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging

import pytest

from bot import telegram_app
from bot.faultproxy import FaultProxy
from bot.telegram_app import ERROR_REPLY, SEND_ATTEMPTS, build_application, serving
from tests.fake_bot_api import FakeBotApi, fake_bot_api
from tests.test_backpressure import QUESTIONS
from tests.test_telegram_e2e import BAHADURABAD, LEADER_SENTENCE, WAIT, assert_telegram_rules

__all__ = ["fake_bot_api"]

# 17 faults across the first 20 sends, as in the campaign (then everything passes).
CAMPAIGN = ["500", "drop", "delay", "500", "ok", "drop", "500", "delay", "drop", "500",
            "ok", "delay", "500", "drop", "500", "delay", "drop", "500", "ok", "drop"]


@pytest.fixture
def server(fake_bot_api: FakeBotApi) -> FakeBotApi:
    return fake_bot_api


@contextlib.asynccontextmanager
async def bot_behind(proxy: FaultProxy, server: FakeBotApi, answerer, **overrides):
    settings = dataclasses.replace(
        answerer.settings, telegram_bot_token=server.token, telegram_base_url=proxy.url + "/bot",
        index_poll_seconds=0, questions_per_minute=0, busy_notice_seconds=1000, **overrides,
    )
    async with serving(build_application(settings, answerer)) as app:
        yield app


def delivered_sends(server: FakeBotApi, chat_id: int) -> list:
    """sendMessage calls the server carried out for a chat (a duplicate would show twice)."""
    return [c for c in server.calls("sendMessage") if c.status == 200 and int(c.params["chat_id"]) == chat_id]


@pytest.mark.asyncio
async def test_twenty_answers_through_seventeen_faults_delivered_once_without_apologies(server, seed_answerer, caplog):
    caplog.set_level(logging.WARNING)
    users = [server.user(2600 + i, f"U{i}") for i in range(20)]
    chats = [server.private_chat(u) for u in users]
    # 6 s delays: longer than PTB's default 5 s read timeout, which turned them into losses
    with FaultProxy(f"http://127.0.0.1:{server.port}", delay=6.0) as proxy:
        proxy.inject("sendMessage", *CAMPAIGN)
        async with bot_behind(proxy, server, seed_answerer):
            for i, (user, chat) in enumerate(zip(users, chats)):
                server.send_text(chat, user, QUESTIONS[i % len(QUESTIONS)])
            for chat in chats:
                await server.async_wait_for_messages(chat["id"], 1, WAIT)
            await _settle()  # leaving waits for the sends still in flight (a held-back answer)
    assert sum(proxy.injected.values()) == 17
    assert "may have been delivered" not in caplog.text  # a late answer was waited for, not given up on
    assert proxy.injected == {"500": 7, "drop": 6, "delay": 4}
    for i, chat in enumerate(chats):
        messages = server.sent_messages(chat["id"])
        assert [m.text for m in messages if m.text == ERROR_REPLY] == []  # no false apology
        assert len(messages) == 1 and len(delivered_sends(server, chat["id"])) == 1  # delivered, once
        if QUESTIONS[i % len(QUESTIONS)] == BAHADURABAD:
            assert LEADER_SENTENCE in messages[0].text
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_a_send_failing_every_time_is_tried_a_bounded_number_of_times_then_apologised_for(server, seed_answerer):
    ann = server.user(2650, "Ann")
    chat = server.private_chat(ann)
    with FaultProxy(f"http://127.0.0.1:{server.port}") as proxy:
        proxy.inject("sendMessage", *["500"] * SEND_ATTEMPTS)  # the answer fails for good; the apology passes
        async with bot_behind(proxy, server, seed_answerer):
            server.send_text(chat, ann, BAHADURABAD)
            [apology] = await server.async_wait_for_messages(chat["id"], 1, WAIT)
    assert apology.text == ERROR_REPLY
    assert proxy.injected == {"500": SEND_ATTEMPTS}
    assert len(delivered_sends(server, chat["id"])) == 1  # only the apology reached the server
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_a_send_whose_answer_is_too_late_is_neither_repeated_nor_apologised_for(server, seed_answerer, monkeypatch, caplog):
    caplog.set_level(logging.WARNING)
    monkeypatch.setattr(telegram_app, "READ_TIMEOUT_SECONDS", 0.5)  # so the test needs no 30 s delay
    ann = server.user(2660, "Ann")
    chat = server.private_chat(ann)
    with FaultProxy(f"http://127.0.0.1:{server.port}", delay=2.0) as proxy:
        proxy.inject("sendMessage", "delay")
        async with bot_behind(proxy, server, seed_answerer):
            server.send_text(chat, ann, BAHADURABAD)
            [answer] = await server.async_wait_for_messages(chat["id"], 1, WAIT)
            await server.async_wait_for(
                lambda s: "may have been delivered" in caplog.text, WAIT, "the bot to give up waiting"
            )
            await _settle()
    assert LEADER_SENTENCE in answer.text
    assert [m.text for m in server.sent_messages(chat["id"])] == [answer.text]  # not again, no apology
    assert len(delivered_sends(server, chat["id"])) == 1
    assert_telegram_rules(server)


async def _settle(seconds: float = 1.0) -> None:
    """Time for a wrong retry or apology to show up (backoff starts at 0.5 s)."""
    import asyncio

    await asyncio.sleep(seconds)
