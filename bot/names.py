"""Names as news spells them: the corpus's own vocabulary, and the variants a reader types.

Pakistani names reach English in several spellings (Qaimkhani / Kaimkhani, Anees / Anis,
Siddiqui / Siddiqi), an article may carry a typo (Kamaml), and a reader types from memory
(Farooq Satar, Liaqatabad). Questions are matched against the words the articles actually
use, never against a dictionary of our own:

- a *spelling key* folds the transliteration choices (q/k, ee/i, oo/u, doubled letters), so
  two spellings with one key are the same name;
- beyond that, rapidfuzz's edit ratio finds the corpus word a misspelling was meant to be;
- a *consonant skeleton* (vowels dropped, as Urdu script writes names) lets an Urdu-script
  name find its English spelling in the corpus (``bot.language``).

Only name-like words take part: words the corpus writes capitalised most of the time. That
keeps "feet" from meeting "fit" while "Kaimkhani" meets "Qaimkhani".
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable

from rapidfuzz import fuzz, process

_WORD = re.compile(r"[A-Za-z][A-Za-z’'-]*[A-Za-z]|[A-Za-z]")

# Transliteration folds, applied in order (the key of a lower-cased word).
_FOLDS = (("qu", "k"), ("q", "k"), ("ph", "f"), ("ee", "i"), ("ie", "i"), ("oo", "u"), ("ou", "u"))
_DOUBLE = re.compile(r"(.)\1+")
_VOWELS = re.compile(r"[aeiouy]")

# Tuned on the misspelling turns of tests/gold/conversation.json: 85 lets "Satar"/"Sattar"
# (91), "Maqbol"/"Maqbool" (92), "Liaqatabad"/"Liaquatabad" (95) and "Kamaml"/"Kamal" (91)
# through, and keeps "Kamal"/"Jamal" (80) and "Wasim"/"Hasim" (80) apart.
FUZZY_MIN_RATIO = 85.0
NAME_SHARE = 0.7  # a word is name-like when at least this share of its uses is capitalised
MIN_NAME_LENGTH = 4  # "PPP", "JI", "Dr": too short to guess at
# A spelling the corpus uses at most this often may be a typo in an article ("Kamaml"): its
# common twin is searched too. More often, it is a spelling of its own and finds its own
# articles (searching "Qaimkhani" for "Kaimkhani" pulled the wrong article to the top).
TYPO_MAX_COUNT = 1


# Last words of names that are organisations and places, not people ("the Rabita Committee",
# "Tehreek-i-Insaf"): what a "who" answer must not offer as its person, and what makes a
# follow-up's name say which group rather than who.
ORGANISATION_WORDS = frozenset({
    "party", "movement", "group", "assembly", "league", "committee", "government", "house", "town", "city", "council",
    "court", "commission", "board", "bank", "ministry", "office", "front", "alliance", "federation", "union", "club",
    "company", "corporation", "association", "forum", "pakistan", "london", "karachi", "sindh", "organisation",
    "organization", "insaf", "islami", "tehreek", "tehreek-i-insaf", "jamaat-i-islami",
})  # fmt: skip


def spelling_key(word: str) -> str:
    """One key for the spellings of a name that differ only in transliteration."""
    key = re.sub(r"[^a-z]", "", word.lower())
    for old, new in _FOLDS:
        key = key.replace(old, new)
    return _DOUBLE.sub(r"\1", key)


def consonant_skeleton(word: str) -> str:
    """The key without vowels (as Urdu script writes a name): "Kamal" -> "kml"."""
    key = spelling_key(word)
    if not key:
        return ""
    # Drop vowels and the letters Urdu writes as vowels or not at all (h after a consonant).
    rest = _VOWELS.sub("", key[1:]).replace("w", "").replace("h", "")
    head = key[0] if key[0] not in "aeiouy" else ""
    return _DOUBLE.sub(r"\1", head + rest)


# A word and what makes it a sentence's opening, found in one pass: group 1 is non-empty
# exactly when the 3 characters before the word hold a sentence end (. ! ? : or a line break)
# followed only by spaces or opening quotes, so counting needs no search per word.
_WORD_AFTER_OPENING = re.compile(r"((?:[.!?:]|\n)[\s“\"‘'(]{0,2})?(" + _WORD.pattern + ")")


def _plain(word: str) -> str:
    """Lower case, one kind of apostrophe, no possessive: "Maqbol's" -> "maqbol"."""
    return re.sub(r"'s$", "", word.lower().replace("’", "'"))


_ADDITIVE = ("counts", "capitalised", "opening")  # word -> count
_NESTED = ("forms", "runs")  # key -> {variant: count}


def vocabulary_statistics(texts: Iterable[str]) -> dict:
    """What a ``Vocabulary`` counts in some texts (one article's), as JSON-ready plain dicts.

    The counts of several texts add up (``add_statistics``) and those of a removed text
    subtract, so the index keeps one running total per build and adds or removes only the
    articles a build changes; a server reads the total instead of every article (2 s at 609
    articles). Acronym definitions are not counts (the latest wins): each article keeps its own.
    """
    # Plain dicts (a Counter per word costs more than the counting): word -> count
    counts: dict[str, int] = {}
    capitalised: dict[str, int] = {}
    opening_counts: dict[str, int] = {}
    forms: dict[str, dict[str, int]] = {}
    texts = list(texts)
    for text in texts:
        found = _WORD_AFTER_OPENING.findall(text)  # (opening context or "", word), in order
        # Each distinct (context, word) once, weighted by its count: the same totals, and every
        # key still enters the dicts at its first use (the order ties are broken by).
        first_at_start = 1 if found and not found[0][0] and text[:1].isascii() and text[:1].isalpha() else 0
        occurrences = [((".", found[0][1]), 1)] if first_at_start else []  # the text's first word opens it
        occurrences.extend(Counter(found[first_at_start:]).items())
        for (context, whole), n in occurrences:
            # A capital at the start of a sentence or line says nothing about being a name.
            opening = bool(context)
            # "Tehreek-i-Insaf" is also "Tehreek" and "Insaf" to a reader
            parts = [whole, *(p for p in whole.split("-") if len(p) > 1)] if "-" in whole else [whole]
            for word in parts:
                lower = word.lower().replace("’", "'")
                counts[lower] = counts.get(lower, 0) + n
                variants = forms.get(lower)
                if variants is None:
                    forms[lower] = variants = {}
                variants[word] = variants.get(word, 0) + n
                if word[0].isupper() and not opening:
                    capitalised[lower] = capitalised.get(lower, 0) + n
                elif opening:
                    opening_counts[lower] = opening_counts.get(lower, 0) + n
    return {
        "counts": counts,
        "capitalised": capitalised,
        "opening": opening_counts,
        "forms": forms,
        "runs": {k: dict(v) for k, v in _capitalised_runs(texts).items()},
        "acronyms": {k: list(v) for k, v in find_acronyms(texts).items()},
    }


def empty_statistics() -> dict:
    return {key: {} for key in (*_ADDITIVE, *_NESTED)}


def add_statistics(total: dict, part: dict, sign: int = 1) -> dict:
    """``total`` plus (``sign`` 1) or minus (-1) the counts of ``part``, in place; a count that
    reaches zero is dropped, so removing an article leaves what counting the rest gives."""
    def merge(into: dict, counts: dict) -> None:
        for key, n in counts.items():
            value = into.get(key, 0) + sign * n
            if value > 0:
                into[key] = value
            else:
                into.pop(key, None)

    for name in _ADDITIVE:
        merge(total.setdefault(name, {}), part[name])
    for name in _NESTED:
        table = total.setdefault(name, {})
        for key, counts in part[name].items():
            inner = table.setdefault(key, {})
            merge(inner, counts)
            if not inner:
                del table[key]
    return total


def _commonest(counts: dict[str, int]) -> str:
    """The most frequent key; among equals, the first seen (as ``Counter.most_common``)."""
    return max(counts.items(), key=lambda item: item[1])[0]


class Vocabulary:
    """The words of a corpus, with how often each is written and how often capitalised."""

    def __init__(self, texts: Iterable[str]):
        self._take(vocabulary_statistics(texts))

    @classmethod
    def from_statistics(cls, total: dict, acronyms: Iterable[dict]) -> Vocabulary:
        """The vocabulary whose counts are ``total`` (see ``add_statistics``) and whose
        articles define ``acronyms`` (each article's, oldest first: the latest definition wins)."""
        merged: dict[str, list[str]] = {}
        for found in acronyms:
            merged.update(found)
        vocabulary = cls.__new__(cls)
        vocabulary._take({**total, "acronyms": merged})
        return vocabulary

    def _take(self, statistics: dict) -> None:
        counts = Counter(statistics["counts"])
        capitalised, counts_opening = Counter(statistics["capitalised"]), Counter(statistics["opening"])
        self.counts = counts
        self._form = {w: _commonest(f) for w, f in statistics["forms"].items()}
        self.acronyms = {k: tuple(v) for k, v in statistics["acronyms"].items()}
        self._initialisms = {initials: _commonest(found) for initials, found in statistics["runs"].items()}
        self.names = sorted(
            w for w, n in counts.items()
            if len(w) >= MIN_NAME_LENGTH and capitalised[w] > 0 and capitalised[w] >= NAME_SHARE * (n - counts_opening[w])
        )  # fmt: skip
        self._name_set = frozenset(self.names)
        # Acronyms the corpus only ever writes in capitals ("pti" typed is "PTI"); short, so not names above
        self._capitals = frozenset(w for w, f in statistics["forms"].items() if len(w) >= 3 and counts[w] >= 2 and all(form.isupper() for form in f))
        self._by_key: dict[str, list[str]] = defaultdict(list)
        self._by_skeleton: dict[str, list[str]] = defaultdict(list)
        for name in self.names:
            self._by_key[spelling_key(name)].append(name)
            self._by_skeleton[consonant_skeleton(name)].append(name)

    def is_name(self, word: str) -> bool:
        return _plain(word) in self._name_set

    def names_capitalised(self, text: str) -> str:
        """Names a reader typed in lower case, as the corpus writes them ("kamran tessori" ->
        "Kamran Tessori", "pti" -> "PTI"), so follow-ups and notes can find and show them."""
        def written(match: re.Match) -> str:
            word = match.group(0)
            return self.form(word) if word.islower() and (word in self._name_set or word in self._capitals) else word

        return _WORD.sub(written, text)

    def knows(self, word: str) -> bool:
        return _plain(word) in self.counts

    def form(self, lower: str) -> str:
        """How the corpus usually writes a (lower-cased) word."""
        return self._form.get(lower, lower)

    def variants(self, word: str) -> tuple[str, ...]:
        """The corpus's spellings of a name the question wrote as ``word`` (empty: none known).

        Same spelling key: every such spelling (they are one name). Otherwise, for a word the
        corpus does not use or uses less than its near twin, the closest name-like corpus word
        by edit ratio (a misspelling points to the common spelling, never the other way).
        """
        lower = _plain(word)
        if len(lower) < MIN_NAME_LENGTH or not lower.isascii():
            return ()
        found = [w for w in self._by_key.get(spelling_key(lower), ()) if w != lower]
        own = self.counts.get(lower, 0)
        near = process.extract(lower, self.names, scorer=fuzz.ratio, score_cutoff=FUZZY_MIN_RATIO, processor=None, limit=3)
        # A misspelling keeps its first sound ("Jamal" is not "Amal"; q/k are folded alike).
        best = next((w for w, _, _ in near if w != lower and spelling_key(w)[:1] == spelling_key(lower)[:1]), None)
        if best is not None and self.counts[best] > own and best not in found:
            found.append(best)
        return tuple(self.form(w) for w in found)

    def spelled_out(self, acronym: str) -> tuple[str, ...]:
        """The corpus's words for an acronym it never writes: "MMA" -> Muttahida Majlis-i-Amal."""
        if acronym in self.acronyms:
            return self.acronyms[acronym]
        phrase = self._initialisms.get(acronym.replace("-", "").upper())
        return tuple(phrase.split()) if phrase else ()

    def by_skeleton(self, skeleton: str) -> str | None:
        """The most frequent name-like corpus word with this consonant skeleton, if any."""
        candidates = self._by_skeleton.get(skeleton)
        if not candidates:
            return None
        return self.form(max(candidates, key=lambda w: self.counts[w]))

    def closest_skeleton(self, skeleton: str, min_ratio: float = 80.0) -> str | None:
        """Like ``by_skeleton``, allowing a near skeleton (one letter written differently)."""
        exact = self.by_skeleton(skeleton)
        if exact or len(skeleton) < 3:
            return exact
        best = process.extractOne(skeleton, list(self._by_skeleton), scorer=fuzz.ratio, score_cutoff=min_ratio, processor=None)
        return self.by_skeleton(best[0]) if best else None


_DEFINED_ACRONYM = re.compile(r"\(\s*([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)?)\s*\)")
_CONNECTORS = {"i", "e", "o", "of", "the", "and", "ul", "al", "for", "a", "an", "in", "e-", "i-"}


def find_acronyms(texts: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """Acronyms the articles define, "chief minister (CM)" -> {"CM": ("chief", "minister")}.

    The words before the brackets whose initials spell the acronym (connectors like "of"
    and the "i" of "Tehreek-i-Insaf" skipped) are its expansion; most recent wins.
    """
    found: dict[str, tuple[str, ...]] = {}
    for text in texts:
        for match in _DEFINED_ACRONYM.finditer(text):
            acronym = match.group(1)
            letters = acronym.replace("-", "").lower()
            if not 2 <= len(letters) <= 8:
                continue
            before = re.findall(r"[A-Za-z’']+", text[max(0, match.start() - 120) : match.start()])
            words: list[str] = []
            needed = list(letters)
            for word in reversed(before):
                if not needed:
                    break
                if word.lower() in _CONNECTORS and words:
                    continue
                if word[0].lower() != needed[-1]:
                    break
                words.insert(0, word)
                needed.pop()
            if not needed:
                found[acronym] = tuple(words)
    return found


_RUN_GAP = re.compile(r"[\s-]+")
_CAPITALISED_RUN = re.compile(r"\b[A-Z][a-z]+(?:[\s-]+(?:(?:of|the|and|i|e|ul|al)[\s-]+)?[A-Z][a-z]+){1,5}\b")


def _capitalised_runs(texts: Iterable[str]) -> dict[str, Counter[str]]:
    """Runs of capitalised words by their initials ("Muttahida Majlis-i-Amal" -> "MMA"),
    counted (the vocabulary keeps the commonest run for each); connectors ("of", the "i"
    of "Majlis-i-Amal") skipped."""
    runs: dict[str, Counter[str]] = defaultdict(Counter)
    for text in texts:
        for run, n in Counter(_CAPITALISED_RUN.findall(text)).items():  # each distinct run once
            words = [w for w in _RUN_GAP.split(run) if w and w[0].isupper()]
            if len(words) >= 2:
                runs["".join(w[0] for w in words)][run] += n
    return runs


def name_words(question: str) -> list[str]:
    """The words of a question that may be names: capitalised, not its first word."""
    words = _WORD.findall(question)
    return [w for i, w in enumerate(words) if w[0].isupper() and i > 0 and not _is_question_opener(w)]


def _is_question_opener(word: str) -> bool:
    return word.lower() in {"who", "what", "when", "where", "which", "why", "how", "is", "was", "did", "does", "do", "are", "were",
                            "tell", "and", "has", "have", "can", "could", "will", "would", "the", "a", "an", "in", "on"}


def expand_names(question: str, vocabulary: Vocabulary) -> tuple[str, str]:
    """(what to search, what to weigh): the question with the corpus's spellings of its names.

    The search text keeps the reader's words and adds the corpus's spellings of a word the
    corpus does not use (or uses once: a typo in an article), so BM25 finds either. The
    weighed text swaps such a word for its commonest corpus spelling, so the lead is chosen
    by words the articles really contain. An acronym the articles never write is spelled out
    from their capitalised words ("MMA": Muttahida Majlis-i-Amal). Lower-case words
    the corpus does not know are tried too (a reader types "kamal"); known lower-case words
    are left alone.
    """
    search_extra: list[str] = []
    corrected = question
    for word in dict.fromkeys(_WORD.findall(question)):
        if not (word[0].isupper() or not vocabulary.knows(word) or vocabulary.is_name(word)):
            continue  # a known lower-case word ("rally"), unless the corpus writes it as a name
        if word[0].isupper() and _is_question_opener(word):
            continue
        variants = vocabulary.variants(word)
        if not variants and word.isupper() and not vocabulary.knows(word):
            spelled = vocabulary.spelled_out(word)
            if spelled:
                search_extra.extend(spelled)
                corrected = re.sub(rf"\b{re.escape(word)}\b", " ".join(spelled), corrected)
            continue
        if not variants:
            continue
        if vocabulary.counts.get(_plain(word), 0) > TYPO_MAX_COUNT:
            continue  # a spelling the articles use finds its own articles; the lead folds spellings
        search_extra.extend(variants)
        commonest = max(variants, key=lambda v: vocabulary.counts.get(v.lower(), 0))
        if spelling_key(commonest) != spelling_key(word):
            corrected = re.sub(rf"\b{re.escape(word)}\b", commonest, corrected)
    search = f"{question} {' '.join(search_extra)}" if search_extra else question
    return search, corrected
