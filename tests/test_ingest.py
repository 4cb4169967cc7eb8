"""Adding news by link, file and feed: real HTTP to a server on 127.0.0.1, real trafilatura
and feedparser, the corpus reader and an index build (fake embedder: mechanics only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.ingest import ADDED, DEFERRED, DUPLICATE, FAILED, UPDATED, Intake
from bot.ingest.records import url_key
from bot.news_pages import atom_feed, news_page, rss_feed
from bot.service import QuestionAnswerer
from tests.helpers import make_settings, write
from tests.web_server import WebServer

FLOOD_TITLE = "Flood waters rise in Karachi"
FLOOD_BODY = (
    "Flood waters rose across Karachi on Tuesday as heavy rain continued for a third day, officials said, "
    "and schools were closed in five districts.\n"
    "The Sindh government declared an emergency in five districts and deployed pumps to drain the main roads, "
    "the chief minister told reporters.\n"
    "More rain is forecast until Friday, the Met Office said, warning of urban flooding in low-lying areas."
)
BUDGET_TITLE = "Budget deficit narrows in third quarter"
BUDGET_BODY = (
    "The federal budget deficit narrowed to 1.2 percent of output in the third quarter, the finance ministry said "
    "on Monday, helped by higher tax receipts and lower interest payments.\n"
    "Analysts had expected a deficit of 1.5 percent. The ministry credited a new sales tax on retail traders, "
    "which brought in 40 billion rupees more than planned.\n"
    "The IMF mission is due in Islamabad next week to review the figures."
)
MARATHON_TITLE = "Karachi marathon picks a mascot"
MARATHON_BODY = (
    "The organisers of the Karachi marathon chose a flamingo named Gulabi as the race mascot, they announced on "
    "Monday, after an online vote in which 30,000 people took part.\n"
    "The flamingo mascot will greet the 12,000 runners at the finish line on Sea View, the organisers said, "
    "and will appear on the medals given to every finisher."
)


def settings_for(tmp_path: Path, web: WebServer, **values: str):
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    base = {
        "ALLOW_PRIVATE_HOSTS": web.host,
        "DATA_DIR": str(tmp_path / "data"),
        "FEEDS_FILE": str(tmp_path / "feeds.txt"),
        "FETCH_TIMEOUT_SECONDS": "1",
    }
    base.update(values)
    return make_settings(tmp_path, corpus, **base)


def page(web: WebServer, path: str, title: str, body: str, *, outlet="Dawn", date="2024-03-05", layout="article", **options) -> str:
    url = web.url(path)
    return web.route(path, news_page(title, body, outlet=outlet, date=date, url=url, layout=layout), **options)


def stored_record(settings, outcome) -> dict:
    return json.loads((settings.corpus_dir / outcome.article_id).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- adding a page


def test_add_page_stores_article_with_metadata_and_no_boilerplate(tmp_path, web, fake_embedder):
    settings = settings_for(tmp_path, web)
    url = page(web, "/news/2024/03/flood-waters", FLOOD_TITLE, FLOOD_BODY, outlet="Dawn", date="2024-03-05")
    report = Intake(settings).add([url])
    [outcome] = report.outcomes
    assert outcome.status == ADDED, outcome.describe()
    assert (outcome.title, outcome.source, outcome.date, outcome.url) == (FLOOD_TITLE, "Dawn", "2024-03-05", url)
    record = stored_record(settings, outcome)
    assert outcome.article_id.startswith("web/127.0.0.1_")
    assert record["body"] == FLOOD_BODY.replace("\n", "\n\n")
    for chrome in ("cookie", "Related stories", "Great reporting", "Leave a Reply", "All rights reserved", "Subscribe", "Share on"):
        assert chrome not in record["body"]
    # polite: our User-Agent, and robots.txt asked first
    [request] = web.requests_for("/news/2024/03/flood-waters")
    assert request.headers["user-agent"].startswith("newsbot/")
    assert web.requests[0].path == "/robots.txt"
    # an ordinary corpus file: the index build reads it, and passages are counted
    answerer = QuestionAnswerer(settings, fake_embedder)
    answerer.rebuild()
    report.record_index(answerer.serving.index.chunks, 0.0)
    assert outcome.passages >= 1
    article = answerer.article(outcome.article_id)
    assert (article.title, article.source, article.date, article.url) == (FLOOD_TITLE, "Dawn", "2024-03-05", url)
    assert "Added: Flood waters rise in Karachi — Dawn, 2024-03-05; " in outcome.describe()


def test_same_article_twice_is_a_duplicate_and_an_updated_one_replaces_it(tmp_path, web):
    settings = settings_for(tmp_path, web)
    url = page(web, "/news/budget", BUDGET_TITLE, BUDGET_BODY)
    intake = Intake(settings)
    first = intake.add([url]).outcomes[0]
    assert first.status == ADDED
    # same URL (tracking parameters and a fragment do not make another article)
    again = intake.add([url + "?utm_source=twitter#top"]).outcomes[0]
    assert again.status == DUPLICATE and first.article_id in again.reason
    # the same text at another address
    mirror = page(web, "/mirror/budget-story", BUDGET_TITLE, BUDGET_BODY)
    assert intake.add([mirror]).outcomes[0].status == DUPLICATE
    # the article is updated at its address: same file, new text
    page(web, "/news/budget", BUDGET_TITLE, BUDGET_BODY + "\nUpdate: the IMF mission has been postponed to next month.")
    updated = intake.add([url]).outcomes[0]
    assert updated.status == UPDATED and updated.article_id == first.article_id
    assert "postponed to next month" in stored_record(settings, updated)["body"]
    assert len(list((settings.corpus_dir / "web").rglob("*.json"))) == 1


def test_a_hand_written_corpus_file_is_not_added_again_by_link(tmp_path, web):
    settings = settings_for(tmp_path, web)
    url = page(web, "/news/flood", FLOOD_TITLE, FLOOD_BODY)
    write(settings.corpus_dir / "flood.md", f"---\ntitle: {FLOOD_TITLE}\nurl: {url}\n---\n{FLOOD_BODY}\n")
    outcome = Intake(settings).add([url]).outcomes[0]
    assert outcome.status == DUPLICATE and "flood.md" in outcome.reason


def test_every_failure_is_reported_by_url_and_reason(tmp_path, web):
    settings = settings_for(tmp_path, web, FETCH_MAX_BYTES="200000")
    ok = page(web, "/ok", MARATHON_TITLE, MARATHON_BODY)
    slow = page(web, "/slow", FLOOD_TITLE, FLOOD_BODY, delay=3)
    huge_declared = web.route("/huge", b"<html><body>" + b"<p>word </p>" * 30000 + b"</body></html>")
    huge_chunked = web.route("/huge-chunked", b"<html><body>" + b"<p>word </p>" * 30000 + b"</body></html>", chunked=True)
    pdf = web.route("/report.pdf", b"%PDF-1.4 ...", content_type="application/pdf")
    empty = web.route("/section/world", "<html><head><title>World</title></head><body><nav><a href='/a'>A</a></nav><p>Latest headlines.</p></body></html>")
    broken = web.route("/error", b"oops", status=500)
    urls = [web.url("/missing"), slow, huge_declared, huge_chunked, pdf, empty, broken, "ftp://example.com/x", "file:///etc/passwd", ok]
    report = Intake(settings).add(urls)
    by_url = {o.where: o for o in report.outcomes}
    assert [o.where for o in report.outcomes] == urls
    assert by_url[web.url("/missing")].reason == "not found (HTTP 404)"
    assert by_url[slow].status == DEFERRED and "timed out" in by_url[slow].reason
    assert "too large" in by_url[huge_declared].reason and "too large" in by_url[huge_chunked].reason
    assert by_url[pdf].reason == "not a web page: the server says it is application/pdf"
    assert by_url[empty].reason.startswith("no article text found")
    assert by_url[broken].status == DEFERRED and "HTTP 500" in by_url[broken].reason
    assert "only http and https" in by_url["ftp://example.com/x"].reason
    assert "only http and https" in by_url["file:///etc/passwd"].reason
    assert by_url[ok].status == ADDED  # the failures lost nothing else
    assert {o.status for o in report.outcomes if o.where != ok} <= {FAILED, DEFERRED}


def test_robots_txt_is_respected(tmp_path, web):
    settings = settings_for(tmp_path, web)
    web.route("/robots.txt", "User-agent: *\nDisallow: /members/\n", content_type="text/plain")
    closed = page(web, "/members/flood", FLOOD_TITLE, FLOOD_BODY)
    opened = page(web, "/news/budget", BUDGET_TITLE, BUDGET_BODY)
    report = Intake(settings).add([closed, opened])
    assert report.outcomes[0].status == FAILED and "disallowed by" in report.outcomes[0].reason
    assert web.requests_for("/members/flood") == []
    assert report.outcomes[1].status == ADDED


# ---------------------------------------------------------------- safety


def test_private_addresses_are_refused_by_default(tmp_path, web):
    settings = settings_for(tmp_path, web, ALLOW_PRIVATE_HOSTS="")
    url = page(web, "/news/flood", FLOOD_TITLE, FLOOD_BODY)
    targets = [url, "http://localhost:9/x", "http://10.0.0.8/x", "http://169.254.169.254/latest/meta-data/", "http://[::1]:9/x", "http://192.168.1.1/"]
    report = Intake(settings).add(targets)
    for outcome in report.outcomes:
        assert outcome.status == FAILED and outcome.reason.startswith("refused:"), outcome.describe()
    assert "loopback" in report.outcomes[0].reason and "link-local" in report.outcomes[3].reason
    assert web.requests == []  # nothing reached the server


def test_the_exemption_is_per_host_and_redirects_are_checked_again(tmp_path, web):
    settings = settings_for(tmp_path, web)  # only this server's host:port is exempt
    target = page(web, "/news/flood", FLOOD_TITLE, FLOOD_BODY)
    inside = web.route("/go/inside", b"", status=302, headers={"Location": "/news/flood"})
    to_metadata = web.route("/go/metadata", b"", status=302, headers={"Location": "http://169.254.169.254/latest/"})
    to_other_port = web.route("/go/other", b"", status=301, headers={"Location": "http://127.0.0.1:9/admin"})
    report = Intake(settings).add([to_metadata, to_other_port, inside])
    assert report.outcomes[0].status == FAILED and "169.254.169.254" in report.outcomes[0].reason
    assert report.outcomes[1].status == FAILED and report.outcomes[1].reason.startswith("refused:")
    assert report.outcomes[2].status == ADDED and report.outcomes[2].url == target


def test_requests_per_host_are_limited(tmp_path, web):
    settings = settings_for(tmp_path, web, HOST_REQUESTS_PER_MINUTE="3")
    urls = [page(web, f"/n/{i}", f"{MARATHON_TITLE} {i}", MARATHON_BODY + f" Edition {i}.") for i in range(4)]
    report = Intake(settings).add(urls)
    # robots.txt + two pages, then the limit
    assert [o.status for o in report.outcomes] == [ADDED, ADDED, DEFERRED, DEFERRED]
    assert "too many requests" in report.outcomes[2].reason
    assert len(web.requests) == 3


# ---------------------------------------------------------------- files


def test_add_files_in_corpus_formats_with_duplicates_and_bad_ones(tmp_path, web):
    settings = settings_for(tmp_path, web)
    outside = tmp_path / "incoming"
    md = write(outside / "flood.md", f"---\ntitle: {FLOOD_TITLE}\nsource: Dawn\ndate: 2024-03-05\n---\n{FLOOD_BODY}\n")
    js = write(outside / "budget.json", json.dumps({"title": BUDGET_TITLE, "body": BUDGET_BODY, "source": "The News", "published_at": "2024-02-01"}))
    html_file = write(outside / "marathon.html", news_page(MARATHON_TITLE, MARATHON_BODY, outlet="Geo", date="2024-01-09", url="https://geo.tv/m"))
    copy = write(outside / "flood-copy.txt", f"{FLOOD_TITLE}\n\n{FLOOD_BODY}\n")
    bad = write(outside / "notes.docx", b"PK\x03\x04")
    broken = write(outside / "broken.json", "{not json")
    report = Intake(settings).add([str(p) for p in (md, js, html_file, copy, bad, broken, outside / "absent.md")] + ["www.dawn.com/news/1"])
    statuses = [(Path(o.where).name, o.status) for o in report.outcomes]
    assert statuses == [
        ("flood.md", ADDED), ("budget.json", ADDED), ("marathon.html", ADDED), ("flood-copy.txt", DUPLICATE),
        ("notes.docx", FAILED), ("broken.json", FAILED), ("absent.md", FAILED), ("1", FAILED),
    ]
    assert report.outcomes[-1].reason == "no such file; a link must start with https:// or http://"
    marathon = report.outcomes[2]
    assert (marathon.title, marathon.source, marathon.date, marathon.url) == (MARATHON_TITLE, "Geo", "2024-01-09", "https://geo.tv/m")
    assert report.outcomes[1].source == "The News"
    assert "unsupported file type .docx" in report.outcomes[4].reason
    assert "invalid JSON" in report.outcomes[5].reason
    assert all(o.article_id.startswith("added/") for o in report.outcomes[:3])


def test_an_uploaded_document_is_added_once(tmp_path, web):
    settings = settings_for(tmp_path, web, MAX_ARTICLE_BYTES="5000")
    intake = Intake(settings)
    data = f"# {MARATHON_TITLE}\n\n{MARATHON_BODY}\n".encode()
    assert intake.add_document("marathon.md", data).outcomes[0].status == ADDED
    assert intake.add_document("marathon-again.md", data).outcomes[0].status == DUPLICATE
    too_big = intake.add_document("big.txt", b"x " * 3000).outcomes[0]
    assert too_big.status == FAILED and too_big.reason.startswith("too large")
    assert intake.add_document("../../evil.md", data).outcomes[0].where == "evil.md"


# ---------------------------------------------------------------- feeds


def feed_items(web: WebServer, count: int, start: int = 0) -> list[dict]:
    items = []
    for i in range(start, start + count):
        url = page(web, f"/story/{i}", f"Story number {i} about the port", MARATHON_BODY.replace("flamingo", f"flamingo {i}") + f" Story {i}.")
        items.append({"title": f"Story number {i}", "link": url, "date": f"2024-02-{10 + i:02d}"})
    return items


def test_feed_update_adds_only_new_items_and_uses_conditional_requests(tmp_path, web):
    settings = settings_for(tmp_path, web)
    items = feed_items(web, 2)
    feed = web.route("/feed.xml", rss_feed("Port News", web.url("/"), items), content_type="application/rss+xml", etag='"v1"')
    (tmp_path / "feeds.txt").write_text(f"# our feeds\n{feed}\n", encoding="utf-8")
    intake = Intake(settings)
    first = intake.update_feeds()
    assert [o.status for o in first.outcomes] == [ADDED, ADDED]
    assert first.feeds[0].status == "read" and first.feeds[0].new == 2
    second = Intake(settings).update_feeds()  # a new Intake: the state is on disk
    assert second.outcomes == [] and second.feeds[0].status == "not modified"
    assert web.requests_for("/feed.xml")[-1].headers.get("if-none-match") == '"v1"'
    # the feed publishes a third story: only it is fetched and added
    items.extend(feed_items(web, 1, start=2))
    web.route("/feed.xml", rss_feed("Port News", web.url("/"), items), content_type="application/rss+xml", etag='"v2"')
    fetched_before = len(web.requests_for("/story/0"))
    third = Intake(settings).update_feeds()
    assert [(o.status, o.where) for o in third.outcomes] == [(ADDED, items[2]["link"])]
    assert len(web.requests_for("/story/0")) == fetched_before
    fourth = Intake(settings).update_feeds()
    assert fourth.outcomes == []
    assert len(list((settings.corpus_dir / "web").rglob("*.json"))) == 3


def test_atom_feed_with_an_updated_entry_replaces_the_article(tmp_path, web):
    settings = settings_for(tmp_path, web, FEED_URLS=web.url("/atom.xml"))
    items = feed_items(web, 1)
    web.route("/atom.xml", atom_feed("Port", web.url("/"), items), content_type="application/atom+xml",
              last_modified="Mon, 12 Feb 2024 08:00:00 GMT")
    assert [o.status for o in Intake(settings).update_feeds().outcomes] == [ADDED]
    assert web.requests_for("/atom.xml")[-1].headers.get("if-modified-since") is None
    assert Intake(settings).update_feeds().feeds[0].status == "not modified"
    assert web.requests_for("/atom.xml")[-1].headers.get("if-modified-since") == "Mon, 12 Feb 2024 08:00:00 GMT"
    # the story changes and the feed says so
    page(web, "/story/0", "Story number 0 about the port", MARATHON_BODY + " Correction: the vote had 31,000 voters.")
    items[0]["updated"] = "2024-02-12T09:00:00Z"
    web.route("/atom.xml", atom_feed("Port", web.url("/"), items), content_type="application/atom+xml",
              last_modified="Mon, 12 Feb 2024 09:00:00 GMT")
    report = Intake(settings).update_feeds()
    assert [o.status for o in report.outcomes] == [UPDATED]
    assert "31,000 voters" in stored_record(settings, report.outcomes[0])["body"]


def test_broken_feeds_and_items_are_reported(tmp_path, web):
    good_items = feed_items(web, 1)
    private_items = [
        {"title": "Metadata", "link": "http://169.254.169.254/latest/meta-data/", "date": "2024-02-01"},
        {"title": "Intranet", "link": "http://10.1.2.3/news", "date": "2024-02-01"},
        {"title": "Gone", "link": web.url("/gone"), "date": "2024-02-01"},
    ]
    web.route("/mixed.xml", rss_feed("Mixed", web.url("/"), private_items + good_items), content_type="application/rss+xml")
    web.route("/malformed.xml", '<?xml version="1.0"?><rss><channel><item><title>Broken', content_type="application/rss+xml")
    web.route("/page.html", news_page(FLOOD_TITLE, FLOOD_BODY, outlet="Dawn", date="2024-03-05", url=web.url("/page.html")))
    feeds = [web.url("/mixed.xml"), web.url("/malformed.xml"), web.url("/missing.xml"), web.url("/page.html")]
    settings = settings_for(tmp_path, web, FEED_URLS=",".join(feeds))
    report = Intake(settings).update_feeds()
    by_feed = {f.url: f for f in report.feeds}
    assert by_feed[feeds[1]].status == "failed" and by_feed[feeds[1]].reason.startswith("malformed feed")
    assert by_feed[feeds[2]].reason == "not found (HTTP 404)"
    assert "not a web page" in by_feed[feeds[3]].reason or "not an RSS" in by_feed[feeds[3]].reason
    outcomes = {o.where: o for o in report.outcomes}
    assert outcomes["http://169.254.169.254/latest/meta-data/"].reason.startswith("refused:")
    assert outcomes["http://10.1.2.3/news"].reason.startswith("refused:")
    assert outcomes[web.url("/gone")].reason == "not found (HTTP 404)"
    assert outcomes[good_items[0]["link"]].status == ADDED
    assert "Feed " + feeds[1] + ": malformed feed" in report.describe()


def test_an_item_deferred_by_the_host_limit_is_fetched_at_the_next_poll(tmp_path, web):
    settings = settings_for(tmp_path, web, HOST_REQUESTS_PER_MINUTE="4")
    items = feed_items(web, 3)
    feed = web.route("/feed.xml", rss_feed("Port", web.url("/"), items), content_type="application/rss+xml", etag='"v1"')
    settings = settings.with_overrides(feed_urls=(feed,))
    first = Intake(settings).update_feeds()  # robots, feed, two stories; the third waits
    assert [o.status for o in first.outcomes] == [ADDED, ADDED, DEFERRED]
    second = Intake(settings).update_feeds()  # a new limiter (a new minute): the feed is read again
    assert [(o.status, o.where) for o in second.outcomes] == [(ADDED, items[2]["link"])]


def test_url_key_ignores_what_does_not_name_an_article():
    assert url_key("https://www.dawn.com/news/1/?utm_source=x&b=2&a=1#c") == url_key("http://dawn.com:80/news/1?a=1&b=2")
    assert url_key("https://dawn.com/news/1") != url_key("https://dawn.com/news/2")


def test_extraction_from_realistic_pages_of_benchmark_articles(seed_settings):
    from bot.evaluation_intake import eval_intake

    report = eval_intake(seed_settings, limit=20)
    assert report["pages"] == 20
    assert report["all_right"] >= 0.95, report["misses"]  # measured: 1.0 on 40 pages


def test_a_page_in_another_charset(tmp_path, web):
    """Bytes go to trafilatura, which reads the charset (header, meta or the bytes themselves)."""
    settings = settings_for(tmp_path, web)
    body = FLOOD_BODY.replace("officials said", "officials at the café in Saddar said")
    html = news_page(FLOOD_TITLE, body, outlet="Dawn", date="2024-03-05", url=web.url("/latin"))
    html = html.replace("<meta charset='utf-8'>", "")
    url = web.route("/latin", html.encode("iso-8859-1"), content_type="text/html; charset=iso-8859-1")
    outcome = Intake(settings).add([url]).outcomes[0]
    assert outcome.status == ADDED
    assert "café in Saddar" in stored_record(settings, outcome)["body"]
