"""What a message is, and what a follow-up asks: the conversation, for the bot and the console.

Every message is classified before anything is searched (``classify``):

- small talk (greetings, thanks, goodbyes, "ok", emoji, remarks about the bot) gets a short
  friendly reply, never news quotes;
- a command or meta request, typed or slashed ("more", "sources", "help", "start over");
- noise (punctuation, digits, keyboard mashing) gets a hint;
- a question, or a follow-up that only makes sense with the previous turn.

A follow-up is *resolved* into a question of its own (``resolve``), never searched as the two
questions glued together: "and what about Farooq Sattar?" asks the previous question about
Farooq Sattar; "when was that?" asks the previous question with "when"; "which party does he
belong to?" puts the previous turn's person in place of "he". The resolved question is shown
to the reader, so a wrong guess is visible. Context belongs to one conversation (one chat),
expires, and is dropped by /reset.

Cheap by design: word lists and patterns, no model. Tested on ``tests/gold/messages.json``.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from enum import Enum

from bot.names import ORGANISATION_WORDS

QUESTION, FOLLOW_UP, SMALL_TALK, COMMAND, NOISE = "question", "follow_up", "small_talk", "command", "noise"

CONTEXT_SECONDS = 30 * 60  # a follow-up more than half an hour later starts afresh


class SmallTalk(str, Enum):
    GREETING = "greeting"
    THANKS = "thanks"
    BYE = "bye"
    ACK = "ack"
    LAUGH = "laugh"
    ABOUT_BOT = "about_bot"
    FEEDBACK = "feedback"


_SMALL_TALK: dict[SmallTalk, tuple[str, ...]] = {
    SmallTalk.GREETING: (
        "hi", "hello", "hey", "hiya", "heya", "yo", "howdy", "hola", "hi there", "hello there", "hey there", "greetings",
        "good morning", "good afternoon", "good evening", "gm", "morning", "salam", "salaam", "slam", "aoa",
        "assalam o alaikum", "assalamualaikum", "assalam u alaikum", "asalam o alaikum", "assalam alaikum",
        "salam alaikum", "as salam o alaikum", "السلام علیکم", "سلام", "آداب", "hi bot", "hello bot",
    ),
    SmallTalk.THANKS: (
        "thanks", "thank you", "thx", "ty", "tnx", "thanks a lot", "thank you so much", "thanks so much", "many thanks",
        "thanks a ton", "cheers", "much appreciated", "appreciate it", "shukriya", "shukria", "shukran", "jazakallah",
        "شکریہ", "بہت شکریہ", "bohat shukriya", "bohot shukriya", "bahut shukriya", "buhat shukriya", "thank u", "thanku", "tysm", "thanks bot",
    ),
    SmallTalk.BYE: (
        "bye", "goodbye", "good bye", "bye bye", "good night", "gn", "see you", "see ya", "later", "see you later",
        "khuda hafiz", "allah hafiz", "خدا حافظ", "اللہ حافظ", "cya", "ttyl",
    ),
    SmallTalk.ACK: (
        "ok", "okay", "k", "kk", "okk", "okie", "cool", "great", "nice", "fine", "got it", "i see", "alright", "all right",
        "sure", "good", "awesome", "perfect", "hmm", "hm", "hmmm", "theek hai", "thik hai", "theek", "acha", "achha", "accha",
        "ٹھیک ہے", "اچھا", "wow", "interesting", "noted", "yes", "no", "yeah", "yep", "nope", "nah", "ah", "oh", "oh ok",
        "understood", "makes sense", "right", "true", "indeed", "ok cool", "very good", "good to know", "nice one",
        "ok great", "great thanks", "okay thanks", "ok thanks", "ok thank you", "fair enough", "i understand",
    ),
    SmallTalk.LAUGH: ("lol", "haha", "hahaha", "hehe", "lmao", "rofl", "xd"),
    SmallTalk.ABOUT_BOT: (
        "who are you", "what are you", "what can you do", "what do you do", "are you a bot", "are you human",
        "are you real", "how do you work", "how are you", "how r u", "how are you doing", "kaise ho", "kese ho",
        "aap kaise hain", "aap kaun ho", "tum kaun ho", "what is your name", "whats your name", "what's your name",
        "آپ کون ہیں", "آپ کیسے ہیں", "kya haal hai", "what's up", "whats up", "sup", "wassup",
    ),
    SmallTalk.FEEDBACK: (
        "good job", "well done", "great job", "nice work", "good bot", "love it", "amazing", "brilliant", "excellent",
        "useless", "you're useless", "you are useless", "stupid bot", "bad bot", "that's wrong", "thats wrong", "wrong",
        "not helpful", "that's not what i asked", "you are wrong", "you're wrong", "not useful", "bakwas",
    ),
}  # fmt: skip
_SMALL_TALK_KIND = {phrase: kind for kind, phrases in _SMALL_TALK.items() for phrase in phrases}
# Small talk only when it is the whole message: "what?" is "pardon?", "what about Kamal?" is not.
_SMALL_TALK_ALONE = {"what": SmallTalk.ACK, "huh": SmallTalk.ACK, "sorry": SmallTalk.ACK, "pardon": SmallTalk.ACK, "come again": SmallTalk.ACK}
_SMALL_TALK_PREFIX = re.compile(
    r"^(?:" + "|".join(re.escape(p) for p in sorted(_SMALL_TALK_KIND, key=len, reverse=True)) + r")\b[\s,.!;:—–-]*",
    re.IGNORECASE,
)
# "bohat acha", "very good", "so cool": the same small talk, said with more feeling.
_INTENSIFIER = re.compile(r"^(?:(?:very|so|really|super|bohat|bohot|bahut|buhat|bht|bohut|bahot|بہت)\s+)+")
# "good morning bot", "thanks buddy": small talk addressed to the bot.
_ADDRESSED = re.compile(r"[\s,]+(?:bot|buddy|friend|mate|dear|bro|sir|man|yaar|yar|bhai|jee|ji)$")
# "you're great", "you are useless": a word of feedback about the bot.
_ABOUT_YOU = re.compile(r"^(?:you'?re|you\s+are|ur|u\s+r|u\s+are|this\s+is|that'?s|that\s+is)\s+(?:(?:so|very|really|a|an|the|just)\s+)*(?P<what>[\w' ]+?)(?:\s+bot)?$")
# Politeness that may open a question without being small talk on its own.
_LEADING_FILLER = re.compile(r"^(?:(?:ok(?:ay)?|so|well|um+|please|pls|plz|also|btw|but|then)\b[\s,.!—–-]*)+", re.IGNORECASE)

_COMMANDS = {
    "help": ("help", "/help", "help me", "how does this work", "how do i use this", "how to use", "commands", "menu", "?help"),
    "sources": (
        "sources", "/sources", "source", "articles", "list articles", "list the articles", "show sources",
        "show articles", "what articles do you have", "which articles do you have", "what sources do you have",
        "which sources do you have", "what do you know", "what do you know about", "what articles",
        "show me the articles", "list sources", "list of articles", "which articles are you using",
        "what articles are you using", "which sources are you using", "what sources are you using",
        "where do your answers come from", "what are your sources",
    ),
    "more": ("more", "/more", "more sources", "show more", "next", "more please", "more passages", "other sources", "go on"),
    "reset": (
        "reset", "/reset", "start over", "new topic", "/new", "new", "clear", "/clear", "forget it", "forget that",
        "new question", "change topic", "change the topic", "let's start over", "lets start over", "restart",
        "start new topic", "start again", "new conversation",
    ),
    "start": ("/start", "start"),
}  # fmt: skip
_COMMAND_FILLER = {"me", "your", "the", "a", "an", "please", "pls", "all", "us", "of", "can", "you", "could", "some"}


def _command_key(text: str) -> str:
    """A command phrase without its filler: "show me more" and "show more", "list your sources"
    and "list sources", "start a new topic" and "start new topic" meet."""
    return " ".join(w for w in text.split() if w not in _COMMAND_FILLER)


_COMMAND_OF = {phrase: name for name, phrases in _COMMANDS.items() for phrase in phrases}
_COMMAND_OF.update({_command_key(phrase): name for phrase, name in list(_COMMAND_OF.items()) if _command_key(phrase)})

# Follow-up cues (the English text, after any translation).
_FOLLOW_UP_OPENERS = re.compile(
    r"^(?:and\b|what about\b|how about\b|what else\b|who else\b|anything else\b|tell me more\b|more about\b|"
    r"more on\b|same for\b|and also\b|also\b|what then\b|then what\b)",
    re.IGNORECASE,
)
_SUBSTITUTION = re.compile(r"^(?:and\s+)?(?:what|how)\s+about\s+(?P<x>.+?)\s*\??$|^and\s+(?P<y>(?!what\b|who\b|when\b|where\b|why\b|which\b|how\b|is\b|was\b|did\b|does\b|do\b|are\b|were\b|has\b|have\b|can\b)[^?]+?)\s*\??$", re.IGNORECASE)
# The same in Roman Urdu and Urdu script ("kab?", "aur Farooq Sattar?", "کیوں؟", "اور ایم کیو ایم؟"),
# read before translation so the classifier's label is right on its own.
_URDU_FOLLOW_UP = re.compile(
    r"^(?:(?:aur|اور)\s+)?(?:kab|kyun|kyon|kiyun|kahan|kahaan|kaun|kon|kis\s+ne|kitne|kitni|kaise|کب|کیوں|کہاں|کون|کس\s+نے|کتنے|کتنی|کیسے)"
    r"(?:\s+(?:tha|thi|hua|hui|the|hai|ہوا|ہوئی|تھا|تھی|ہے))?\s*[?؟!.]*$|^(?:aur|اور)\s+[^?؟]+[?؟]?$",
    re.IGNORECASE,
)
_ROMAN_QUESTION_WORD = re.compile(r"\b(?:kaun|kon|kab|kahan|kahaan|kya|kyun|kyon|kitne|kitni|kis|kaise)\b", re.IGNORECASE)
# "Which party did ..." asks with two words: both give way when "why?" re-asks it.
_QUESTION_WORD = re.compile(
    r"^(?P<w>(?:which|what)\s+\w+(?=\s+(?:did|does|do|is|was|were|are|has|have|had|will|would|can)\b)|"
    r"who|whom|whose|what|when|where|which|why|how\s+many|how\s+much|how\s+long|how)\b",
    re.IGNORECASE,
)
_BARE_TYPE = re.compile(
    r"^(?:and\s+)?(?P<w>who|what|when|where|which|why|how\s+many|how\s+much|how\s+long|how)"
    r"(?:\s+(?:else|exactly|then|so))?(?:\s+(?:was|is|were|are|did|does|do)\s+(?:that|it|this|they|he|she|there))?"
    r"(?:\s+(?:was|is)\s+the\s+(?:reason|date|place))?\s*[?!.]*$",
    re.IGNORECASE,
)
# Words that ask for more of the same without naming anything: "what happened next?"
_VAGUE = {"happened", "happen", "happens", "next", "then", "after", "afterwards", "else", "more", "mean", "meant", "exactly", "really", "why", "how"}
_PERSON_PRONOUNS = {"he", "she", "him", "his", "her", "hers", "himself", "herself"}
_GROUP_PRONOUNS = {"they", "them", "their", "theirs"}
_THING_PRONOUNS = {"it", "its", "that", "this", "those", "these", "there", "then"}
_OPENERS = {
    "who", "whom", "whose", "what", "when", "where", "which", "why", "how", "is", "was", "did", "does", "do", "are", "were",
    "has", "have", "had", "can", "could", "will", "would", "should", "tell", "and", "the", "a", "an", "in", "on", "at",
    "i", "if", "so", "but", "also", "please", "according", "about", "dr", "mr", "ms", "mrs", "after", "before", "since",
}  # fmt: skip
_NAME = re.compile(r"(?:(?:Dr|Mr|Ms|Mrs|Justice)\.?\s+)?[A-Z][\w’'-]*(?:\s+(?:of\s+the\s+|of\s+|-)?[A-Z][\w’'-]*)*")
_YEAR = re.compile(r"\b(?:19|20)\d\d\b")
_URL = re.compile(r"^\s*(?:https?://|www\.)\S+\s*$", re.IGNORECASE)
_QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY_POSITION = {c: (row, col) for row, keys in enumerate(_QWERTY_ROWS) for col, c in enumerate(keys)}


@dataclass(frozen=True)
class Classified:
    kind: str  # QUESTION, FOLLOW_UP, SMALL_TALK, COMMAND, NOISE
    text: str  # the message without greetings, thanks and mentions in front of the question
    command: str | None = None  # help, sources, more, reset, start
    small_talk: SmallTalk | None = None


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower().replace("’", "'")
    text = re.sub(r"[\s]+", " ", text).strip()
    return re.sub(r"^[\s,.!?;:]+|[\s,.!?;:؟۔]+$", "", text)


def _is_emoji_only(text: str) -> bool:
    symbols = [c for c in text if not c.isspace()]
    return bool(symbols) and all(unicodedata.category(c) in ("So", "Sk", "Cf", "Mn") or c in "\u200d\ufe0f" for c in symbols)


def _is_keyboard_mash(word: str) -> bool:
    """"asdfgh", "qwerty", "jkjkjk", "xkcdq": letters with no speakable shape."""
    word = word.lower()
    if len(word) < 4 or not word.isalpha() or not word.isascii():
        return False
    if not re.search(r"[aeiouy]", word) and len(word) >= 4:
        return True
    if re.fullmatch(r"(..?)\1{2,}", word) and not re.fullmatch(r"(ha|he|hi|ho)+", word):
        return True
    pairs = list(zip(word, word[1:]))
    neighbours = 0
    for a, b in pairs:
        (ra, ca), (rb, cb) = _KEY_POSITION.get(a, (9, 99)), _KEY_POSITION.get(b, (9, 99))
        neighbours += ra == rb and abs(ca - cb) == 1
    share = neighbours / len(pairs)
    # "asdf": four neighbouring keys, one vowel at most ("were" rolls across keys too, but speaks)
    return (len(word) >= 5 and share >= 0.6) or (len(word) == 4 and share == 1.0 and len(re.findall(r"[aeiouy]", word)) <= 1)


def _is_noise(text: str) -> bool:
    if _URL.match(text):
        return True
    letters = [c for c in text if c.isalpha()]
    if not letters:
        return True  # "???", "1234", "..."
    words = re.findall(r"\w+", text)
    if words and all(len(w) == 1 for w in words) and len(words) >= 2:
        return True  # "k k k k"
    # "asdf jkl": mashed words, with at most short vowelless ones beside them
    return bool(words) and any(_is_keyboard_mash(w) for w in words) and all(
        _is_keyboard_mash(w) or (len(w) <= 3 and w.isalpha() and w.isascii() and not re.search(r"[aeiouy]", w, re.IGNORECASE)) for w in words
    )


def classify(message: str, *, has_context: bool = False) -> Classified:
    """What a message is. ``has_context``: there is a previous answer a follow-up can lean on."""
    text = " ".join(message.split())
    if not text:
        return Classified(NOISE, text)
    normal = _normal(text)
    command = _COMMAND_OF.get(normal) or _COMMAND_OF.get(_command_key(normal))
    if command:
        return Classified(COMMAND, text, command=command)
    if text.startswith("/"):
        name = normal.split()[0].lstrip("/").split("@")[0] if normal else ""
        if name in {c.lstrip("/") for c in _COMMANDS} or f"/{name}" in _COMMAND_OF:
            return Classified(COMMAND, text, command=_COMMAND_OF.get(f"/{name}", name))
    if re.fullmatch(r"(?:\w[\s,.!]+){2,}\w[\s,.!?]*", normal + " ") and not normal.isdigit():
        return Classified(NOISE, text)  # "k k k k", "a b c": single letters, nothing to answer
    if not normal and _is_emoji_only(text):
        return Classified(SMALL_TALK, text, small_talk=SmallTalk.ACK)
    if _is_emoji_only(text):
        return Classified(SMALL_TALK, text, small_talk=SmallTalk.ACK)
    plain = _ADDRESSED.sub("", _INTENSIFIER.sub("", normal)).strip(" ,.!")
    if normal in _SMALL_TALK_KIND or plain in _SMALL_TALK_KIND or normal in _SMALL_TALK_ALONE:
        kind = _SMALL_TALK_KIND.get(normal) or _SMALL_TALK_KIND.get(plain) or _SMALL_TALK_ALONE[normal]
        return Classified(SMALL_TALK, text, small_talk=kind)
    praise = _ABOUT_YOU.match(normal)
    if praise and praise.group("what") in _SMALL_TALK_KIND:
        return Classified(SMALL_TALK, text, small_talk=SmallTalk.FEEDBACK)
    # Small talk in front of a question ("thanks, and who is Tessori?"): the question counts.
    rest, first_kind = text, None
    while True:
        match = _SMALL_TALK_PREFIX.match(rest)
        if not match or match.end() == 0:
            break
        first_kind = first_kind or _SMALL_TALK_KIND.get(_normal(match.group(0)))
        rest = rest[match.end():]
    rest = _LEADING_FILLER.sub("", rest).strip()
    if not rest or (first_kind and not re.search(r"\w", rest)) or _is_emoji_only(rest) or _normal(rest) in _SMALL_TALK_KIND:
        return Classified(SMALL_TALK, text, small_talk=first_kind or SmallTalk.ACK)
    if _is_noise(rest):
        return Classified(NOISE, rest)
    if _normal(rest) in _COMMAND_OF:
        return Classified(COMMAND, rest, command=_COMMAND_OF[_normal(rest)])
    kind = FOLLOW_UP if has_context and looks_like_follow_up(rest) else QUESTION
    return Classified(kind, rest)


def _words(text: str) -> list[str]:
    return re.findall(r"[\w’'-]+", text)


def own_names(text: str) -> list[str]:
    """Name phrases a question states itself (capitalised, not its opening word)."""
    names = []
    for match in _NAME.finditer(text):
        phrase = match.group(0)
        words = phrase.split()
        while words and words[0].lower() in _OPENERS and match.start() + len(phrase) - len(" ".join(words)) == match.start():
            words = words[1:]
            if not words:
                break
        phrase = " ".join(words)
        if phrase and phrase.lower() not in _OPENERS and not (match.start() == 0 and len(words) == len(match.group(0).split()) and words[0].lower() in _OPENERS):
            names.extend(_split_at_acronyms(phrase))
    return names


def _split_at_acronyms(phrase: str) -> list[str]:
    """"PTI Karachi NA" (a translated question's word salad) is three names, not one."""
    parts: list[str] = []
    run: list[str] = []
    for word in phrase.split():
        if re.fullmatch(r"[A-Z][A-Z0-9]+(?:-[A-Z0-9]+)?", word):
            parts.extend([" ".join(run)] if run else [])
            parts.append(word)
            run = []
        else:
            run.append(word)
    parts.extend([" ".join(run)] if run else [])
    return parts


def looks_like_follow_up(text: str) -> bool:
    """Only makes sense with the previous turn: "and Kamal?", "why?", "which party is he in?"."""
    stripped = text.strip()
    if _SUBSTITUTION.match(stripped):
        return True
    if _URDU_FOLLOW_UP.match(stripped):
        # "aur Farooq Sattar kaun hai?" asks with its own question word and subject, like "and who is ...?"
        return not (_ROMAN_QUESTION_WORD.search(stripped) and own_names(stripped))
    if re.match(r"(?:was|is|were|are|did|does|do|has|had|have|can|could|will|would)\s+(?:it|he|she|they|that|this|there)\b", stripped, re.IGNORECASE):
        return True  # "was it a PSP event?"
    if re.search(r"\b(?:about|of|with|from|in|at|for|by|after)\s+(?:it|that|this|them|him|her|there)\b", stripped, re.IGNORECASE):
        return True  # "what did Khalid Maqbool say about it?": "it" is the previous topic
    if _FOLLOW_UP_OPENERS.match(stripped):
        rest = re.sub(r"^and\s+", "", stripped, flags=re.IGNORECASE)
        # "and who is Tessori?" is a question of its own: a question word and its own subject.
        if stripped.lower().startswith("and ") and _QUESTION_WORD.match(rest) and own_names(rest) and not _refers_back(rest):
            return False
        return True
    if _BARE_TYPE.match(stripped):
        return True
    words = [w.lower() for w in _words(stripped)]
    if _refers_back(stripped) and not own_names(stripped):
        return True
    content = [w for w in words if w not in _OPENERS and w not in _VAGUE and len(w) > 2]
    return len(content) == 0


def _refers_back(text: str) -> bool:
    words = {w.lower() for w in _words(text)}
    if re.match(r"(?:which|what|how\s+many)\s+\w+s\b", text, re.IGNORECASE):
        words -= {"their", "they", "them"}  # "Which groups announced their merger?": the groups' own
    return bool(words & (_PERSON_PRONOUNS | _GROUP_PRONOUNS | {"it", "its", "that", "this", "those", "these", "there", "then"}))


@dataclass(frozen=True)
class Turn:
    """One answered question, as a later follow-up needs it."""

    question: str  # the English question that was answered (resolved, translated)
    lead: str | None  # the sentence the answer led with
    shown: int = 0  # passages shown so far ("more" continues after them)
    language: str = "en"
    quoted: tuple[tuple[str, int, int], ...] = ()  # (article id, start, end) of every quote shown


@dataclass(frozen=True)
class Resolved:
    question: str  # a question that stands on its own
    note: str | None = None  # how the follow-up was read, shown to the reader
    focus: str | None = None  # "and what about X?": the answer must be about X


def _shape(name: str) -> str:
    words = name.split()
    if len(words) == 1 and re.fullmatch(r"[A-Z][A-Z0-9-]+", words[0]):
        return "acronym"
    if words[0].rstrip(".") in _TITLES:
        return "person"  # "Dr Nusrat"
    if any(w.lower().strip("’'s") in ORGANISATION_WORDS or re.fullmatch(r"[A-Z]{2,}\S*", w) or re.search(r"-(?:based|led)$", w) for w in words):
        return "organisation"  # "Voice of Karachi", "London-based MQM"
    return "person" if len(words) >= 2 else "word"


_TITLES = {"Dr", "Mr", "Ms", "Mrs", "Justice"}


def _names_in(text: str) -> list[str]:
    names = []
    for match in _NAME.finditer(text):
        words = [w for w in match.group(0).split() if w.lower() not in _OPENERS or w.rstrip(".") in _TITLES]
        if words:
            names.append(re.sub(r"[’']s$", "", " ".join(words)))
    return names


def _subject_for(pronouns: set[str], previous: Turn) -> str | None:
    """Who "he" or "they" is: a person (or a group) from the previous question, or, when the
    previous question asked *who*, the one its answer named."""
    prev = previous.question
    wanted = ("person", "word") if pronouns & _PERSON_PRONOUNS else ("organisation", "acronym")
    asked = own_names(prev)
    answered = [n for n in _names_in(previous.lead or "") if not all(w in prev for w in n.split())]
    # "Who leads X?" is answered by a name; "Who is Kamran Tessori?" already names its person.
    asks_for_a_name = prev.lower().startswith(("who", "whom")) and not re.match(r"who\s+(?:is|was|are|were)\s+[A-Z]", prev, re.IGNORECASE)
    pools = [answered, asked] if asks_for_a_name else [asked, answered]
    for shapes in (wanted[:1], wanted):
        for pool in pools:
            for name in pool:
                if _shape(name) in shapes:
                    return name
    return None


_GROUP_WORD = r"(?:" + "|".join(sorted(ORGANISATION_WORDS, key=len, reverse=True)) + r")\b"


def _names_a_group(name: str, question: str) -> bool:
    """Whether the question writes ``name`` before "group", "party"...: "the Bahadurabad group"."""
    return re.search(rf"{re.escape(name)}\s+{_GROUP_WORD}", question, re.IGNORECASE) is not None


def _entity_to_replace(question: str, other: str) -> str | None:
    """The name in the previous question that "what about <other>?" swaps: one of the same shape."""
    names = own_names(question)
    if not names:
        return None
    shape = _shape(re.sub(r"^the\s+", "", other, flags=re.IGNORECASE))

    def shape_in_question(name: str) -> str:
        # "the Bahadurabad group": a name before "group", "party"... names an organisation
        own = _shape(name)
        return "organisation" if own in ("word", "person") and _names_a_group(name, question) else own

    same = [n for n in names if shape_in_question(n) == shape or {shape_in_question(n), shape} <= {"person", "word"}]
    if not same:
        # Nothing of its shape: the subject may still give way ("When did the PSP merge ...?" and
        # "Farooq Sattar?"), but not a name that only says which group ("Who leads the
        # Bahadurabad group?" and "Farooq Sattar?" is not "Who leads Farooq Sattar group?").
        same = [n for n in names if not _names_a_group(n, question)]
        if not same:
            return None
    # The subject stands after the auxiliary: "How many NA seats did PTI win ..." swaps PTI.
    subject = [n for n in same if re.search(rf"\b(?:did|does|do|was|is|were|are|has|have|had|will|would|can)\s+(?:the\s+)?{re.escape(n)}", question)]
    return (subject or same)[0]


def resolve(follow_up: str, previous: Turn) -> Resolved:
    """A follow-up turned into a question of its own, from the previous turn."""
    text = follow_up.strip()
    prev = previous.question.strip()
    prev_body = _QUESTION_WORD.sub("", prev, count=1).strip()

    bare = _BARE_TYPE.match(text)
    if bare:  # "when was that?", "why?", "who else?": the previous question, asked this way
        word = " ".join(bare.group("w").split()).lower()
        if prev_body and prev_body[:1].isupper() and not own_names(prev_body[:1]):
            prev_body = prev_body[0].lower() + prev_body[1:]
        else_ = " else" if re.search(r"\belse\b", text, re.IGNORECASE) else ""
        question = f"{word.capitalize()}{else_} {prev_body}".strip()
        question = question if question.endswith("?") else question + "?"
        return Resolved(question, _note(question))

    sub = _SUBSTITUTION.match(text)
    if sub and sub.group("y") and not (own_names(sub.group("y")) or _YEAR.search(sub.group("y")) or re.match(r"(?:the\s+)?[A-Z]", sub.group("y"))):
        sub = None  # "and if they are not allowed?" is not "and <someone>?"
    if sub:  # "and what about Farooq Sattar?": the previous question about someone else
        other = (sub.group("x") or sub.group("y") or "").strip()
        if _YEAR.fullmatch(re.sub(r"^(?:in|of|for)\s+", "", other)) and _YEAR.search(prev):
            question = _YEAR.sub(re.sub(r"^(?:in|of|for)\s+", "", other), prev, count=1)
            return Resolved(question, _note(question))
        entity = _entity_to_replace(prev, other)
        if entity and other:
            # "the PSP" -> "Farooq Sattar", not "the Farooq Sattar"; "the MQM-P" keeps its article.
            # ... and "Dr Nadeem Nusrat" -> "Raza Haroon", not "Dr Raza Haroon"
            article = r"(?:\b(?:the|Dr|Mr|Ms|Mrs)\.?\s+)?" if _shape(other) in ("person", "word") or other.lower().startswith("the ") else ""
            question = re.sub(article + re.escape(entity), lambda _: other, prev, count=1)
        else:
            question = f"{prev.rstrip('?')}: {other}?"
        return Resolved(question, _note(question), focus=other)

    lowered = {w.lower() for w in _words(text)}
    # "he" is a person we can name; "they" is too often a group the reader has in mind
    # ("the cities", "the workers"): those borrow the previous question's words instead.
    pronouns = lowered & _PERSON_PRONOUNS
    subject = _subject_for(pronouns, previous) if pronouns else None
    if subject:
        possessive = f"{subject}’s"

        def swap(match: re.Match) -> str:
            word = match.group(0).lower()
            if word in {"his", "their", "theirs", "hers"}:
                return possessive
            return subject

        # Only the pronouns that stand for this person: "what does he call their worst mistake?"
        # keeps "their" (the party's), or it would read "Raza Haroon's worst mistake".
        person = r"he|she|him|his|her|hers" if pronouns & _PERSON_PRONOUNS else r"he|she|him|his|her|hers|they|them|their|theirs"
        question = re.sub(rf"\b(?:{person})\b", swap, text, flags=re.IGNORECASE)
        return Resolved(question, _note(question))

    # "tell me more", "what else?", "where did it happen?": this question, on the previous topic.
    question = f"{text.rstrip('?. ')} ({prev.rstrip('?')})?"
    return Resolved(question, _note(question))


def _note(question: str) -> str:
    return f"Reading this as: “{question}”"


# -- conversations -------------------------------------------------------------------------


@dataclass
class Conversation:
    """One chat's memory: the last answered turn, until it expires or is reset."""

    last: Turn | None = None
    updated: float = field(default_factory=time.monotonic)
    max_age: float = CONTEXT_SECONDS

    def context(self) -> Turn | None:
        if self.last is not None and time.monotonic() - self.updated > self.max_age:
            self.last = None
        return self.last

    def remember(self, turn: Turn) -> None:
        self.last = turn
        self.updated = time.monotonic()

    def showed_more(self, count: int, quoted: tuple[tuple[str, int, int], ...] = ()) -> None:
        if self.last is not None:
            self.last = replace(self.last, shown=self.last.shown + count, quoted=self.last.quoted + quoted)

    def reset(self) -> None:
        self.last = None


class Conversations:
    """Conversations by chat, bounded in number (the least recently used go first)."""

    def __init__(self, max_chats: int = 10_000, max_age: float = CONTEXT_SECONDS):
        self.max_chats = max_chats
        self.max_age = max_age
        self._by_chat: OrderedDict[object, Conversation] = OrderedDict()

    def of(self, chat_id) -> Conversation:
        conversation = self._by_chat.get(chat_id)
        if conversation is None:
            conversation = self._by_chat[chat_id] = Conversation(max_age=self.max_age)
        self._by_chat.move_to_end(chat_id)
        while len(self._by_chat) > self.max_chats:
            self._by_chat.popitem(last=False)
        return conversation
