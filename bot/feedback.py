"""What readers asked that the articles could not answer: answers, 👍/👎 votes and gaps.

Each answer the bot sends is recorded with its question, its passages (article id, start,
end), whether it was found and the index build that answered; a vote is stored with it.
``gaps`` lists the most frequent recent questions answered "not found" or voted down, so an
admin knows which articles to add. Question text is kept ``QUESTION_RETENTION_DAYS`` (30 by
default) and deleted after that, with its votes. SQLite (``DATA_DIR/feedback.sqlite3``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bot.types import Answer

SCHEMA = """
CREATE TABLE IF NOT EXISTS answers (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chat_id INTEGER NOT NULL,
    question TEXT NOT NULL,
    found INTEGER NOT NULL,
    passages TEXT NOT NULL,
    build_id TEXT,
    asked_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    answer_id INTEGER NOT NULL REFERENCES answers(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL,
    vote INTEGER NOT NULL,
    voted_at TEXT NOT NULL,
    PRIMARY KEY (answer_id, user_id)
);
CREATE INDEX IF NOT EXISTS answers_asked_at ON answers (asked_at);
"""


@dataclass(frozen=True)
class Gap:
    question: str  # as most recently asked
    asked: int  # times asked in the window (the same words, case and spacing aside)
    not_found: int
    down_votes: int


def _now() -> datetime:
    return datetime.now(timezone.utc)


class FeedbackStore:
    def __init__(self, data_dir: Path, retention_days: int):
        self.path = Path(data_dir) / "feedback.sqlite3"
        self.retention_days = retention_days

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("PRAGMA foreign_keys = ON")
        connection.executescript(SCHEMA)
        return connection

    def record(self, chat_id: int, answer: Answer, build_id: str | None) -> int:
        """Store one answer (and drop what is past the retention period); returns its id."""
        passages = [[p.article.article_id, p.start, p.end] for p in answer.passages]
        with self._connect() as db:
            self._purge(db)
            cursor = db.execute(
                "INSERT INTO answers (chat_id, question, found, passages, build_id, asked_at) VALUES (?, ?, ?, ?, ?, ?)",
                (chat_id, " ".join(answer.question.split())[:1000], int(answer.found), json.dumps(passages), build_id, _now().isoformat()),
            )
            return cursor.lastrowid

    def vote(self, answer_id: int, chat_id: int, user_id: int, up: bool) -> bool:
        """Record (or change) a user's vote on an answer sent to ``chat_id``; False if unknown or expired."""
        with self._connect() as db:
            row = db.execute("SELECT chat_id FROM answers WHERE id = ?", (answer_id,)).fetchone()
            if row is None or row[0] != chat_id:
                return False
            db.execute(
                "INSERT INTO votes (answer_id, user_id, vote, voted_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(answer_id, user_id) DO UPDATE SET vote = excluded.vote, voted_at = excluded.voted_at",
                (answer_id, user_id, 1 if up else -1, _now().isoformat()),
            )
            return True

    def gaps(self, limit: int = 10) -> list[Gap]:
        """The most frequent questions of the retention window answered not found or voted down."""
        with self._connect() as db:
            self._purge(db)
            rows = db.execute(
                """
                SELECT a.question, a.found, COALESCE(SUM(CASE WHEN v.vote < 0 THEN 1 ELSE 0 END), 0)
                FROM answers a LEFT JOIN votes v ON v.answer_id = a.id
                GROUP BY a.id ORDER BY a.id
                """
            ).fetchall()
        grouped: dict[str, dict] = {}
        for question, found, down in rows:
            key = " ".join(question.lower().split()).rstrip("?!. ")
            entry = grouped.setdefault(key, {"question": question, "asked": 0, "not_found": 0, "down": 0})
            entry["question"] = question
            entry["asked"] += 1
            entry["not_found"] += 0 if found else 1
            entry["down"] += down
        gaps = [Gap(e["question"], e["asked"], e["not_found"], e["down"]) for e in grouped.values() if e["not_found"] or e["down"]]
        gaps.sort(key=lambda g: (-(g.not_found + g.down_votes), -g.asked, g.question))
        return gaps[:limit]

    def _purge(self, db: sqlite3.Connection) -> None:
        cutoff = (_now() - timedelta(days=self.retention_days)).isoformat()
        db.execute("DELETE FROM answers WHERE asked_at < ?", (cutoff,))
