"""RSS and Atom feeds: the list, what was seen, and what is new (parsed by feedparser).

The list is ``FEED_URLS`` plus the lines of ``FEEDS_FILE`` (``feeds.txt``; ``#`` starts a
comment). It is not kept in ``corpus/``, where a ``.txt`` file is an article.

State lives in SQLite (``DATA_DIR/intake.sqlite3``, the standard library's ``sqlite3``; every
change is one transaction, so a crash never leaves half a write): each feed's ETag and
Last-Modified for conditional requests, and each item seen with its ``updated`` stamp. An item
is marked seen once it was added, found to be a duplicate, or failed for good (404, no
article text, a refused address); one that failed for now (timeout, the per-host limit) is
not, and the feed's validators are then not saved either, so the next poll reads the feed
again and retries it.
"""

from __future__ import annotations

import io
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from bot.config import Settings
from bot.errors import ArticleError

FEED_TYPES = (
    "application/rss+xml", "application/atom+xml", "application/rdf+xml", "application/xml",
    "text/xml", "application/x-rss+xml", "text/plain",
)  # fmt: skip
# A first poll of a busy feed may list this many items; more wait for the next poll.
MAX_ITEMS_PER_POLL = 100

SCHEMA = """
CREATE TABLE IF NOT EXISTS feeds (
    url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, checked_at TEXT, status TEXT
);
CREATE TABLE IF NOT EXISTS feed_items (
    feed TEXT NOT NULL, item TEXT NOT NULL, updated TEXT NOT NULL, outcome TEXT, seen_at TEXT,
    PRIMARY KEY (feed, item)
);
"""


def feed_urls(settings: Settings) -> list[str]:
    """FEED_URLS, then FEEDS_FILE's lines, each once, in order."""
    urls = list(settings.feed_urls)
    path = Path(settings.feeds_file)
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                urls.append(line)
    return list(dict.fromkeys(urls))


def connect(data_dir: Path) -> sqlite3.Connection:
    """The intake database (created on first use); one connection per thread of work."""
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(Path(data_dir) / "intake.sqlite3", timeout=30)
    connection.executescript(SCHEMA)
    return connection


def _now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


class FeedState:
    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)

    def validators(self, feed: str) -> dict[str, str]:
        with connect(self.data_dir) as db:
            row = db.execute("SELECT etag, last_modified FROM feeds WHERE url = ?", (feed,)).fetchone()
        headers = {}
        if row and row[0]:
            headers["If-None-Match"] = row[0]
        if row and row[1]:
            headers["If-Modified-Since"] = row[1]
        return headers

    def checked(self, feed: str, status: str, etag: str | None = None, last_modified: str | None = None, keep_validators: bool = True) -> None:
        with connect(self.data_dir) as db:
            if keep_validators:
                db.execute(
                    "INSERT INTO feeds (url, etag, last_modified, checked_at, status) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(url) DO UPDATE SET etag = excluded.etag, last_modified = excluded.last_modified, "
                    "checked_at = excluded.checked_at, status = excluded.status",
                    (feed, etag, last_modified, _now(), status),
                )
            else:  # something to retry: the next poll must read the whole feed again
                db.execute(
                    "INSERT INTO feeds (url, checked_at, status) VALUES (?, ?, ?) ON CONFLICT(url) DO UPDATE SET "
                    "etag = NULL, last_modified = NULL, checked_at = excluded.checked_at, status = excluded.status",
                    (feed, _now(), status),
                )

    def seen(self, feed: str, item: str) -> str | None:
        """The ``updated`` stamp the item had when last handled, or None if never seen."""
        with connect(self.data_dir) as db:
            row = db.execute("SELECT updated FROM feed_items WHERE feed = ? AND item = ?", (feed, item)).fetchone()
        return row[0] if row else None

    def mark(self, feed: str, item: str, updated: str, outcome: str) -> None:
        with connect(self.data_dir) as db:
            db.execute(
                "INSERT INTO feed_items (feed, item, updated, outcome, seen_at) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT(feed, item) DO UPDATE SET updated = excluded.updated, outcome = excluded.outcome, "
                "seen_at = excluded.seen_at",
                (feed, item, updated, outcome, _now()),
            )


@dataclass(frozen=True)
class FeedItem:
    key: str  # the entry's id, else its link
    link: str
    updated: str  # the entry's updated (else published) stamp as written; "" when none
    title: str


def parse_feed(content: bytes, url: str, final_url: str, content_type: str) -> list[FeedItem]:
    """The items of an RSS/Atom document; ``ArticleError`` when it is not a readable feed."""
    import feedparser

    # A stream, never a string: feedparser fetches a string that looks like a URL itself.
    parsed = feedparser.parse(
        io.BytesIO(content),
        response_headers={"content-location": final_url, "content-type": content_type or "application/xml"},
        sanitize_html=False,
    )
    entries = parsed.get("entries") or []
    items = []
    for entry in entries[:MAX_ITEMS_PER_POLL]:
        link = entry.get("link") or ""
        key = entry.get("id") or link
        if not key:
            continue
        # dict.get, not the entry's own: feedparser warns when "updated" falls back to "published".
        stamp = dict.get(entry, "updated") or dict.get(entry, "published") or ""
        items.append(FeedItem(key, link, stamp, entry.get("title") or ""))
    if not any(item.link for item in items):
        # A feed with small XML faults whose items still have links is read (feedparser's
        # loose parser recovers them); one with nothing usable is reported.
        if parsed.get("bozo"):
            reason = " ".join(str(parsed.get("bozo_exception") or "").split())[:200]
            raise ArticleError(url, f"malformed feed: {reason or 'not RSS or Atom'}")
        if not parsed.get("version"):
            raise ArticleError(url, "not an RSS or Atom feed")
    return items
