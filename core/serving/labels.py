"""Display forms of what the selector predicts: cleaned semantic labels, spelled-out emotion classes.

A semantic label is the sticker text the model reconstructs with the OCR run all masked
(``StickerSelector.semantic_labels``). Masked-token decoding leaves artifacts: stray
punctuation ("!"), a token doubled inside a word ("无辜辜委屈"), a lone particle ("了").
:func:`clean_semantic_label` removes them, in this order:

1. NFKC normalisation (full-width letters and digits become ASCII); ``[UNK]``-style special
   tokens are dropped.
2. Punctuation and symbols (Unicode categories P* and S*) become spaces; spaces are collapsed.
3. A character doubled between two other CJK characters is said once ("无辜辜委屈" → "无辜委屈");
   a run of three or more of one character becomes two ("哈哈哈哈" → "哈哈"). Reduplications at
   the start or end of a word ("哈哈", "谢谢你", "好棒棒") are kept: they are words.
4. A word (space-separated) repeated right after itself is kept once ("厉害 厉害 厉害" → "厉害").
5. A label left with only particles (了 的 吗 呢 啊 吧 嘛 呀 哦 …) or with no letter at all is empty.
"""
from __future__ import annotations

import re
import unicodedata

__all__ = ["EMOTION_GLOSSES", "PARTICLES", "clean_semantic_label", "emotion_display", "emotion_legend"]

EMOTION_GLOSSES: dict[str, str] = {
    "乐": "joy", "好": "fondness/like", "怒": "anger", "哀": "sadness", "惧": "fear", "恶": "disgust",
    "惊": "surprise",
}
"""English names of the 7 DUTIR major emotion classes (``core.data.emotion.EMOTION_CLASSES``)."""

PARTICLES = frozenset("了的吗呢啊吧嘛呀哦哇啦么噢喔呐着过得地")
"""Characters that carry no meaning alone: a label of these only is shown as empty."""

_SPECIAL = re.compile(r"\[(?:UNK|PAD|MASK|CLS|SEP|unused\d+)\]|<unk>|<pad>|<mask>|<s>|</s>", re.IGNORECASE)


def _is_cjk(char: str) -> bool:
    return "\u3400" <= char <= "\u9fff" or "\uf900" <= char <= "\ufaff" or "\U00020000" <= char <= "\U0002ffff"


def _drop_punctuation(text: str) -> str:
    kept = [" " if unicodedata.category(c)[0] in "PSZC" else c for c in text]
    return " ".join("".join(kept).split())


def _squeeze_repeats(word: str) -> str:
    """Runs of one character: 3+ → 2; a doubled CJK character between two other CJK characters → 1."""
    out: list[str] = []
    i = 0
    while i < len(word):
        j = i
        while j < len(word) and word[j] == word[i]:
            j += 1
        run = j - i
        char = word[i]
        if run >= 3:
            run = 2
        if run == 2 and _is_cjk(char) and out and _is_cjk(out[-1]) and j < len(word) and _is_cjk(word[j]):
            run = 1
        out.append(char * run)
        i = j
    return "".join(out)


def clean_semantic_label(text: object) -> str:
    """A reconstructed sticker text made readable (see the module docstring for the rules)."""
    text = unicodedata.normalize("NFKC", str(text or ""))
    text = _drop_punctuation(_SPECIAL.sub(" ", text))
    words: list[str] = []
    for word in (_squeeze_repeats(w) for w in text.split()):
        if not words or words[-1] != word:
            words.append(word)
    label = " ".join(words)
    letters = [c for c in label if c.isalnum()]
    if not letters or all(c in PARTICLES for c in letters):
        return ""
    return label


def emotion_display(name: object) -> str:
    """``"乐 joy"`` for a DUTIR class; any other emotion name as it is."""
    name = str(name)
    gloss = EMOTION_GLOSSES.get(name)
    return f"{name} {gloss}" if gloss else name


def emotion_legend(names: list[str] | None = None) -> list[tuple[str, str]]:
    """(class, English name) pairs of ``names`` (default: the 7 DUTIR classes) that have one."""
    names = list(EMOTION_GLOSSES) if names is None else [str(n) for n in names]
    return [(n, EMOTION_GLOSSES[n]) for n in names if n in EMOTION_GLOSSES]
