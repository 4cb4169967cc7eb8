"""Same story, several outlets: grouping (hand-made vectors) and "also reported by" in answers
(real model, real FAISS, through the service)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from bot.formatting import answer_to_dict, answer_to_text
from bot.stories import NO_STORIES, StoryParams, Stories, article_vectors, fold_passages, group_stories, outlet_key
from bot.telegram_html import MESSAGE_LIMIT, parsed_length, render_answer
from bot.types import Answer, Article, Chunk, Passage
from tests.helpers import make_settings, write_article

PARAMS = StoryParams(threshold=0.8, days=3)


def article(article_id: str, source: str | None, date: str | None = "2024-03-01") -> Article:
    return Article(article_id, f"Title {article_id}", "Some text.", source=source, date=date, url=f"https://example.org/{article_id}")


def unit(*angles_deg: float) -> np.ndarray:
    """Unit vectors in a plane at the given angles: cos(a - b) is their cosine."""
    radians = np.radians(angles_deg)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1)


def test_alike_articles_of_two_outlets_are_one_story():
    stories = group_stories([article("a", "Dawn"), article("b", "The News")], unit(0, 20), PARAMS)  # cos 0.94
    assert stories.groups == (("a", "b"),)
    assert stories.same_story("a", "b")


def test_articles_below_the_threshold_are_not_grouped():
    stories = group_stories([article("a", "Dawn"), article("b", "The News")], unit(0, 45), PARAMS)  # cos 0.71
    assert stories.groups == ()
    assert not stories.same_story("a", "b")


def test_complete_linkage_does_not_chain():
    # a~b (cos 0.91) and b~c (0.91), but a and c are only 0.64 alike: they never share a group.
    stories = group_stories([article("a", "Dawn"), article("b", "The News"), article("c", "Geo")], unit(0, 25, 50), PARAMS)
    assert len(stories.groups) == 1 and len(stories.groups[0]) == 2
    assert not stories.same_story("a", "c")


def test_a_group_of_three_when_every_pair_is_alike():
    stories = group_stories([article("a", "Dawn"), article("b", "The News"), article("c", "Geo")], unit(0, 10, 20), PARAMS)
    assert stories.groups == (("a", "b", "c"),)


def test_one_outlet_is_never_two_reports_sections_included():
    same = group_stories([article("a", "Dawn"), article("b", "Dawn")], unit(0, 5), PARAMS)
    sections = group_stories([article("a", "The Independent - Sports"), article("b", "The Independent - Travel")], unit(0, 5), PARAMS)
    assert same.groups == () and sections.groups == ()
    assert outlet_key("The Independent - Sports") == outlet_key("the independent") != outlet_key("The Guardian")


def test_an_article_without_an_outlet_is_nobody_elses_report():
    for first, second in ((None, "The News"), ("The News", None)):
        assert group_stories([article("a", first), article("b", second)], unit(0, 5), PARAMS).groups == ()


def test_the_seed_corpus_two_articles_on_one_beat_are_not_one_story(seed_answerer):
    """0.83 alike, but one has no outlet (and no date): the same beat, not the same report."""
    assert seed_answerer.serving.stories.groups == ()


def test_reports_far_apart_in_time_are_not_one_story_undated_ones_may_be():
    far = group_stories([article("a", "Dawn", "2024-03-01"), article("b", "The News", "2024-03-05")], unit(0, 5), PARAMS)
    near = group_stories([article("a", "Dawn", "2024-03-01"), article("b", "The News", "2024-03-04")], unit(0, 5), PARAMS)
    undated = group_stories([article("a", "Dawn", None), article("b", "The News", "2024-03-05")], unit(0, 5), PARAMS)
    assert far.groups == ()
    assert near.groups == (("a", "b"),)
    assert undated.groups == (("a", "b"),)


def test_article_vector_is_the_normalised_mean_of_its_chunks():
    chunks = [Chunk("a", 0, 0, 1, "x", 1), Chunk("b", 0, 0, 1, "y", 1), Chunk("a", 1, 1, 2, "z", 1)]
    stored = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=np.float32)
    vectors = article_vectors(chunks, lambda rows: stored[rows], ["a", "b"])
    np.testing.assert_allclose(vectors, [[np.sqrt(0.5), np.sqrt(0.5)], [0.0, 1.0]], atol=1e-6)


def _passage(rank: int, art: Article) -> Passage:
    return Passage(rank, art, 0, 4, 1.0 / rank, 0, 4)


def test_fold_keeps_the_leads_article_names_the_others_and_renumbers():
    dawn, news, other = article("dawn", "Dawn"), article("news", "The News"), article("other", "Geo")
    stories = Stories({"dawn": 0, "news": 0}, (("dawn", "news"),))
    passages = [_passage(1, dawn), _passage(2, other), _passage(3, news), _passage(4, dawn)]
    kept, also, ranks = fold_passages(passages, stories, keep_rank=3)  # the lead quotes The News
    assert [(p.rank, p.article.article_id) for p in kept] == [(1, "other"), (2, "news")]
    assert also == [dawn]
    assert ranks[3] == 2
    untouched, none, _ = fold_passages(passages, NO_STORIES, keep_rank=1)
    assert untouched == passages and none == []


# -- through the service, with the real model ------------------------------------------------

DAWN_BODY = (
    "The Sukkur barrage gates were opened on Tuesday after engineers completed repairs to gate number 47, "
    "which had collapsed last month and threatened irrigation for millions of acres in Sindh.\n\n"
    "Irrigation Minister Jam Khan Shoro said the repaired gate cost Rs300 million and water would reach the "
    "Rohri and Nara canals within two days, ending a three-week closure that had worried farmers across the province."
)
NEWS_BODY = (
    "Water began flowing through the Sukkur barrage again on Tuesday once repair work on its damaged gate 47 "
    "was finished, Sindh's irrigation department announced.\n\n"
    "Minister Jam Khan Shoro told reporters the Rs300 million repair would let water reach farmers on the Nara and "
    "Rohri canals in two days, after a closure of three weeks that had alarmed growers throughout Sindh."
)
OTHER_ARTICLES = {
    "cricket.md": ("Pakistan beat Australia in Perth", "Pakistan's bowlers dismissed Australia for 180 in Perth on Sunday to win the second Test by 60 runs.", "Dawn"),
    "budget.md": ("IMF approves loan tranche", "The IMF board approved a $1.1 billion tranche for Pakistan on Friday after a review of the economy.", "The News"),
    "metro.md": ("Karachi Red Line delayed again", "The Karachi Red Line bus project will miss its June deadline because of utility relocation, officials said.", "Geo"),
}


@pytest.fixture(scope="module")
def story_answerer(tmp_path_factory, real_embedder):
    from bot.indexing import build_index
    from bot.service import QuestionAnswerer

    root = tmp_path_factory.mktemp("stories")
    corpus = root / "corpus"
    corpus.mkdir()
    write_article(corpus, "dawn-barrage.md", "Sukkur barrage gates reopen after repairs", DAWN_BODY, source="Dawn",
                  date="2024-03-05", url="https://www.dawn.com/news/barrage")
    write_article(corpus, "news-barrage.md", "Water flows through Sukkur barrage again", NEWS_BODY, source="The News",
                  date="2024-03-06", url="https://www.thenews.com.pk/barrage")
    for name, (title, body, source) in OTHER_ARTICLES.items():
        write_article(corpus, name, title, body, source=source, date="2024-03-04")
    settings = make_settings(root, corpus)
    build_index(settings, real_embedder, progress=False)
    return QuestionAnswerer(settings, real_embedder).load()


QUESTION = "When will water reach the Rohri and Nara canals after the Sukkur barrage gate repair?"


def test_the_two_outlets_reports_are_one_story_at_load(story_answerer):
    assert story_answerer.serving.stories.groups == (("dawn-barrage.md", "news-barrage.md"),)


def test_an_answer_quotes_one_report_and_names_the_other(story_answerer):
    answer = story_answerer.ask(QUESTION)
    assert answer.found
    quoted = {p.article.article_id for p in answer.passages}
    assert len(quoted & {"dawn-barrage.md", "news-barrage.md"}) == 1  # the story is quoted once
    [also] = answer.also_reported
    assert also.article_id in {"dawn-barrage.md", "news-barrage.md"} - quoted
    assert [p.rank for p in answer.passages] == list(range(1, len(answer.passages) + 1))
    assert answer.best_passage_rank in {p.rank for p in answer.passages}

    text = answer_to_text(answer)
    assert f"Also reported by {also.source} ({also.url})" in text
    assert json.loads(json.dumps(answer_to_dict(answer)))["also_reported"][0]["url"] == also.url
    [message] = render_answer(answer)
    assert f'Also reported by <a href="{also.url}">{also.source}</a>' in message
    assert parsed_length(message) <= MESSAGE_LIMIT


def test_without_the_groups_the_same_facts_would_be_quoted_twice(story_answerer):
    """What the grouping saves: the same question over the same index, groups removed."""
    serving = story_answerer.serving
    story_answerer._serving = replace(serving, stories=NO_STORIES)
    try:
        answer = story_answerer.ask(QUESTION)
    finally:
        story_answerer._serving = serving
    assert {"dawn-barrage.md", "news-barrage.md"} <= {p.article.article_id for p in answer.passages}
    assert answer.also_reported == ()


def test_also_reported_is_escaped_in_telegram_html():
    shown = Article("a", "Shown", "Water flows again.", source="Dawn")
    named = Article("b", "Named", "Water flows.", source="<b>The & News</b>", url='https://x.org/?a=1&b="2"')
    answer = Answer("q", True, (Passage(1, shown, 0, 18, 1.0, 0, 18),), "Water flows again.", 1, also_reported=(named,))
    [message] = render_answer(answer)
    assert 'Also reported by <a href="https://x.org/?a=1&amp;b=&quot;2&quot;">&lt;b&gt;The &amp; News&lt;/b&gt;</a>' in message


def test_pairs_compared_by_date_window_are_the_pairs_of_every_article_against_every_other(monkeypatch):
    """Blocks of articles are compared only with those dated within the window (and the
    undated): the pairs must be exactly those of the all-pairs comparison."""
    import datetime

    from bot import stories

    rng = np.random.default_rng(3)
    base = rng.normal(size=(6, 16))  # six events, many reports of each, with noise
    articles, rows = [], []
    for n in range(120):
        event = n % 6
        day = None if n % 17 == 0 else (datetime.date(2024, 1, 1) + datetime.timedelta(days=int(rng.integers(0, 40)))).isoformat()
        articles.append(article(f"a{n}", ["Dawn", "The News", "Geo", None][n % 4], day))
        rows.append(base[event] + rng.normal(scale=0.3, size=16))
    vectors = np.array(rows, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    monkeypatch.setattr(stories, "PAIR_BLOCK", 7)
    found = stories.alike_pairs(articles, vectors, PARAMS)
    monkeypatch.setattr(stories, "PAIR_BLOCK", 10_000)  # one block: everything against everything
    everything = stories.alike_pairs(articles, vectors, PARAMS)
    assert len(found[0]) > 20
    assert sorted(zip(*found[:2])) == sorted(zip(*everything[:2]))


def test_a_huge_set_of_alike_articles_is_grouped_greedily_into_pairwise_alike_groups(monkeypatch):
    """Complete linkage needs m x m distances per connected set (28.8 GiB for the 62,149
    articles a synthetic million-chunk archive joined): past LINKAGE_MAX_ARTICLES the groups are
    merged greedily, still every pair inside a group alike, and on clear stories the same."""
    import datetime

    from bot import stories

    rng = np.random.default_rng(5)
    outlets = ["Dawn", "The News", "Geo", "Express", "ARY", "Samaa"]
    centres = rng.normal(size=(8, 24))
    articles, rows = [], []
    for event in range(8):
        day = datetime.date(2024, 2, 1) + datetime.timedelta(days=5 * event)
        for n, outlet in enumerate(outlets):
            articles.append(article(f"e{event}-{n}", outlet, day.isoformat()))
            rows.append(centres[event] + rng.normal(scale=0.15, size=24))
    vectors = np.array(rows, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    by_linkage = group_stories(articles, vectors, PARAMS)
    monkeypatch.setattr(stories, "LINKAGE_MAX_ARTICLES", 1)
    greedy = group_stories(articles, vectors, PARAMS)
    assert len(by_linkage.groups) == 8 and greedy.groups == by_linkage.groups

    # A chain A~B~C where A and C are not alike: never one group, either way.
    chain = unit(0, 30, 60)
    chained = [article("a", "Dawn"), article("b", "Geo"), article("c", "The News")]
    found = group_stories(chained, chain, StoryParams(threshold=0.8, days=3))
    assert all(not {"a", "c"} <= set(g) for g in found.groups) and found.groups


def test_a_large_archive_serves_at_once_and_finds_its_story_groups_in_the_background(tmp_path, monkeypatch):
    import threading

    from bot import service
    from bot.indexing import build_index
    from bot.service import QuestionAnswerer
    from bot.stories import Stories
    from tests.helpers import FakeEmbedder, small_corpus

    settings = make_settings(tmp_path, small_corpus(tmp_path))
    build_index(settings, FakeEmbedder(), progress=False)
    release, found = threading.Event(), Stories({"a0.md": 0, "a1.md": 0}, (("a0.md", "a1.md"),))
    monkeypatch.setattr(service, "STORIES_AT_LOAD_MAX_ARTICLES", 1)
    monkeypatch.setattr(service, "stories_of_index", lambda index: release.wait(30) and found)
    answerer = QuestionAnswerer(settings, FakeEmbedder()).load()  # returns while the groups are being found
    assert answerer.serving.stories == NO_STORIES
    release.set()
    for _ in range(300):
        if answerer.serving.stories is found:
            break
        threading.Event().wait(0.01)
    assert answerer.serving.stories is found
