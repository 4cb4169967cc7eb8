"""Roman Urdu and Urdu script read as English questions (``bot.language``), and names as
the corpus spells them (``bot.names``). Cheap: word lists, rapidfuzz and skeletons."""

from __future__ import annotations

import pytest

from bot.language import ENGLISH, OTHER, ROMAN_URDU, URDU, detect_language, not_understood_reply, spelled_out, understand
from bot.names import Vocabulary, consonant_skeleton, expand_names, find_acronyms, spelling_key
from tests.helpers import SEED_CORPUS

VOCABULARY = Vocabulary(p.read_text(encoding="utf-8") for p in SEED_CORPUS.glob("*.txt"))


@pytest.mark.parametrize(
    "text, language",
    [
        ("Who leads the Bahadurabad group?", ENGLISH),
        ("MQM-P ka convener kaun hai?", ROMAN_URDU),
        ("Mustafa Kamal ki rally kahan hui thi?", ROMAN_URDU),
        ("بہادرآباد گروپ کی قیادت کون کرتا ہے؟", URDU),
        ("क्या हाल है", OTHER),
        ("ما هو الحزب", OTHER),
    ],
)
def test_detect_language(text, language):
    assert detect_language(text)[0] == language


def test_roman_urdu_becomes_english_words_question_word_first():
    assert understand("MQM-P ka convener kaun hai?", VOCABULARY).text == "Who MQM-P convener?"
    assert understand("2018 mein PTI ne Karachi mein kitni NA seats jeeti?", VOCABULARY).text == (
        "How many 2018 PTI Karachi NA seats won?"
    )


def test_urdu_script_names_are_found_by_their_consonants():
    assert understand("مصطفیٰ کمال کی ریلی کہاں ہوئی تھی؟", VOCABULARY).text == "Where Mustafa Kamal rally?"
    # two Urdu words for one English name, and a spelled-out acronym with "Pakistan"
    assert "Qaimkhani" in understand("انیس قائم خانی کا عہدہ کیا ہے؟", VOCABULARY).text
    assert understand("ایم کیو ایم پاکستان کا کنوینر کون ہے؟", VOCABULARY).text == "Who is MQM-P convener?"
    assert understand("پی ایس پی کا انضمام کب ہوا؟", VOCABULARY).text == "When PSP merger?"


def test_what_cannot_be_read_is_said_in_its_own_language():
    hindi = understand("क्या हाल है", VOCABULARY)
    assert hindi.text == "" and "समझ" in not_understood_reply(hindi)
    urdu = understand("ژژژ ڑڑڑ", VOCABULARY)
    assert urdu.language == URDU and not urdu.text and "معاف" in not_understood_reply(urdu)


def test_spelling_keys_and_skeletons():
    assert spelling_key("Qaimkhani") == spelling_key("Kaimkhani")
    assert spelling_key("Siddiqui") == spelling_key("Siddiqi")
    assert spelling_key("Anees") == spelling_key("Anis")
    assert consonant_skeleton("Mustafa") == "mstf" and consonant_skeleton("Bahadurabad") == "bdrbd"


@pytest.mark.parametrize(
    "typed, meant",
    [("Kamaml", "Kamal"), ("Satar", "Sattar"), ("Maqbol", "Maqbool"), ("Liaqatabad", "Liaquatabad"), ("Bahadurabaad", "Bahadurabad"),
     ("Kaimkhani", "Qaimkhani"), ("Anis", "Anees"), ("Husain", "Hussain")],
)  # fmt: skip
def test_misspelt_names_find_the_corpus_spelling(typed, meant):
    assert meant in VOCABULARY.variants(typed)


def test_names_are_not_matched_to_other_names_or_common_words():
    assert VOCABULARY.variants("Kamal") == ()  # the typo "Kamaml" is rarer: never searched for
    assert VOCABULARY.variants("Jamal") == ()
    assert VOCABULARY.variants("feet") == ()


def test_expand_names_searches_every_spelling_and_weighs_the_common_one():
    search, weighed = expand_names("where did mustafa kamaml hold his rally", VOCABULARY)
    assert "Kamal" in search and "kamaml" in search
    assert weighed == "where did mustafa Kamal hold his rally"


def test_acronyms_the_articles_define():
    acronyms = find_acronyms(["Justice Baqar became the caretaker chief minister (CM).", "Pakistan Tehreek-i-Insaf (PTI) won."])
    assert acronyms == {"CM": ("chief", "minister"), "PTI": ("Pakistan", "Tehreek", "Insaf")}
    assert VOCABULARY.acronyms["MQM-P"] == ("Muttahida", "Qaumi", "Movement", "Pakistan")


def test_chat_short_forms_are_written_out():
    assert spelled_out("whos the opposition leader") == "who is the opposition leader"
    assert spelled_out("how many ppl got arrested, and why didnt it happen?") == "how many people got arrested, and why didn’t it happen?"
    assert spelled_out("Wat does he say") == "what does he say"
    assert understand("whats the COC?").text == "what is the COC?"


def test_acronyms_typed_in_lower_case_are_written_as_the_corpus_writes_them():
    assert VOCABULARY.names_capitalised("how many seats did pti win in karachi") == "how many seats did PTI win in Karachi"
    assert VOCABULARY.names_capitalised("the ppp and the mqm-p") == "the PPP and the MQM-P"
    assert VOCABULARY.names_capitalised("was it a good idea") == "was it a good idea"  # ordinary words stay
