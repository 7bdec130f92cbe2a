"""Whether two prompts that embed close together ask the same thing: the guard behind every semantic hit.

A cosine score says two texts are about the same topic, not that they ask the same question: "enable 2FA" and
"disable 2FA", "the 3rd of May" and "the 4th of May", "Paris" and "Lyon" all score high. So a semantic candidate is
served only when the two prompts also agree on what an embedding blurs:

- numbers (digits and number words), compared as sets;
- negations (how many), and words of opposite direction (enable/disable, increase/decrease...), as sets;
- quoted strings, exactly;
- identifiers and named things: emails, URLs, words with digits or inner capitals or underscores, all-caps
  acronyms and capitalised words inside a sentence; each must appear in the other prompt (case-blind);
- the language (by its most frequent function words, or its script);
- no single swapped word: when the prompts differ in exactly one content word each ("boiling point of water" /
  "of milk", "calories in a banana" / "in an apple"), the swap is what the question is about. A paraphrase that
  rewords more than that is left to the similarity; one that swaps a lone synonym ("change" / "update") misses,
  which costs a provider call, never a wrong answer.

`Features.of` reads them once per prompt (they travel with a cache entry); `agree` compares two.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_NUMBER_WORDS = {
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
    "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen", "twenty", "thirty", "forty",
    "fifty", "sixty", "seventy", "eighty", "ninety", "hundred", "thousand", "million", "billion", "trillion",
    "first", "second", "third", "fourth", "fifth", "sixth", "seventh", "eighth", "ninth", "tenth", "last",
    "half", "quarter", "double", "triple", "twice", "once", "dozen", "single", "both", "all", "none",
}
_NEGATIONS = {"not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "without", "cannot", "nowhere",
              "lack", "lacks", "except", "excluding", "avoid", "stop", "prevent", "refuse", "fail", "fails", "failed"}
# Words whose opposite makes the opposite question. Each word maps to its pole; prompts must use the same poles.
_POLES = [
    ("enable", "disable"), ("enabled", "disabled"), ("activate", "deactivate"), ("allow", "deny"),
    ("allow", "block"), ("increase", "decrease"), ("increase", "reduce"), ("raise", "lower"), ("add", "remove"),
    ("add", "delete"), ("insert", "delete"), ("create", "delete"), ("create", "destroy"), ("install", "uninstall"),
    ("encrypt", "decrypt"), ("encode", "decode"), ("compress", "decompress"), ("import", "export"),
    ("upload", "download"), ("push", "pull"), ("buy", "sell"), ("start", "stop"), ("begin", "end"),
    ("open", "close"), ("lock", "unlock"), ("connect", "disconnect"), ("include", "exclude"), ("accept", "reject"),
    ("before", "after"), ("above", "below"), ("over", "under"), ("max", "min"), ("maximum", "minimum"),
    ("more", "less"), ("more", "fewer"), ("most", "least"), ("higher", "lower"), ("larger", "smaller"),
    ("bigger", "smaller"), ("faster", "slower"), ("better", "worse"), ("best", "worst"), ("cheapest", "expensive"),
    ("cheap", "expensive"), ("hot", "cold"), ("warm", "cool"), ("on", "off"), ("up", "down"), ("in", "out"),
    ("true", "false"), ("yes", "no"), ("win", "lose"), ("pros", "cons"), ("advantages", "disadvantages"),
    ("benefits", "risks"), ("benefits", "drawbacks"), ("north", "south"), ("east", "west"), ("left", "right"),
    ("early", "late"), ("earliest", "latest"), ("oldest", "newest"), ("old", "new"), ("first", "last"),
    ("ascending", "descending"), ("asc", "desc"), ("import", "export"), ("login", "logout"), ("sign", "unsign"),
    ("subscribe", "unsubscribe"), ("follow", "unfollow"), ("mount", "unmount"), ("merge", "split"),
    ("positive", "negative"), ("safe", "dangerous"), ("legal", "illegal"), ("possible", "impossible"),
    ("valid", "invalid"), ("visible", "hidden"), ("show", "hide"), ("public", "private"), ("inbound", "outbound"),
    ("input", "output"), ("send", "receive"), ("client", "server"), ("sync", "async"), ("synchronous", "asynchronous"),
    ("male", "female"), ("men", "women"), ("day", "night"), ("summer", "winter"), ("spring", "autumn"),
    ("celsius", "fahrenheit"), ("debit", "credit"), ("profit", "loss"), ("import", "export"),
]
# "in", "on", "up"... are too common as plain words to count as a direction; keep the poles that rarely are
# anything but one.
_COMMON = {"in", "out", "on", "off", "up", "down", "over", "under", "end", "no", "yes", "left", "right", "sign",
           "more", "most", "new", "old", "first", "last", "day", "night", "spring"}
_OPPOSITES: dict[str, set[str]] = {}
for _a, _b in _POLES:
    if _a not in _COMMON and _b not in _COMMON:
        _OPPOSITES.setdefault(_a, set()).add(_b)
        _OPPOSITES.setdefault(_b, set()).add(_a)
_NEGATING_PREFIXES = ("un", "dis", "de", "in", "im", "il", "ir", "non", "anti")

_QUOTED = re.compile(r'"([^"\n]{1,200})"|“([^”\n]{1,200})”|«([^»\n]{1,200})»|`([^`\n]{1,200})`'
                     r"|(?<![\w])'([^'\n]{1,200})'(?![\w])")
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_URL = re.compile(r"\b(?:https?|ftp)://\S+|\bwww\.\S+")
_WORD = re.compile(r"[\w][\w'’-]*")
_SENTENCE_END = re.compile(r"[.!?:;\n]")
_STOPWORDS = {
    "a", "an", "the", "is", "are", "was", "were", "be", "been", "am", "do", "does", "did", "i", "me", "my", "you",
    "your", "we", "our", "it", "its", "this", "that", "these", "those", "what", "what's", "whats", "which", "who",
    "whom", "how", "why", "when", "where", "can", "could", "would", "should", "will", "shall", "may", "might",
    "must", "to", "of", "in", "on", "at", "for", "with", "about", "by", "from", "into", "as", "and", "or", "but",
    "so", "if", "there", "here", "some", "any", "please", "tell", "explain", "give", "show", "describe", "let",
    "know", "want", "need", "way", "ways", "best", "good", "just", "really", "also", "have", "has", "had", "get",
    "make", "use", "using", "then", "than", "too", "very", "much", "many", "s", "t", "i'm", "it's", "you're",
    "is't", "kind", "sort", "like", "up", "out", "one", "ones", "thing", "things", "say", "steps", "step",
}
_NOT_NAMES = {"i", "i'm", "i've", "i'd", "i'll", "ok", "okay", "hi", "hello", "please", "thanks", "thank", "what",
              "how", "why", "when", "where", "who", "which", "can", "could", "would", "should", "is", "are", "do",
              "does", "tell", "explain", "give", "show", "list", "describe", "write", "the", "a", "an", "and", "or"}

_FUNCTION_WORDS = {
    "en": {"the", "is", "are", "what", "how", "and", "of", "to", "in", "a", "do", "does", "i", "you", "my", "for",
           "with", "can", "which", "why", "it"},
    "fr": {"le", "la", "les", "est", "quel", "quelle", "comment", "et", "de", "des", "du", "un", "une", "je",
           "vous", "pour", "avec", "pourquoi", "qu'est-ce", "que", "ce", "mon", "ma"},
    "de": {"der", "die", "das", "ist", "wie", "und", "von", "zu", "ein", "eine", "ich", "sie", "mein", "für",
           "mit", "was", "warum", "welche", "kann", "nicht"},
    "es": {"el", "la", "los", "las", "es", "qué", "cómo", "y", "de", "un", "una", "yo", "mi", "para", "con",
           "por", "cuál", "puedo", "del"},
    "it": {"il", "lo", "la", "gli", "è", "che", "come", "e", "di", "un", "una", "io", "mio", "per", "con",
           "perché", "quale", "posso", "della"},
    "pt": {"o", "a", "os", "as", "é", "que", "como", "e", "de", "um", "uma", "eu", "meu", "para", "com",
           "por", "qual", "posso", "do", "da"},
}


@dataclass(frozen=True)
class Features:
    """What a prompt says that its embedding may blur."""

    numbers: frozenset[str]
    negations: int
    poles: frozenset[str]
    quoted: frozenset[str]
    names: frozenset[str]          # identifiers and named things, lower-cased
    words: frozenset[str]          # every word, lower-cased (to look names up in)
    language: str
    sequence: tuple[str, ...] = ()  # names and numbers in the order the prompt mentions them

    @classmethod
    def of(cls, text: str) -> "Features":
        text = unicodedata.normalize("NFKC", text)
        quoted = frozenset(next(g for g in m.groups() if g is not None).strip().lower()
                           for m in _QUOTED.finditer(text))
        names: set[str] = set()
        for pattern in (_EMAIL, _URL):
            names.update(m.group(0).lower().rstrip(".,;:!?)") for m in pattern.finditer(text))
        words = [m.group(0).strip("'’-") for m in _WORD.finditer(text)]
        lowered = [w.lower() for w in words]
        numbers = {_number(m.group(0)) for m in _NUMBER.finditer(text)}
        numbers.update(w for w in lowered if w in _NUMBER_WORDS)
        negations = sum(1 for w in lowered if w in _NEGATIONS or w.endswith("n't") or w.endswith("n’t"))
        poles = frozenset(w for w in lowered if w in _OPPOSITES)
        names.update(_names(text))
        lowered_text = text.lower()
        placed = [(m.start(), _number(m.group(0))) for m in _NUMBER.finditer(text)]
        placed += [(lowered_text.find(name), name) for name in names]
        sequence = tuple(token for _, token in sorted(placed))
        return cls(frozenset(numbers), negations, poles, quoted, frozenset(names), frozenset(lowered),
                   _language(lowered, text), sequence)

    def as_json(self) -> dict[str, object]:
        return {"numbers": sorted(self.numbers), "negations": self.negations, "poles": sorted(self.poles),
                "quoted": sorted(self.quoted), "names": sorted(self.names), "words": sorted(self.words),
                "language": self.language, "sequence": list(self.sequence)}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> "Features":
        return cls(frozenset(data["numbers"]), int(data["negations"]), frozenset(data["poles"]),  # type: ignore
                   frozenset(data["quoted"]), frozenset(data["names"]), frozenset(data["words"]),  # type: ignore
                   str(data["language"]), tuple(data.get("sequence") or ()))  # type: ignore


def agree(a: Features, b: Features) -> str | None:
    """None when the prompts agree on everything `Features` reads; else what they disagree on."""
    if a.language and b.language and a.language != b.language:
        return "language"
    if a.numbers != b.numbers:
        return "numbers"
    if a.negations != b.negations:
        return "negation"
    if _opposed(a.poles - b.poles, b.poles - a.poles):
        return "opposites"
    if a.quoted != b.quoted:
        return "quoted"
    if not _names_shared(a, b) or not _names_shared(b, a):
        return "names"
    if _order(a, b) != _order(b, a):
        return "order"
    only_a, only_b = a.words - b.words, b.words - a.words
    if _prefixed_opposite(only_a, only_b):
        return "opposites"
    swapped_a, swapped_b = _unmatched(_content(only_a), _content(only_b))
    if len(swapped_a) == 1 and len(swapped_b) == 1:
        return "swapped word"
    return None


def _unmatched(only_a: set[str], only_b: set[str]) -> tuple[set[str], set[str]]:
    """The words of each side left once forms of one word (cause/causes, summary/summarize) are paired up."""
    left_a, left_b = set(only_a), set(only_b)
    for x in only_a:
        for y in only_b:
            if y in left_b and _same_word(x, y):
                left_a.discard(x)
                left_b.discard(y)
                break
    return left_a, left_b


def _same_word(x: str, y: str) -> bool:
    common = 0
    for cx, cy in zip(x, y):
        if cx != cy:
            break
        common += 1
    return common >= 4 and common >= 0.6 * min(len(x), len(y))


def _content(words: frozenset[str]) -> set[str]:
    return {w for w in words if w not in _STOPWORDS and not w.isdigit() and len(w) > 1}


def _names_shared(a: Features, b: Features) -> bool:
    """Every name of ``a`` occurs in ``b`` (as a name, a word or inside one of b's names)."""
    for name in a.names:
        if name in b.names or name in b.words:
            continue
        if any(name in other for other in b.names):
            continue
        return False
    return True


def _opposed(only_a: frozenset[str], only_b: frozenset[str]) -> bool:
    """One prompt uses a word whose opposite only the other uses (enable/disable); a pole word on one side alone
    ("is it safe to..." against "can I...") is a paraphrase's freedom, not a contradiction."""
    return any(_OPPOSITES[x] & only_b for x in only_a)


def _order(a: Features, b: Features) -> list[str]:
    """The names and numbers ``a`` shares with ``b``, in the order ``a`` mentions them (100 USD to EUR is not
    100 EUR to USD)."""
    shared = (a.names & b.names) | (a.numbers & b.numbers)
    return [token for token in a.sequence if token in shared]


def _prefixed_opposite(only_a: frozenset[str], only_b: frozenset[str]) -> bool:
    """A word of one prompt is the other's with a negating prefix (able/unable, lock/unlock, agree/disagree)."""
    for x in only_a:
        for y in only_b:
            short, long_ = (x, y) if len(x) < len(y) else (y, x)
            if len(short) >= 3 and any(long_ == p + short or long_ == p + "-" + short for p in _NEGATING_PREFIXES):
                return True
    return False


def _number(text: str) -> str:
    """One spelling per number: 1,000 and 1000 agree, 3.0 and 3 agree."""
    plain = text.replace(",", "") if re.fullmatch(r"\d{1,3}(?:,\d{3})+", text) else text
    try:
        value = float(plain)
    except ValueError:
        return plain
    return repr(int(value)) if value.is_integer() else repr(value)


def _names(text: str) -> set[str]:
    """Identifiers and named things: capitalised words inside sentences, acronyms, words with digits/_/inner caps."""
    found: set[str] = set()
    for sentence in _SENTENCE_END.split(text):
        words = [m.group(0).strip("'’-") for m in _WORD.finditer(sentence)]
        for position, word in enumerate(words):
            if not word:
                continue
            lower = word.lower()
            has_digit = any(c.isdigit() for c in word)
            has_alpha = any(c.isalpha() for c in word)
            if has_digit and has_alpha:
                found.add(lower)                                   # 2FA, gpt-4o, v2, A4
            elif "_" in word.strip("_") or (any(c.isupper() for c in word[1:]) and any(c.islower() for c in word)):
                found.add(lower)                                   # snake_case, camelCase, iPhone
            elif len(word) >= 2 and word.isupper() and has_alpha:
                found.add(lower)                                   # API, NASA
            elif position > 0 and word[:1].isupper() and lower not in _NOT_NAMES:
                found.add(lower)                                   # Paris, Kubernetes (not a sentence's first)
    return found


def _language(lowered: list[str], text: str) -> str:
    """The prompt's language, from its script or its commonest function words ("" when too short to tell)."""
    for char in text:
        if char.isalpha() and ord(char) > 0x24F:
            name = unicodedata.name(char, "")
            return name.split(" ")[0].lower() if name else "other"
    scores = {lang: sum(1 for w in lowered if w in vocab) for lang, vocab in _FUNCTION_WORDS.items()}
    best = max(scores, key=lambda lang: scores[lang])
    if scores[best] == 0:
        return ""
    return best
