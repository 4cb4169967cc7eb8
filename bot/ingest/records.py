"""What intake writes into ``corpus/``, and what is there already (for duplicates).

Every article added by link, feed or upload becomes one ordinary corpus file: a single-object
``.json`` record (title, body, source, published_at, url, author, and where it came from), read
back by ``bot.corpus`` like any other file. So ``corpus/`` stays the one source of truth and a
rebuild from scratch gives the same index. Files live under ``web/<host>/`` (links and feeds)
and ``added/`` (uploads), named after the article's URL (else its text), so fetching an
updated version of an article writes over the same file.

``Catalog`` knows every article in the corpus by canonical URL and by text: the same article
is never added twice, whoever put the first copy there.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from bot.corpus import load_corpus
from bot.types import Article

WEB_FOLDER = "web"  # links and feed items: web/<host>/<slug>-<hash>.json
UPLOAD_FOLDER = "added"  # files sent to the bot or given to `add`
INTAKE_FOLDERS = (WEB_FOLDER + "/", UPLOAD_FOLDER + "/")
# Query parameters that track a click, not name an article.
_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|mc_cid|mc_eid|ref|cmpid|ocid|at_medium|at_campaign)$", re.IGNORECASE)


def url_key(url: str) -> str:
    """One spelling per article address: scheme, ``www.``, default port, fragment, tracking
    parameters, parameter order and a trailing slash do not make another article."""
    parts = urlsplit(url.strip())
    host = re.sub(r"^www\d?\.", "", (parts.hostname or "").lower())
    try:
        port = parts.port
    except ValueError:
        port = None
    if port and port not in (80, 443):
        host = f"{host}:{port}"
    path = re.sub(r"/+$", "", parts.path) or "/"
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if not _TRACKING.match(k)))
    return f"{host}{path}" + (f"?{query}" if query else "")


def text_key(text: str) -> str:
    """The same words in the same order, whatever the spacing, case or punctuation."""
    words = re.findall(r"\w+", text.lower())
    return hashlib.sha256(" ".join(words).encode("utf-8")).hexdigest()


def is_intake_file(rel: str) -> bool:
    return rel.startswith(INTAKE_FOLDERS)


@dataclass(frozen=True)
class Known:
    article_id: str
    path: str  # corpus-relative file
    text_key: str
    title: str


class Catalog:
    """Every article of the corpus by URL and by text; kept current as intake writes."""

    def __init__(self, corpus_dir: Path, max_article_bytes: int):
        self.corpus_dir = Path(corpus_dir)
        self.by_url: dict[str, Known] = {}
        self.by_text: dict[str, Known] = {}
        if self.corpus_dir.is_dir():
            for article in load_corpus(self.corpus_dir, max_article_bytes=max_article_bytes).articles:
                self.remember(article)

    def remember(self, article: Article) -> None:
        known = Known(article.article_id, article.path, text_key(article.text), article.title)
        if article.url:
            self.by_url[url_key(article.url)] = known
        self.by_text.setdefault(known.text_key, known)

    def forget(self, known: Known) -> None:
        self.by_url = {k: v for k, v in self.by_url.items() if v.path != known.path}
        self.by_text = {k: v for k, v in self.by_text.items() if v.path != known.path}


def record_path(folder: str, url: str | None, text: str, hint: str) -> str:
    """``<folder>/<slug>-<hash>.json``: the hash of the URL key (else of the text) keeps one
    file per article; the slug (from the URL's last segment, else ``hint``) is for people."""
    basis = url_key(url) if url else text_key(text)
    digest = hashlib.sha256(basis.encode("utf-8")).hexdigest()[:12]
    last = urlsplit(url).path.rstrip("/").rpartition("/")[2] if url else hint
    slug = re.sub(r"[^a-z0-9]+", "-", re.sub(r"\.[a-z0-9]{1,5}$", "", last.lower())).strip("-")[:60] or "article"
    return f"{folder}/{slug}-{digest}.json"


def write_record(corpus_dir: Path, rel: str, fields: dict, added_from: str) -> Path:
    """Write one article as a corpus ``.json`` record, atomically (a reader never sees half)."""
    record = {
        "title": fields["title"],
        "source": fields.get("source"),
        "published_at": fields.get("date"),
        "url": fields.get("url"),
        "author": fields.get("author"),
        "added_from": added_from,
        "added_at": datetime.now(timezone.utc).replace(microsecond=0).isoformat(),
        "body": fields["text"],
    }
    record = {key: value for key, value in record.items() if value}
    path = Path(corpus_dir) / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(record, out, ensure_ascii=False, indent=1)
            out.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path
