"""The answer a reader meets (``bot.answering``), with the real model over the seed corpus:
the lead answers the question's type, captions never lead, one good passage is enough, the
articles' age is said plainly, and the conversation gold set holds its measured level."""

from __future__ import annotations

import pytest

from bot.answering import HOW_MANY, WHAT_IS, WHEN, WHERE, WHICH, WHO, WHY, QuestionTerms, coverage_note, question_type, with_years
from bot.dialogue import Conversation
from bot.evaluation import eval_conversation
from tests.helpers import REPO

HELD_OUT = REPO / "tests" / "gold" / "conversation_heldout.json"
from bot.text import is_boilerplate
from bot.types import Answer, Article, Passage


@pytest.mark.parametrize(
    "question, kind",
    [
        ("Who leads the Bahadurabad group?", WHO),
        ("When did the PSP merge into the MQM-P?", WHEN),
        ("In what year did Altaf Hussain speak?", WHEN),
        ("What year did Altaf Hussain speak?", WHEN),
        ("Where did Kamal hold his rally?", WHERE),
        ("Why was the protest called off?", WHY),
        ("What was the reason for the rift?", WHY),
        ("How many seats did PTI win?", HOW_MANY),
        ("How much money was asked for?", HOW_MANY),
        ("how old is Khalid Maqbool Siddiqui", HOW_MANY),
        ("what was the event at the Governor House called", WHICH),
        ("What does MQM-P stand for?", WHAT_IS),
        ("What is the COC?", WHAT_IS),
        ("Which party did the MQM-P make a deal with?", WHICH),
        ("What position does Anis Kaimkhani hold?", WHICH),
    ],
)
def test_question_types(question, kind):
    assert question_type(question) == kind


@pytest.mark.parametrize(
    "sentence",
    [
        "Header image: Despite the challenges, many MQM-P leaders are hopeful | AFP",
        "Published in Dawn, EOS, December 10th, 2023",
        "Conversations with MQM-P leaders confirm the influence of the establishment | Facebook/MQM",
        "The writer is a member of staff",
        "Leave a Comment",
        "KARACHI:",
        "By John Smith",
    ],
)
def test_page_furniture_is_boilerplate(sentence):
    assert is_boilerplate(sentence)


@pytest.mark.parametrize("sentence", ["By the way, he said the rally was a PSP event.", "Karachi: the city votes in February."])
def test_reporting_is_not_boilerplate(sentence):
    assert not is_boilerplate(sentence)


def test_acronyms_the_corpus_defines_count_both_ways():
    terms = QuestionTerms({"chief": 1.0, "minist": 1.0}, synonyms=[("cm", frozenset({"chief", "minist"}))])
    assert terms.coverage(*terms.held(frozenset({"cm", "becom"}))) == 1.0
    back = QuestionTerms({"cm": 1.0}, synonyms=[("cm", frozenset({"chief", "minist"}))])
    assert back.coverage(*back.held(frozenset({"chief", "minist"}))) == 1.0


def test_prefix_and_agent_nouns_count():
    terms = QuestionTerms({"elect": 1.0, "found": 1.0}, universe={"election", "founder"})
    assert terms.coverage(*terms.held(frozenset({"founder"}))) == 0.5  # "who founded": "founder", fully
    assert 0.3 < terms.coverage(*terms.held(frozenset({"election"}))) < 0.5  # "elect" in "election", in part


def _article(date):
    return Article("a.md", "A story", "They hope to win 13 seats in 2024. It will be close.", source="Dawn", date=date)


def test_coverage_note_when_the_question_is_after_the_newest_article():
    article = _article("2023-12-10")
    answer = Answer("q", True, (Passage(1, article, 0, 33, 1.0, 0, 33),), "They hope to win 13 seats in 2024.", 1)
    note = coverage_note("Who won the 2024 election?", answer)
    assert note.startswith("My newest article on this is from 10 Dec 2023")
    # asking what was expected then is answered, not excused
    assert coverage_note("How many seats do they hope to win in 2024?", answer) is None
    # an outcome the lead only anticipates, with no year asked
    assert "can't say how it turned out" in coverage_note("Did they win?", answer)
    assert coverage_note("Who won the 2018 election?", answer) is None


def test_a_caption_is_never_the_lead_and_the_age_of_the_articles_is_said(seed_answerer):
    answer = seed_answerer.ask("Who won the 2024 election in Karachi?")
    assert answer.found and answer.coverage_note.startswith("My newest article on this is from 10 Dec 2023")
    assert not is_boilerplate(answer.best_sentence) and "Header image" not in answer.best_sentence
    assert all("Header image" not in p.text for p in answer.passages)


def test_the_lead_carries_the_evidence_its_type_needs(seed_answerer):
    assert "Farooq Sattar, traveled to Islamabad" in seed_answerer.ask("Why was the January 31 protest called off?").best_sentence
    assert "14 NA seats" in seed_answerer.ask("How many seats did PTI win in Karachi in 2018?").best_sentence
    assert "Muttahida Qaumi Movement-Pakistan (MQM-P)" in seed_answerer.ask("What does MQM-P stand for?").best_sentence
    assert "January" in seed_answerer.ask("When did the PSP merge into the MQM-P?").best_sentence


@pytest.mark.parametrize(
    ("sentence", "written", "shown"),
    [
        ("Earlier in January, the parties merged.", "2023-02-10", "Earlier in January [2023], the parties merged."),
        ("In December, they met.", "2023-02-10", "In December [2022], they met."),  # later month: last year's
        ("Elections are due in February.", "2023-12-10", "Elections are due in February [2024]."),  # what is coming
        ("The protest on January 31 was called off.", "2023-02-10", "The protest on January 31 [2023] was called off."),
        ("On Jan. 15 they met.", "2023-02-10", "On Jan. 15 [2023] they met."),
        ("Last year the party split.", "2023-02-10", "Last year [2022] the party split."),
        ("He spoke on Aug 22, 2016.", "2023-02-10", None),  # the year is there
        ("The rally of March 5th 2023.", "2023-02-10", None),
        ("He left in June 2019.", "2023-02-10", None),
        ("They marched in Marchington; he may go.", "2023-02-10", None),  # not months
        ("Earlier in January, the parties merged.", None, None),  # no date to read the year from
    ],
)
def test_a_month_without_its_year_gets_the_year_from_the_articles_date(sentence, written, shown):
    assert with_years(sentence, written) == shown


def test_a_when_answer_shows_the_year_the_article_leaves_out(seed_answerer):
    from bot.formatting import answer_summary

    answer = seed_answerer.ask("When did the PSP merge into the MQM-P?")
    assert "Earlier in January" in answer.best_sentence and "[2023]" not in answer.best_sentence  # the quote stays the outlet's words
    assert answer_summary(answer).startswith("Earlier in January [2023], the MQM-P and PSP")


def test_who_did_it_is_answered_by_the_name_in_the_doers_place(seed_answerer):
    assert "founder Altaf Hussain" in seed_answerer.ask("Who founded the MQM?").best_sentence
    assert "Maqbool Baqar became the caretaker CM" in seed_answerer.ask("Who became the caretaker chief minister of Sindh?").best_sentence


def test_a_sentence_that_opens_with_he_is_about_the_person_named_before_it(seed_answerer):
    # "MQM founder Altaf Hussain never held ... He was the 'Quaid-i-Tehreek' ... until he made an incendiary speech on Aug 22, 2016."
    assert "incendiary speech on Aug 22, 2016" in seed_answerer.ask("When did Altaf Hussain give the speech?").best_sentence


def test_what_about_a_party_wants_that_party_in_the_past_it_was_asked_about(seed_answerer):
    """"and the MQM-P?" after PTI's 2018 seats: the MQM-P by its own letters (not "a fragmented
    MQM"), a year given for comparison ("compared to 25 in 2013") no mismatch, and what
    happened, not what its leaders hope ("can win 13-14 seats")."""
    conversation = Conversation()
    seed_answerer.reply(conversation, "How many NA seats did PTI win in Karachi in 2018?")
    answer = seed_answerer.reply(conversation, "and the MQM-P?").answer
    assert "shrunk to a mere seven" in answer.best_sentence


def test_who_holds_a_role_is_answered_by_the_name_beside_it(seed_answerer):
    # Two sentences say "leader of the opposition in the Sindh Assembly"; one names who it was.
    answer = seed_answerer.ask("whos the opposition leader in the sindh assembly")
    assert "Rana Ansar as the leader of the opposition" in answer.best_sentence


def test_what_something_is_called_is_answered_by_the_name_in_quotes(seed_answerer):
    answer = seed_answerer.ask("what was the event at governor house called")
    assert "‘Future of Karachi’ program" in answer.best_sentence


def test_an_age_needs_a_number(seed_answerer):
    assert not seed_answerer.ask("how old is khalid maqbool siddiqui").found


def test_a_day_of_the_month_is_not_a_count():
    from bot.answering import sentence_features

    assert not sentence_features("The protest was planned on January 31.").counted
    assert not sentence_features("He spoke on 22 August.").counted
    assert sentence_features("PTI won by winning 14 NA seats.").counted


def test_a_quote_that_cannot_carry_the_answer_is_not_offered(seed_answerer):
    # The articles name the tragedy and Imran Khan, but give no death toll and no word of his.
    assert not seed_answerer.ask("How many people died in the Gul Plaza tragedy?").found
    assert not seed_answerer.ask("What did Imran Khan say about the merger?").found
    # ... while what someone did say is found, by surname and an opinion verb ("Haroon considers ...")
    said = seed_answerer.ask("What does Raza Haroon call the most damaging decision?")
    assert said.found and "most damaging political decision" in said.best_sentence


def test_misspelt_names_are_answered(seed_answerer):
    answer = seed_answerer.ask("where did mustafa kamaml hold his rally")
    assert answer.found
    assert seed_answerer.ask("Who is Farooq Satar allied with?").found


def test_one_good_passage_is_a_complete_answer(seed_answerer):
    """Passages below the relevance floor are not shown to fill slots; the lead's passage is [1]."""
    answer = seed_answerer.ask("Who leads the Bahadurabad group?", 3)
    assert answer.best_passage_rank == 1
    assert len(answer.passages) < 3
    everything = seed_answerer.ask("Who leads the Bahadurabad group?", 3, all_passages=True)
    assert len(everything.passages) == 3


def test_quotes_are_the_answering_sentence_and_a_neighbour(seed_answerer):
    answer = seed_answerer.ask("Who leads the Bahadurabad group?")
    lead_passage = answer.passages[0]
    assert answer.best_sentence in lead_passage.text
    assert len(lead_passage.text) <= 450 and lead_passage.text.count(". ") <= 2
    assert lead_passage.chunk_start <= lead_passage.start < lead_passage.end <= lead_passage.chunk_end


def test_an_urdu_question_not_about_the_articles_says_what_it_does_not_know(seed_answerer):
    reply = seed_answerer.reply(Conversation(), "پنجاب کا وزیر اعلیٰ کون ہے؟")
    assert reply.answer.found is False and reply.answer.unknown_names == ("پنجاب",)


def test_conversation_gold_set_holds_its_measured_level(seed_answerer, seed_settings):
    """``python -m bot eval conversation`` through the same service call: the levels measured
    when this was written (README, "Asking"), so a change that loses them fails here."""
    report = eval_conversation(seed_settings, answerer=seed_answerer, cost_rounds=0)
    assert report["turns"] >= 120 and report["dialogues"] >= 40
    assert report["small_talk_right"] == 1.0 and report["command_right"] == 1.0
    assert report["lead_right"] >= 0.80  # measured 82.5%
    assert report["by_language"]["ur"]["right"] >= 0.75
    assert report["by_language"]["roman_ur"]["right"] >= report["by_language"]["en"]["right"] - 0.05
    assert report["not_found_right"] >= 0.9  # measured 100%
    assert report["classifier_accuracy"] >= 0.97  # measured 100% of 212
    assert report["reply_chars"]["median"] < 1200
    # The held-out dialogues, written apart from the tuning: 57.1% at the start, 69.0% now.
    held_out = eval_conversation(seed_settings, answerer=seed_answerer, gold_file=HELD_OUT, cost_rounds=0)
    assert held_out["lead_right"] >= 0.65 and held_out["not_found_right"] >= 0.75


@pytest.mark.parametrize("question", ["tell me about the merger", "Who leads the Bahadurabad group?", "What does MQM-P stand for?"])
def test_more_never_quotes_again_what_the_answer_quoted(seed_answerer, question):
    """Even when the lead came from outside the retrieved passages, "more" quotes new sentences."""
    conversation = Conversation()
    first = seed_answerer.reply(conversation, question).answer
    more = seed_answerer.reply(conversation, "more").answer
    again = seed_answerer.reply(conversation, "more").answer
    assert first.found and more.passages and again.passages
    seen = [(p.article.article_id, p.start, p.end) for p in first.passages]
    for page in (more, again):
        for p in page.passages:
            assert not any(a == p.article.article_id and p.start < e and s < p.end for a, s, e in seen), p.text[:80]
        seen += [(p.article.article_id, p.start, p.end) for p in page.passages]
    assert [p.rank for p in more.passages] == list(range(len(first.passages) + 1, len(first.passages) + 1 + len(more.passages)))
