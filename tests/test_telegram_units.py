"""Small pieces of the Telegram adapter: bounded memory, the rate limiter, token redaction, buttons."""

from __future__ import annotations

import logging

import pytest

from bot import telegram_app
from bot.telegram_app import BoundedDict, QuestionRateLimiter, TokenRedactingFilter, _keyboard, _mentions_bot
from bot.telegram_html import plain_text
from bot.types import Answer, Article, Passage

TOKEN = "123456:TEST-token-abcdefghijklmnopqrstuvwxyz"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(telegram_app.time, "monotonic", clock)
    return clock


def test_bounded_dict_caps_size_and_age(clock):
    memory = BoundedDict(2, max_age=60)
    memory.put("a", 1)
    memory.put("b", 2)
    assert memory.fetch("a") == 1  # "a" is now the most recent
    memory.put("c", 3)
    assert memory.fetch("b") is None and memory.fetch("a") == 1 and len(memory) == 2
    clock.now += 61
    assert memory.fetch("a") is None and "a" not in memory
    assert BoundedDict(1).fetch("missing") is None


def test_rate_limiter_counts_per_user_in_a_rolling_minute(clock):
    limiter = QuestionRateLimiter(2)
    assert limiter.wait_seconds(1) == 0
    clock.now += 10
    assert limiter.wait_seconds(1) == 0
    assert limiter.wait_seconds(2) == 0  # other users are not affected
    assert limiter.wait_seconds(1) == 50  # the first question leaves the window in 50 s
    clock.now += 49.5
    assert limiter.wait_seconds(1) == 1
    clock.now += 0.5
    assert limiter.wait_seconds(1) == 0
    assert QuestionRateLimiter(0).wait_seconds(1) == 0  # 0 disables the limit


def _record(msg: str, args=(), exc_info=None) -> logging.LogRecord:
    return logging.LogRecord("httpx", logging.INFO, __file__, 1, msg, args, exc_info)


def test_redaction_covers_messages_arguments_and_exception_chains():
    redactor = TokenRedactingFilter(TOKEN)
    record = _record("HTTP Request: POST %s", (f"http://127.0.0.1/bot{TOKEN}/getMe",))
    assert redactor.filter(record) and record.getMessage() == "HTTP Request: POST http://127.0.0.1/bot[redacted-token]/getMe"
    try:
        try:
            raise OSError(f"connect to /bot{TOKEN}/getUpdates failed")
        except OSError as exc:
            raise RuntimeError("network error") from exc  # the token is only in the cause
    except RuntimeError as exc:
        record = _record("failed", exc_info=(type(exc), exc, exc.__traceback__))
    redactor.filter(record)
    text = logging.Formatter().format(record)
    assert "OSError" in text and "[redacted-token]" in text and TOKEN not in text


def test_mentions_are_whole_usernames():
    class Message:
        def __init__(self, text):
            self.text = text

    assert _mentions_bot(Message("@NewsBot who leads?"), "newsbot")
    assert _mentions_bot(Message("hey @newsbot, who leads?"), "newsbot")
    assert not _mentions_bot(Message("@newsbotfan who leads?"), "newsbot")
    assert not _mentions_bot(Message("who leads?"), "")


def test_keyboard_rows_are_short_and_callback_data_tiny():
    with_url = Article("a", "A", "x" * 400, url="https://example.org/a?b=1&c=2")
    without = Article("b", "B", "y" * 400)
    passages = tuple(Passage(n, with_url if n % 2 else without, 0, 10, 1.0, 0, 10) for n in range(1, 13))
    markup = _keyboard("AbCdEfGh", Answer("q", True, passages, "x", 1), more=True)
    rows = markup.inline_keyboard
    assert max(len(row) for row in rows) <= 4
    data = [b.callback_data for row in rows for b in row if b.callback_data]
    assert all(len(d.encode()) <= 64 for d in data) and data[-1] == "m:AbCdEfGh"
    assert [b.text for row in rows for b in row if b.url] == [f"Open [{n}]" for n in range(1, 13, 2)]


def test_plain_text_is_what_telegram_shows():
    assert plain_text("  <b>Q&amp;A</b> &lt;x&gt; <a href=\"u\">t</a>\n") == "Q&A <x> t"
