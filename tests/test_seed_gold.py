"""The seed gold set, through the ordinary QuestionAnswerer with the real model.

Scoring is the same as ``python -m bot eval seed``: an answerable question passes when
one of its evidence strings (whitespace-insensitive) lies inside the retrieved span
(``chunk_start:chunk_end``) of one of the top-3 passages and the answer is found;
an out-of-corpus question passes when the answer is not found.
"""

from __future__ import annotations

import json

import pytest

from bot.dialogue import Conversation
from bot.evaluation import eval_seed, passage_has_evidence
from tests.helpers import GOLD_FILE

GOLD = json.loads(GOLD_FILE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("item", GOLD["answerable"], ids=lambda item: item["question"][:50])
def test_answerable_question_has_evidence_in_top_3(seed_answerer, item):
    answer = seed_answerer.ask(item["question"], 3)
    assert answer.found, f"answered as not found: {item['question']!r}"
    assert any(passage_has_evidence(p, item["evidence"], item.get("article")) for p in answer.passages[:3]), [
        p.article.text[p.chunk_start : p.chunk_end][:120] for p in answer.passages
    ]


@pytest.mark.parametrize("question", GOLD["out_of_corpus"])
def test_out_of_corpus_question_is_not_found(seed_answerer, question):
    assert seed_answerer.ask(question, 3).found is False


def test_eval_seed_report_agrees(seed_answerer, seed_settings):
    report = eval_seed(seed_settings, answerer=seed_answerer)
    assert report["passed"] is True
    assert report["top3_accuracy"] == 1.0
    assert report["out_of_corpus_not_found"] == 1.0
    assert report["answerable"] == len(GOLD["answerable"])


def test_more_sources_never_quotes_what_the_first_page_showed(seed_answerer):
    """Page 2 comes from neighbouring chunks at times; their shared overlap is not quoted again."""
    for item in GOLD["answerable"]:
        first = seed_answerer.ask(item["question"], 3).passages
        second = seed_answerer.ask(item["question"], 3, offset=3).passages
        assert [p.rank for p in second] == [4, 5, 6]
        for later in second:
            for earlier in first:
                same_article = later.article.article_id == earlier.article.article_id
                assert not (same_article and later.start < earlier.end and earlier.start < later.end), item["question"]


def test_a_follow_up_leads_with_what_it_asks_about_now(seed_answerer):
    """Resolved, not glued on: "what about Raza Haroon?" asks the previous question about him."""
    conversation = Conversation()
    seed_answerer.reply(conversation, "What did Dr Nadeem Nusrat say about the MQM-P leadership?")
    answer = seed_answerer.reply(conversation, "what about Raza Haroon?").answer
    assert answer.found and answer.context_note == "Reading this as: “What did Raza Haroon say about the MQM-P leadership?”"
    assert "Haroon" in answer.best_sentence and "Nusrat" not in answer.best_sentence
    conversation.reset()
    seed_answerer.reply(conversation, "When did the PSP merge into the MQM-P?")
    when = seed_answerer.reply(conversation, "why?").answer
    assert when.found and when.context_note == "Reading this as: “Why did the PSP merge into the MQM-P?”"
