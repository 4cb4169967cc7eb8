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
