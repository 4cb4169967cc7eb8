"""``python -m bot eval intake``: how well a news page's article comes out of its page chrome.

Each sampled MultiHop-RAG article (``../shared/benchmarks/multihop-rag``, never copied here)
is wrapped in a realistic page (``bot.news_pages``: navigation, cookie banner, byline, photo
caption, share links, related stories named after other articles, newsletter box, comments,
footer, meta tags; four layouts in turn) and extracted by the same code ``add`` runs
(``bot.ingest.web.extract_page``). A page is right when the extracted body matches the
original (similarity >= 0.95 on whitespace-normalised text, rapidfuzz's normalised Indel
similarity) and title, date and outlet are exactly the original's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from rapidfuzz.fuzz import ratio

from bot.config import Settings
from bot.corpus import normalize_date
from bot.errors import ArticleError, BotError
from bot.ingest.web import extract_page
from bot.news_pages import LAYOUTS, news_page

BODY_SIMILARITY = 0.95
MIN_WORDS = 150  # the benchmark's scraped stubs ("Table of Contents ...") are not articles


def _normalized(text: str) -> str:
    return " ".join(text.split())


def eval_intake(settings: Settings, benchmark_dir: Path | None = None, limit: int | None = None) -> dict:
    from bot.evaluation import DEFAULT_BENCHMARK_DIR

    path = Path(benchmark_dir or DEFAULT_BENCHMARK_DIR) / "corpus_train.json"
    if not path.is_file():
        raise BotError(f"MultiHop-RAG corpus not found at {path}; pass --benchmark-dir")
    articles = [a for a in json.loads(path.read_text(encoding="utf-8")) if len(a["body"].split()) >= MIN_WORDS]
    count = limit or 40
    step = max(1, len(articles) // count)
    sample = articles[::step][:count]
    rows, started = [], time.perf_counter()
    for number, article in enumerate(sample):
        date = normalize_date(article["published_at"])
        url = f"https://news.example/{number}/story"
        related = tuple(a["title"] for a in articles[number + 1 : number + 4])
        page = news_page(
            article["title"], article["body"], outlet=article["source"], date=date, url=url,
            author=article.get("author") or "Staff Reporter", layout=LAYOUTS[number % len(LAYOUTS)], related=related,
        )
        try:
            fields = extract_page(page, url)
            error = None
        except ArticleError as exc:
            fields, error = {}, exc.reason
        similarity = ratio(_normalized(fields.get("text", "")), _normalized(article["body"])) / 100
        row = {
            "title": article["title"][:80],
            "layout": LAYOUTS[number % len(LAYOUTS)],
            "words": len(article["body"].split()),
            "body_similarity": round(similarity, 4),
            "title_right": fields.get("title") == " ".join(article["title"].split()),
            "date_right": fields.get("date") == date,
            "outlet_right": fields.get("source") == article["source"],
            "error": error,
        }
        row["right"] = similarity >= BODY_SIMILARITY and row["title_right"] and row["date_right"] and row["outlet_right"]
        rows.append(row)
    n = len(rows)
    share = lambda key: round(sum(bool(r[key]) for r in rows) / n, 3) if n else 0.0  # noqa: E731
    return {
        "pages": n,
        "all_right": share("right"),
        "body_at_least_0.95": round(sum(r["body_similarity"] >= BODY_SIMILARITY for r in rows) / n, 3) if n else 0.0,
        "title_right": share("title_right"),
        "date_right": share("date_right"),
        "outlet_right": share("outlet_right"),
        "median_body_similarity": sorted(r["body_similarity"] for r in rows)[n // 2] if n else 0.0,
        "seconds_per_page": round((time.perf_counter() - started) / n, 3) if n else 0.0,
        "misses": [r for r in rows if not r["right"]],
    }


def format_intake(report: dict) -> str:
    lines = [
        f"Extraction from realistic news pages built from {report['pages']} MultiHop-RAG articles:",
        f"  all right (body >= {BODY_SIMILARITY}, title, date, outlet): {report['all_right']:.1%}",
        f"  body >= {BODY_SIMILARITY}: {report['body_at_least_0.95']:.1%}   median similarity {report['median_body_similarity']:.4f}",
        f"  title {report['title_right']:.1%}   date {report['date_right']:.1%}   outlet {report['outlet_right']:.1%}",
        f"  {report['seconds_per_page'] * 1000:.0f} ms a page",
    ]
    for miss in report["misses"]:
        what = [k.removesuffix("_right") for k in ("title_right", "date_right", "outlet_right") if not miss[k]]
        lines.append(
            f"  miss [{miss['layout']}] {miss['title']!r}: body {miss['body_similarity']:.3f}"
            + (f", wrong {', '.join(what)}" if what else "") + (f", {miss['error']}" if miss["error"] else "")
        )
    return "\n".join(lines)


# -- eval update: the wall time of an update on the benchmark index ------------------------------


def _new_version(article: dict, number: int) -> tuple[str, str]:
    """A title and body that are new to the corpus (paragraphs in reverse order), for timing."""
    paragraphs = [p for p in article["body"].split("\n") if p.strip()]
    return f"Follow-up {number}: {article['title']}", "\n\n".join(reversed(paragraphs)) + f"\n\nThis follow-up is number {number}."


def eval_update(settings: Settings, benchmark_dir: Path | None = None, counts: tuple[int, ...] = (1, 50)) -> dict:
    """Time ``update`` (poll a feed, fetch and extract its new pages, store them, rebuild the
    index incrementally) on a private copy of the 609-article benchmark corpus and index,
    with feeds served by a web server on 127.0.0.1. The cached benchmark index is built
    first when missing (``eval multihop`` builds the same one)."""
    import shutil
    import tempfile

    from bot.evaluation import BENCH_DIR, _embedder, benchmark_paths, ensure_index, prepare_corpus
    from bot.ingest import Intake
    from bot.news_pages import WebServer, rss_feed
    from bot.service import QuestionAnswerer

    folder = benchmark_paths(benchmark_dir)
    bench = BENCH_DIR / "multihop"
    base = settings.with_overrides(corpus_dir=prepare_corpus(folder, bench), index_dir=bench / "index")
    embedder = _embedder(base)
    ensure_index(base, embedder)
    articles = [a for a in json.loads((folder / "corpus_train.json").read_text(encoding="utf-8")) if len(a["body"].split()) >= MIN_WORDS]
    rows = []
    server = WebServer().start()
    try:
        with tempfile.TemporaryDirectory(prefix="newsbot-eval-update-") as tmp:
            root = Path(tmp)
            shutil.copytree(base.corpus_dir, root / "corpus")
            shutil.copytree(base.index_dir, root / "index", symlinks=True)
            feed = server.url("/feed.xml")
            run = base.with_overrides(
                corpus_dir=root / "corpus", index_dir=root / "index", data_dir=root / "data",
                allow_private_hosts=(server.host,), host_requests_per_minute=10_000, feed_urls=(feed,),
            )
            answerer = QuestionAnswerer(run, embedder).load()
            served = 0
            for count in counts:
                items = []
                for number in range(served, served + count):
                    article = articles[number % len(articles)]
                    title, body = _new_version(article, number)
                    url = server.url(f"/news/{number}")
                    date = normalize_date(article["published_at"])
                    server.route(f"/news/{number}", news_page(title, body, outlet=article["source"], date=date, url=url))
                    items.append({"title": title, "link": url, "date": date})
                served += count
                server.route("/feed.xml", rss_feed("Benchmark wire", server.url("/"), items), content_type="application/rss+xml")
                started = time.perf_counter()
                report = Intake(run).update_feeds()
                intake_seconds = time.perf_counter() - started
                build = answerer.rebuild()
                total = time.perf_counter() - started
                rows.append({
                    "new_articles": count,
                    "added": len(report.stored),
                    "articles_in_index": len(answerer.serving.index.articles),
                    "intake_seconds": round(intake_seconds, 2),
                    "index_seconds": round(total - intake_seconds, 2),
                    "embed_seconds": round(build.embed_seconds, 2),
                    "chunks_embedded": build.chunks_embedded,
                    "total_seconds": round(total, 2),
                })
    finally:
        server.stop()
    return {"poll_minutes": settings.feed_poll_minutes, "rows": rows}


def format_update(report: dict) -> str:
    lines = ["Update wall time on a copy of the MultiHop-RAG index (feed on 127.0.0.1):"]
    for row in report["rows"]:
        lines.append(
            f"  {row['new_articles']:3} new: {row['total_seconds']:.1f}s in all = intake {row['intake_seconds']:.1f}s "
            f"(poll, fetch, extract, store) + index {row['index_seconds']:.1f}s (embed {row['embed_seconds']:.1f}s, "
            f"{row['chunks_embedded']} chunks); {row['added']} added, {row['articles_in_index']} articles in the index"
        )
    minutes = report["poll_minutes"]
    if report["rows"] and minutes:
        one = report["rows"][0]["total_seconds"]
        lines.append(
            f"  publish -> answerable with FEED_POLL_MINUTES={minutes:g}: {minutes / 2:g} min on average "
            f"(at most {minutes:g}) + {one:.0f}s for one article"
        )
    return "\n".join(lines)
