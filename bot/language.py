"""Questions in Roman Urdu and Urdu script, turned into the English words the articles use.

The articles are English and no translation model is available offline, so a question in
Urdu is understood the way a bilingual reader skims it: its question word gives the answer
type, its political vocabulary maps through a small lexicon, function words (ka, ki, hai,
کا, ہے) are dropped, and names are found in the corpus's own vocabulary: a Roman Urdu name
is usually written as in English already, and an Urdu-script name is matched by its
consonant skeleton (مصطفیٰ کمال -> "mstf kml" -> Mustafa Kamal; ``bot.names``). The result is
an English bag of words, question word first, which the ordinary search and answer
composer take as they take any question.

Measured with ``python -m bot eval conversation`` (see README, "Asking").
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from bot.names import Vocabulary, consonant_skeleton

ENGLISH, ROMAN_URDU, URDU, OTHER = "en", "roman_ur", "ur", "other"

# -- Roman Urdu ----------------------------------------------------------------------------

ROMAN_QUESTION_WORDS = {
    "aur kaun": "who else", "aur kon": "who else",
    "kaun": "who", "kon": "who", "kaon": "who", "kisne": "who",
    "kab": "when",
    "kahan": "where", "kahaan": "where", "kahan?": "where", "kidhar": "where",
    "kya": "what", "kia": "what", "kiya": "what",
    "kyun": "why", "kyon": "why", "kyu": "why", "kyoon": "why", "kiyon": "why", "kiun": "why",
    "kitne": "how many", "kitni": "how many", "kitna": "how much", "kitnay": "how many",
    "kaise": "how", "kese": "how", "kaisay": "how",
    "konsi": "which", "konsa": "which", "konse": "which", "kaunsi": "which", "kaunsa": "which", "kaunse": "which", "kis": "which",
}  # fmt: skip
ROMAN_FUNCTION_WORDS = frozenset(
    "sab hai hain tha thi thay the ka ki ke ko ne se mein main me mai par pe bhi hua hui huay hue huey gaya gayi gai gaye gaey "
    "kar karta karti karte karain karein kiya kiye kie ho hota hoti hotay raha rahi rahe wala wali walay ye yeh "
    "un unho unhon unhone unhein aap ap tum koi kuch sirf bas to tou na nahi nahin ab abhi sakta sakti jo jis".split()
)
ROMAN_LEXICON = {
    "aur": "and", "baad": "after", "pehle": "before", "khilaf": "against", "saath": "with", "sath": "with",
    "jeeta": "won", "jeeti": "won", "jeetay": "won", "jeete": "won", "jeet": "win", "jeetne": "win", "haar": "lost",
    "intikhabat": "elections", "intekhabat": "elections", "intikhab": "election", "chunao": "election",
    "qiyadat": "leads", "qayadat": "leads", "sarbarah": "head", "sadar": "president", "rehnuma": "leader",
    "rahnuma": "leader", "rehnumaon": "leaders", "jamaat": "party", "jamat": "party",
    "inzimam": "merger", "inzmam": "merger", "ingimam": "merger", "milap": "merger", "zam": "merger",
    "ehtijaj": "protest", "ihtijaj": "protest", "mansookh": "called off", "mansukh": "called off",
    "jalsa": "rally", "jalsay": "rally", "jaloos": "rally", "wazir": "minister", "wazire": "minister",
    "shehar": "cities", "sheher": "cities", "shehron": "cities", "ikhtilaf": "differences", "ikhtilafat": "differences",
    "phoot": "rift", "darar": "rift", "dhara": "faction", "dharra": "faction", "dharay": "factions",
    "gurop": "group", "guroop": "group", "wajah": "reason", "wajha": "reason", "sabab": "reason",
    "saal": "year", "tareekh": "date", "naam": "name", "matlab": "stand for", "pura": "full",
    "karkun": "workers", "karkunon": "workers", "taqreer": "speech", "giraftar": "picked up", "girftar": "picked up",
    "hami": "supporters", "hamiyon": "supporters", "chabiyan": "keys", "chabian": "keys", "daftar": "offices",
    "wapas": "returned", "shamil": "joined", "mulaqat": "meeting", "muntakhib": "elected", "awam": "people",
    "nashist": "seats", "nishist": "seats", "nashistain": "seats", "nishistain": "seats", "seaten": "seats",
    "bani": "founder", "nigran": "caretaker", "muahida": "deal", "muahada": "deal", "ittehad": "alliance",
    "taawun": "cooperation", "ohda": "position rank", "uhda": "position rank", "ohday": "position rank", "kaha": "said", "bola": "said",
    "bara": "highest", "bari": "highest", "baray": "highest", "ishtial": "incendiary", "ishtiaal": "incendiary",
    "angez": "", "angeez": "", "ilawa": "else", "alawa": "else", "doosra": "other", "dusra": "other",
    "batao": "tell", "bataen": "tell", "bataiye": "tell", "hukumat": "government", "safar": "traveled",
    "janwari": "January", "farwari": "February", "faroori": "February",
}  # fmt: skip
# Words that, with a question word, say a Latin-script message is Roman Urdu.
_ROMAN_MARKERS = frozenset(w for w in ROMAN_QUESTION_WORDS if " " not in w) | {
    "hai", "hain", "tha", "thi", "ka", "ki", "ke", "ko", "ne", "mein", "hua", "hui", "kya", "aur", "bhi", "se", "woh", "yeh",
}

# -- Urdu script ---------------------------------------------------------------------------

URDU_QUESTION_WORDS = {
    "اور کون": "who else", "کون": "who", "کس نے": "who", "کب": "when", "کہاں": "where", "کیوں": "why",
    "کتنے": "how many", "کتنی": "how many", "کتنا": "how much", "کیسے": "how",
    "کونسی": "which", "کونسا": "which", "کونسے": "which", "کس": "which", "کیا": "what",
}  # fmt: skip
URDU_FUNCTION_WORDS = frozenset(
    "ہے ہیں تھا تھی تھے کا کی کے کو نے سے میں پر بھی ہوا ہوئی ہوئے ہوئیں گیا گئی گئے کر کرتا کرتی کرتے کرتیں کیے کئے ہو "
    "رہا رہی رہے والا والی والے یہ آپ کوئی کچھ صرف جو جس نہیں نہ اب تک لیے لئے دیا دی دیے".split()
)
URDU_LEXICON = {
    "اور": "and", "بعد": "after", "پہلے": "before", "خلاف": "against", "ساتھ": "with",
    "جیتی": "won", "جیتیں": "won", "جیتا": "won", "جیتے": "won", "جیت": "win", "جیتنے": "win",
    "انتخابات": "elections", "الیکشن": "election", "انتخاب": "election", "عام": "general",
    "قیادت": "leads", "سربراہ": "head", "صدر": "president", "رہنما": "leader", "رہنماؤں": "leaders", "لیڈر": "leader",
    "جماعت": "party", "پارٹی": "party", "انضمام": "merger", "ضم": "merge", "احتجاج": "protest", "مظاہرہ": "protest",
    "منسوخ": "called off", "جلسہ": "rally", "ریلی": "rally", "گورنر": "governor", "وزیر": "minister",
    "وزیراعظم": "prime minister", "وزیراعلیٰ": "chief minister", "اعلیٰ": "chief", "بڑا": "highest", "سب": "", "میئر": "mayor", "شہر": "cities",
    "شہروں": "cities", "اختلافات": "differences", "اختلاف": "differences", "دھڑا": "faction", "دھڑے": "factions",
    "دھڑوں": "factions", "گروپ": "group", "گروہ": "group", "نشستیں": "seats", "نشستوں": "seats", "سیٹیں": "seats",
    "سیٹوں": "seats", "نشست": "seat", "کنوینر": "convener", "ڈپٹی": "deputy", "سینئر": "senior", "عہدہ": "position rank",
    "عہدے": "position", "تقریر": "speech", "اشتعال": "incendiary", "انگیز": "incendiary", "کارکن": "workers",
    "کارکنوں": "workers", "کارکنان": "workers", "چابیاں": "keys", "دفاتر": "offices", "حامی": "supporters",
    "حامیوں": "supporters", "گرفتار": "picked up", "معاہدہ": "deal", "اتحاد": "alliance", "تعاون": "cooperation",
    "انتخابی": "electoral", "مطلب": "stand for", "نام": "name", "پورا": "full", "بانی": "founder", "نگران": "caretaker",
    "وجہ": "reason", "سال": "year", "تاریخ": "date", "واپس": "returned", "شامل": "joined", "ملاقات": "meeting",
    "بنے": "became", "بنا": "became", "بنایا": "made", "بنائے": "made", "منتخب": "elected", "عوام": "people",
    "حکومت": "government", "سفر": "traveled", "گئے": "went", "بتائیں": "tell", "بتاؤ": "tell", "کہا": "said",
    "قومی": "National", "اسمبلی": "Assembly", "سیکرٹری": "secretary", "جنرل": "general", "تنظیمی": "organizing",
    "کمیٹی": "committee", "مرکزی": "central", "ہیڈکوارٹر": "headquarters", "واٹس": "WhatsApp", "ایپ": "WhatsApp",
    "چھوڑ": "left", "چھوڑا": "left", "چھوڑ دیا": "left", "مسلم": "Muslim", "لیگ": "League", "پیپلز": "Peoples",
    "تحریک": "Tehreek", "انصاف": "Insaf", "جماعت اسلامی": "Jamaat-i-Islami", "پاکستان": "Pakistan",
    "اس": "it", "ان": "them", "انہوں": "they", "انہیں": "them", "پروگرام": "program event", "تقریب": "event",
    "جنوری": "January", "فروری": "February", "مارچ": "March", "اپریل": "April", "مئی": "May", "جون": "June",
    "جولائی": "July", "اگست": "August", "ستمبر": "September", "اکتوبر": "October", "نومبر": "November", "دسمبر": "December",
}  # fmt: skip
# Latin letters as Urdu spells them out in acronyms (ایم کیو ایم = MQM). کے and سی are left
# out: they are far more often "of" and "like" than K and C.
URDU_LETTER_NAMES = {
    "اے": "A", "بی": "B", "ڈی": "D", "ای": "E", "ایف": "F", "جی": "G", "ایچ": "H", "آئی": "I", "جے": "J",
    "ایل": "L", "ایم": "M", "این": "N", "او": "O", "پی": "P", "کیو": "Q", "آر": "R", "ایس": "S", "ٹی": "T",
    "یو": "U", "وی": "V", "ڈبلیو": "W", "ایکس": "X", "وائی": "Y", "زیڈ": "Z",
}  # fmt: skip
# Urdu letters to the Latin consonants of ``bot.names.consonant_skeleton``. Letters that
# are vowels or silent in a transliteration map to "" (and/or a letter at a word's start).
_URDU_CONSONANTS = {
    "ب": "b", "پ": "p", "ت": "t", "ٹ": "t", "ث": "s", "ج": "j", "چ": "c", "خ": "k", "د": "d", "ڈ": "d",
    "ذ": "z", "ر": "r", "ڑ": "r", "ز": "z", "ژ": "z", "س": "s", "ش": "s", "ص": "s", "ض": "z", "ط": "t",
    "ظ": "z", "غ": "g", "ف": "f", "ق": "k", "ک": "k", "گ": "g", "ل": "l", "م": "m", "ن": "n",
}  # fmt: skip
_URDU_INITIAL = {"ح": "h", "ہ": "h", "و": "w", "ی": "y"}
_URDU_DIGITS = str.maketrans("۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩", "01234567890123456789")
_URDU_PUNCTUATION = str.maketrans({"؟": " ", "،": " ", "۔": " ", "٫": " ", "؛": " ", "!": " ", "?": " ", ",": " ", ".": " "})

@dataclass(frozen=True)
class _WordTables:
    question_words: dict[str, str]
    lexicon: dict[str, str]
    function_words: frozenset[str]


ROMAN = _WordTables(ROMAN_QUESTION_WORDS, ROMAN_LEXICON, ROMAN_FUNCTION_WORDS)
URDU_WORDS = _WordTables(URDU_QUESTION_WORDS, URDU_LEXICON, URDU_FUNCTION_WORDS)


def _read_word(word: str, tables: _WordTables, words: list[str], asking: list[str | None]) -> bool:
    """One word through a language's tables: the first question word sets ``asking[0]``, the
    lexicon adds English words, function words vanish. False: the tables do not know it."""
    if word in tables.question_words and asking[0] is None:
        asking[0] = tables.question_words[word]
    elif word in tables.lexicon:
        if tables.lexicon[word]:
            words.append(tables.lexicon[word])
    elif word not in tables.function_words and word not in tables.question_words:
        return False
    return True


# -- what we say when a language is not understood -----------------------------------------

NOT_UNDERSTOOD = {
    ENGLISH: "Sorry, I did not understand that. I read questions in English, Roman Urdu and Urdu about the articles I have.",
    URDU: "معاف کیجیے، میں یہ سوال نہیں سمجھ سکا۔ مضامین کے بارے میں سوال انگریزی، رومن اردو یا اردو میں پوچھیں، جیسے: بہادرآباد گروپ کی قیادت کون کرتا ہے؟",
    ROMAN_URDU: "Maaf kijiye, main yeh sawal nahin samajh saka. Articles ke baare mein sawal English, Roman Urdu ya Urdu mein poochiye.",
    "hi": "माफ़ कीजिए, मैं यह सवाल नहीं समझ सका। मैं अंग्रेज़ी और उर्दू (रोमन या उर्दू लिपि) के सवाल समझता हूँ।",
    "ar": "عذرًا، لم أفهم السؤال. أفهم الأسئلة بالإنجليزية والأردية فقط.",
    "zh": "抱歉，我没有理解这个问题。我只能理解英语和乌尔都语的问题。",
    "ru": "Извините, я не понял вопрос. Я понимаю вопросы только на английском и урду.",
}  # fmt: skip


@dataclass(frozen=True)
class Understood:
    """A message read as an English question. ``text`` is empty when nothing was understood."""

    language: str  # ENGLISH, ROMAN_URDU, URDU, or OTHER (with ``script`` saying which)
    text: str  # the English question to search and answer
    script: str = "latin"  # for OTHER: "hi", "ar", "zh", "ru", or "unknown"
    unknown: tuple[str, ...] = ()  # words of the question that name nothing the articles know


def _script_of(text: str) -> str:
    """The writing system most of the letters are in."""
    counts: dict[str, int] = {}
    for char in text:
        if not char.isalpha():
            continue
        name = unicodedata.name(char, "")
        script = name.split(" ", 1)[0] if name else "UNKNOWN"
        if script.startswith("CJK"):
            script = "CJK"
        counts[script] = counts.get(script, 0) + 1
    return max(counts, key=counts.get) if counts else "NONE"


_URDU_ONLY_LETTERS = set("ٹڈڑںےہھگکپچژ")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z’'-]*|\d+")


def detect_language(text: str) -> tuple[str, str]:
    """(language, script) of a message: en / roman_ur / ur, or other with its script."""
    script = _script_of(text)
    if script == "ARABIC":
        urdu = any(c in _URDU_ONLY_LETTERS for c in text)
        return (URDU, "ur") if urdu else (OTHER, "ar")
    if script == "LATIN" or script == "NONE":
        words = [w.lower() for w in _LATIN_WORD.findall(text)]
        markers = [w for w in words if w in _ROMAN_MARKERS]
        distinctive = any(w in ROMAN_QUESTION_WORDS and w not in {"kis"} for w in words)
        if len(markers) >= 2 or ((distinctive or markers) and len(words) <= 3):
            return ROMAN_URDU, "latin"
        return ENGLISH, "latin"
    return OTHER, {"DEVANAGARI": "hi", "CJK": "zh", "HIRAGANA": "zh", "KATAKANA": "zh", "CYRILLIC": "ru"}.get(script, "unknown")


def _question_first(question_word: str | None, words: list[str]) -> str:
    body = " ".join(w for w in words if w)
    if not body:
        return f"{question_word.capitalize()}?" if question_word else ""
    text = f"{question_word} {body}" if question_word else body
    return text[:1].upper() + text[1:] + "?"


def roman_urdu_to_english(text: str, vocabulary: Vocabulary | None = None) -> str:
    """'MQM-P ka convener kaun hai?' -> 'Who convener MQM-P?': a bag of English words."""
    asking: list[str | None] = [None]  # the question word, once found
    words: list[str] = []
    tokens = re.findall(r"[\w’'-]+", text)
    honorific = bool(tokens) and tokens[-1].lower() in ("hain", "thay", "the")
    skip = False
    for n, token in enumerate(tokens):
        lower = token.lower()
        if skip:
            skip = False
            continue
        pair = f"{lower} {tokens[n + 1].lower()}" if n + 1 < len(tokens) else ""
        if pair in ROMAN_QUESTION_WORDS and asking[0] is None:
            asking[0], skip = ROMAN_QUESTION_WORDS[pair], True
        elif lower in ("woh", "wo", "vo", "voh"):
            words.append("he" if honorific else "that")  # woh ... hain: "he" (respectful); else "that"
        elif len(token) > 1 and token.isupper():
            words.append(token)  # an acronym (NA, PTI), never a function word ("na" = not)
        elif not _read_word(lower, ROMAN, words, asking):
            words.append(token)  # English words and names are written as in English already
    return _question_first(asking[0], words)


def _urdu_skeleton(word: str) -> str:
    letters = []
    for i, char in enumerate(word):
        if i == 0 and char in _URDU_INITIAL:
            letters.append(_URDU_INITIAL[char])
        else:
            letters.append(_URDU_CONSONANTS.get(char, ""))
    return re.sub(r"(.)\1+", r"\1", "".join(letters))


def urdu_to_english(text: str, vocabulary: Vocabulary | None) -> str:
    """An Urdu-script question as English words: lexicon, acronyms, and names by skeleton."""
    clean = text.translate(_URDU_DIGITS).translate(_URDU_PUNCTUATION).replace("\u200c", "")
    tokens = clean.split()
    asking: list[str | None] = [None]  # the question word, once found
    words: list[str] = []
    unmatched: list[str] = []
    honorific = bool(tokens) and tokens[-1] in ("ہیں", "تھے")
    yes_no = None
    if tokens and tokens[0] == "کیا" and len(tokens) > 2:
        # A leading کیا asks yes or no ("کیا وہ پی ایس پی کا پروگرام تھا؟" = "was that a PSP event?").
        yes_no = "was" if any(t in ("تھا", "تھی", "تھے") for t in tokens) else "is"
        tokens = tokens[1:]
    i = 0
    while i < len(tokens):
        token = tokens[i]
        pair = f"{token} {tokens[i + 1]}" if i + 1 < len(tokens) else None
        if pair and pair in URDU_QUESTION_WORDS and asking[0] is None:
            asking[0] = URDU_QUESTION_WORDS[pair]
            i += 2
            continue
        if pair and pair in URDU_LEXICON:
            words.append(URDU_LEXICON[pair])
            i += 2
            continue
        if token in URDU_LETTER_NAMES:  # a spelled-out acronym: ایم کیو ایم -> MQM
            letters = []
            while i < len(tokens) and tokens[i] in URDU_LETTER_NAMES:
                letters.append(URDU_LETTER_NAMES[tokens[i]])
                i += 1
            if len(letters) > 1:
                acronym = "".join(letters)
                # "ایم کیو ایم پاکستان" is how Urdu writes MQM-P, when the corpus knows that name.
                if i < len(tokens) and tokens[i] == "پاکستان" and vocabulary is not None and vocabulary.knows(f"{acronym}-P"):
                    acronym, i = f"{acronym}-P", i + 1
                words.append(acronym)
                continue
            i -= 1  # a lone letter name is an ordinary word ("پی" = drank); read it as one
        if token == "وہ":
            words.append("he" if honorific else "that")  # وہ ... ہیں: "he" (respectful); else "that"
        elif _read_word(token, URDU_WORDS, words, asking):
            pass
        elif token.isascii():
            words.append(token)  # Latin letters or digits inside an Urdu question
        elif vocabulary is not None:
            # A name: Urdu often writes one English word as two (قائم خانی, لیاقت آباد).
            joined = vocabulary.by_skeleton(_urdu_skeleton(token + tokens[i + 1])) if pair else None
            if joined and pair.split()[1] not in URDU_FUNCTION_WORDS:
                words.append(joined)
                i += 2
                continue
            name = vocabulary.closest_skeleton(_urdu_skeleton(token))
            if name:
                words.append(name)
            else:
                unmatched.append(token)
        i += 1
    question_word = asking[0]
    if yes_no and question_word is None:
        question_word = yes_no
    elif question_word in ("who", "what") and tokens and tokens[-1] in ("ہے", "ہیں") and "he" not in words:
        question_word += " is"
    return _question_first(question_word, words), tuple(unmatched)


# How people type in a chat: no apostrophes, short forms ("whos", "didnt", "ppl").
_CHAT_FORMS = {
    "whos": "who is", "whats": "what is", "wats": "what is", "wat": "what", "wht": "what", "hw": "how", "wheres": "where is",
    "whens": "when is", "hows": "how is", "whys": "why is", "didnt": "didn’t", "doesnt": "doesn’t", "dont": "don’t",
    "isnt": "isn’t", "wasnt": "wasn’t", "werent": "weren’t", "arent": "aren’t", "hasnt": "hasn’t",
    "havent": "haven’t", "hadnt": "hadn’t", "cant": "can’t", "couldnt": "couldn’t", "wont": "won’t",
    "wouldnt": "wouldn’t", "shouldnt": "shouldn’t", "theyre": "they’re", "hes": "he is", "shes": "she is",
    "theyve": "they’ve", "ppl": "people", "govt": "government", "abt": "about", "bcoz": "because", "coz": "because",
    "thru": "through", "yr": "year", "yrs": "years", "elex": "election", "pls": "please", "plz": "please",
}  # fmt: skip
_CHAT_FORM = re.compile(r"\b(?:" + "|".join(_CHAT_FORMS) + r")\b", re.IGNORECASE)


def spelled_out(text: str) -> str:
    """A chat message with its short forms written out ("whos the mayor" -> "who is the mayor")."""
    return _CHAT_FORM.sub(lambda m: _CHAT_FORMS[m.group(0).lower()], text)


def understand(text: str, vocabulary: Vocabulary | None = None) -> Understood:
    """Read a message in English, Roman Urdu or Urdu script as an English question."""
    text = spelled_out(text)
    language, script = detect_language(text)
    if language == ENGLISH:
        return Understood(ENGLISH, text)
    if language == ROMAN_URDU:
        return Understood(ROMAN_URDU, roman_urdu_to_english(text, vocabulary))
    if language == URDU:
        english, unmatched = urdu_to_english(text, vocabulary)
        # A word that is neither in the lexicon nor a corpus name by its consonants: when the
        # question names nothing we know, it is about something the articles do not mention.
        unknown = unmatched if not re.search(r"\b[A-Z]", english[1:]) else ()
        return Understood(URDU, english, "ur", unknown)
    return Understood(OTHER, "", script)


def not_understood_reply(understood: Understood) -> str:
    """'I did not understand', in the language of the message where we can say it."""
    if understood.language == OTHER:
        return NOT_UNDERSTOOD.get(understood.script, NOT_UNDERSTOOD[ENGLISH])
    return NOT_UNDERSTOOD.get(understood.language, NOT_UNDERSTOOD[ENGLISH])


__all__ = ["ENGLISH", "OTHER", "ROMAN_URDU", "URDU", "Understood", "consonant_skeleton", "detect_language", "not_understood_reply", "understand"]
