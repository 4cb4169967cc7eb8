"""``python -m bot eval load``: a crowd of simulated users against the real bot, beside
python-telegram-bot's minimal echo bot, in one run on 127.0.0.1.

Each bot is the real ``Application`` polling the tests' Bot API server (``tests/fake_bot_api.py``,
so the test extras must be installed); nothing leaves loopback. ``users`` simulated users
start at once; each sends a question, waits for the reply, then sends the next (a closed
loop: the crowd never asks faster than it is answered, like people waiting for answers).

A reply is the first message that is not a busy notice ("Busy: you're #12 ..."): an answer,
or a refusal (a full line). Latency runs from the moment the question is handed to the
server to the moment the server receives the reply. A question without a reply within
``reply_timeout`` seconds is lost, and its user gives up. The whole run is bounded by
``max_seconds`` per bot; questions not answered by then count as lost.

The news bot answers over the seed corpus (built once into ``bench/seed/index``) with the
seed gold questions, so runs are comparable. Its per-user questions-per-minute limit is off:
this measures the line in front of the model, not the limit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import math
import queue
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import Settings
from bot.errors import BotError

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_USERS = 1000
MAX_QUESTIONS = 50
P95_TARGET_RATIO = 5.0


def fake_bot_api_class():
    """The tests' Bot API server (it needs the test extras: aiohttp, pytest)."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    try:
        from tests.fake_bot_api import FakeBotApi
    except ImportError as exc:
        raise BotError(
            f"this benchmark drives the bot through tests/fake_bot_api.py, which needs the test extras "
            f"(pip install -e '.[test]'): {exc}"
        ) from None
    return FakeBotApi


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (``share`` in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


@dataclass
class _User:
    user: dict
    chat: dict
    questions: list[str]
    asked: int = 0
    sent_at: float | None = None  # None: not waiting
    notices: int = 0


@dataclass
class CrowdResult:
    name: str
    users: int
    questions: int  # questions asked
    replies: int = 0
    refused: int = 0
    lost: int = 0
    busy_notices: int = 0
    latencies: list[float] = field(default_factory=list)
    wall_seconds: float = 0.0

    def summary(self) -> dict:
        ms = [1000 * s for s in self.latencies]
        return {
            "bot": self.name,
            "users": self.users,
            "asked": self.questions,
            "replies": self.replies,
            "refused": self.refused,
            "lost": self.lost,
            "busy_notices": self.busy_notices,
            **{f"p{p}_ms": (None if (v := percentile(ms, p / 100)) is None else round(v, 1)) for p in (50, 95, 99)},
            "max_ms": round(max(ms), 1) if ms else None,
            "wall_s": round(self.wall_seconds, 1),
            "replies_per_s": round(self.replies / self.wall_seconds, 1) if self.wall_seconds else None,
        }


class Crowd:
    """Closed-loop simulated users on a FakeBotApi; ``run`` blocks (call it in a thread)."""

    def __init__(self, server, name: str, users: int, questions_per_user: int, questions: list[str],
                 reply_timeout: float, max_seconds: float, first_user_id: int = 700_000):
        from bot.telegram_app import BUSY_REPLY, QUEUE_FULL_REPLY, SHUTDOWN_REPLY

        self.server = server
        self.busy_prefix = BUSY_REPLY.split("{")[0]
        self.refusal_prefixes = (QUEUE_FULL_REPLY.split("{")[0], SHUTDOWN_REPLY)
        self.reply_timeout = reply_timeout
        self.max_seconds = max_seconds
        self.users: dict[int, _User] = {}
        for i in range(users):
            user = server.user(first_user_id + i, f"User{i}")
            chat = server.private_chat(user)
            mine = [questions[(i * questions_per_user + j) % len(questions)] for j in range(questions_per_user)]
            self.users[chat["id"]] = _User(user, chat, mine)
        self.result = CrowdResult(name, users, 0)
        self._events: queue.Queue = queue.Queue()
        server.add_listener(self._on_call)

    def _on_call(self, call) -> None:
        if call.method == "sendMessage" and call.status == 200:
            self._events.put((int(call.params["chat_id"]), str(call.params.get("text", "")), call.at))

    def _ask(self, user: _User) -> None:
        user.sent_at = time.time()
        self.server.send_text(user.chat, user.user, user.questions[user.asked])
        user.asked += 1
        self.result.questions += 1

    def run(self) -> CrowdResult:
        started = time.time()
        deadline = started + self.max_seconds
        waiting = set(self.users)
        for user in self.users.values():
            self._ask(user)
        last_check = started
        while waiting and time.time() < deadline:
            try:
                chat_id, text, at = self._events.get(timeout=0.1)
            except queue.Empty:
                chat_id = None
            now = time.time()
            if chat_id is not None:
                user = self.users.get(chat_id)
                if user is None or user.sent_at is None:
                    continue  # a late reply to a question already counted lost
                if text.startswith(self.busy_prefix):
                    self.result.busy_notices += 1
                    continue
                self.result.replies += 1
                self.result.latencies.append(at - user.sent_at)
                if text.startswith(self.refusal_prefixes):
                    self.result.refused += 1
                user.sent_at = None
                if user.asked < len(user.questions):
                    self._ask(user)
                else:
                    waiting.discard(chat_id)
            if now - last_check >= 0.5:
                last_check = now
                for chat_id in [c for c in waiting if now - self.users[c].sent_at > self.reply_timeout]:
                    self.result.lost += 1  # the user gives up: the rest of their questions are not asked
                    self.users[chat_id].sent_at = None
                    waiting.discard(chat_id)
        self.result.lost += len(waiting)  # the run's time bound
        self.result.wall_seconds = time.time() - started
        return self.result


async def _drive(name: str, make_app, users: int, questions_per_user: int, questions: list[str],
                 reply_timeout: float, max_seconds: float) -> CrowdResult:
    from bot.telegram_app import serving

    with fake_bot_api_class()() as server:
        app = make_app(server)
        async with serving(app):
            crowd = Crowd(server, name, users, questions_per_user, questions, reply_timeout, max_seconds)
            return await asyncio.to_thread(crowd.run)


def seed_questions() -> list[str]:
    gold = json.loads((REPO_ROOT / "tests" / "gold" / "seed_questions.json").read_text(encoding="utf-8"))
    questions = [q["question"] for q in gold["answerable"]]
    questions += [q if isinstance(q, str) else q["question"] for q in gold.get("out_of_corpus", [])]
    return questions


def eval_load(settings: Settings, users: int = 100, questions_per_user: int = 5, reply_timeout: float = 60.0,
              max_seconds: float = 300.0, answerer=None) -> dict:
    """The news bot and the echo bot under the same crowd, one after the other, in one run."""
    if not 1 <= users <= MAX_USERS or not 1 <= questions_per_user <= MAX_QUESTIONS:
        raise BotError(f"--users must be 1..{MAX_USERS} and --questions 1..{MAX_QUESTIONS}")
    from bot.dialogue import Conversation
    from bot.evaluation import _seed_answerer
    from bot.telegram_app import build_application, build_echo_application

    answerer = answerer or _seed_answerer(settings)
    questions = seed_questions()
    answerer.reply(Conversation(), questions[0])  # warm the model up outside the timing

    def news_bot(server):
        bot_settings = dataclasses.replace(
            answerer.settings, telegram_bot_token=server.token, telegram_base_url=server.base_url,
            index_poll_seconds=0, questions_per_minute=0,
        )
        return build_application(bot_settings, answerer)

    def echo_bot(server):
        return build_echo_application(server.token, server.base_url)

    def echo_bot_flood_controlled(server):
        return build_echo_application(server.token, server.base_url, flood_control=True)

    async def all_three():
        crowd = (users, questions_per_user, questions, reply_timeout, max_seconds)
        echo = await _drive("echo", echo_bot, *crowd)
        echo_limited = await _drive("echo+flood", echo_bot_flood_controlled, *crowd)
        news = await _drive("news bot", news_bot, *crowd)
        return echo, echo_limited, news

    rows = [r.summary() for r in asyncio.run(all_three())]
    echo_s, limited_s, news_s = rows
    ratio = _ratio(news_s, echo_s)
    return {
        "users": users,
        "questions_per_user": questions_per_user,
        "queue_size": answerer.settings.queue_size,
        "busy_notice_seconds": answerer.settings.busy_notice_seconds,
        "rows": rows,
        "p95_ratio": ratio,
        "p95_ratio_flood_controlled": _ratio(news_s, limited_s),
        # What Telegram's flood limit alone costs: the same echo bot with and without it.
        "p95_ratio_flood_echo_to_echo": _ratio(limited_s, echo_s),
        "targets": {"lost": 0, "p95_ratio": P95_TARGET_RATIO},
        "passed": all(r["lost"] == 0 for r in rows) and ratio is not None and ratio <= P95_TARGET_RATIO,
    }


def _ratio(row: dict, floor: dict) -> float | None:
    return round(row["p95_ms"] / floor["p95_ms"], 1) if row["p95_ms"] and floor["p95_ms"] else None


def format_load(report: dict) -> str:
    lines = [
        f"Load: {report['users']} users x {report['questions_per_user']} questions each, closed loop, "
        f"through the Bot API server on 127.0.0.1 (QUEUE_SIZE={report['queue_size']})",
        "",
        f"  {'bot':10} {'asked':>6} {'replies':>8} {'lost':>5} {'refused':>8} {'busy':>6} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'max ms':>8} {'wall s':>7} {'rep/s':>6}",
    ]
    for row in report["rows"]:
        lines.append(
            f"  {row['bot']:10} {row['asked']:>6} {row['replies']:>8} {row['lost']:>5} {row['refused']:>8} "
            f"{row['busy_notices']:>6} {_ms(row['p50_ms'])} {_ms(row['p95_ms'])} {_ms(row['p99_ms'])} "
            f"{_ms(row['max_ms'])} {row['wall_s']:>7} {row['replies_per_s'] or '-':>6}"
        )
    ratio, limited = report["p95_ratio"], report["p95_ratio_flood_controlled"]
    lost = sum(r["lost"] for r in report["rows"])
    lines += [
        "",
        f"  p95 news bot / echo: {ratio if ratio is not None else '-'}x (target <= {report['targets']['p95_ratio']:.0f}x); "
        f"lost: {lost} (target 0)  {'PASS' if report['passed'] else 'MISSED'}",
        f"  p95 news bot / echo with the same flood control (~30 messages/s per bot): "
        f"{limited if limited is not None else '-'}x",
        f"  p95 echo with flood control / echo: {report.get('p95_ratio_flood_echo_to_echo') or '-'}x "
        "(the floor any bot within Telegram's ~30 messages/s meets: above 5x, the 5x target is out of reach)",
        "  (echo: PTB's examples/echobot.py; echo+flood: the same with AIORateLimiter, as the news bot runs)",
    ]
    return "\n".join(lines)


def _ms(value) -> str:
    return f"{value:>8.0f}" if value is not None else f"{'-':>8}"


