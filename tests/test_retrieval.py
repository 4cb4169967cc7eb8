"""Retrieval mechanics and the evaluation harness: metrics by hand, query parsing,
fusion, boosts, dedupe, merging, diversity, and a smoke run of ``eval multihop``."""

from __future__ import annotations

import json
from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest

from bot.evaluation import (
    eval_multihop,
    evidence_flags,
    fact_first_ranks,
    fact_recall_at,
    format_multihop,
    hits_at,
    latency_summary,
    load_questions,
    map_at,
    mrr_at,
    run_eval,
    score_question,
    squash,
)
from bot.indexing import build_index
from bot.query import SourceMatcher, find_dates, parse_query, source_aliases, split_parts
from bot.retrieval import DateFilterError, Filters, RetrievalParams, Retriever, parse_date_bound
from bot.store import load_index
from bot.types import Hit
from tests.helpers import FakeEmbedder, make_settings, write_article

# ------------------------------------------------------------------------------ metrics


def test_squash_ignores_all_whitespace():
    assert squash(" a b\n\tc ") == "abc"


def test_metrics_by_hand_two_facts():
    passages = ["nothing here", "the cat sat  on\nthe mat", "x", "dogs bark loudly", "the cat sat on the mat again"]
    facts = ["cat sat on the mat", "dogs bark"]
    flags = evidence_flags(passages, facts)
    assert flags == [False, True, False, True, True]
    ranks = fact_first_ranks(passages, facts)
    assert ranks == [2, 4]
    assert hits_at(flags, 1) == 0.0
    assert hits_at(flags, 2) == 1.0
    assert mrr_at(flags) == pytest.approx(0.5)
    # MAP@10 as the authors define it: (1/2 + 1/4) / min(2, 10)
    assert map_at(ranks, 2) == pytest.approx(0.375)
    assert fact_recall_at(ranks) == 1.0


def test_metrics_partial_and_missing():
    ranks = [3, None, None]
    assert map_at(ranks, 3) == pytest.approx((1 / 3) / 3)
    assert fact_recall_at(ranks) == pytest.approx(1 / 3)
    assert mrr_at([False] * 10) == 0.0
    assert hits_at([False, False, False, False, True], 4) == 0.0
    assert hits_at([False, False, False, False, True], 10) == 1.0


def test_two_facts_first_seen_in_one_passage_count_at_that_rank():
    ranks = fact_first_ranks(["a", "alpha and beta"], ["alpha", "beta"])
    assert ranks == [2, 2]
    assert map_at(ranks, 2) == pytest.approx((2 / 2) / 2)


def test_only_top_ten_count():
    passages = ["x"] * 10 + ["the fact"]
    scores = score_question(passages, ["the fact"])
    assert scores == {"hits@4": 0.0, "hits@10": 0.0, "map@10": 0.0, "mrr@10": 0.0, "fact_recall@10": 0.0}


def test_latency_summary():
    summary = latency_summary([0.010, 0.020, 0.030])
    assert summary["mean_ms"] == pytest.approx(20.0)
    assert summary["median_ms"] == pytest.approx(20.0)


# ------------------------------------------------------------------------------ query understanding

SOURCES = [
    "TechCrunch",
    "The Verge",
    "The Roar | Sports Writers Blog",
    "The Independent - Life and Style",
    "The Independent - Sports",
    "Fortune",
    "CBSSports.com",
    "Cnbc | World Business News Leader",
    "The Age",
]


def test_source_aliases():
    assert "the roar" in source_aliases("The Roar | Sports Writers Blog")
    assert "cnbc" in source_aliases("Cnbc | World Business News Leader")
    assert "cbssports" in source_aliases("CBSSports.com")


def test_outlets_found_by_full_name_and_head():
    hints = parse_query("Does 'The Roar | Sports Writers Blog' say X, while TechCrunch says Y?", SOURCES)
    assert hints.sources == ("The Roar | Sports Writers Blog", "TechCrunch")
    hints = parse_query("What did CNBC report about Fortune's list?", SOURCES)
    assert "Cnbc | World Business News Leader" in hints.sources and "Fortune" in hints.sources


def test_ambiguous_head_names_every_matching_outlet():
    hints = parse_query("According to The Independent, who won?", SOURCES)
    assert set(hints.sources) == {"The Independent - Life and Style", "The Independent - Sports"}


def test_lowercase_common_words_are_not_outlets():
    hints = parse_query("Did the company make a fortune, and at what age did its rivals verge on collapse?", SOURCES)
    assert hints.sources == ()


def test_dates_in_several_forms():
    text = "After the report on October 7, 2023 and 12 November 2023, and on 2023-12-15"
    assert [iso for _, _, iso in find_dates(text)] == ["2023-10-07", "2023-11-12", "2023-12-15"]
    assert [iso for _, _, iso in find_dates("published on Oct. 5th", default_year=2023)] == ["2023-10-05"]
    assert find_dates("published on Oct. 5th") == []


def test_months_and_publication_constraints():
    hints = parse_query("What did TechCrunch publish in November 2023 about OpenAI?", SOURCES)
    assert hints.months == ("2023-11",)
    assert hints.sources == ("TechCrunch",)
    hints = parse_query("What was published after December 10, 2023 about the rift?", SOURCES)
    assert hints.since == "2023-12-10" and hints.until is None
    hints = parse_query("Which stories were published before 1 October 2023?", SOURCES)
    assert hints.until == "2023-10-01"


def test_compound_question_splits_into_parts():
    parts = split_parts("Does the TechCrunch article say that the CEO resigned, while The Verge article claims he was fired?")
    assert len(parts) == 2
    assert parts[0].startswith("Does the TechCrunch") and "The Verge" in parts[1]
    assert split_parts("Who leads the Bahadurabad group?") == []
    hints = parse_query("Does the TechCrunch article say X happened today, while The Verge article claims Y?", SOURCES)
    assert hints.part_sources == (("TechCrunch",), ("The Verge",))


def test_matcher_longest_match_wins():
    matcher = SourceMatcher(SOURCES)
    (mention,) = matcher.find("as The Independent - Sports reported")
    assert mention[2] == ("The Independent - Sports",)


# ------------------------------------------------------------------------------ fusion mechanics


def _corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_article(
        corpus,
        "a.md",
        "Harbour bridge opens",
        "The harbour bridge opened on Monday after years of work.\n\nTraffic across the harbour bridge was light.",
        source="Coast Times",
        date="2023-10-05",
    )
    write_article(
        corpus,
        "b.md",
        "Harbour bridge tolls",
        "Tolls on the harbour bridge will rise in November.\n\nDrivers complained about the harbour bridge tolls.",
        source="City Daily",
        date="2023-11-20",
    )
    write_article(
        corpus,
        "c.md",
        "Orchard harvest",
        "Apple growers reported a record harvest this autumn.\n\nPear prices fell as the orchard harvest grew.",
        source="Farm Weekly",
        date="2023-09-01",
    )
    return corpus


@pytest.fixture
def fake_retriever(tmp_path):
    # Headers off: the outlet and date are then known only from metadata, as boosts see them.
    settings = make_settings(
        tmp_path, _corpus(tmp_path), CHUNK_TOKENS="16", CHUNK_OVERLAP_TOKENS="0", EMBED_HEADER="false", LEXICAL_HEADER="false"
    )
    embedder = FakeEmbedder()
    build_index(settings, embedder, progress=False)
    index = load_index(settings.index_dir)
    return index, embedder


def _titles(index, hits):
    return [index.articles[h.article_id].title for h in hits]


def test_lexical_only_finds_the_word(fake_retriever):
    index, embedder = fake_retriever
    retriever = Retriever(index, embedder, RetrievalParams(dense_weight=0.0, lexical_weight=1.0))
    hits = retriever.search("pear prices", 1)
    assert _titles(index, hits) == ["Orchard harvest"]
    assert hits[0].lexical > 0 and hits[0].dense is not None


def test_filters_restrict_rows(fake_retriever):
    index, embedder = fake_retriever
    retriever = Retriever(index, embedder)
    hits = retriever.search("harbour bridge", 5, Filters(sources=("city daily",)))
    assert hits and set(_titles(index, hits)) == {"Harbour bridge tolls"}
    hits = retriever.search("harbour bridge", 5, Filters(since="2023-11-01"))
    assert set(_titles(index, hits)) == {"Harbour bridge tolls"}
    assert retriever.search("harbour bridge", 5, Filters(until="2023-01-01")) == []


def test_partial_and_written_dates_filter_whole_periods(fake_retriever):
    """--until 2023-11 keeps all of November (the 20th included); written dates are read, not compared as text."""
    index, embedder = fake_retriever
    retriever = Retriever(index, embedder)
    everything = {"Harbour bridge opens", "Harbour bridge tolls", "Orchard harvest"}
    assert set(_titles(index, retriever.search("harbour bridge", 5, Filters(since="2023-11", until="2023-11")))) == {"Harbour bridge tolls"}
    assert set(_titles(index, retriever.search("harbour bridge", 5, Filters(until="2023-11")))) == everything
    assert set(_titles(index, retriever.search("harbour bridge", 5, Filters(since="Nov 1 2023")))) == {"Harbour bridge tolls"}
    assert set(_titles(index, retriever.search("harbour bridge", 5, Filters(since="2023", until="2023")))) == everything
    assert retriever.search("harbour bridge", 5, Filters(since="Dec 2023")) == []
    assert retriever.search("pear prices", 5, Filters(until="August 2023")) == []
    assert _titles(index, retriever.search("pear prices", 1, Filters(until="September 2023"))) == ["Orchard harvest"]


@pytest.mark.parametrize(
    "text, start, end",
    [
        ("2023", "2023-01-01", "2023-12-31"),
        ("2023-12", "2023-12-01", "2023-12-31"),
        ("2024-02", "2024-02-01", "2024-02-29"),
        ("2023-2", "2023-02-01", "2023-02-28"),
        ("2023-12-05", "2023-12-05", "2023-12-05"),
        ("Dec 1 2023", "2023-12-01", "2023-12-01"),
        ("1 December 2023", "2023-12-01", "2023-12-01"),
        ("December 1, 2023", "2023-12-01", "2023-12-01"),
        ("Dec 2023", "2023-12-01", "2023-12-31"),
        ("  2023/12/01 ", "2023-12-01", "2023-12-01"),
    ],
)
def test_date_bounds_start_and_end_a_period(text, start, end):
    assert parse_date_bound(text, end=False) == start
    assert parse_date_bound(text, end=True) == end


@pytest.mark.parametrize("text", ["", "sometime", "Dec 1", "10", "2023-13", "2023-02-30", "Dec 32 2023", "12/2023x"])
def test_unreadable_dates_are_refused_in_one_line(text):
    with pytest.raises(DateFilterError) as caught:
        parse_date_bound(text, end=True, name="--until")
    message = str(caught.value)
    assert message.startswith("--until: ") and "\n" not in message and "YYYY-MM-DD" in message
    with pytest.raises(DateFilterError):
        Filters(until=text or " ")


def test_filters_keep_iso_days_and_refuse_an_empty_range():
    filters = Filters(since="Dec 2023", until="2023-12")
    assert (filters.since, filters.until) == ("2023-12-01", "2023-12-31")
    assert filters.to_dict() == {"since": "2023-12-01", "until": "2023-12-31"}
    assert Filters().since is None and not Filters()
    with pytest.raises(DateFilterError, match="after"):
        Filters(since="2024", until="2023-12-31")


def test_named_outlet_boost_lifts_its_article(fake_retriever):
    index, embedder = fake_retriever
    plain = Retriever(index, embedder, RetrievalParams(source_boost=0.0, part_weight=0.0))
    boosted = Retriever(index, embedder, RetrievalParams(source_boost=0.5, part_weight=0.0))
    question = "What did City Daily say about traffic on the harbour bridge on Monday?"
    assert _titles(index, plain.search(question, 1)) == ["Harbour bridge opens"]
    assert _titles(index, boosted.search(question, 1)) == ["Harbour bridge tolls"]


def test_date_boost_lifts_the_dated_article(fake_retriever):
    index, embedder = fake_retriever
    boosted = Retriever(index, embedder, RetrievalParams(date_boost=0.5, source_boost=0.0, part_weight=0.0))
    hits = boosted.search("harbour bridge traffic on Monday, reported on November 20, 2023", 1)
    assert _titles(index, hits) == ["Harbour bridge tolls"]


def test_parts_make_room_for_each_half(fake_retriever):
    index, embedder = fake_retriever
    question = "Did the harbour bridge open with light traffic across the harbour bridge, while apple growers reported a record harvest?"
    params = RetrievalParams(part_weight=0.5, same_article_penalty=0.0, source_boost=0.0)
    hits = Retriever(index, embedder, params).search(question, 2)
    assert set(_titles(index, hits)) == {"Harbour bridge opens", "Orchard harvest"}


def test_same_article_penalty_diversifies(fake_retriever):
    index, embedder = fake_retriever
    question = "harbour bridge"
    none = Retriever(index, embedder, RetrievalParams(same_article_penalty=0.0, part_weight=0.0))
    strong = Retriever(index, embedder, RetrievalParams(same_article_penalty=1.0, part_weight=0.0))
    first_two = [h.article_id for h in strong.search(question, 2)]
    assert len(set(first_two)) == 2
    assert len(none.search(question, 4)) >= 2


def test_duplicates_collapse_and_neighbours_merge(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    body = (
        "Interest rates rose again this week across the whole country.\n\n"
        "The central bank said inflation remains high for the coming months."
    )
    write_article(corpus, "one.md", "Rates rise", body, source="Wire A", date="2023-10-01")
    write_article(corpus, "two.md", "Rates rise", body, source="Wire B", date="2023-10-01")  # syndicated copy
    settings = make_settings(
        tmp_path, corpus, CHUNK_TOKENS="16", CHUNK_OVERLAP_TOKENS="0", EMBED_HEADER="false", LEXICAL_HEADER="false"
    )
    embedder = FakeEmbedder()
    build_index(settings, embedder, progress=False)
    index = load_index(settings.index_dir)
    assert len(index.chunks) == 4
    retriever = Retriever(index, embedder, RetrievalParams(max_passage_tokens=256, part_weight=0.0))
    hits = retriever.search("rates central bank inflation", 4)
    # the copy's chunks are duplicates; the original's two chunks are neighbours: one passage
    assert len(hits) == 1
    assert len(hits[0].chunk_rows) == 2
    text = index.articles[hits[0].article_id].text
    assert text[hits[0].start : hits[0].end] == text
    capped = Retriever(index, embedder, RetrievalParams(max_passage_tokens=8, part_weight=0.0))
    assert all(len(h.chunk_rows) == 1 for h in capped.search("rates central bank inflation", 4))


# ------------------------------------------------------------------------------ passage fitting

_LONG_ARTICLE = [
    "The council met on Tuesday evening in the town hall.",
    "Members discussed the weather and the new library hours.",
    "Parking near the market was also raised by residents.",
    "A ferry timetable change was announced for the summer season.",
    "The ferry operator said tickets would cost two euros more.",
    "Cyclists asked for a new lane along the river path.",
    "The meeting closed after a vote on the park benches.",
]


def _long_article_index(tmp_path, embedder=None):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    write_article(corpus, "council.md", "Council notes", " ".join(_LONG_ARTICLE), source="Town Post", date="2024-05-02")
    write_article(corpus, "other.md", "Garden show", "Roses won the garden show prize again this year.", source="Town Post")
    settings = make_settings(
        tmp_path, corpus, CHUNK_TOKENS="16", CHUNK_OVERLAP_TOKENS="0", EMBED_HEADER="false", LEXICAL_HEADER="false"
    )
    embedder = embedder or FakeEmbedder()
    build_index(settings, embedder, progress=False)
    return load_index(settings.index_dir), embedder


def _sentences_of(text: str) -> list[str]:
    return [s for s in _LONG_ARTICLE if s in text]


def test_passage_grows_to_whole_sentences_toward_the_relevant_side(tmp_path):
    index, embedder = _long_article_index(tmp_path)
    council = [c for c in index.chunks if index.articles[c.article_id].title == "Council notes"]
    assert len(council) == len(_LONG_ARTICLE)  # one sentence a chunk
    retriever = Retriever(index, embedder, RetrievalParams(max_passage_tokens=22, part_weight=0.0))
    (hit, *_) = retriever.search("ferry timetable change for the summer, and ticket cost", 1)
    text = index.articles[hit.article_id].text[hit.start : hit.end]
    # two sentences fit: the timetable sentence and the ticket one after it, not the parking one
    assert _sentences_of(text) == _LONG_ARTICLE[3:5]
    assert embedder.count_tokens([text])[0] <= 22


def test_passage_moves_to_the_sentence_that_answers(tmp_path):
    index, embedder = _long_article_index(tmp_path)
    retriever = Retriever(index, embedder, RetrievalParams(max_passage_tokens=12, part_weight=0.0))
    article_id = next(a for a, art in index.articles.items() if art.title == "Council notes")
    first_chunk = next(c for c in index.chunks if c.article_id == article_id and c.ordinal == 0)
    found_by_first_chunk = Hit(article_id, first_chunk.start, first_chunk.end, 1.0, chunk_rows=(0,))
    question = "When does the river lane for cyclists open?"
    (placed,) = retriever._fit_passages([found_by_first_chunk], retriever._term_weights(question), 1)
    text = index.articles[article_id].text[placed.start : placed.end]
    assert _sentences_of(text) == [_LONG_ARTICLE[5]]
    unfitted = Retriever(index, embedder, RetrievalParams(max_passage_tokens=12, fit_passages=False))
    (hit,) = unfitted.search("council met on Tuesday", 1)
    assert (hit.start, hit.end) == (first_chunk.start, first_chunk.end)


def test_passages_of_one_article_tile_it_without_repeats(tmp_path):
    index, embedder = _long_article_index(tmp_path)
    retriever = Retriever(index, embedder, RetrievalParams(max_passage_tokens=22, part_weight=0.0, same_article_penalty=0.0))
    hits = retriever.search("council ferry tickets parking library cyclists meeting vote", 10)
    council = [h for h in hits if index.articles[h.article_id].title == "Council notes"]
    assert len(council) >= 3
    shown = [s for h in council for s in _sentences_of(index.articles[h.article_id].text[h.start : h.end])]
    assert len(shown) == len(set(shown))  # no sentence twice
    assert set(shown) == set(_LONG_ARTICLE)  # and together they cover the article


def test_chunk_scores_break_ties_between_sentences_with_the_same_words(tmp_path):
    index, embedder = _long_article_index(tmp_path)
    retriever = Retriever(index, embedder, RetrievalParams(max_passage_tokens=12, part_weight=0.0))
    article_id = next(a for a, art in index.articles.items() if art.title == "Council notes")
    rows = {c.ordinal: row for row, c in enumerate(index.chunks) if c.article_id == article_id}
    first = index.chunks[rows[0]]
    found_by_first_chunk = Hit(article_id, first.start, first.end, 1.0, chunk_rows=(rows[0],))
    question = "What about the ferry?"  # sentences 3 and 4 both say "ferry", once
    weights = retriever._term_weights(question)
    (by_words,) = retriever._fit_passages([found_by_first_chunk], weights, 1)
    assert _sentences_of(index.articles[article_id].text[by_words.start : by_words.end]) == [_LONG_ARTICLE[3]]
    ranked = np.zeros(len(index.chunks))
    ranked[rows[4]] = 1.0  # the ranking prefers the chunk of the operator's sentence
    (with_prior,) = retriever._fit_passages([found_by_first_chunk], weights, 1, ranked.__getitem__)  # row scores by rows
    assert _sentences_of(index.articles[article_id].text[with_prior.start : with_prior.end]) == [_LONG_ARTICLE[4]]


def test_an_article_gives_way_after_its_passage_limit(tmp_path):
    index, embedder = _long_article_index(tmp_path)
    question = "council ferry tickets parking library cyclists meeting vote"
    params = {"max_passage_tokens": 12, "part_weight": 0.0, "same_article_penalty": 0.0}
    unlimited = Retriever(index, embedder, RetrievalParams(passages_per_article=10, **params))
    limited = Retriever(index, embedder, RetrievalParams(passages_per_article=2, **params))
    assert set(_titles(index, unlimited.search(question, 3))) == {"Council notes"}
    assert sorted(_titles(index, limited.search(question, 3))) == ["Council notes", "Council notes", "Garden show"]
    # a limit, not a ban: once nothing else is left the article goes on
    assert _titles(index, limited.search(question, 6)).count("Council notes") == 5


def test_later_pages_keep_what_earlier_pages_showed(tmp_path):
    index, embedder = _long_article_index(tmp_path)
    retriever = Retriever(index, embedder, RetrievalParams(max_passage_tokens=12, same_article_penalty=0.0))
    for question in ["council ferry tickets parking library cyclists meeting vote", "ferry tickets and the river lane", "roses and parking"]:
        first_page = retriever.search(question, 3, page=3)
        both_pages = retriever.search(question, 6, page=3)
        assert both_pages[:3] == first_page
        weights = retriever._term_weights(question)
        scores = retriever._score(question, None, None).best_by_row
        for page in (both_pages[:3], both_pages[3:]):
            evidence = [retriever._passage_evidence(h, weights, scores) for h in page]
            assert evidence == sorted(evidence, reverse=True)  # best evidence first within a page


class _JoinsCostMore(FakeEmbedder):
    """Counts a long text dearer than its sentences: the sum of sentence costs undercounts."""

    def count_tokens(self, texts):
        return [len(t.split()) + (6 if len(t.split()) > 14 else 0) for t in texts]


def test_fitted_passages_keep_to_the_cap_even_when_estimates_undercount(tmp_path):
    index, embedder = _long_article_index(tmp_path, _JoinsCostMore())
    retriever = Retriever(index, embedder, RetrievalParams(max_passage_tokens=24, part_weight=0.0, same_article_penalty=0.0))
    hits = retriever.search("council ferry tickets parking library cyclists meeting vote", 10)
    texts = [index.articles[h.article_id].text[h.start : h.end] for h in hits]
    assert texts and all(count <= 24 for count in embedder.count_tokens(texts))
    assert any(len(_sentences_of(t)) == 1 for t in texts)  # shrunk from two sentences (20 + 6 > 24)


# ------------------------------------------------------------------------------ harness smoke test


def _benchmark(folder: Path) -> Path:
    folder.mkdir()
    corpus = [
        {
            "title": "Bridge opens",
            "body": "The harbour bridge opened on Monday.\n\nTraffic was light on the new bridge.",
            "source": "Coast Times",
            "published_at": "2023-10-05 08:00:00.000000000Z",
            "url": "https://example.com/a",
        },
        {
            "title": "Harvest record",
            "body": "Apple growers reported a record harvest.\n\nPear prices fell sharply.",
            "source": "Farm Weekly",
            "published_at": "2023-09-01 08:00:00.000000000Z",
            "url": "https://example.com/b",
        },
    ]
    queries = [
        {
            "query": "Did the Coast Times say the harbour bridge opened, while Farm Weekly reported a record apple harvest?",
            "answer": "Yes",
            "question_type": "comparison_query",
            "evidence_list": [
                {"fact": "The harbour bridge  opened on Monday.", "url": "https://example.com/a"},
                {"fact": "Apple growers reported a record harvest.", "url": "https://example.com/b"},
            ],
        },
        {"query": "Who won the chess final?", "answer": "Insufficient information.", "question_type": "null_query", "evidence_list": []},
        {
            "query": "What fell sharply according to Farm Weekly?",
            "answer": "Pear prices",
            "question_type": "inference_query",
            "evidence_list": [{"fact": "Pear prices fell sharply.", "url": "https://example.com/b"}],
        },
    ]
    (folder / "corpus_train.json").write_text(json.dumps(corpus))
    (folder / "queries_train.json").write_text(json.dumps(queries))
    (folder / "queries_dev.json").write_text(json.dumps([{**queries[2], "qid": 2}]))
    return folder


def test_split_selection(tmp_path):
    folder = _benchmark(tmp_path / "mh")
    dev, nulls = load_questions(folder, "dev")
    test, _ = load_questions(folder, "test")
    assert [q["qid"] for q in dev] == [2] and [q["qid"] for q in test] == [0] and [q["qid"] for q in nulls] == [1]
    assert len(load_questions(folder, "all")[0]) == 2


def test_multihop_harness_end_to_end(tmp_path, capsys):
    folder = _benchmark(tmp_path / "mh")
    settings = make_settings(tmp_path, tmp_path / "unused")
    embedder = FakeEmbedder()
    report = eval_multihop(settings, folder, "all", bench_root=tmp_path / "bench", embedder=embedder)
    # a local cache, not a link: the corpus reader follows no link out of its folder
    cached = tmp_path / "bench" / "corpus" / "corpus_train.json"
    assert not cached.is_symlink() and cached.read_bytes() == (folder / "corpus_train.json").read_bytes()
    assert report["questions"] == 2
    assert report["metrics"]["hits@10"] == 1.0
    assert report["metrics"]["fact_recall@10"] == 1.0
    assert set(report["per_type"]) == {"comparison_query", "inference_query"}
    assert report["not_found"]["null_questions"] == 1
    assert report["passages"]["over_cap"] == 0
    assert report["latency"]["fused"]["mean_ms"] > 0
    text = format_multihop(report)
    assert "Hits@10".lower() in text.lower() and "0.7467" in text
    assert f"top {settings.top_k}):" in text  # the null questions were answered at the bot's top_k
    # second run: the index is cached, nothing is built
    again = eval_multihop(settings, folder, "dev", bench_root=tmp_path / "bench", embedder=embedder, latency=False)
    assert again["index"]["built_now"] is None
    assert again["questions"] == 1


def test_run_eval_reports_missing_benchmark(tmp_path):
    from bot.errors import BotError

    args = Namespace(suite="multihop", split="dev", json=False, benchmark_dir=tmp_path / "nowhere", limit=None, index=None, corpus=None)
    with pytest.raises(BotError, match="not found"):
        run_eval(args, make_settings(tmp_path))


def test_candidates_are_each_sides_best_and_the_rows_the_question_names(fake_retriever):
    """Fusion runs over candidates, not every row: each side's best rows, plus the rows of the
    outlets and dates the question names (a boost must be able to lift them)."""
    index, embedder = fake_retriever
    retriever = Retriever(index, embedder, RetrievalParams(candidate_pool=1))
    farm_rows = {row for row, c in enumerate(index.chunks) if index.articles[c.article_id].source == "Farm Weekly"}
    dated_rows = {row for row, c in enumerate(index.chunks) if index.articles[c.article_id].date == "2023-11-20"}
    scored = retriever.score("What did Farm Weekly say about the harbour bridge?")
    assert farm_rows <= set(scored) and len(scored) < len(index.chunks)
    assert dated_rows <= set(retriever.score("What happened on 20 November 2023?"))
    everything = Retriever(index, embedder, RetrievalParams(candidate_pool=10_000))
    question = "harbour bridge tolls in November"
    assert retriever.score(question).keys() <= everything.score(question).keys()
    for row, (fused, dense, lexical) in retriever.score(question).items():  # the same scores, wherever fused
        assert everything.score(question)[row] == pytest.approx((fused, dense, lexical), abs=1e-6)
