"""Follows: a chat asks to hear when new articles answer a topic or question.

Stored in SQLite (``DATA_DIR/follows.sqlite3``, one transaction per change, so they survive
restarts and a crash never leaves half a write). After each update, ``match_follows`` asks
every follow's topic against the new articles only, with the same retrieval and the same
found / not-found decision as a question (``QuestionAnswerer.ask(within=...)``); each new
article that answers becomes one ``Push``. No match, no push; at most ``per_chat`` pushes
per chat per update.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from bot.types import Answer, Passage

MAX_FOLLOWS_PER_CHAT = 20
MAX_TOPIC_CHARS = 200

SCHEMA = """
CREATE TABLE IF NOT EXISTS follows (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL,
    topic TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (chat_id, topic)
);
"""


@dataclass(frozen=True)
class Follow:
    id: int
    chat_id: int
    topic: str


class FollowError(ValueError):
    """A follow that cannot be stored or found; the message is for the user."""


class FollowStore:
    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / "follows.sqlite3"

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.executescript(SCHEMA)
        return connection

    def add(self, chat_id: int, topic: str) -> tuple[Follow, bool]:
        """The follow and whether it is new (the same topic twice is one follow)."""
        topic = " ".join(topic.split())[:MAX_TOPIC_CHARS]
        if not re.search(r"\w", topic):
            raise FollowError("Tell me what to follow, e.g. /follow Karachi local elections")
        with self._connect() as db:
            row = db.execute("SELECT id FROM follows WHERE chat_id = ? AND topic = ?", (chat_id, topic)).fetchone()
            if row:
                return Follow(row[0], chat_id, topic), False
            count = db.execute("SELECT COUNT(*) FROM follows WHERE chat_id = ?", (chat_id,)).fetchone()[0]
            if count >= MAX_FOLLOWS_PER_CHAT:
                raise FollowError(f"This chat already follows {MAX_FOLLOWS_PER_CHAT} topics; /unfollow one first.")
            cursor = db.execute(
                "INSERT INTO follows (chat_id, topic, created_at) VALUES (?, ?, ?)",
                (chat_id, topic, datetime.now(timezone.utc).isoformat()),
            )
            return Follow(cursor.lastrowid, chat_id, topic), True

    def of_chat(self, chat_id: int) -> list[Follow]:
        with self._connect() as db:
            rows = db.execute("SELECT id, chat_id, topic FROM follows WHERE chat_id = ? ORDER BY id", (chat_id,)).fetchall()
        return [Follow(*row) for row in rows]

    def all(self) -> list[Follow]:
        with self._connect() as db:
            rows = db.execute("SELECT id, chat_id, topic FROM follows ORDER BY chat_id, id").fetchall()
        return [Follow(*row) for row in rows]

    def remove(self, chat_id: int, which: str) -> Follow:
        """Remove by its number in /following (1, 2, ...) or by its topic; ``FollowError`` if none."""
        follows = self.of_chat(chat_id)
        which = " ".join(which.split())
        chosen = None
        if which.isdigit() and 1 <= int(which) <= len(follows):
            chosen = follows[int(which) - 1]
        else:
            chosen = next((f for f in follows if f.topic.lower() == which.lower()), None)
        if chosen is None:
            raise FollowError("No such follow here; /following lists them with their numbers.")
        with self._connect() as db:
            db.execute("DELETE FROM follows WHERE id = ?", (chosen.id,))
        return chosen


@dataclass(frozen=True)
class Push:
    """One message: a new article answering one chat's follow."""

    follow: Follow
    answer: Answer  # the follow's answer, over the new articles only
    passage: Passage  # this article's best passage, numbered [1]
    sentence: str  # the sentence to quote


def _first_sentence(text: str, limit: int = 300) -> str:
    match = re.match(r"(.+?[.!?][\"'”’)]*)(\s|$)", text.strip(), re.DOTALL)
    sentence = " ".join((match.group(1) if match else text).split())
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rstrip() + "…"


def match_follows(answerer, follows: list[Follow], article_ids: Collection[str], per_chat: int) -> list[Push]:
    """Every follow asked against ``article_ids`` only; one push per answering article, capped per chat."""
    if not follows or not article_ids:
        return []
    within = frozenset(article_ids)
    pushes: list[Push] = []
    sent: dict[int, int] = {}
    pushed: set[tuple[int, str]] = set()  # (chat, article): one message per article even if two follows match
    for follow in follows:
        if sent.get(follow.chat_id, 0) >= per_chat:
            continue
        answer = answerer.ask(follow.topic, within=within)
        if not answer.found:
            continue
        for passage in answer.passages:
            key = (follow.chat_id, passage.article.article_id)
            if key in pushed or sent.get(follow.chat_id, 0) >= per_chat:
                continue
            best = passage.rank == answer.best_passage_rank and answer.best_sentence
            sentence = answer.best_sentence if best else _first_sentence(passage.text)
            pushes.append(Push(follow, answer, replace(passage, rank=1), sentence))
            pushed.add(key)
            sent[follow.chat_id] = sent.get(follow.chat_id, 0) + 1
    return pushes
