"""Message classification and follow-up resolution (``bot.dialogue``): cheap, no model."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from bot import dialogue
from bot.dialogue import COMMAND, FOLLOW_UP, NOISE, QUESTION, SMALL_TALK, Conversation, Conversations, SmallTalk, Turn, classify, resolve
from tests.helpers import REPO

MESSAGES = json.loads((REPO / "tests" / "gold" / "messages.json").read_text(encoding="utf-8"))["messages"]


def test_the_labelled_messages_are_classified_as_labelled():
    """At least 150 labelled messages (tricky ones included); each kind well recognised."""
    assert len(MESSAGES) >= 150
    right, total = Counter(), Counter()
    for message in MESSAGES:
        total[message["kind"]] += 1
        right[message["kind"]] += classify(message["text"], has_context=True).kind == message["kind"]
    overall = sum(right.values()) / sum(total.values())
    assert overall >= 0.93, overall
    for kind in total:
        assert right[kind] / total[kind] >= 0.85, (kind, right[kind], total[kind])


@pytest.mark.parametrize(
    "text, kind",
    [
        ("hi", SMALL_TALK),
        ("thanks!", SMALL_TALK),
        ("ok", SMALL_TALK),
        ("👍", SMALL_TALK),
        ("شکریہ", SMALL_TALK),
        ("thanks, and who is Tessori?", QUESTION),
        ("hi, who leads the Bahadurabad group?", QUESTION),
        ("Did the PPP help the MQM-P?", QUESTION),
        ("help", COMMAND),
        ("more", COMMAND),
        ("start over", COMMAND),
        ("/reset", COMMAND),
        ("???", NOISE),
        ("asdfgh", NOISE),
        ("and what about Farooq Sattar?", FOLLOW_UP),
        ("when was that?", FOLLOW_UP),
        ("which party does he belong to?", FOLLOW_UP),
        ("why?", FOLLOW_UP),
        # said with feeling, addressed to the bot, or about it
        ("bohat shukriya", SMALL_TALK),
        ("bohat acha", SMALL_TALK),
        ("good morning bot", SMALL_TALK),
        ("you're great", SMALL_TALK),
        ("thanks :)", SMALL_TALK),
        ("you are the PSP leader?", QUESTION),
        # commands with filler words
        ("show me more", COMMAND),
        ("list your sources", COMMAND),
        ("start a new topic", COMMAND),
        ("list the MQM-P leaders", QUESTION),
        # single letters and mashed keys
        ("k k k k", NOISE),
        ("asdf jkl", NOISE),
        ("were they there?", FOLLOW_UP),
        # Roman Urdu and Urdu follow-ups, read before translation
        ("kab?", FOLLOW_UP),
        ("کیوں؟", FOLLOW_UP),
        ("aur Farooq Sattar?", FOLLOW_UP),
        ("shukriya, aur Farooq Sattar kaun hai?", QUESTION),
        # a possessive about the question's own subject does not point back
        ("Which groups announced their merger in 2023?", QUESTION),
    ],
)
def test_tricky_messages(text, kind):
    assert classify(text, has_context=True).kind == kind


def test_small_talk_in_front_of_a_question_leaves_the_question():
    classified = classify("thanks, and who is Tessori?", has_context=True)
    assert classified.kind == QUESTION and classified.text == "and who is Tessori?"
    assert classify("thanks!").small_talk is SmallTalk.THANKS
    assert classify("bye").small_talk is SmallTalk.BYE


def test_without_context_a_follow_up_is_an_ordinary_question():
    assert classify("when was that?", has_context=False).kind == QUESTION


def test_commands_name_what_to_do():
    assert classify("show more").command == "more"
    assert classify("/new").command == "reset"
    assert classify("what articles do you have?").command == "sources"
    assert classify("/help@SomeBot").command == "help"


PSP = Turn("When did the PSP merge into the MQM-P?", "Earlier in January, the MQM-P and PSP had announced their merger.")
LEADER = Turn(
    "Who leads the Bahadurabad group?",
    "The Bahadurabad group, led by MQM-P president Dr Khalid Maqbool Siddiqui, includes his strong allies Dr Farooq Sattar.",
)
SEATS = Turn("How many NA seats did PTI win in Karachi in 2018?", "… by winning 14 NA seats.")


def test_what_about_asks_the_previous_question_about_someone_else():
    resolved = resolve("and what about Farooq Sattar?", PSP)
    assert resolved.question == "When did Farooq Sattar merge into the MQM-P?"
    assert resolved.note and resolved.question in resolved.note


def test_what_about_swaps_a_name_of_the_same_shape():
    assert resolve("and the MQM-P?", SEATS).question == "How many NA seats did the MQM-P win in Karachi in 2018?"
    assert resolve("and in 2013?", SEATS).question == "How many NA seats did PTI win in Karachi in 2013?"


def test_a_bare_question_word_asks_the_previous_question_that_way():
    resolved = resolve("why?", PSP)
    assert resolved.question == "Why did the PSP merge into the MQM-P?"
    assert resolve("when was that?", Turn("Why was the January 31 protest called off?", None)).question == (
        "When was the January 31 protest called off?"
    )


def test_he_is_the_person_a_who_answer_named():
    resolved = resolve("which party does he belong to?", LEADER)
    assert "Khalid Maqbool Siddiqui" in resolved.question and " he " not in resolved.question
    asked = Turn("What did Mustafa Kamal say about the PPP?", "Kamal alleged that Hussain and the PPP had a tacit understanding.")
    assert "Mustafa Kamal" in resolve("what position does he hold?", asked).question


def test_he_takes_the_persons_place_but_their_stays_the_partys():
    asked = Turn("Who is Raza Haroon?", "Raza Haroon differs with this assessment.")
    assert resolve("what does he call their worst mistake?", asked).question == "what does Raza Haroon call their worst mistake?"


def test_a_vague_follow_up_borrows_the_previous_question():
    resolved = resolve("tell me more", PSP)
    assert "PSP merge" in resolved.question


def test_context_expires_and_resets():
    conversation = Conversation(max_age=60)
    conversation.remember(PSP)
    assert conversation.context() == PSP
    conversation.updated = time.monotonic() - 61
    assert conversation.context() is None
    conversation.remember(PSP)
    conversation.reset()
    assert conversation.context() is None


def test_conversations_belong_to_their_chat_and_are_bounded():
    conversations = Conversations(max_chats=2)
    conversations.of(1).remember(PSP)
    assert conversations.of(2).context() is None
    conversations.of(3)
    assert conversations.of(1).context() is None  # the least recently used chat was dropped
    assert dialogue.CONTEXT_SECONDS == 30 * 60


def test_two_word_question_phrases_give_way_together():
    assert resolve("why?", Turn("Which party did the MQM-P make a deal with?", None)).question == "Why did the MQM-P make a deal with?"


def test_titles_make_a_person_and_acronyms_an_organisation():
    voice = Turn("What is Voice of Karachi?", "Dr Nusrat, who runs the group Voice of Karachi after leaving the London-based MQM leadership, says so.")
    assert resolve("where is he based?", voice).question == "where is Dr Nusrat based?"


def test_a_translated_word_salad_swaps_only_the_acronym():
    salad = Turn("How many 2018 PTI Karachi NA seats won?", None)
    resolved = resolve("And MQM-P?", salad)
    assert resolved.question == "How many 2018 MQM-P Karachi NA seats won?" and resolved.focus == "MQM-P"


def test_a_name_that_only_says_which_group_is_not_swapped_for_a_person():
    leader = Turn("Who leads the Bahadurabad group?", None)
    resolved = resolve("and Farooq Sattar?", leader)
    assert resolved.question == "Who leads the Bahadurabad group: Farooq Sattar?" and resolved.focus == "Farooq Sattar"
    # ... while a subject of another shape still gives way
    assert resolve("and what about Farooq Sattar?", Turn("When did the PSP merge into the MQM-P?", None)).question == (
        "When did Farooq Sattar merge into the MQM-P?"
    )
