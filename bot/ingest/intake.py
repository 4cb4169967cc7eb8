"""Adding news: links, files, uploads and feed items become corpus files (no index work here).

``Intake`` fetches and extracts (``fetch``, ``web``), reads files with the corpus's own reader,
drops duplicates (``records.Catalog``) and writes each new or updated article into ``corpus/``.
It knows nothing of the index: the edges (CLI, bot) call ``QuestionAnswerer.rebuild`` after it,
the same incremental build ``python -m bot index`` runs, and ``IntakeReport.record_index``
counts each article's passages in the new index.

Every item ends in one ``Outcome``: added, updated, duplicate, failed (with the reason) or
deferred (failed for now; a feed retries it at its next poll).
"""

from __future__ import annotations

import logging
import re
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bot.config import Settings
from bot.corpus import ARTICLE_SUFFIXES, JSON_FILE_SIZE_FACTOR, read_file_with_problems
from bot.errors import ArticleError
from bot.ingest.feeds import FEED_TYPES, FeedState, feed_urls, parse_feed
from bot.ingest.fetch import Fetcher, FetchError, HostRateLimiter
from bot.ingest.records import UPLOAD_FOLDER, WEB_FOLDER, Catalog, is_intake_file, record_path, text_key, url_key, write_record
from bot.ingest.web import extract_page

log = logging.getLogger(__name__)

ADDED, UPDATED, DUPLICATE, FAILED, DEFERRED = "added", "updated", "duplicate", "failed", "deferred"
# "dawn.com/news/1" typed without its scheme: a link, not a file.
_LOOKS_LIKE_ADDRESS = re.compile(r"^(?:www\.)?[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}(?:[:/]|$)", re.IGNORECASE)
# Files an admin may send or `add` (JSONL too: it is a corpus format).
UPLOAD_SUFFIXES = ARTICLE_SUFFIXES


@dataclass
class Outcome:
    where: str  # the URL or file as given
    status: str  # ADDED, UPDATED, DUPLICATE, FAILED or DEFERRED
    reason: str = ""
    article_id: str | None = None
    title: str | None = None
    source: str | None = None
    date: str | None = None
    url: str | None = None
    feed: str | None = None
    passages: int | None = None  # chunks of the article in the index, once rebuilt

    @property
    def stored(self) -> bool:
        return self.status in (ADDED, UPDATED)

    def describe(self) -> str:
        if self.stored:
            meta = ", ".join(p for p in (self.source, self.date) if p)
            passages = f"; {self.passages} passages indexed" if self.passages is not None else ""
            return f"{'Added' if self.status == ADDED else 'Updated'}: {self.title}" + (f" — {meta}" if meta else "") + passages
        word = {DUPLICATE: "Not added (duplicate)", DEFERRED: "Not added yet", FAILED: "Not added"}[self.status]
        return f"{word}: {self.where}: {self.reason}"


@dataclass
class FeedOutcome:
    url: str
    status: str  # "read", "not modified", "failed"
    reason: str = ""
    items: int = 0  # items in the feed
    new: int = 0  # items handled this time (not seen before, or updated)


@dataclass
class IntakeReport:
    outcomes: list[Outcome] = field(default_factory=list)
    feeds: list[FeedOutcome] = field(default_factory=list)
    seconds: float = 0.0
    index_seconds: float | None = None

    @property
    def stored(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.stored]

    @property
    def new_article_ids(self) -> list[str]:
        return [o.article_id for o in self.stored if o.article_id]

    @property
    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in (FAILED, DEFERRED)]

    def record_index(self, chunks: Iterable, seconds: float) -> None:
        """Count each stored article's passages in the rebuilt index."""
        counts: dict[str, int] = {}
        for chunk in chunks:
            counts[chunk.article_id] = counts.get(chunk.article_id, 0) + 1
        for outcome in self.stored:
            outcome.passages = counts.get(outcome.article_id, 0)
        self.index_seconds = seconds

    def describe(self) -> str:
        lines = []
        for feed in self.feeds:
            if feed.status == "failed":
                lines.append(f"Feed {feed.url}: {feed.reason}")
            else:
                lines.append(f"Feed {feed.url}: {feed.status}, {feed.items} items, {feed.new} new")
        lines.extend(o.describe() for o in self.outcomes)
        added = sum(o.status == ADDED for o in self.outcomes)
        updated = sum(o.status == UPDATED for o in self.outcomes)
        timing = f" in {self.seconds:.1f}s" + (f" (index {self.index_seconds:.1f}s)" if self.index_seconds is not None else "")
        lines.append(f"{added} added, {updated} updated, {len(self.outcomes) - added - updated} not added{timing}.")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "outcomes": [vars(o) for o in self.outcomes],
            "feeds": [vars(f) for f in self.feeds],
            "seconds": round(self.seconds, 3),
            "index_seconds": None if self.index_seconds is None else round(self.index_seconds, 3),
        }


class Intake:
    """Long-lived in the bot (its per-host limiter spans polls); one per CLI command."""

    def __init__(self, settings: Settings, limiter: HostRateLimiter | None = None):
        self.settings = settings
        self.limiter = limiter or HostRateLimiter(settings.host_requests_per_minute)

    # -- entry points ----------------------------------------------------------------------

    def add(self, items: Iterable[str]) -> IntakeReport:
        """Links (http/https) and files, in order; each ends in one outcome."""
        started = time.perf_counter()
        report = IntakeReport()
        catalog = self._catalog()
        with Fetcher(self.settings, self.limiter) as fetcher:
            for item in items:
                if "://" in item or item.lower().startswith(("http:", "https:")):
                    report.outcomes.append(self._add_link(fetcher, catalog, item))
                elif _LOOKS_LIKE_ADDRESS.match(item) and not Path(item).exists():
                    report.outcomes.append(Outcome(item, FAILED, "no such file; a link must start with https:// or http://"))
                else:
                    report.outcomes.extend(self._add_file(catalog, Path(item), item))
        report.seconds = time.perf_counter() - started
        return report

    def add_document(self, name: str, data: bytes) -> IntakeReport:
        """A file sent to the bot: its name decides its format, as in ``corpus/``."""
        started = time.perf_counter()
        report = IntakeReport()
        safe = Path(name).name or "upload"
        with tempfile.TemporaryDirectory(prefix="newsbot-upload-") as folder:
            path = Path(folder) / safe
            if len(data) <= self._file_limit(path):  # else _add_file reports it by its size
                path.write_bytes(data)
                report.outcomes.extend(self._add_file(self._catalog(), path, safe))
            else:
                report.outcomes.append(Outcome(safe, FAILED, self._too_large(len(data), path)))
        report.seconds = time.perf_counter() - started
        return report

    def update_feeds(self, urls: list[str] | None = None) -> IntakeReport:
        """Poll every feed (conditional requests) and add the items not seen before."""
        started = time.perf_counter()
        report = IntakeReport()
        feeds = feed_urls(self.settings) if urls is None else urls
        if not feeds:
            report.seconds = time.perf_counter() - started
            return report
        state = FeedState(self.settings.data_dir)
        catalog = self._catalog()
        with Fetcher(self.settings, self.limiter) as fetcher:
            for feed in feeds:
                report.feeds.append(self._poll(fetcher, catalog, state, feed, report))
        report.seconds = time.perf_counter() - started
        return report

    # -- pieces ----------------------------------------------------------------------------

    def _catalog(self) -> Catalog:
        return Catalog(self.settings.corpus_dir, self.settings.max_article_bytes)

    def _add_link(self, fetcher: Fetcher, catalog: Catalog, url: str, feed: str | None = None) -> Outcome:
        try:
            page = fetcher.get(url)
            fields = extract_page(page.content, page.final_url)
        except FetchError as exc:
            return Outcome(url, DEFERRED if exc.transient else FAILED, exc.reason, feed=feed)
        except ArticleError as exc:
            return Outcome(url, FAILED, exc.reason, feed=feed)
        host = url_key(fields["url"]).partition("/")[0].replace(":", "_") or "site"
        return self._store(catalog, fields, f"{WEB_FOLDER}/{host}", url, feed=feed, keys=(url, page.final_url))

    def _store(self, catalog: Catalog, fields: dict, folder: str, where: str, *, feed: str | None = None,
               keys: tuple[str, ...] = (), hint: str = "article") -> Outcome:
        """Write a new article, replace an older version of one intake wrote, or say duplicate."""
        found = None
        for url in (fields.get("url"), *keys):
            if url and url_key(url) in catalog.by_url:
                found = catalog.by_url[url_key(url)]
                break
        same_text = catalog.by_text.get(text_key(fields["text"]))
        outcome = Outcome(where, ADDED, title=fields["title"], source=fields.get("source"), date=fields.get("date"),
                          url=fields.get("url"), feed=feed)
        if found is not None:
            if found.text_key == text_key(fields["text"]):
                return _duplicate(outcome, f"already in the corpus as {found.path}")
            if not is_intake_file(found.path):
                return _duplicate(outcome, f"its address is already in the corpus as {found.path} (edit that file to update it)")
            rel, outcome.status = found.path, UPDATED
            catalog.forget(found)
        elif same_text is not None:
            return _duplicate(outcome, f"the same text is already in the corpus as {same_text.path}")
        else:
            rel = record_path(folder, fields.get("url"), fields["text"], hint)
        write_record(self.settings.corpus_dir, rel, fields, where)
        articles, problems = read_file_with_problems(Path(self.settings.corpus_dir) / rel, self.settings.corpus_dir,
                                                     max_article_bytes=self.settings.max_article_bytes)
        if not articles:  # e.g. larger than MAX_ARTICLE_BYTES: the build would skip it too
            (Path(self.settings.corpus_dir) / rel).unlink(missing_ok=True)
            reason = problems[0].reason if problems else "unreadable"
            return Outcome(where, FAILED, f"not stored: {reason}", feed=feed)
        catalog.remember(articles[0])
        outcome.article_id = articles[0].article_id
        log.info("%s %s as %s", outcome.status, where, rel)
        return outcome

    def _file_limit(self, path: Path) -> int:
        factor = JSON_FILE_SIZE_FACTOR if path.suffix.lower() in (".json", ".jsonl") else 1
        return self.settings.max_article_bytes * factor

    def _too_large(self, size: int, path: Path) -> str:
        return f"too large: {size:,} bytes (the limit is {self._file_limit(path):,})"

    def _add_file(self, catalog: Catalog, path: Path, where: str) -> list[Outcome]:
        """Every article of one file, read by the corpus reader from a private copy."""
        suffix = path.suffix.lower()
        if suffix not in UPLOAD_SUFFIXES:
            kinds = ", ".join(sorted(UPLOAD_SUFFIXES))
            return [Outcome(where, FAILED, f"unsupported file type {suffix or '(none)'}; send {kinds}")]
        try:
            size = path.stat().st_size
            if not path.is_file():
                return [Outcome(where, FAILED, "not a file")]
        except OSError as exc:
            return [Outcome(where, FAILED, f"cannot read the file: {exc.strerror or exc}")]
        if size > self._file_limit(path):
            return [Outcome(where, FAILED, self._too_large(size, path))]
        with tempfile.TemporaryDirectory(prefix="newsbot-add-") as folder:
            staged = Path(folder) / path.name
            staged.write_bytes(path.read_bytes()[: self._file_limit(path) + 1])
            articles, problems = read_file_with_problems(staged, Path(folder), max_article_bytes=self.settings.max_article_bytes)
        outcomes = [Outcome(f"{where}{p.path[len(path.name):]}", FAILED, p.reason) for p in problems]
        for article in articles:
            fields = {"title": article.title, "text": article.text, "source": article.source, "date": article.date,
                      "url": article.url, "author": article.author}
            label = where if article.article_id == path.name else f"{where}{article.article_id[len(path.name):]}"
            outcomes.append(self._store(catalog, fields, UPLOAD_FOLDER, label, hint=path.stem))
        return outcomes

    def _poll(self, fetcher: Fetcher, catalog: Catalog, state: FeedState, feed: str, report: IntakeReport) -> FeedOutcome:
        try:
            fetched = fetcher.get(feed, accept=FEED_TYPES, headers=state.validators(feed))
        except FetchError as exc:
            state.checked(feed, f"failed: {exc.reason}", keep_validators=False)
            return FeedOutcome(feed, "failed", exc.reason)
        if fetched.status == 304:
            state.checked(feed, "not modified", fetched.headers.get("etag"), fetched.headers.get("last-modified"))
            return FeedOutcome(feed, "not modified")
        try:
            items = parse_feed(fetched.content, feed, fetched.final_url, fetched.content_type)
        except ArticleError as exc:
            state.checked(feed, f"failed: {exc.reason}", keep_validators=False)
            return FeedOutcome(feed, "failed", exc.reason)
        result = FeedOutcome(feed, "read", items=len(items))
        retry_later = False
        for item in items:
            seen = state.seen(feed, item.key)
            if seen is not None and seen == item.updated:
                continue
            result.new += 1
            if seen is None and item.link and url_key(item.link) in catalog.by_url:
                known = catalog.by_url[url_key(item.link)]
                outcome = _duplicate(Outcome(item.link, DUPLICATE, title=item.title, feed=feed), f"already in the corpus as {known.path}")
            elif not item.link:
                outcome = Outcome(item.key, FAILED, "the feed item has no link", feed=feed)
            else:
                outcome = self._add_link(fetcher, catalog, item.link, feed=feed)
            report.outcomes.append(outcome)
            if outcome.status == DEFERRED:
                retry_later = True
            else:
                state.mark(feed, item.key, item.updated, outcome.status)
        state.checked(feed, "read", fetched.headers.get("etag"), fetched.headers.get("last-modified"), keep_validators=not retry_later)
        return result


def _duplicate(outcome: Outcome, reason: str) -> Outcome:
    outcome.status, outcome.reason = DUPLICATE, reason
    return outcome
