"""Paragraph and sentence spans with character offsets, stdlib only.

Both the chunker and the answer composer cut article text on these spans, and a
citation quotes ``text[start:end]`` verbatim, so every function here returns
absolute offsets into the string it was given and never rewrites the text.

Conventions shared by all functions:

* A *paragraph break* is a blank line: a newline, then a line holding nothing or
  only whitespace, then a newline. ``\\r`` counts as whitespace, so ``\\r\\n`` text
  works too.
* Every span is trimmed: it starts and ends on a non-whitespace character
  (whitespace as ``str.isspace`` defines it), and spans are never empty.
* Spans are in order and do not overlap. Together they cover every
  non-whitespace character of the text (or of the requested range).

Sentence splitting is a heuristic, tuned for news prose: it is fast (a few
regular-expression passes per paragraph, fine for megabytes of text) rather than
perfect. Known limits: a sentence ending in an abbreviation from the list below
("... moved to the U.S. The next day ...") is not split; hard-wrapped prose whose
next line starts with a capital letter is split at the line break.
"""

from __future__ import annotations

import re
from collections.abc import Callable

__all__ = ["ABBREVIATIONS", "grow_window", "is_boilerplate", "paragraph_spans", "sentence_spans"]

# A blank line (possibly holding spaces/tabs/\r) separates paragraphs. One or more
# such lines in a row form one break.
_PARAGRAPH_BREAK = re.compile(r"\n(?:[^\S\n]*\n)+")

# Terminal punctuation, optionally followed by closing quotes/brackets, then whitespace.
_CLOSERS = "”’\"')]"
_SENTENCE_END = re.compile(r"[.!?…]+[" + re.escape(_CLOSERS) + r"]*(?=\s)")

# What may open a new sentence, besides an uppercase letter or a digit.
_OPENERS = frozenset("“‘\"'([")

# Trailing characters of a line that mean "the sentence goes on on the next line",
# so such a line is not a heading.
_CONTINUES = frozenset(",;:-–—")
_TERMINALS = frozenset(".!?…")

# Words that end in a period without ending the sentence (the period is not part of
# the entry). Case matters: "No." before a number, but "no." ends "I said no."
ABBREVIATIONS: frozenset[str] = frozenset(
    {
        # titles and ranks
        "Mr", "Mrs", "Ms", "Dr", "St", "Jr", "Sr", "Prof", "Gen", "Col", "Lt", "Sgt",
        "Capt", "Gov", "Sen", "Rep", "Rev", "Maj", "Brig", "Adm", "Cmdr", "Hon", "Supt",
        "Mt", "Ft", "Messrs",
        # companies and numbers
        "Inc", "Ltd", "Co", "Corp", "No", "Nos", "vs", "Rs",
        # places and Latin
        "U.S", "U.K", "U.N", "e.g", "i.e", "retd",
        # months
        "Jan", "Feb", "Mar", "Apr", "Jun", "Jul", "Aug", "Sep", "Sept", "Oct", "Nov", "Dec",
    }
)  # fmt: skip

# "J." or "J.K." style initials: a run of single capitals joined by periods.
_INITIALS = re.compile(r"(?:[A-Z]\.)*[A-Z]")
_TOKEN_OPENERS = "“‘\"'(["


def paragraph_spans(text: str) -> list[tuple[int, int]]:
    """Spans of the non-blank paragraphs of ``text``, split on blank lines and trimmed."""
    return [span for span in _paragraph_blocks(text, 0, len(text)) if span[0] < span[1]]


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans within ``text[start:end]``, as absolute offsets into ``text``.

    A sentence ends after ``.``, ``!``, ``?`` or ``…`` (plus any closing quotes or
    brackets) when whitespace and then an uppercase letter, a digit or an opening
    quote/bracket follow, except after an abbreviation (see ``ABBREVIATIONS``) or a
    single capital initial ("J. K. Rowling"). A line without terminal punctuation
    (a heading, a caption, a list item) ends its sentence at the newline unless
    the next line starts in lowercase or the line ends in ``, ; : -``. Sentences
    never cross a paragraph break.
    """
    stop = len(text) if end is None else max(0, min(end, len(text)))
    begin = max(0, min(start, stop))
    spans: list[tuple[int, int]] = []
    for para_start, para_end in _paragraph_blocks(text, begin, stop):
        if para_start < para_end:
            spans.extend(_sentences_in_paragraph(text, para_start, para_end))
    return spans


def grow_window(
    lo: int,
    hi: int,
    last: int,
    fits: Callable[[int, int], bool],
    score: Callable[[int], float],
    *,
    earlier_on_tie: bool = False,
) -> tuple[int, int]:
    """Widen the item range [lo, hi] within [0, last] one neighbour at a time, toward the
    neighbour that scores higher, while ``fits(new_lo, new_hi)``. A tie goes to the later
    neighbour, or to the earlier one with ``earlier_on_tie``.

    Quotes and retrieved passages both grow this way around their best sentence.
    """
    while True:
        left = lo > 0 and fits(lo - 1, hi)
        right = hi < last and fits(lo, hi + 1)
        if not (left or right):
            return lo, hi
        if left and right:
            before, after = score(lo - 1), score(hi + 1)
            left = before > after or (earlier_on_tie and before == after)
        if left:
            lo -= 1
        else:
            hi += 1


def _paragraph_blocks(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Trimmed spans between paragraph breaks in ``text[start:end]`` (may be empty)."""
    blocks: list[tuple[int, int]] = []
    cursor = start
    for match in _PARAGRAPH_BREAK.finditer(text, start, end):
        blocks.append(_trim(text, cursor, match.start()))
        cursor = match.end()
    blocks.append(_trim(text, cursor, end))
    return blocks


def _sentences_in_paragraph(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Split one trimmed paragraph ``text[start:end]`` into trimmed sentence spans."""
    cuts = set(_punctuation_cuts(text, start, end))
    cuts.update(_line_break_cuts(text, start, end))
    spans: list[tuple[int, int]] = []
    cursor = start
    for cut in sorted(cuts):
        span = _trim(text, cursor, cut)
        if span[0] < span[1]:
            spans.append(span)
        cursor = cut
    span = _trim(text, cursor, end)
    if span[0] < span[1]:
        spans.append(span)
    return spans


def _punctuation_cuts(text: str, start: int, end: int) -> list[int]:
    """Offsets just after sentence-ending punctuation inside ``text[start:end]``."""
    cuts: list[int] = []
    for match in _SENTENCE_END.finditer(text, start, end):
        after = _skip_space(text, match.end(), end)
        if after >= end or not _opens_sentence(text[after]):
            continue
        if match.group() == "." and _is_abbreviation(text, start, match.start()):
            continue
        cuts.append(match.end())
    return cuts


def _line_break_cuts(text: str, start: int, end: int) -> list[int]:
    """Newlines inside a paragraph that end a heading-like line (no terminal punctuation)."""
    cuts: list[int] = []
    newline = text.find("\n", start, end)
    line_start = start
    while newline != -1:
        line = text[line_start:newline].rstrip().rstrip(_CLOSERS)
        following = _skip_space(text, newline, end)
        if (
            line
            and line[-1] not in _TERMINALS
            and line[-1] not in _CONTINUES
            and following < end
            and not text[following].islower()
        ):
            cuts.append(newline)
        line_start = newline + 1
        newline = text.find("\n", line_start, end)
    return cuts


def _opens_sentence(char: str) -> bool:
    return char.isupper() or char.isdigit() or char in _OPENERS


def _is_abbreviation(text: str, floor: int, period: int) -> bool:
    """Whether the word right before the period at ``period`` is an abbreviation."""
    window = text[max(floor, period - 24) : period]
    parts = window.split()
    if not parts or window[-1:].isspace():
        return False
    word = parts[-1].lstrip(_TOKEN_OPENERS)
    return word in ABBREVIATIONS or _INITIALS.fullmatch(word) is not None


def _skip_space(text: str, position: int, end: int) -> int:
    while position < end and text[position].isspace():
        position += 1
    return position


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    """Shrink ``[start, end)`` to exclude surrounding whitespace; empty spans collapse."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


# Lines around an article that are not its reporting: captions and image credits, bylines,
# "Published in ..." lines, comment-form text, datelines standing alone. Never a lead or a quote.
_BOILERPLATE = re.compile(
    r"^(?:header\s+image|photo|image|caption|file\s+photo|picture|illustration|video)\s*[:|]|"
    r"^published\s+in\b|^first\s+published\b|^leave\s+a\s+(?:comment|reply)\b|^your\s+email\s+address\b|"
    r"required\s+fields\s+are\s+marked|^the\s+writer\s+is\b|^the\s+writers?\s+(?:are|is)\s+(?:a|an)\b|"
    r"^(?:follow|subscribe|click\s+here|read\s+more|also\s+read|related|share\s+this|copyright|all\s+rights\s+reserved)\b|"
    r"(?-i:^By\s+[A-Z][a-z]+(?:\s+[A-Z][a-z]+){0,3}\s*$)|(?-i:^[A-Z][A-Z .]{2,30}:\s*$)|^[—–-]\s*\S",
    re.IGNORECASE,
)
# "... | AFP", "... | Facebook/MQM", "... | Reuters": a picture's credit at the end of its caption.
_CREDIT = re.compile(r"\s\|\s*[\w/ .@&-]{1,40}$")


def is_boilerplate(sentence: str) -> bool:
    """Whether a sentence is page furniture (caption, credit, byline, "Published in ...")."""
    text = " ".join(sentence.split())
    return bool(_BOILERPLATE.search(text) or _CREDIT.search(text))
