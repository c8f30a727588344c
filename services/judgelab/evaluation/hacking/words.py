"""Content words for comparing a restated instruction with the prompt: no stop words, crude
stems, so "rhyming"/"rhymes" and "stanza"/"stanzas" compare equal."""

from __future__ import annotations

import re
from functools import lru_cache

_WORD = re.compile(r"[^\W\d_]{3,}")
_SUFFIXES = ("ing", "ed", "es", "ly", "s", "e", "y")
STEM_CHARS = 5
STOP_WORDS = frozenset(
    """
    about above after again against all also am an and any are around as at be because been
    before being below between both but by can could did do does doing done down during each
    either else even ever every few for from further get gets got had has have having he her here
    hers him his how however i if in into is it its itself just least less let like made make
    many may me might more most much must my need needs no nor not now of off often on once one
    only or other our ours out over own per please put rather really same see she should show
    since so some such sure than that the their them then there these they thing things this
    those though through thus to too two under until up upon us use used using very via want
    wanted wants was way we well were what when where whether which while who whom whose why
    will with within without would yes yet you your yours
    user users asked ask asks asking request requested requests task tasks restate restating
    restated restatement instruction instructions prompt question response answer reply include
    includes including included also additionally addition contain contains containing
    """.split()
)


def stem(word: str) -> str:
    word = word.lower()
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            break
    return word[:STEM_CHARS]


def content_words(text: str) -> list[str]:
    """Content words of ``text`` in order, lower-cased, stop words removed."""
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in STOP_WORDS]


@lru_cache(maxsize=8)
def stems(text: str) -> frozenset[str]:
    return frozenset(stem(w) for w in content_words(text))
