"""A crowd at once: one bounded line in front of the model (bot/workqueue.py) and what the
Telegram bot says about it, through the real Application and the Bot API server on 127.0.0.1.

The line is deterministic in tests because its one worker can be held: ``Gate`` wraps the
real answerer's ``reply`` so the first question blocks until the test opens the gate; the
questions sent meanwhile take their places in the order they arrived.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time

import pytest

from bot.telegram_app import (
    BUSY_REPLY,
    ERROR_REPLY,
    QUEUE_FULL_REPLY,
    SHUTDOWN_REPLY,
    stop_taking_questions,
)
from bot.workqueue import QueueClosed, QueueFull, WorkQueue
from tests.fake_bot_api import FakeBotApi, fake_bot_api
from tests.test_telegram_e2e import BAHADURABAD, LEADER_SENTENCE, MAYOR, WAIT, _bot_env, assert_telegram_rules, running_bot

__all__ = ["fake_bot_api"]

QUESTIONS = (
    BAHADURABAD,
    MAYOR,
    "When did the PSP merge into the MQM-P?",
    "Which faction held a rally in Liaquatabad?",
)


@pytest.fixture
def server(fake_bot_api: FakeBotApi) -> FakeBotApi:
    return fake_bot_api


class Gate:
    """Holds the model worker inside the real ``answerer.reply`` until ``open()``."""

    def __init__(self, answerer, monkeypatch):
        self.entered = threading.Event()
        self._open = threading.Event()
        original = answerer.reply

        def reply(*args, **kwargs):
            self.entered.set()
            self._open.wait(WAIT)
            return original(*args, **kwargs)

        monkeypatch.setattr(answerer, "reply", reply)

    def open(self) -> None:
        self._open.set()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, WAIT), "the worker never started"


def is_answer(message) -> bool:
    """An answer (found or not), as opposed to a refusal or an apology."""
    refusals = (SHUTDOWN_REPLY, QUEUE_FULL_REPLY.split("{seconds}")[0], ERROR_REPLY)
    return not message.text.startswith(refusals)


def finals(server: FakeBotApi, chat_id: int) -> list:
    """The bot's messages to a chat other than busy notices: answers and refusals."""
    return [m for m in server.sent_messages(chat_id) if not m.text.startswith("Busy: you're #")]


# ------------------------------------------------------------------ the line itself


@pytest.mark.asyncio
async def test_line_keeps_order_counts_places_and_refuses_when_full():
    queue = WorkQueue(capacity=3, first_estimate=0.5)
    hold = threading.Event()
    done: list[int] = []

    def work(n):
        hold.wait(WAIT)
        done.append(n)
        return n * 10

    tickets = [queue.submit(work, n) for n in range(3)]
    assert [t.ahead for t in tickets] == [0, 1, 2]
    assert [t.wait_seconds for t in tickets] == [0.5, 1.0, 1.5]  # (places ahead + 1) x the average
    with pytest.raises(QueueFull) as full:
        queue.submit(work, 3)
    assert full.value.retry_after == 2  # the three in line, at 0.5 s each, rounded up
    hold.set()
    assert [await t.result() for t in tickets] == [0, 10, 20]
    assert done == [0, 1, 2]  # one worker, arrival order
    tickets[0].release()
    assert queue.submit(work, 4).ahead == 2  # a released place is free again
    for ticket in tickets[1:]:
        ticket.release()
    assert queue.refused_full == 1 and queue.completed == 3
    queue.shutdown()


@pytest.mark.asyncio
async def test_running_average_follows_the_answer_time():
    queue = WorkQueue(capacity=5, first_estimate=5.0)
    for _ in range(3):
        ticket = queue.submit(time.sleep, 0.05)
        await ticket.result()
        ticket.release()
    assert 0.04 <= queue.seconds_per_answer.value < 0.5  # the first estimate is forgotten at once
    queue.shutdown()


@pytest.mark.asyncio
async def test_closing_answers_the_line_within_the_grace_then_refuses_the_rest():
    queue = WorkQueue(capacity=10)
    hold = threading.Event()
    first = queue.submit(hold.wait, WAIT)
    second = queue.submit(lambda: "second")
    queue.close(grace=5.0)
    with pytest.raises(QueueClosed):
        queue.submit(lambda: "late")
    hold.set()
    assert await first.result() is True and await second.result() == "second"  # within the grace

    queue = WorkQueue(capacity=10)
    hold = threading.Event()
    first = queue.submit(hold.wait, WAIT)
    waiting = [queue.submit(lambda: "never") for _ in range(3)]
    queue.close(grace=0.1)
    await asyncio.sleep(0.3)
    hold.set()
    assert await first.result() is True  # what had started is finished
    for ticket in waiting:
        with pytest.raises(QueueClosed):
            await ticket.result()
    await queue.drained()
    queue.shutdown()


# ------------------------------------------------------------------ through Telegram


@pytest.mark.asyncio
async def test_questions_that_must_wait_are_told_their_place_and_a_full_line_refuses(server, seed_answerer, monkeypatch):
    gate = Gate(seed_answerer, monkeypatch)
    users = [server.user(2100 + i, f"U{i}") for i in range(6)]
    chats = [server.private_chat(u) for u in users]
    async with running_bot(server, seed_answerer, queue_size=4, busy_notice_seconds=0):
        server.send_text(chats[0], users[0], QUESTIONS[0])
        await gate.wait_entered()  # the worker holds the first question
        for i in range(1, 6):
            server.send_text(chats[i], users[i], QUESTIONS[i % len(QUESTIONS)])
        # places 1-3 are told at once; the line (4) is full for the last two
        for i in range(1, 6):
            await server.async_wait_for_messages(chats[i]["id"], 1, WAIT)
        notices = [server.sent_messages(chat["id"])[0].text for chat in chats[1:]]
        assert server.sent_messages(chats[0]["id"]) == []  # the first is being answered
        gate.open()
        for chat in chats:
            await server.async_wait_for(lambda s, c=chat: finals(s, c["id"]), WAIT, "a final reply")
        await asyncio.sleep(0.3)  # nothing more arrives
    for position, text in enumerate(notices[:3], start=1):
        prefix = BUSY_REPLY.split("{position}")[0] + f"{position} in line, about "
        assert text.startswith(prefix) and text.endswith(" s."), text
    seconds = [int(t.rsplit("about ", 1)[1][:-3]) for t in notices[:3]]
    assert seconds == sorted(seconds) and seconds[0] >= 1
    full_prefix = QUEUE_FULL_REPLY.split("{seconds}")[0]
    assert all(t.startswith(full_prefix) for t in notices[3:])
    for i, chat in enumerate(chats):
        [final] = finals(server, chat["id"])  # exactly one answer or one refusal each
        if i < 4:
            assert is_answer(final), final.text
        else:
            assert final.text.startswith(full_prefix) and not final.buttons
    assert LEADER_SENTENCE in finals(server, chats[0]["id"])[0].text
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_a_crowd_of_users_all_get_every_answer_once(server, seed_answerer):
    users = [server.user(2200 + i, f"U{i}") for i in range(30)]
    chats = [server.private_chat(u) for u in users]
    rounds = 3
    async with running_bot(server, seed_answerer, questions_per_minute=0):
        for round_ in range(rounds):  # every user asks at once, then again when answered
            for i, (user, chat) in enumerate(zip(users, chats)):
                server.send_text(chat, user, QUESTIONS[(i + round_) % len(QUESTIONS)])
            for chat in chats:
                await server.async_wait_for(
                    lambda s, c=chat: len(finals(s, c["id"])) >= round_ + 1 and s, WAIT, f"answer {round_ + 1}"
                )
        await asyncio.sleep(0.3)
    for chat in chats:
        answers = finals(server, chat["id"])
        assert len(answers) == rounds and all(is_answer(m) for m in answers)  # none lost, none twice
    assert_telegram_rules(server)


async def four_in_line_then_stop(server, app, gate, chats, users) -> None:
    """One question held in the model, three more in line; then the stop signal."""
    server.send_text(chats[0], users[0], QUESTIONS[0])
    await gate.wait_entered()
    for i in range(1, 4):
        server.send_text(chats[i], users[i], QUESTIONS[i])
    await server.async_wait_for(lambda s: len(app.bot_data["state"].queue) == 4, WAIT, "four in line")
    stop_taking_questions(app)


@pytest.mark.asyncio
async def test_stopping_answers_the_line_within_the_grace_and_refuses_new_questions(server, seed_answerer, monkeypatch):
    gate = Gate(seed_answerer, monkeypatch)
    users = [server.user(2300 + i, f"U{i}") for i in range(5)]
    chats = [server.private_chat(u) for u in users]
    async with running_bot(server, seed_answerer, shutdown_grace_seconds=30) as app:
        await four_in_line_then_stop(server, app, gate, chats, users)
        server.send_text(chats[4], users[4], QUESTIONS[0])  # after the signal: refused at once
        [late] = await server.async_wait_for_messages(chats[4]["id"], 1, WAIT)
        gate.open()
        for chat in chats[:4]:
            await server.async_wait_for(lambda s, c=chat: finals(s, c["id"]), WAIT, "an answer")
    assert late.text == SHUTDOWN_REPLY
    for chat in chats[:4]:
        [answer] = finals(server, chat["id"])
        assert is_answer(answer)
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_the_line_left_when_the_grace_ends_is_told_to_ask_again(server, seed_answerer, monkeypatch):
    gate = Gate(seed_answerer, monkeypatch)
    users = [server.user(2400 + i, f"U{i}") for i in range(4)]
    chats = [server.private_chat(u) for u in users]
    async with running_bot(server, seed_answerer, shutdown_grace_seconds=0.2) as app:
        await four_in_line_then_stop(server, app, gate, chats, users)
        for chat in chats[1:]:
            await server.async_wait_for(lambda s, c=chat: finals(s, c["id"]), WAIT, "a refusal")
        gate.open()  # the question being answered when the grace ended is still answered
        await server.async_wait_for(lambda s: finals(s, chats[0]["id"]), WAIT, "the first answer")
    assert is_answer(finals(server, chats[0]["id"])[0])
    for chat in chats[1:]:
        assert [m.text for m in finals(server, chat["id"])] == [SHUTDOWN_REPLY]
    assert_telegram_rules(server)


def test_sigterm_under_load_answers_or_refuses_everything_accepted(tmp_path, seed_settings, seed_answerer):
    """The real entry point: SIGTERM while questions are in line; every question the bot took
    from Telegram gets its answer or the "ask again" reply, the rest stay with Telegram."""
    with FakeBotApi() as server:
        users = [server.user(2500 + i, f"U{i}") for i in range(60)]
        chats = [server.private_chat(u) for u in users]
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "run"],
            cwd=tmp_path,
            env=_bot_env(
                TELEGRAM_BOT_TOKEN=server.token, TELEGRAM_BASE_URL=server.base_url,
                CORPUS_DIR=str(seed_settings.corpus_dir), INDEX_DIR=str(seed_settings.index_dir),
                INDEX_POLL_SECONDS="0", SHUTDOWN_GRACE_SECONDS="0", QUESTIONS_PER_MINUTE="0",
            ),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        try:
            server.wait_for(lambda s: s.commands(), 2 * WAIT, "the bot to start")
            for i, (user, chat) in enumerate(zip(users, chats)):
                server.send_text(chat, user, QUESTIONS[i % len(QUESTIONS)])
            server.wait_for(lambda s: any(finals(s, c["id"]) for c in chats), WAIT, "a first answer")
            process.send_signal(signal.SIGTERM)
            started = time.monotonic()
            out, err = process.communicate(timeout=WAIT)
            stopped_in = time.monotonic() - started
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        pending = {u["message"]["chat"]["id"] for u in server.pending_updates() if "message" in u}
        outcomes = {"answered": 0, "refused": 0, "left with Telegram": 0}
        for chat in chats:
            replies = finals(server, chat["id"])
            if chat["id"] in pending:
                assert replies == []
                outcomes["left with Telegram"] += 1
                continue
            assert len(replies) == 1, (chat["id"], [m.text for m in replies], err[-2000:])
            outcomes["answered" if is_answer(replies[0]) else "refused"] += 1
            if not is_answer(replies[0]):
                assert replies[0].text == SHUTDOWN_REPLY
        assert process.returncode == 0, err[-3000:]
        assert stopped_in < 20, stopped_in
        assert outcomes["answered"] >= 1 and outcomes["refused"] >= 1, outcomes
        assert "Traceback" not in err and server.token not in out + err
        assert "stop signal: no new questions" in err
        assert server.errors() == [], "\n".join(str(c) for c in server.errors())
        print(outcomes, f"stopped in {stopped_in:.1f} s", file=sys.stderr)
