"""Sentence and paragraph spans: exact offsets, sensible splits, nothing lost."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.text import grow_window, paragraph_spans, sentence_spans

BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


def sentences(text: str, start: int = 0, end: int | None = None) -> list[str]:
    return [text[s:e] for s, e in sentence_spans(text, start, end)]


# ----------------------------------------------------------------------------- examples


def test_splits_plain_sentences_after_terminal_punctuation():
    assert sentences("It rained. Then it stopped! Did it? Yes.") == [
        "It rained.",
        "Then it stopped!",
        "Did it?",
        "Yes.",
    ]


def test_does_not_split_after_abbreviations_or_initials():
    text = "Mr. Khan met Dr. Siddiqui and J. K. Rowling in the U.S. on Dec. 5. It cost Rs. 5 million, i.e. a lot."
    assert sentences(text) == [
        "Mr. Khan met Dr. Siddiqui and J. K. Rowling in the U.S. on Dec. 5.",
        "It cost Rs. 5 million, i.e. a lot.",
    ]


def test_keeps_closing_quotes_with_their_sentence():
    text = "He said, “We will win.” Then he left. ‘Why?’ she asked (quietly.) Nobody knew."
    assert sentences(text) == [
        "He said, “We will win.”",
        "Then he left.",
        "‘Why?’ she asked (quietly.)",
        "Nobody knew.",
    ]


def test_does_not_split_when_next_word_is_lowercase_or_inside_numbers():
    text = "The rate rose to 3.5 percent. then it fell? no, it held. Done."
    assert sentences(text) == ["The rate rose to 3.5 percent. then it fell? no, it held.", "Done."]


def test_splits_before_digits_and_opening_quotes():
    assert sentences("It ended. 2024 will differ. “Maybe,” he said.") == [
        "It ended.",
        "2024 will differ.",
        "“Maybe,” he said.",
    ]


def test_heading_line_without_punctuation_is_its_own_sentence():
    text = "‘The real question should be about the future of urban Sindh’\n— MQM-P convener Dr Khalid Maqbool Siddiqui\nWhat next? More."
    assert sentences(text) == [
        "‘The real question should be about the future of urban Sindh’",
        "— MQM-P convener Dr Khalid Maqbool Siddiqui",
        "What next?",
        "More.",
    ]


def test_wrapped_line_continuing_in_lowercase_is_not_split():
    text = "The minister said that the\nproject would be finished,\nThen again maybe not."
    assert sentences(text) == ["The minister said that the\nproject would be finished,\nThen again maybe not."]


def test_sentences_never_cross_a_paragraph_break():
    text = "First paragraph has no full stop\n\nSecond one does. Yes.\n \t\nThird"
    assert sentences(text) == ["First paragraph has no full stop", "Second one does.", "Yes.", "Third"]


def test_offsets_are_absolute_within_a_range():
    text = "Ignore me. Keep this one. And this. Ignore me too."
    start = text.index("Keep")
    end = text.index("Ignore me too")
    spans = sentence_spans(text, start, end)
    assert [text[s:e] for s, e in spans] == ["Keep this one.", "And this."]
    assert spans[0][0] == start


def test_range_cutting_a_word_still_gives_trimmed_spans():
    text = "Alpha beta. Gamma delta."
    assert sentences(text, 3, 16) == ["ha beta.", "Gamm"]


def test_empty_and_whitespace_text():
    assert sentence_spans("") == []
    assert sentence_spans(" \n\n \t") == []
    assert paragraph_spans("\n \n") == []


def test_paragraph_spans_are_trimmed_and_split_on_blank_lines():
    text = "  One line.\nSame paragraph.  \n\n\n  Two.\r\n\r\nThree  "
    assert [text[s:e] for s, e in paragraph_spans(text)] == ["One line.\nSame paragraph.", "Two.", "Three"]


def test_fast_on_megabytes_of_text():
    paragraph = "Mr. Khan said the plan, costing Rs. 3.5 million, was ready. “It works,” he said! Really? Yes.\n\n"
    text = paragraph * 20_000  # about 2 MB
    began = time.perf_counter()
    spans = sentence_spans(text)
    elapsed = time.perf_counter() - began
    assert len(spans) == 4 * 20_000
    assert elapsed < 10  # about 0.2 s on a laptop; generous for slow CI machines


# --------------------------------------------------------------------------- properties

ALPHABET = st.sampled_from(list("abcXYZ019 .!?,;:'\"“”‘’()[]-—…\n\t\u00a0") + ["Mr.", "U.S.", "J. ", "\n\n", " \n"])
TEXTS = st.lists(ALPHABET, max_size=120).map("".join)


def assert_well_formed(text: str, spans: list[tuple[int, int]], start: int, end: int) -> None:
    previous_end = start
    for span_start, span_end in spans:
        assert previous_end <= span_start < span_end <= end
        piece = text[span_start:span_end]
        assert piece == piece.strip() and piece
        assert not BLANK_LINE.search(piece)
        previous_end = span_end
    covered = set()
    for span_start, span_end in spans:
        covered.update(range(span_start, span_end))
    for index in range(start, end):
        if not text[index].isspace():
            assert index in covered, f"character {text[index]!r} at {index} lost"


@given(TEXTS)
@settings(max_examples=300, deadline=None)
def test_sentence_spans_are_trimmed_ordered_and_cover_everything(text):
    assert_well_formed(text, sentence_spans(text), 0, len(text))


@given(TEXTS, st.integers(0, 130), st.integers(0, 130))
@settings(max_examples=200, deadline=None)
def test_sentence_spans_of_a_range_stay_inside_it(text, a, b):
    start, end = min(a, b, len(text)), min(max(a, b), len(text))
    assert_well_formed(text, sentence_spans(text, start, end), start, end)


@given(TEXTS)
@settings(max_examples=200, deadline=None)
def test_paragraph_spans_cover_everything_and_hold_the_sentences(text):
    paragraphs = paragraph_spans(text)
    assert_well_formed(text, paragraphs, 0, len(text))
    for s_start, s_end in sentence_spans(text):
        assert any(p_start <= s_start and s_end <= p_end for p_start, p_end in paragraphs)


@pytest.mark.parametrize("text", ["x", "  x  ", "Hello world"])
def test_single_sentence_without_punctuation(text):
    assert sentences(text) == [text.strip()]


def test_grow_window_goes_toward_the_better_neighbour_while_it_fits():
    scores = [5.0, 1.0, 9.0, 2.0, 2.0, 0.0]
    lengths = [3, 3, 3, 3, 3, 3]

    def fits_within(limit):
        return lambda lo, hi: sum(lengths[lo : hi + 1]) <= limit

    # from item 2: right (2.0) beats left (1.0), then the left 1.0 loses to 2.0 again, ...
    assert grow_window(2, 2, 5, fits_within(9), scores.__getitem__) == (2, 4)
    assert grow_window(2, 2, 5, fits_within(3), scores.__getitem__) == (2, 2)
    assert grow_window(2, 2, 5, fits_within(99), scores.__getitem__) == (0, 5)
    tied = [1.0, 1.0, 1.0]
    assert grow_window(1, 1, 2, fits_within(6), tied.__getitem__) == (1, 2)
    assert grow_window(1, 1, 2, fits_within(6), tied.__getitem__, earlier_on_tie=True) == (0, 1)
