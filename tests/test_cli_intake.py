"""`python -m bot add` and `python -m bot update` as a user runs them: real processes, real
HTTP to a server on 127.0.0.1, the real model; then the article answers a question."""

from __future__ import annotations

import json

import pytest

from bot.news_pages import news_page, rss_feed
from tests.helpers import copy_seed_corpus
from tests.test_cli import run_bot
from tests.test_ingest import BUDGET_BODY, BUDGET_TITLE, MARATHON_BODY, MARATHON_TITLE
from tests.web_server import WebServer


def test_add_a_link_then_ask_it_and_update_feeds(tmp_path, web):
    copy_seed_corpus(tmp_path / "corpus")
    env = {"ALLOW_PRIVATE_HOSTS": web.host, "FETCH_TIMEOUT_SECONDS": "2"}
    url = web.url("/sport/marathon-mascot")
    web.route("/sport/marathon-mascot", news_page(MARATHON_TITLE, MARATHON_BODY, outlet="Dawn", date="2024-01-08", url=url))
    result = run_bot("add", url, web.url("/missing"), cwd=tmp_path, env=env)
    assert result.returncode == 1, result.stderr  # one item failed
    assert f"Added: {MARATHON_TITLE} — Dawn, 2024-01-08; 1 passages indexed" in result.stdout
    assert f"Not added: {web.url('/missing')}: not found (HTTP 404)" in result.stdout
    answer = json.loads(run_bot("ask", "--json", "Which animal is the mascot of the Karachi marathon?", cwd=tmp_path).stdout)
    assert answer["found"] and "flamingo" in answer["answer"] and answer["passages"][0]["url"] == url

    budget = web.url("/business/budget")
    web.route("/business/budget", news_page(BUDGET_TITLE, BUDGET_BODY, outlet="Dawn", date="2024-02-01", url=budget))
    items = [{"title": BUDGET_TITLE, "link": budget, "date": "2024-02-01"}, {"title": MARATHON_TITLE, "link": url, "date": "2024-01-08"}]
    web.route("/feed.rss", rss_feed("Dawn", web.url("/"), items), content_type="application/rss+xml", etag='"1"')
    (tmp_path / "feeds.txt").write_text(web.url("/feed.rss") + "\n", encoding="utf-8")
    first = run_bot("update", "--json", cwd=tmp_path, env=env)
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert [(o["status"], o["where"]) for o in report["outcomes"]] == [("added", budget), ("duplicate", url)]
    assert report["outcomes"][0]["passages"] >= 1
    second = json.loads(run_bot("update", "--json", cwd=tmp_path, env=env).stdout)
    assert second["outcomes"] == [] and second["feeds"][0]["status"] == "not modified"
    answer = json.loads(run_bot("ask", "--json", "How far did the budget deficit narrow in the third quarter?", cwd=tmp_path).stdout)
    assert answer["found"] and "1.2 percent" in answer["answer"]
