"""Adding news and follows in the running bot, end to end: the real Application and model, the
Bot API server of the tests (documents and getFile included) and a web server on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

from bot.follows import FollowStore, match_follows
from bot.news_pages import news_page, rss_feed
from bot.telegram_app import ADD_REFUSED_REPLY, UPDATE_REFUSED_REPLY
from tests.fake_bot_api import FakeBotApi, fake_bot_api
from tests.test_ingest import BUDGET_BODY, BUDGET_TITLE, FLOOD_BODY, FLOOD_TITLE, MARATHON_BODY, MARATHON_TITLE
from tests.test_telegram_e2e import EXAMPLE_QUESTIONS, WAIT, answer_to, assert_telegram_rules, fresh_answerer, replies, running_bot
from tests.web_server import WebServer

__all__ = ["fake_bot_api", "fresh_answerer"]  # imported fixtures

ADMIN = 4242
MASCOT_QUESTION = "Which animal is the mascot of the Karachi marathon?"


@pytest.fixture
def server(fake_bot_api: FakeBotApi) -> FakeBotApi:
    return fake_bot_api


def intake_settings(tmp_path, web: WebServer, **more) -> dict:
    return {
        "admin_user_ids": frozenset({ADMIN}),
        "allow_private_hosts": (web.host,),
        "data_dir": tmp_path / "data",
        "feeds_file": tmp_path / "feeds.txt",
        "fetch_timeout_seconds": 5.0,
        **more,
    }


async def reply_to(server: FakeBotApi, chat: dict, send, count: int = 1):
    before = len(server.sent_messages(chat["id"]))
    send()
    return await replies(server, chat["id"], before, count)


@pytest.mark.asyncio
async def test_admin_adds_a_link_and_the_bot_answers_from_it(server, web, fresh_answerer, tmp_path):
    url = web.route("/sport/mascot", news_page(MARATHON_TITLE, MARATHON_BODY, outlet="Dawn", date="2024-01-08", url=web.url("/sport/mascot")))
    admin, reader = server.user(ADMIN, "Ada"), server.user(5001, "Rex")
    admin_chat, reader_chat = server.private_chat(admin), server.private_chat(reader)
    async with running_bot(server, fresh_answerer, **intake_settings(tmp_path, web)):
        [refused] = await reply_to(server, reader_chat, lambda: server.send_text(reader_chat, reader, url))
        assert refused.text == ADD_REFUSED_REPLY.format(example=EXAMPLE_QUESTIONS[0])
        assert web.requests == []  # a non-admin's link is never fetched
        [added] = await reply_to(server, admin_chat, lambda: server.send_text(admin_chat, admin, url))
        assert added.text.startswith(f"Added: {MARATHON_TITLE} — Dawn, 2024-01-08; ") and added.text.endswith("passages indexed")
        assert f"<b>{MARATHON_TITLE}</b>" in added.html
        # swapped in at once: the reader's question is answered from the new article, with its link
        _, answer = await answer_to(server, reader_chat, reader, MASCOT_QUESTION)
        assert "flamingo" in answer[0].text
        assert {"text": "Open [1]", "url": url} in answer[-1].buttons
        # the same link again: already there
        [again] = await reply_to(server, admin_chat, lambda: server.send_text(admin_chat, admin, url))
        assert again.text.startswith(f"Already there: {url} — already in the corpus as web/")
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_admin_sends_a_document(server, web, fresh_answerer, tmp_path):
    admin, reader = server.user(ADMIN, "Ada"), server.user(5002, "Rex")
    admin_chat, reader_chat = server.private_chat(admin), server.private_chat(reader)
    document = f"---\ntitle: {BUDGET_TITLE}\nsource: The News\ndate: 2024-02-01\n---\n{BUDGET_BODY}\n".encode()
    async with running_bot(server, fresh_answerer, **intake_settings(tmp_path, web)):
        [refused] = await reply_to(server, reader_chat, lambda: server.send_document(reader_chat, reader, "budget.md", document))
        assert refused.text == ADD_REFUSED_REPLY.format(example=EXAMPLE_QUESTIONS[0])
        assert server.calls("getFile") == []
        [pdf] = await reply_to(server, admin_chat, lambda: server.send_document(admin_chat, admin, "report.pdf", b"%PDF", "application/pdf"))
        assert pdf.text == "I can add .txt, .md, .html and .json files, not .pdf."
        [added] = await reply_to(server, admin_chat, lambda: server.send_document(admin_chat, admin, "budget.md", document, "text/markdown"))
        assert added.text.startswith(f"Added: {BUDGET_TITLE} — The News, 2024-02-01; ")
        assert len(server.calls("getFile")) == 1 and len(server.calls("downloadFile")) == 1
        _, answer = await answer_to(server, reader_chat, reader, "How far did the budget deficit narrow in the third quarter?")
        assert "1.2 percent" in answer[0].text
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_follow_is_pushed_after_update_and_only_when_it_matches(server, web, fresh_answerer, tmp_path):
    flood = web.route("/news/flood", news_page(FLOOD_TITLE, FLOOD_BODY, outlet="Dawn", date="2024-03-05", url=web.url("/news/flood")))
    items = [{"title": FLOOD_TITLE, "link": flood, "date": "2024-03-05"}]
    feed = web.route("/feed.xml", rss_feed("Dawn", web.url("/"), items), content_type="application/rss+xml")
    admin, reader, other = server.user(ADMIN, "Ada"), server.user(5003, "Rex"), server.user(5004, "Oli")
    admin_chat, reader_chat, other_chat = server.private_chat(admin), server.private_chat(reader), server.private_chat(other)
    settings = intake_settings(tmp_path, web, feed_urls=(feed,), feed_poll_minutes=0)
    async with running_bot(server, fresh_answerer, **settings):
        [followed] = await reply_to(server, reader_chat, lambda: server.send_text(reader_chat, reader, "/follow Karachi floods and rain emergency"))
        assert followed.text.startswith("Following “Karachi floods and rain emergency”.")
        await reply_to(server, other_chat, lambda: server.send_text(other_chat, other, "/follow Which animal is the marathon mascot?"))
        [refused] = await reply_to(server, reader_chat, lambda: server.send_text(reader_chat, reader, "/update"))
        assert refused.text == UPDATE_REFUSED_REPLY
        reader_before = len(server.sent_messages(reader_chat["id"]))
        [report] = await reply_to(server, admin_chat, lambda: server.send_text(admin_chat, admin, "/update"))
        assert report.text.startswith(f"Added: {FLOOD_TITLE} — Dawn, 2024-03-05; ")
        [push] = await replies(server, reader_chat["id"], reader_before)
        assert push.text.startswith("🔔 New on “Karachi floods and rain emergency”:")
        assert "Flood waters" in push.text or "emergency" in push.text
        assert f"[1] {FLOOD_TITLE} — Dawn, 2024-03-05" in push.text
        assert [b["text"] for b in push.buttons] == ["Full [1]", "Open [1]"]
        # nothing about the marathon was added: no message to the other follower
        await asyncio.sleep(0.5)
        assert [m for m in server.sent_messages(other_chat["id"]) if m.text.startswith("🔔")] == []
        # a second /update finds nothing new and pushes nothing
        [nothing] = await reply_to(server, admin_chat, lambda: server.send_text(admin_chat, admin, "/update"))
        assert nothing.text == "Nothing new in 1 feed."
        # Full [1] under the push shows the passage in this chat
        before = len(server.sent_messages(reader_chat["id"]))
        server.press_button(push, push.callback_data[0], reader)
        [full] = await replies(server, reader_chat["id"], before)
        assert "Sindh government declared an emergency" in full.text
        [listed] = await reply_to(server, reader_chat, lambda: server.send_text(reader_chat, reader, "/following"))
        assert "1. Karachi floods and rain emergency" in listed.text
        [stopped] = await reply_to(server, reader_chat, lambda: server.send_text(reader_chat, reader, "/unfollow 1"))
        assert stopped.text == "Stopped following “Karachi floods and rain emergency”."
    assert FollowStore(tmp_path / "data").of_chat(reader_chat["id"]) == []
    assert [f.topic for f in FollowStore(tmp_path / "data").of_chat(other_chat["id"])] == ["Which animal is the marathon mascot?"]
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_the_job_queue_polls_feeds_on_schedule(server, web, fresh_answerer, tmp_path):
    mascot = web.route("/sport/mascot", news_page(MARATHON_TITLE, MARATHON_BODY, outlet="Dawn", date="2024-01-08", url=web.url("/sport/mascot")))
    feed = web.route("/feed.xml", rss_feed("Dawn", web.url("/"), [{"title": MARATHON_TITLE, "link": mascot, "date": "2024-01-08"}]),
                     content_type="application/rss+xml")
    reader = server.user(5005, "Rex")
    chat = server.private_chat(reader)
    FollowStore(tmp_path / "data").add(chat["id"], "Karachi marathon mascot")  # followed before the bot started
    async with running_bot(server, fresh_answerer, **intake_settings(tmp_path, web, feed_urls=(feed,), feed_poll_minutes=0.01)):
        [push] = await server.async_wait_for_messages(chat["id"], 1, WAIT)
        assert push.text.startswith("🔔 New on “Karachi marathon mascot”:") and "flamingo" in push.text
    assert web.requests_for("/feed.xml")
    assert fresh_answerer.article(next(iter(a for a in fresh_answerer.serving.index.articles if a.startswith("web/"))))
    assert_telegram_rules(server)


def test_follows_survive_a_restart_and_pushes_are_capped_per_chat(tmp_path, fresh_answerer):
    store = FollowStore(tmp_path / "data")
    store.add(1, "Karachi floods")
    store.add(1, "Karachi floods")  # the same topic twice is one follow
    store.add(2, "What is the weather in Oslo today?")
    assert [(f.chat_id, f.topic) for f in FollowStore(tmp_path / "data").all()] == [(1, "Karachi floods"), (2, "What is the weather in Oslo today?")]
    corpus = fresh_answerer.settings.corpus_dir
    for i, place in enumerate(("Lyari", "Korangi", "Malir")):
        (corpus / f"flood{i}.md").write_text(
            f"---\ntitle: Floods hit {place}\nsource: Dawn\ndate: 2024-03-0{i + 1}\n---\n"
            f"Flood waters rose in {place}, Karachi, after heavy rain on Tuesday, and residents were moved to relief camps.\n\n"
            f"Officials in {place} said pumps were deployed to drain the flooded streets of Karachi.\n",
            encoding="utf-8",
        )
    fresh_answerer.rebuild()
    new = ["flood0.md", "flood1.md", "flood2.md"]
    pushes = match_follows(fresh_answerer, store.all(), new, per_chat=2)
    assert [p.follow.chat_id for p in pushes] == [1, 1]  # capped at 2; nothing for Oslo
    assert len({p.passage.article.article_id for p in pushes}) == 2
    assert all(p.passage.article.article_id in new for p in pushes)
    # only new articles answer: the seed articles never do
    assert match_follows(fresh_answerer, store.all(), ["flood0.md"], per_chat=5)[0].passage.article.article_id == "flood0.md"
    assert match_follows(fresh_answerer, [store.all()[1]], new, per_chat=5) == []


@pytest.mark.asyncio
async def test_votes_and_gaps(server, web, fresh_answerer, tmp_path):
    from tests.test_telegram_e2e import BAHADURABAD, OSLO

    admin, reader = server.user(ADMIN, "Ada"), server.user(5006, "Rex")
    admin_chat, chat = server.private_chat(admin), server.private_chat(reader)
    async with running_bot(server, fresh_answerer, **intake_settings(tmp_path, web)):
        _, found = await answer_to(server, chat, reader, BAHADURABAD)
        votes = [b for b in found[-1].buttons if b["text"] in ("👍", "👎")]
        assert [b["text"] for b in votes] == ["👍", "👎"]
        server.press_button(found[-1], votes[1]["callback_data"], reader)
        await server.async_wait_for(lambda s: s.callback_answers(), WAIT, "vote acknowledged")
        for _ in range(2):
            await answer_to(server, chat, reader, OSLO)
        _, again = await answer_to(server, chat, reader, "what is the weather in oslo today")
        assert not [b for b in again[-1].buttons if b["text"] == "👍"]  # not found: nothing to vote on
        [refused] = await reply_to(server, chat, lambda: server.send_text(chat, reader, "/gaps"))
        assert refused.text == "Only the bot's admins can see the questions readers asked."
        [gaps] = await reply_to(server, admin_chat, lambda: server.send_text(admin_chat, admin, "/gaps"))
        lines = gaps.text.splitlines()
        assert lines[1].startswith("1. what is the weather in oslo today — asked 3×; 3× not found")
        assert lines[2] == f"2. {BAHADURABAD} — asked 1×; 1× 👎"
        [help_text] = await reply_to(server, chat, lambda: server.send_text(chat, reader, "/help"))
        assert "Questions are kept 30 days" in help_text.text
    assert_telegram_rules(server)


def test_questions_are_deleted_after_the_retention_period(tmp_path, seed_answerer):
    from bot.feedback import FeedbackStore

    answer = seed_answerer.ask("What is the weather in Oslo today?")
    kept, expired = FeedbackStore(tmp_path / "kept", 30), FeedbackStore(tmp_path / "expired", 0)
    for store in (kept, expired):
        store.record(1, answer, "build-1")
    assert [g.question for g in kept.gaps()] == ["What is the weather in Oslo today?"]
    assert expired.gaps() == []
    assert not kept.vote(1, chat_id=2, user_id=9, up=False)  # a vote from another chat is refused


@pytest.mark.asyncio
async def test_articles_added_outside_the_bot_reach_followers(server, web, fresh_answerer, real_embedder, tmp_path):
    """`python -m bot add` (here: the same calls in-process) while the bot runs: the watcher swaps
    the index in and pushes follows about the new article, once."""
    from bot.indexing import build_index
    from bot.ingest import Intake

    url = web.route("/sport/mascot", news_page(MARATHON_TITLE, MARATHON_BODY, outlet="Dawn", date="2024-01-08", url=web.url("/sport/mascot")))
    reader = server.user(5008, "Rex")
    chat = server.private_chat(reader)
    settings = intake_settings(tmp_path, web, index_poll_seconds=0.3)
    FollowStore(settings["data_dir"]).add(chat["id"], "Karachi marathon mascot")
    async with running_bot(server, fresh_answerer, **settings):
        cli_settings = fresh_answerer.settings.with_overrides(**{k: v for k, v in settings.items() if k != "index_poll_seconds"})
        assert Intake(cli_settings).add([url]).outcomes[0].status == "added"
        await asyncio.to_thread(build_index, cli_settings, real_embedder, progress=False)
        [push] = await server.async_wait_for_messages(chat["id"], 1, WAIT)
        assert push.text.startswith("🔔 New on “Karachi marathon mascot”:") and "flamingo" in push.text
        await asyncio.sleep(1.0)  # further polls find nothing new
        assert len(server.sent_messages(chat["id"])) == 1
    assert_telegram_rules(server)


@pytest.mark.asyncio
async def test_articles_copied_in_and_reindexed_reach_followers(server, web, fresh_answerer, tmp_path):
    """Files copied into corpus/ by hand, then an admin's /reindex: follows hear about them too."""
    from tests.helpers import write_article

    reader, admin = server.user(5009, "Rex"), server.user(ADMIN, "Ada")
    chat, admin_chat = server.private_chat(reader), server.private_chat(admin)
    settings = intake_settings(tmp_path, web)
    FollowStore(settings["data_dir"]).add(chat["id"], "Karachi marathon mascot")
    async with running_bot(server, fresh_answerer, **settings):
        write_article(fresh_answerer.settings.corpus_dir, "mascot.md", MARATHON_TITLE, MARATHON_BODY, source="Dawn", date="2024-01-08")
        server.send_text(admin_chat, admin, "/reindex")
        [push] = await server.async_wait_for_messages(chat["id"], 1, WAIT)
        assert push.text.startswith("🔔 New on “Karachi marathon mascot”:")
        await server.async_wait_for_messages(admin_chat["id"], 2, WAIT)  # "Rebuilding ..." and the report
    assert_telegram_rules(server)
