"""Read the corpus folder into cleaned ``Article`` objects.

What is read (``load_corpus`` walks the folder recursively, in sorted path order):

* ``.txt``, ``.md``, ``.markdown``: one article per file. Optional YAML front matter
  (``---`` ... ``---`` at the very top) gives title/source/date/url/author. Without a
  front-matter title, the first non-empty line is the title (markdown ``#`` stripped)
  and is not part of the body. In-text conventions are picked up and removed from
  the body: a "Published December 10, 2023" / "Published: ..." / "Updated ..." line
  near the top or bottom gives the date, and a closing "Published in Dawn, EOS,
  December 10th, 2023" line gives the outlet ("Dawn") and the date.
* ``.html``, ``.htm``: one article per file, main text and metadata by trafilatura,
  with ``<title>``/``<meta>`` tags as a fallback.
* ``.json`` (one object or a list of objects) and ``.jsonl`` (one object per line):
  fields title, body (text, content), source (outlet, publisher, site),
  published_at (date, published), url (link), author. A bad record is reported on
  its own; the other records of the file still load.

What is skipped: hidden files and folders (name starting with "."), ``README.md`` at
the corpus root (it documents the folder; it is not an article), metadata sidecars,
and files with any other extension (silently, and not counted in ``files_seen``).

Sidecars: ``<file>.meta.json`` or ``<file>.meta.yaml`` (``.meta.yml``) next to a
single-article file supplies or overrides title/source/date/url/author, so metadata
can be added without touching the article body. Sidecars change metadata only, never
how the body is parsed, so adding one never moves an offset.

Metadata precedence: in-text conventions < front matter < sidecar.

Cleaning is deliberately conservative, because citations quote ``Article.text``
verbatim and a retriever cannot find text that was thrown away. It only normalises
newlines and trailing spaces, collapses runs of blank lines, drops a trailing
comment-form footer ("Leave a Comment" / "Your email address will not be
published ..."), and drops a short caption-like line that immediately repeats the
previous non-blank line (a photo caption scraped twice). Everything else, unicode
punctuation included, is kept as it is.

Ids: the corpus-relative POSIX path for single-article files; ``<relpath>#<key>`` for
records of a JSON list or JSONL file, where key is a short hash of the record's url
(else of its title), with ``-<position>`` appended if two records of one file collide.

Hostile input. The corpus folder may hold files nobody vetted, so reading is defensive:

* Nothing outside the corpus folder is ever read. Every article file and sidecar is
  resolved (symbolic links followed) first; one that lands outside the folder is
  reported ("links outside the corpus folder") and not opened, so a link to ``.env``
  or ``/etc/...`` can never be quoted to users. A linked folder is never walked: one
  pointing outside is reported, one pointing inside is skipped (its files are read
  where they really are). A link to a file inside the folder is allowed, but one file
  is indexed once: when two paths reach the same file, the real path (else the first
  link in sorted order) is kept and the others get a warning. Link loops and broken
  links are reported. Only regular files are opened (never a FIFO or a device).
* Size: a file above ``MAX_ARTICLE_BYTES`` (``Settings.max_article_bytes``, 2 MB by
  default; the largest MultiHop-RAG article is about 71 KB) is reported with its size
  and not read, and no read loads more than the limit plus one byte. A ``.json`` or
  ``.jsonl`` file holds many articles (the MultiHop-RAG corpus is one 6.7 MB file), so
  the file may be ``JSON_FILE_SIZE_FACTOR`` (50) times the limit, and each record
  (body and metadata) must fit the limit itself, else that record alone is reported.
* Any failure while reading one file (deeply nested JSON or YAML, a parser error, a
  ``MemoryError``, an ``OSError``...) becomes a problem for that file, with its path
  and the reason; the other files are still read. Only ``KeyboardInterrupt`` and
  ``SystemExit`` stop the build.
* A date that is given but unusable (front matter ``date: 2025-13-45``, a ``date`` that
  is a number or a list, an impossible ``published_at``, a sidecar date) is dropped and
  a warning is recorded for the file (``IngestReport.warnings``, also logged): the
  article text is fine, so the article is still indexed, with a date from elsewhere
  (an in-text "Published ..." line) or none. "Published ..." lines whose date is not
  valid are kept as body text, as before.
* Metadata lists are flattened one level only (a list of authors), so YAML aliases
  nested into a "billion laughs" title cannot blow up.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.metadata
import json
import logging
import os
import re
import sqlite3
import stat
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from datetime import date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml
from dateutil import parser as date_parser

from bot.config import DEFAULT_MAX_ARTICLE_BYTES
from bot.errors import ArticleError, CorpusError
from bot.types import Article

log = logging.getLogger(__name__)

__all__ = [
    "ARTICLE_SUFFIXES",
    "JSON_FILE_SIZE_FACTOR",
    "SIDECAR_SUFFIXES",
    "CorpusScan",
    "IngestReport",
    "ScannedArticle",
    "clean_text",
    "content_hash",
    "load_corpus",
    "normalize_date",
    "read_article_file",
    "read_file_with_problems",
    "scan_corpus",
]

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
JSON_SUFFIXES = frozenset({".json", ".jsonl"})
ARTICLE_SUFFIXES = TEXT_SUFFIXES | HTML_SUFFIXES | JSON_SUFFIXES
SIDECAR_SUFFIXES = (".meta.json", ".meta.yaml", ".meta.yml")
ROOT_README_NAMES = frozenset({"readme.md"})

# Accepted spellings of each metadata field, in order of preference.
FIELD_ALIASES: dict[str, tuple[str, ...]] = {
    "title": ("title",),
    "source": ("source", "outlet", "publisher", "site"),
    "date": ("date", "published_at", "published"),
    "url": ("url", "link"),
    "author": ("author",),
}
BODY_ALIASES = ("body", "text", "content")

# A caption scraped twice is short; a repeated prose paragraph is left alone.
CAPTION_MAX_CHARS = 400
CAPTION_MIN_WORDS = 3

# How many non-empty lines at each end of a text body may hold "Published ..." lines.
METADATA_LINE_ZONE = 3

# A .json/.jsonl file may hold this many times MAX_ARTICLE_BYTES (each record: once).
JSON_FILE_SIZE_FACTOR = 50

OUTSIDE_CORPUS = "links outside the corpus folder; not read"


@dataclass(frozen=True)
class IngestReport:
    """The outcome of reading a corpus folder."""

    articles: list[Article]  # sorted by file path, then position within the file
    problems: list[ArticleError]  # one per unreadable file or record: path + reason
    files_seen: int  # article files examined (readable or not); sidecars and duplicate links not counted
    # Indexed anyway, but something was dropped (an invalid date) or skipped (a second path
    # to an already indexed file): path + what and why.
    warnings: list[ArticleError] = dataclass_field(default_factory=list)


# --------------------------------------------------------------------------- public API


def load_corpus(corpus_dir: Path, *, max_article_bytes: int = DEFAULT_MAX_ARTICLE_BYTES) -> IngestReport:
    """Read every article under ``corpus_dir``; unreadable files become ``problems``.

    ``max_article_bytes`` is ``Settings.max_article_bytes`` (MAX_ARTICLE_BYTES): bigger
    files are reported, not read (see the module docstring for JSON files).

    Raises ``CorpusError`` only when the folder itself is missing; an empty folder
    gives an empty report (the caller decides whether that is fatal).
    """
    corpus_dir = Path(corpus_dir)
    _check_corpus_folder(corpus_dir)
    root = corpus_dir.resolve()
    articles: list[Article] = []
    problems: list[ArticleError] = []
    discovery = _discover(corpus_dir, root)
    warnings: list[ArticleError] = list(discovery.warnings)
    for file in discovery.found:
        found, file_problems, file_warnings = _read_file(Path(file.path), corpus_dir, root, max_article_bytes)
        articles.extend(found)
        problems.extend(file_problems)
        warnings.extend(file_warnings)
    problems.extend(discovery.problems)
    for sidecar in discovery.orphan_sidecars:
        problems.append(
            ArticleError(_relative(sidecar, corpus_dir), "metadata sidecar without an article file next to it")
        )
    warnings.sort(key=lambda warning: warning.path)
    for warning in warnings:
        log.warning("%s: %s", warning.path, warning.reason)
    return IngestReport(
        articles=articles, problems=problems, files_seen=len(discovery.found), warnings=warnings
    )


# ------------------------------------------------------------------------- scan with cache


# A file changed within this many seconds of being read could be changed again without its
# size, mtime or ctime moving (timestamps tick coarsely: 4-10 ms on Linux file systems, up to
# 2 s on FAT), so it is not remembered: the next scan reads it again. A real archive's files
# are older than this; a benchmark that writes its corpus just before building waits it out.
UNSETTLED_SECONDS = 2.0

# Changing how files are parsed changes articles and their hashes: a scan cache written by
# other parsing code is dropped whole (the modules and libraries that decide an article's content).
_PARSER_MODULES = ("corpus.py", "types.py")
_PARSER_LIBRARIES = ("trafilatura", "htmldate", "python-dateutil", "PyYAML")


@dataclass(frozen=True)
class ScannedArticle:
    """What a scan knows of an article without keeping its text: enough to tell it changed."""

    article_id: str
    content_hash: str
    path: str  # the corpus-relative file it is read from


@dataclass
class CorpusScan:
    """The corpus as a build needs it: every article's id and content hash, in ``load_corpus``
    order, reading only files that changed since the last scan (see ``scan_corpus``).

    The text of an article is needed only to chunk it: ``articles(ids)`` returns the articles
    read by this scan and reads the files of the others again.
    """

    entries: list[ScannedArticle]
    problems: list[ArticleError]
    warnings: list[ArticleError]
    files_seen: int
    files_read: int  # files parsed by this scan (the others were unchanged and not opened)
    corpus_dir: Path
    max_article_bytes: int
    parsed: dict[str, Article] = dataclass_field(default_factory=dict, repr=False)
    _remember: dict[str, tuple[str, str]] = dataclass_field(default_factory=dict, repr=False)
    _forget: set[str] = dataclass_field(default_factory=set, repr=False)
    _cache_path: Path | None = None
    _fingerprint: str = ""

    @property
    def hashes(self) -> dict[str, str]:
        return {entry.article_id: entry.content_hash for entry in self.entries}

    def articles(self, ids: Iterable[str]) -> list[Article]:
        """The articles with these ids, in scan order: those this scan read, and the others read
        again from their files. Raises ``CorpusError`` if one has changed or gone since the scan."""
        wanted = set(ids)
        missing = [e for e in self.entries if e.article_id in wanted and e.article_id not in self.parsed]
        reread: dict[str, Article] = {}
        root = self.corpus_dir.resolve()
        for rel in dict.fromkeys(e.path for e in missing):
            found, _, _ = _read_file(self.corpus_dir / rel, self.corpus_dir, root, self.max_article_bytes)
            reread.update((a.article_id, a) for a in found)
            self.files_read += 1
        out = []
        for entry in self.entries:
            if entry.article_id not in wanted:
                continue
            article = self.parsed.get(entry.article_id) or reread.get(entry.article_id)
            if article is None or content_hash(article) != entry.content_hash:
                self._remember.pop(entry.path, None)  # whatever the cache said of it, the next scan reads it
                self._forget.add(entry.path)
                self.save()
                raise CorpusError(f"{entry.path} changed while the index was being built; run the update again")
            out.append(article)
        return out

    def save(self) -> None:
        """Remember the files this scan read (and forget vanished ones) for the next scan: one
        SQLite transaction, so a crash leaves the previous cache. Best effort: a cache that cannot
        be written only means the next scan reads more."""
        if self._cache_path is None or not (self._remember or self._forget):
            return
        try:
            with contextlib.closing(_open_scan_cache(self._cache_path, self._fingerprint)) as db, db:
                db.executemany("DELETE FROM files WHERE path = ?", [(rel,) for rel in self._forget])
                db.executemany("INSERT OR REPLACE INTO files (path, signature, articles) VALUES (?, ?, ?)",
                               [(rel, sig, articles) for rel, (sig, articles) in self._remember.items()])
        except (sqlite3.Error, OSError) as exc:
            log.warning("corpus scan cache %s not written: %s", self._cache_path, exc)


def scan_corpus(corpus_dir: Path, *, max_article_bytes: int = DEFAULT_MAX_ARTICLE_BYTES,
                cache: Path | None = None) -> CorpusScan:
    """``load_corpus`` for builds: ids and content hashes of every article, parsing only files
    that are new or changed since the scan that wrote ``cache`` (a SQLite file; None: no cache).

    A file is unchanged when its signature is: size, mtime and ctime in nanoseconds, device,
    inode and resolved path, of the file and of its sidecars. Discovery, the links and size
    rules and the corpus-folder check run on every scan; a file with problems or warnings is
    never remembered, so it is reported again on every run; a vanished file is forgotten.
    ``save()`` writes what this scan learnt (the build calls it once the build is written).
    """
    corpus_dir = Path(corpus_dir)
    _check_corpus_folder(corpus_dir)
    root = corpus_dir.resolve()
    fingerprint = _parser_fingerprint(max_article_bytes)
    known = _read_scan_cache(cache, fingerprint) if cache is not None else {}
    discovery = _discover(corpus_dir, root)
    scan = CorpusScan([], [], list(discovery.warnings), len(discovery.found), 0, corpus_dir, max_article_bytes,
                      _cache_path=cache, _fingerprint=fingerprint)
    root_prefix = os.path.join(str(root), "")
    for file in discovery.found:
        signature = _signature(file, root, root_prefix, discovery.sidecars) if cache is not None else None
        remembered = known.get(file.rel)
        if signature is not None and remembered is not None and remembered[0] == signature:
            scan.entries.extend(ScannedArticle(i, h, file.rel) for i, h in json.loads(remembered[1]))
            continue
        rel = file.rel
        found, file_problems, file_warnings = _read_file(Path(file.path), corpus_dir, root, max_article_bytes)
        scan.files_read += 1
        scan.problems.extend(file_problems)
        scan.warnings.extend(file_warnings)
        entries = [ScannedArticle(a.article_id, content_hash(a), rel) for a in found]
        scan.entries.extend(entries)
        scan.parsed.update((a.article_id, a) for a in found)
        if signature is not None and not file_problems and not file_warnings:
            scan._remember[rel] = (signature, json.dumps([[e.article_id, e.content_hash] for e in entries]))
        elif remembered is not None:
            scan._forget.add(rel)
    seen = {file.rel for file in discovery.found}
    scan._forget.update(rel for rel in known if rel not in seen)
    scan.problems.extend(discovery.problems)
    for sidecar in discovery.orphan_sidecars:
        scan.problems.append(ArticleError(_relative(sidecar, corpus_dir), "metadata sidecar without an article file next to it"))
    scan.warnings.sort(key=lambda warning: warning.path)
    for warning in scan.warnings:
        log.warning("%s: %s", warning.path, warning.reason)
    return scan


def _signature(file: _Found, root: Path, root_prefix: str, sidecars: set[str]) -> str | None:
    """What must stay the same for ``file`` to be taken as unchanged, or None when it cannot be
    trusted (outside the corpus, not a regular file, unreadable, or changed too recently)."""
    parts = []
    settled_before = time.time_ns() - int(UNSETTLED_SECONDS * 1e9)
    sidecar_paths = [file.path + suffix for suffix in SIDECAR_SUFFIXES if file.path + suffix in sidecars]
    for path, info in [(file.path, file.info), *((sidecar, None) for sidecar in sidecar_paths)]:
        try:
            if info is None or stat.S_ISLNK(info.st_mode):  # a link: where it leads must be inside
                real = str(_inside_corpus(Path(path), root, file.rel))
                info = os.stat(real)
            else:  # not a link, in a walked folder: it is where it is
                real = os.path.join(str(root), file.rel)
        except (ArticleError, OSError):
            return None
        if not stat.S_ISREG(info.st_mode) or max(info.st_mtime_ns, info.st_ctime_ns) >= settled_before:
            return None
        where = real[len(root_prefix):] if real.startswith(root_prefix) else real
        parts.append(f"{where}:{info.st_size}:{info.st_mtime_ns}:{info.st_ctime_ns}:{info.st_dev}:{info.st_ino}")
    return "|".join(parts)


def _parser_fingerprint(max_article_bytes: int) -> str:
    digest = hashlib.sha256(f"max_article_bytes={max_article_bytes}\0".encode())
    for library in _PARSER_LIBRARIES:
        try:
            digest.update(f"{library}={importlib.metadata.version(library)}\0".encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(f"{library}=none\0".encode())
    package = Path(__file__).parent
    for name in _PARSER_MODULES:
        digest.update((package / name).read_bytes())
    return digest.hexdigest()


def _open_scan_cache(path: Path, fingerprint: str) -> sqlite3.Connection:
    """The cache's connection, its files table emptied when other parsing code wrote it."""
    db = sqlite3.connect(path, timeout=30)
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, signature TEXT NOT NULL, articles TEXT NOT NULL)")
    row = db.execute("SELECT value FROM meta WHERE key = 'parser'").fetchone()
    if row is None or row[0] != fingerprint:
        db.execute("DELETE FROM files")
        db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('parser', ?)", (fingerprint,))
    db.commit()
    return db


def _read_scan_cache(path: Path, fingerprint: str) -> dict[str, tuple[str, str]]:
    """path -> (signature, JSON [[id, hash], ...]) from ``path``; empty when there is none, it
    was written by other parsing code, or it cannot be read (it is then rewritten)."""
    if not Path(path).exists():
        return {}
    try:
        read_only = Path(path).resolve().as_uri() + "?mode=ro"  # as_uri escapes "?" and "#" in the path
        with contextlib.closing(sqlite3.connect(read_only, uri=True, timeout=30)) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'parser'").fetchone()
            if row is None or row[0] != fingerprint:
                return {}
            return {rel: (sig, articles) for rel, sig, articles in db.execute("SELECT path, signature, articles FROM files")}
    except sqlite3.Error as exc:
        log.warning("corpus scan cache %s not used (%s): every file is read", path, exc)
        with contextlib.suppress(OSError):
            Path(path).unlink()
        return {}


def _check_corpus_folder(corpus_dir: Path) -> None:
    if not corpus_dir.exists():
        raise CorpusError(
            f"corpus folder {corpus_dir} does not exist: create it and put articles in it, "
            "or point to another folder with CORPUS_DIR or --corpus"
        )
    if not corpus_dir.is_dir():
        raise CorpusError(
            f"corpus path {corpus_dir} is a file, not a folder: set CORPUS_DIR or --corpus "
            "to the folder that holds the articles"
        )


def read_article_file(
    path: Path, corpus_dir: Path, *, max_article_bytes: int = DEFAULT_MAX_ARTICLE_BYTES
) -> list[Article]:
    """The articles in one file. Raises ``ArticleError(relative_path, reason)``.

    For a JSON list or JSONL file with some bad records, the good records are returned
    and the bad ones are only visible through ``read_file_with_problems`` (which
    ``load_corpus`` uses); if no record is usable, this raises.
    """
    articles, problems = read_file_with_problems(path, corpus_dir, max_article_bytes=max_article_bytes)
    if not articles:
        if len(problems) == 1:
            raise problems[0]
        rel = _relative(Path(path), Path(corpus_dir))
        first = problems[0] if problems else None
        detail = f"; first: {first}" if first else ""
        raise ArticleError(rel, f"no readable article ({len(problems)} bad records{detail})")
    return articles


def read_file_with_problems(
    path: Path, corpus_dir: Path, *, max_article_bytes: int = DEFAULT_MAX_ARTICLE_BYTES
) -> tuple[list[Article], list[ArticleError]]:
    """The articles in one file plus one ``ArticleError`` per unreadable file or record.

    Never raises for a bad file (only ``KeyboardInterrupt``/``SystemExit`` get through);
    warnings (e.g. a dropped invalid date) are logged.
    """
    path, corpus_dir = Path(path), Path(corpus_dir)
    articles, problems, warnings = _read_file(path, corpus_dir, corpus_dir.resolve(), max_article_bytes)
    for warning in warnings:
        log.warning("%s: %s", warning.path, warning.reason)
    return articles, problems


def _read_file(
    path: Path, corpus_dir: Path, root: Path, max_bytes: int
) -> tuple[list[Article], list[ArticleError], list[ArticleError]]:
    """Articles, problems and warnings of one file; ``root`` is the resolved corpus folder.

    The one place where any failure on one file (not only ``ArticleError``) becomes that
    file's problem; only ``KeyboardInterrupt`` and ``SystemExit`` get through.
    """
    rel = _relative(path, corpus_dir)
    suffix = path.suffix.lower()
    warnings: list[ArticleError] = []
    try:
        real = _inside_corpus(path, root, rel)
        if suffix in JSON_SUFFIXES:
            if _sidecar_for(path) is not None:
                raise ArticleError(
                    rel, "metadata sidecars are only for single-article files; put the metadata in the records"
                )
            text = _decode(_read_bytes(real, rel, max_bytes, factor=JSON_FILE_SIZE_FACTOR), rel)
            articles, problems = _read_json_records(
                text, rel, jsonl=suffix == ".jsonl", max_bytes=max_bytes, warnings=warnings
            )
            return articles, problems, warnings
        text = _decode(_read_bytes(real, rel, max_bytes), rel)
        if suffix in HTML_SUFFIXES:
            fields = _parse_html(text, rel)
        elif suffix in TEXT_SUFFIXES:
            fields = _parse_text_article(text, rel, warnings)
        else:
            raise ArticleError(rel, f"unsupported file type {suffix or '(none)'}")
        fields.update(_read_sidecar(path, rel, root, max_bytes, warnings))
        return [_build_article(rel, rel, fields)], [], warnings
    except ArticleError as problem:
        return [], [problem], warnings
    except Exception as exc:  # noqa: BLE001 - any failure on one file is that file's problem
        return [], [ArticleError(rel, _failure(exc))], warnings


def _failure(exc: BaseException) -> str:
    """The reason for an unexpected exception while reading one file or record."""
    if isinstance(exc, RecursionError):
        return "nested too deeply to read (RecursionError); not read"
    if isinstance(exc, MemoryError):
        return "too large to read (MemoryError); not read"
    if isinstance(exc, OSError):
        return f"cannot read the file: {exc.strerror or exc}"
    detail = " ".join(str(exc).split())
    if len(detail) > 200:
        detail = detail[:199] + "…"
    return f"cannot read the file: unexpected {type(exc).__name__}" + (f": {detail}" if detail else "")


def content_hash(article: Article) -> str:
    """sha256 of a canonical JSON of every field: changes when text or any metadata changes."""
    canonical = json.dumps(asdict(article), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def clean_text(raw: str) -> str:
    """The conservative cleaning every format gets (see the module docstring)."""
    lines = [line.rstrip() for line in _normalize_newlines(raw).split("\n")]
    lines = _drop_comment_footer(lines)
    lines = _drop_repeated_captions(lines)
    return _tidy("\n".join(lines))


def normalize_date(value: Any) -> str | None:
    """An ISO "YYYY-MM-DD" date, or ``None`` when the value is missing, partial or ambiguous.

    Timestamps keep the calendar date as written (no time-zone conversion), so
    "2023-11-27 08:45:59.000000000Z" and "2023-11-27T08:45:59+00:00" both give
    "2023-11-27". Other strings go through dateutil, and are accepted only when the
    result does not depend on dateutil's guesses: parsed with two different default
    dates (a missing day, month or year would be filled from the default) and both
    day-first and month-first, all readings must agree. So "December 2023" and
    "10/12/2023" give ``None``, while "December 10th, 2023" and "25/12/2023" parse.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if not isinstance(value, str):
        return None
    text = " ".join(value.split())
    if not text or len(text) > 80:
        return None
    year_first = _YEAR_FIRST_DATE.fullmatch(text)
    if year_first:
        year, _, month, day = year_first.groups()
        return _valid_iso(int(year), int(month), int(day))
    readings = set()
    for default in (datetime(2000, 1, 1), datetime(2001, 2, 2)):
        for dayfirst in (False, True):
            try:
                parsed = date_parser.parse(text, default=default, dayfirst=dayfirst, ignoretz=True)
            except (ValueError, OverflowError, TypeError):
                return None
            readings.add(parsed.date())
    if len(readings) != 1:
        return None
    (reading,) = readings
    return _valid_iso(reading.year, reading.month, reading.day)


# ------------------------------------------------------------------ discovery and bytes


@dataclass(frozen=True)
class _Found:
    """An article file found by discovery: corpus-relative and full path, and its ``lstat``
    when it is not a link (then it is where it is: a walked folder holds no links)."""

    rel: str
    path: str
    info: os.stat_result | None


@dataclass
class _Discovery:
    found: list[_Found]  # to read, sorted by relative path, one path per real file
    orphan_sidecars: list[Path]
    problems: list[ArticleError]  # folders that cannot be walked (unreadable, links outside)
    warnings: list[ArticleError]  # second paths to one file, linked folders not walked
    sidecars: set[str] = dataclass_field(default_factory=set)  # the full path of every sidecar, orphan or not

    @property
    def articles(self) -> list[Path]:
        return [Path(found.path) for found in self.found]


def _discover(corpus_dir: Path, root: Path) -> _Discovery:
    """Article files and orphan sidecars under ``corpus_dir``, both sorted by relative path.

    Linked folders are never walked (``os.walk`` does not follow them): one that leads
    outside the corpus, or nowhere, is a problem; one that leads inside only a warning.
    Paths are handled as strings with one ``lstat`` per file: at 80k files pathlib's
    overhead, not the file system, was most of a scan.
    """
    articles: list[tuple[str, str]] = []  # (relative path, path)
    sidecars: dict[str, str] = {}  # path -> relative path
    problems: list[ArticleError] = []
    warnings: list[ArticleError] = []

    def unreadable_folder(exc: OSError) -> None:
        where = Path(exc.filename) if exc.filename else corpus_dir
        problems.append(ArticleError(_relative(where, corpus_dir), f"cannot list the folder: {exc.strerror or exc}"))

    for dirpath, dirnames, filenames in os.walk(corpus_dir, onerror=unreadable_folder):
        walked: list[str] = []
        for name in sorted(name for name in dirnames if not name.startswith(".")):
            folder = Path(dirpath) / name
            if not folder.is_symlink():
                walked.append(name)
                continue
            rel = _relative(folder, corpus_dir)
            try:
                _inside_corpus(folder, root, rel)
            except ArticleError as problem:
                problems.append(problem)
            else:
                reason = "link to a folder inside the corpus; not followed (its files are read where they are)"
                warnings.append(ArticleError(rel, reason))
        dirnames[:] = walked
        at_root = Path(dirpath) == corpus_dir
        folder_rel = "" if at_root else _relative(Path(dirpath), corpus_dir) + "/"
        for name in filenames:
            lowered = name.lower()
            if name.startswith("."):
                continue
            if lowered.endswith(SIDECAR_SUFFIXES):
                sidecars[os.path.join(dirpath, name)] = folder_rel + name
            elif at_root and lowered in ROOT_README_NAMES:
                continue
            elif os.path.splitext(lowered)[1] in ARTICLE_SUFFIXES:
                articles.append((folder_rel + name, os.path.join(dirpath, name)))
    problems.sort(key=lambda problem: problem.path)
    article_paths = {path for _, path in articles}
    orphans = sorted((rel, path) for path, rel in sidecars.items() if _article_for_sidecar(path) not in article_paths)

    unique, duplicates = _one_path_per_file(sorted(articles), root)
    for duplicate, kept in duplicates:
        warnings.append(ArticleError(duplicate, f"same file as {kept}, which is indexed; not indexed twice"))
    return _Discovery(unique, [Path(path) for _, path in orphans], problems, warnings, set(sidecars))


def _one_path_per_file(articles: list[tuple[str, str]], root: Path) -> tuple[list[_Found], list[tuple[str, str]]]:
    """``articles`` (relative path, path) with later paths to an already listed file (links,
    hard links) left out.

    Of the paths that reach one file, a path that is not a link wins, else the first.
    Paths that cannot be resolved or lead outside the corpus are kept: reading them
    reports the problem. Returns the kept files (in order) and (left out, kept) relative
    path pairs.
    """
    found: list[_Found] = []
    keys: list[tuple[int, int] | None] = []
    for rel, path in articles:
        try:
            info = os.lstat(path)
        except OSError:
            found.append(_Found(rel, path, None))
            keys.append(None)
            continue
        if not stat.S_ISLNK(info.st_mode):  # in a walked folder, so inside the corpus
            found.append(_Found(rel, path, info))
            keys.append((info.st_dev, info.st_ino))
            continue
        found.append(_Found(rel, path, None))
        try:
            real = Path(path).resolve(strict=True)
            if not real.is_relative_to(root):
                keys.append(None)
                continue
            target = real.stat()
        except (OSError, RuntimeError):
            keys.append(None)
            continue
        keys.append((target.st_dev, target.st_ino))
    groups: dict[tuple[int, int], list[_Found]] = {}
    for item, key in zip(found, keys):
        if key is not None:
            groups.setdefault(key, []).append(item)
    keep = {key: next((item for item in group if item.info is not None), group[0]) for key, group in groups.items()}
    unique = [item for item, key in zip(found, keys) if key is None or keep[key] is item]
    duplicates = [(item.rel, keep[key].rel) for item, key in zip(found, keys) if key is not None and keep[key] is not item]
    return unique, duplicates


def _article_for_sidecar(sidecar: str) -> str:
    lowered = sidecar.lower()
    suffix = next(s for s in SIDECAR_SUFFIXES if lowered.endswith(s))
    return sidecar[: -len(suffix)]


def _sidecar_for(path: Path) -> Path | None:
    for suffix in SIDECAR_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if candidate.is_file() or candidate.is_symlink():  # a broken or looping link is reported
            return candidate
    return None


def _relative(path: Path, corpus_dir: Path) -> str:
    try:
        return path.relative_to(corpus_dir).as_posix()
    except ValueError:
        return path.as_posix()


def _inside_corpus(path: Path, root: Path, rel: str, what: str = "") -> Path:
    """``path`` with every link resolved, or an ``ArticleError`` if it leaves ``root``.

    ``root`` is the resolved corpus folder. ``what`` prefixes the reason (a sidecar).
    """
    try:
        real = path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a link loop this way
        raise ArticleError(rel, f"{what}symbolic link loop; not read") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise ArticleError(rel, f"{what}symbolic link loop; not read") from None
        if path.is_symlink():
            raise ArticleError(rel, f"{what}broken link: its target does not exist") from None
        raise ArticleError(rel, f"{what}cannot read the file: {exc.strerror or exc}") from None
    if not real.is_relative_to(root):
        raise ArticleError(rel, f"{what}{OUTSIDE_CORPUS}")
    return real


def _read_bytes(real: Path, rel: str, max_bytes: int, *, factor: int = 1, what: str = "") -> bytes:
    """The bytes of the regular file ``real`` (already resolved), at most ``max_bytes * factor``.

    The size is checked before reading and at most limit + 1 bytes are ever read, so a
    file that grows between the check and the read is caught too. ``O_NOFOLLOW``: if
    ``real`` was swapped for a link after it was resolved, it is not followed.
    """
    limit = max_bytes * factor
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        info = os.stat(real)
        if not stat.S_ISREG(info.st_mode):
            raise ArticleError(rel, f"{what}not a regular file (a device, pipe or socket); not read")
        if info.st_size > limit:
            raise ArticleError(rel, what + _too_large(info.st_size, max_bytes, factor))
        with open(os.open(real, flags), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise ArticleError(rel, f"{what}not a regular file (a device, pipe or socket); not read")
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ArticleError(rel, f"{what}cannot read the file: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise ArticleError(rel, what + _too_large(len(data), max_bytes, factor, at_least=True))
    return data


def _too_large(size: int, max_bytes: int, factor: int = 1, *, at_least: bool = False, record: bool = False) -> str:
    amount = f"{'at least ' if at_least else ''}{size:,} bytes"
    if factor == 1:
        limit = f"the MAX_ARTICLE_BYTES limit of {max_bytes:,} bytes"
    else:
        limit = f"{factor} x MAX_ARTICLE_BYTES ({max_bytes * factor:,} bytes) allowed for a JSON file of many articles"
    kind = "article too large" if record else "file too large"
    return f"{kind}: {amount}, above {limit}; not read (raise MAX_ARTICLE_BYTES to include it)"


def _decode(data: bytes, rel: str) -> str:
    """UTF-8 text (a byte-order mark is allowed) or an ``ArticleError`` saying why not."""
    if not data:
        raise ArticleError(rel, "empty file")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise ArticleError(rel, "UTF-16 text, not UTF-8: re-save the file as UTF-8")
    if b"\x00" in data:
        raise ArticleError(rel, "binary file (contains NUL bytes), not text")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(
            rel,
            f"not UTF-8 text (invalid byte 0x{data[exc.start]:02x} at offset {exc.start}): re-save the file as UTF-8",
        ) from None
    if not text.strip():
        raise ArticleError(rel, "empty file (only whitespace)")
    return text


# ------------------------------------------------------------------------------ cleaning

_COMMENT_FORM_HEADING = re.compile(
    r"(?:leave|post|add|write)\s+a\s+(?:comment|reply)(?:\s+cancel\s+reply)?[\s.:!…-]*", re.IGNORECASE
)
_COMMENT_FORM_LINE = re.compile(
    r"""(?:
        your\ email\ address\ will\ not\ be\ published.*
      | required\ fields\ are\ marked.*
      | (?:comment|name|email|e-mail|website)\s*\*?\s*:?
      | save\ my\ name,?\ email.*
      | cancel\ reply | post\ comment | submit(?:\ comment)?
      | you\ must\ be\ logged\ in\ to\ post\ a\ comment.*
      | \d+\s+comments?
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# How far from the end a comment-form heading may start (non-empty lines).
_COMMENT_FORM_MAX_LINES = 12


def _normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _tidy(text: str) -> str:
    """Collapse runs of blank lines into one and strip the ends."""
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def _drop_comment_footer(lines: list[str]) -> list[str]:
    """Remove a trailing "Leave a Comment" block, if every line after it is form text."""
    non_empty = [index for index, line in enumerate(lines) if line.strip()]
    for position in range(len(non_empty) - 1, max(-1, len(non_empty) - 1 - _COMMENT_FORM_MAX_LINES), -1):
        index = non_empty[position]
        if _COMMENT_FORM_HEADING.fullmatch(lines[index].strip()):
            tail = [lines[i].strip() for i in non_empty[position + 1 :]]
            if all(_COMMENT_FORM_LINE.fullmatch(line) for line in tail):
                return lines[:index]
            return lines
    return lines


def _drop_repeated_captions(lines: list[str]) -> list[str]:
    """Drop a short line that repeats the previous non-blank line (a caption scraped twice).

    Only an immediate repeat is dropped: in news bodies, non-adjacent repeats are
    usually real structure ("Where to watch: Netflix" in a list, a credit line under
    several photos) and must stay.
    """
    kept: list[str] = []
    previous: str | None = None
    for line in lines:
        normalized = " ".join(line.split())
        if not normalized:
            kept.append(line)
            continue
        if normalized == previous and _is_caption_like(normalized):
            continue
        kept.append(line)
        previous = normalized
    return kept


def _is_caption_like(normalized_line: str) -> bool:
    return len(normalized_line) <= CAPTION_MAX_CHARS and len(normalized_line.split()) >= CAPTION_MIN_WORDS


# ------------------------------------------------------------------- text and markdown

_FRONT_MATTER_FENCE = re.compile(r"---[ \t]*")
_FRONT_MATTER_END = re.compile(r"(?:---|\.\.\.)[ \t]*")
_MARKDOWN_HEADING = re.compile(r"^\s*#{1,6}\s*|\s+#+\s*$")
_SETEXT_UNDERLINE = re.compile(r"\s*(?:=+|-+)\s*")

_PUBLISHED_IN = re.compile(r"(?:originally\s+)?published\s+in\s+(?P<rest>.+?)\.?", re.IGNORECASE)
_DATED_LINE = re.compile(
    r"(?P<kind>published|posted|first\s+published|updated|last\s+updated)(?:\s+on)?\s*:?\s*(?P<date>.+?)\.?",
    re.IGNORECASE,
)


def _parse_text_article(text: str, rel: str, warnings: list[ArticleError] | None = None) -> dict[str, Any]:
    """Title, metadata and cleaned body of a .txt/.md article (dropped front-matter dates warned in ``warnings``)."""
    front_matter, body = _split_front_matter(_normalize_newlines(text), rel)
    fields = _metadata_from_mapping(front_matter, where=rel, warnings=warnings, origin="front matter ")
    body = clean_text(body)
    if not fields.get("title"):
        title, body = _take_title_line(body)
        fields["title"] = title
    body, in_text = _take_metadata_lines(body)
    for key, value in in_text.items():
        fields.setdefault(key, value)
    fields["text"] = _tidy(body)
    return fields


def _split_front_matter(text: str, rel: str) -> tuple[dict[str, Any], str]:
    """YAML front matter at the very top, and the rest of the text."""
    lines = text.split("\n")
    if not lines or not _FRONT_MATTER_FENCE.fullmatch(lines[0]):
        return {}, text
    for index in range(1, len(lines)):
        if _FRONT_MATTER_END.fullmatch(lines[index]):
            break
    else:
        raise ArticleError(rel, "broken front matter: no closing '---' line")
    try:
        data = _load_yaml("\n".join(lines[1:index]))
    except yaml.YAMLError as exc:
        raise ArticleError(rel, f"broken front matter: {_yaml_error_summary(exc, line_offset=1)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ArticleError(rel, f"broken front matter: expected 'key: value' lines, got a {type(data).__name__}")
    return data, "\n".join(lines[index + 1 :])


class _YamlLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose timestamps never raise: "2025-13-45" stays a string."""


def _timestamp_or_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except (ValueError, OverflowError):  # looks like a date, is not one: normalize_date drops it
        return loader.construct_scalar(node)


_YamlLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_or_text)


def _load_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass


def _yaml_error_summary(exc: yaml.YAMLError, line_offset: int = 0) -> str:
    """One line: what is wrong and where (1-based line/column in the file)."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).split("\n")[0]
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if mark is None:
        return str(problem)
    return f"{problem} (line {mark.line + 1 + line_offset}, column {mark.column + 1})"


def _take_title_line(body: str) -> tuple[str, str]:
    """The first non-empty line as a title (markdown heading marks stripped), and the rest."""
    lines = body.split("\n")
    for index, line in enumerate(lines):
        if line.strip():
            title = " ".join(_MARKDOWN_HEADING.sub("", line).split())
            rest = lines[index + 1 :]
            if rest and _SETEXT_UNDERLINE.fullmatch(rest[0]):
                rest = rest[1:]
            return title, "\n".join(rest)
    return "", body


def _take_metadata_lines(body: str) -> tuple[str, dict[str, str]]:
    """Remove "Published ..." lines near either end of the body; return what they said.

    Only the first and last few non-empty lines are looked at, and a line counts only
    when its whole remainder is a date, so a sentence that starts "Updated ..." stays.
    """
    lines = body.split("\n")
    non_empty = [index for index, line in enumerate(lines) if line.strip()]
    zone = sorted(set(non_empty[:METADATA_LINE_ZONE] + non_empty[-METADATA_LINE_ZONE:]))
    published: str | None = None
    published_in: tuple[str, str] | None = None
    updated: str | None = None
    drop: set[int] = set()
    for index in zone:
        line = " ".join(lines[index].split())
        outlet_and_date = _published_in_line(line)
        if outlet_and_date:
            published_in = published_in or outlet_and_date
            drop.add(index)
            continue
        match = _DATED_LINE.fullmatch(line)
        when = normalize_date(match.group("date")) if match else None
        if match and when:
            if match.group("kind").lower().endswith("updated"):
                updated = updated or when
            else:
                published = published or when
            drop.add(index)
    found: dict[str, str] = {}
    when = published or (published_in[1] if published_in else None) or updated
    if when:
        found["date"] = when
    if published_in:
        found["source"] = published_in[0]
    return "\n".join(line for index, line in enumerate(lines) if index not in drop), found


def _published_in_line(line: str) -> tuple[str, str] | None:
    """("Dawn", "2023-12-10") from "Published in Dawn, EOS, December 10th, 2023"."""
    match = _PUBLISHED_IN.fullmatch(line)
    if not match:
        return None
    parts = [part.strip() for part in match.group("rest").split(",")]
    for count in range(1, len(parts)):
        when = normalize_date(", ".join(parts[-count:]))
        if when:
            outlet = parts[0]
            return (outlet, when) if outlet else None
    return None


# ---------------------------------------------------------------------------------- HTML


class _HeadMetadata(HTMLParser):
    """``<title>``, ``<meta>`` and canonical link values, for when trafilatura finds none."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.title_parts: list[str] = []
        self.meta: dict[str, str] = {}
        self.canonical: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "title":
            self._in_title = True
        elif tag == "meta":
            key = (values.get("property") or values.get("name") or "").lower()
            if key and values.get("content", "").strip():
                self.meta.setdefault(key, values["content"].strip())
        elif tag == "link" and "canonical" in values.get("rel", "").lower().split():
            self.canonical = self.canonical or values.get("href") or None

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title_parts.append(data)

    def fields(self) -> dict[str, Any]:
        meta = self.meta
        return {
            "title": meta.get("og:title") or " ".join("".join(self.title_parts).split()) or None,
            "source": meta.get("og:site_name"),
            "date": meta.get("article:published_time") or meta.get("date") or meta.get("pubdate"),
            "url": self.canonical or meta.get("og:url"),
            "author": meta.get("author") or meta.get("article:author"),
        }


def extract_document(html: str | bytes, url: str | None = None):
    """trafilatura's reading of a page (main text, title, outlet, date, link, author; None when
    it finds no article), the one set of options for corpus files and fetched pages alike.
    Raises whatever trafilatura raises on a page it cannot parse."""
    import trafilatura  # heavy import, only when HTML is read

    return trafilatura.bare_extraction(
        html,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_images=False,
        include_tables=True,
        # Only dates stated in the markup: no guessing from the page text or the URL.
        date_extraction_params={"extensive_search": False, "original_date": True},
    )


def _parse_html(html: str, rel: str) -> dict[str, Any]:
    """Main text and metadata of an HTML page by trafilatura, falling back to head tags."""
    try:
        document = extract_document(html)
    except Exception as exc:  # noqa: BLE001 - a parser failure on one page must not stop the build
        raise ArticleError(rel, f"cannot parse the HTML: {type(exc).__name__}: {exc}") from None
    extracted = {
        "title": getattr(document, "title", None),
        "source": getattr(document, "sitename", None),
        "date": getattr(document, "date", None),
        "url": getattr(document, "url", None),
        "author": getattr(document, "author", None),
    }
    head = _HeadMetadata()
    head.feed(html)
    head.close()
    fields = {key: value for key, value in _metadata_from_mapping(extracted).items()}
    for key, value in _metadata_from_mapping(head.fields()).items():
        fields.setdefault(key, value)
    # trafilatura puts one block (paragraph, heading, list item) per line.
    lines = [line for line in (getattr(document, "text", None) or "").split("\n") if line.strip()]
    if lines and fields.get("title") and " ".join(lines[0].split()) == fields["title"]:
        lines = lines[1:]
    fields["text"] = clean_text("\n\n".join(lines))
    if not fields["text"]:
        raise ArticleError(rel, "no article text found in the HTML")
    return fields


# ---------------------------------------------------------------------------------- JSON


def _read_json_records(
    text: str,
    rel: str,
    *,
    jsonl: bool,
    max_bytes: int = DEFAULT_MAX_ARTICLE_BYTES,
    warnings: list[ArticleError] | None = None,
) -> tuple[list[Article], list[ArticleError]]:
    """Articles from a .json (object or list) or .jsonl file; bad records reported one by one.

    Each record must fit ``max_bytes`` (MAX_ARTICLE_BYTES); dropped dates go to ``warnings``.
    """
    problems: list[ArticleError] = []
    records: list[tuple[int, Any]] = []
    if jsonl:
        position = 0
        for line_number, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                records.append((position, json.loads(line)))
            except json.JSONDecodeError as exc:
                problems.append(
                    ArticleError(
                        f"{rel}#{position}", f"invalid JSON on line {line_number}: {exc.msg} (column {exc.colno})"
                    )
                )
            except Exception as exc:  # noqa: BLE001 - e.g. RecursionError: this line only
                problems.append(ArticleError(f"{rel}#{position}", f"line {line_number}: {_failure(exc)}"))
            position += 1
        if not records and not problems:
            raise ArticleError(rel, "empty file (no records)")
        single = False
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ArticleError(rel, f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
        if isinstance(data, dict):
            records, single = [(0, data)], True
        elif isinstance(data, list):
            if not data:
                raise ArticleError(rel, "no articles: the JSON list is empty")
            records, single = list(enumerate(data)), False
        else:
            raise ArticleError(rel, f"expected a JSON object or a list of objects, got {type(data).__name__}")
    articles: list[Article] = []
    used_ids: set[str] = set()
    for position, record in records:
        where = rel if single else f"{rel}#{position}"
        record_warnings: list[ArticleError] = []
        try:
            fields = _record_fields(record, where, max_bytes, record_warnings)
            article_id = rel if single else _record_id(rel, fields, position, used_ids)
            articles.append(_build_article(article_id, rel, fields, where=where))
        except ArticleError as problem:
            problems.append(problem)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad record never loses the others
            problems.append(ArticleError(where, _failure(exc)))
            continue
        if warnings is not None:
            warnings.extend(record_warnings)
        used_ids.add(article_id)
    problems.sort(key=lambda problem: _position_of(problem.path))
    return articles, problems


def _position_of(problem_path: str) -> int:
    _, _, position = problem_path.rpartition("#")
    return int(position) if position.isdigit() else -1


def _record_fields(
    record: Any, where: str, max_bytes: int = DEFAULT_MAX_ARTICLE_BYTES, warnings: list[ArticleError] | None = None
) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise ArticleError(where, f"expected a JSON object, got {type(record).__name__}")
    body = _first_value(record, BODY_ALIASES)
    if not isinstance(body, str) or not body.strip():
        raise ArticleError(where, "no body text (expected a non-empty 'body', 'text' or 'content' field)")
    if len(body) > max_bytes:  # every character is at least one byte: too large without encoding it
        raise ArticleError(where, _too_large(len(body), max_bytes, at_least=True, record=True))
    fields = _metadata_from_mapping(record, where=where, warnings=warnings)
    size = len(body.encode("utf-8", "surrogatepass")) + sum(
        len(value.encode("utf-8", "surrogatepass")) for value in fields.values()
    )
    if size > max_bytes:
        raise ArticleError(where, _too_large(size, max_bytes, record=True))
    if not fields.get("title"):
        raise ArticleError(where, "no title (expected a non-empty 'title' field)")
    fields["text"] = clean_text(body)
    return fields


def _record_id(rel: str, fields: Mapping[str, Any], position: int, used_ids: set[str]) -> str:
    """``<rel>#<hash of url, else title>``; ``-<position>`` added when two records collide."""
    basis = fields.get("url") or fields["title"]
    article_id = f"{rel}#{hashlib.sha256(basis.encode('utf-8')).hexdigest()[:12]}"
    if article_id in used_ids:
        article_id = f"{article_id}-{position}"
    return article_id


# ------------------------------------------------------------------------------ metadata


def _read_sidecar(
    path: Path,
    rel: str,
    root: Path | None = None,
    max_bytes: int = DEFAULT_MAX_ARTICLE_BYTES,
    warnings: list[ArticleError] | None = None,
) -> dict[str, Any]:
    """Metadata from ``<file>.meta.json``/``.meta.yaml`` next to ``path`` (empty if none).

    The sidecar is held to the article's rules: inside the corpus folder ``root`` (the
    folder of ``path`` if not given), a regular file, at most ``max_bytes``.
    """
    sidecar = _sidecar_for(path)
    if sidecar is None:
        return {}
    name = sidecar.name
    what = f"metadata sidecar {name}: "
    real = _inside_corpus(sidecar, root or path.parent.resolve(), rel, what)
    try:
        raw = _read_bytes(real, rel, max_bytes, what=what).decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ArticleError(rel, f"cannot read metadata sidecar {name}: {exc}") from None
    try:
        data = json.loads(raw) if name.lower().endswith(".json") else _load_yaml(raw)
    except json.JSONDecodeError as exc:
        raise ArticleError(
            rel, f"broken metadata sidecar {name}: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except yaml.YAMLError as exc:
        raise ArticleError(rel, f"broken metadata sidecar {name}: {_yaml_error_summary(exc)}") from None
    if not isinstance(data, dict):
        raise ArticleError(rel, f"broken metadata sidecar {name}: expected key/value pairs")
    return _metadata_from_mapping(data, where=rel, warnings=warnings, origin=f"sidecar {name} ")


def _metadata_from_mapping(
    data: Mapping[str, Any],
    *,
    where: str = "",
    warnings: list[ArticleError] | None = None,
    origin: str = "",
) -> dict[str, Any]:
    """The known metadata fields of ``data``, aliases resolved, empty values left out.

    A date that is given but not a valid, unambiguous date is left out too, with a
    warning at ``where`` appended to ``warnings`` (when given).
    """
    lowered = {str(key).lower(): value for key, value in data.items()}
    fields: dict[str, Any] = {}
    for name, aliases in FIELD_ALIASES.items():
        value = _first_value(lowered, aliases)
        if value is None:
            continue
        if name == "date":
            cleaned = normalize_date(value)
            if cleaned is None and warnings is not None:
                warnings.append(ArticleError(where, f"{origin}date {_shown(value)} is not a valid date; ignored"))
        else:
            cleaned = _as_text(value)
        if cleaned:
            fields[name] = cleaned
    return fields


def _shown(value: Any) -> str:
    """A short, one-line rendering of a metadata value for a warning."""
    text = " ".join(repr(value).split())
    if len(text) > 60:
        text = text[:59] + "…"
    return text if isinstance(value, str) else f"{text} (a {type(value).__name__})"


def _first_value(data: Mapping[str, Any], keys: Iterable[str]) -> Any:
    for key in keys:
        value = data.get(key)
        if value is not None and value != "":
            return value
    return None


def _as_text(value: Any, *, nested: bool = False) -> str | None:
    """A one-line string from a scalar or a list of scalars (e.g. several authors).

    Lists inside lists are ignored: YAML aliases can nest a small file into billions
    of items ("billion laughs"), and no metadata field needs more than one level.
    """
    if isinstance(value, (list, tuple)):
        if nested:
            return None
        parts = [_as_text(item, nested=True) for item in value]
        return ", ".join(part for part in parts if part) or None
    if isinstance(value, (dict, bool, set)):
        return None
    return " ".join(str(value).split()) or None


# ISO dates and timestamps, read as written: "2023-11-27", "2023-11-27T08:45:59+00:00".
_YEAR_FIRST_DATE = re.compile(r"(\d{4})([-/.])(\d{1,2})\2(\d{1,2})(?:[T\s]+\d{1,2}:\d{2}\S*(?:\s*\S+)?)?")


def _valid_iso(year: int, month: int, day: int) -> str | None:
    if not 1800 <= year <= 2200:
        return None
    try:
        return date(year, month, day).isoformat()
    except ValueError:
        return None


def _build_article(article_id: str, rel: str, fields: Mapping[str, Any], where: str | None = None) -> Article:
    """The ``Article``, or an ``ArticleError`` at ``where`` (default: the file) if it is empty."""
    text = fields.get("text") or ""
    if not text.strip():
        raise ArticleError(where or rel, "no article text left after cleaning (only a title or metadata?)")
    title = fields.get("title")
    if not title:
        raise ArticleError(where or rel, "no title")
    return Article(
        article_id=article_id,
        title=title,
        text=text,
        source=fields.get("source"),
        date=fields.get("date"),
        url=fields.get("url"),
        author=fields.get("author"),
        path=rel,
    )
