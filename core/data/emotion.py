"""Sticker emotion labels from the DUTIR Chinese emotion lexicon.

Why this exists
---------------
The paper's emotion task (L_emo) predicts one of 52 context-dependent emotion
classes that the official MOD release stores as ``emotion_id`` on sticker
turns. The public MOD dialogues have no such labels. As a documented,
reproducible stand-in this module gives each *sticker* (not each turn) one of
the 7 major classes of the DUTIR emotion ontology (情感词汇本体, Xu Linhong et
al., 2008), derived from the sticker's human-given name and its OCR text.
The label is therefore sticker-level, not context-dependent: it is weaker
supervision than the paper's and is reported as such.

Classes
-------
DUTIR has 21 minor classes grouped into 7 major ones (from the DUTIR
documentation; the spreadsheet itself stores only the minor code):

=====  ============  ==========================================
index  major class   minor codes
=====  ============  ==========================================
0      乐 joy        PA 快乐, PE 安心
1      好 like/good  PD 尊敬, PH 赞扬, PG 相信, PB 喜爱, PK 祝愿
2      怒 anger      NA 愤怒
3      哀 sadness    NB 悲伤, NJ 失望, NH 疚, PF 思
4      惧 fear       NI 慌, NC 恐惧, NG 羞
5      恶 disgust    NE 烦闷, ND 憎恶, NN 贬责, NK 妒忌, NL 怀疑
6      惊 surprise   PC 惊奇
=====  ============  ==========================================

Lexicon reading (:func:`load_lexicon`)
--------------------------------------
* Sheet 1, columns 词语 (word), 情感分类 (minor code), 强度 (intensity). The
  file is read with openpyxl directly: pandas would turn the code ``"NA"``
  (anger) into a missing value and silently lose the whole anger class.
* Codes are whitespace-stripped; rows with a non-text word, an unknown code or a
  non-numeric intensity are skipped. Intensity is clipped to 1..9.
* A word with several senses keeps the sense of highest intensity (first row
  on ties). The auxiliary class columns are not used.
* :data:`STICKER_SUPPLEMENT` (a small hand-written table of words common on
  stickers but absent from DUTIR, e.g. 滚, 期待, 可怜, 嫌弃) is added for words
  the lexicon does not contain; it never overrides a lexicon entry.

Text labelling (:func:`label_text`)
-----------------------------------
Forward maximum matching: scan the text left to right; at each position take
the longest lexicon word starting there (matches never overlap) and move past
it, or move one character on when none starts there. Sum the intensities of
the matched words per major class and return the class with the largest sum;
ties go to the class that comes first in :data:`EMOTION_CLASSES`. ``None``
when no word matches. No negation handling.

Sticker labelling (:func:`sticker_emotion_labels`)
--------------------------------------------------
The sticker's name label (file name minus extension and trailing digits, e.g.
``好困2.gif`` -> ``好困``) is labelled first; only when it matches no lexicon
word is the OCR text labelled instead. A sticker matching nothing in either
gets no label (absent from the result).

Hand labels (:func:`apply_hand_labels`)
---------------------------------------
The lexicon misreads many stickers (迷茫 with OCR "迷茫 害怕 无辜 委屈" came out
as 恶; 厉害 "awesome" as 惧; 安静! "quiet!" as 好). Every one of the 307 MOD
stickers was therefore read once by hand against its image, name and OCR
text, and given one of the 7 classes or ``null`` (no clear emotion). The
table is :data:`HAND_LABELS_PATH` (``core/data/emotion_hand_labels.json``: sticker
id -> file name, label, optional note). By default
:func:`sticker_emotion_labels` computes the lexicon labels and then applies
the table on top: a hand label replaces the lexicon's, ``null`` removes it.
An entry applies only when both the sticker id and the sticker's file name
match the table, so a data folder with other stickers (or another numbering)
keeps its plain lexicon labels. ``hand_labels=False`` gives the raw lexicon
labels.

Conventions of the hand pass: 好 covers approval, agreement, praise,
affection, thanks, encouragement, comfort, wishes and friendly greetings or
farewells (bare acknowledgements such as 收到, 了解 get none); 乐 covers
laughter, delight, playfulness and smug self-satisfaction (得意, 骄傲);
恶 covers contempt, mockery, sarcasm, annoyance, exasperation (无语),
disbelief (不信) and dismissive refusals; 惧 follows DUTIR in holding shyness
and embarrassment (羞) as well as fear and nervousness; 哀 covers crying,
loneliness, despair, remorse, helplessness and tiredness (as
:data:`STICKER_SUPPLEMENT` does); 惊 covers shock, awe, puzzlement and
curiosity. Stickers whose expression fits no class (serious, calm, neutral
statements, questions, jokes without affect) get none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .sticker_tables import canonical_file_name, read_sticker_table

__all__ = [
    "EMOTION_CLASSES",
    "EMOTION_GLOSSES",
    "HAND_LABELS_PATH",
    "MINOR_TO_MAJOR",
    "STICKER_SUPPLEMENT",
    "HandLabel",
    "HandLabelError",
    "LexiconError",
    "apply_hand_labels",
    "class_distribution",
    "label_text",
    "load_hand_labels",
    "load_lexicon",
    "sticker_emotion_labels",
    "text_class_scores",
]

logger = logging.getLogger(__name__)

EMOTION_CLASSES: list[str] = ["乐", "好", "怒", "哀", "惧", "恶", "惊"]
"""The 7 DUTIR major emotion classes; a label is an index into this list."""

EMOTION_GLOSSES: list[str] = ["joy", "like/good", "anger", "sadness", "fear", "disgust", "surprise"]
"""English glosses of :data:`EMOTION_CLASSES`, same order."""

MINOR_TO_MAJOR: dict[str, int] = {
    **dict.fromkeys(["PA", "PE"], 0),
    **dict.fromkeys(["PD", "PH", "PG", "PB", "PK"], 1),
    "NA": 2,
    **dict.fromkeys(["NB", "NJ", "NH", "PF"], 3),
    **dict.fromkeys(["NI", "NC", "NG"], 4),
    **dict.fromkeys(["NE", "ND", "NN", "NK", "NL"], 5),
    "PC": 6,
}
"""DUTIR minor code -> index into :data:`EMOTION_CLASSES`."""

STICKER_SUPPLEMENT: dict[str, tuple[int, int]] = {
    # word: (major class index, intensity). Hand-written for this project from
    # the MOD sticker names/OCR: common, clearly emotional sticker words that
    # DUTIR lacks (it has no single-character words and little net slang).
    # Used only for words absent from the lexicon. Neutral words (看看, 上班,
    # 咖啡, ...) are deliberately left out: such stickers stay unlabelled.
    # 0 乐 joy
    "嘿嘿": (0, 5), "吼吼": (0, 5), "耶": (0, 5), "啊哈": (0, 3), "想笑": (0, 5),
    "搞笑": (0, 5), "出去玩": (0, 3), "一起玩": (0, 3), "逛逛": (0, 3),
    # 1 好 like/good (praise, affection, thanks, encouragement, greeting, assent)
    "真棒": (1, 7), "好看": (1, 5), "给力": (1, 7), "牛逼": (1, 7), "666": (1, 5),
    "爱你": (1, 7), "想你": (1, 7), "亲亲": (1, 7), "抱抱": (1, 7), "么么": (1, 7),
    "谢谢": (1, 5), "多谢": (1, 5), "加油": (1, 7), "鼓励": (1, 5), "期待": (1, 5),
    "好感": (1, 5), "卖萌": (1, 5), "呆萌": (1, 5), "晚安": (1, 3), "你好": (1, 3),
    "早上好": (1, 3), "好的": (1, 3), "可以": (1, 3), "OK": (1, 3), "没关系": (1, 3),
    # 2 怒 anger
    "滚": (2, 7), "哼": (2, 5), "打你": (2, 7), "骂人": (2, 7), "绝交": (2, 7),
    "走开": (2, 5), "气死": (2, 9), "我忍": (2, 5),
    # 3 哀 sadness (incl. tiredness, remorse)
    "哭": (3, 7), "呜呜": (3, 7), "抹泪": (3, 7), "可怜": (3, 5), "委屈": (3, 5),
    "自闭": (3, 5), "沧桑": (3, 5), "没戏": (3, 5), "累": (3, 3), "困": (3, 3),
    "睡不着": (3, 3), "我错了": (3, 5),
    # 4 惧 fear
    "吓": (4, 5),
    # 5 恶 disgust (annoyance, contempt, doubt)
    "嫌弃": (5, 7), "辣眼睛": (5, 5), "嘲讽": (5, 5), "啧啧": (5, 3), "纠结": (5, 5),
    "别闹": (5, 3), "不信": (5, 5), "我不管": (5, 3),
    # 6 惊 surprise
    "？？？": (6, 5), "唉？": (6, 3), "哇": (6, 5), "纳尼": (6, 5), "激动": (6, 5),
}
"""Hand-written supplement: sticker words missing from DUTIR (see module doc)."""

Lexicon = Mapping[str, tuple[int, int]]


class LexiconError(ValueError):
    """The lexicon file cannot be read or has an unexpected layout."""


class _StickerLike(Protocol):
    sticker_id: str
    name_label: str
    ocr: str


_WORD_COL, _CODE_COL, _INTENSITY_COL = "词语", "情感分类", "强度"


def _header_columns(header: tuple, path: Path) -> tuple[int, int, int]:
    """Return the column indices of word, minor code and intensity."""
    names = [str(h).strip() if h is not None else "" for h in header]
    try:
        return names.index(_WORD_COL), names.index(_CODE_COL), names.index(_INTENSITY_COL)
    except ValueError as exc:
        raise LexiconError(
            f"{path}: expected columns {_WORD_COL}, {_CODE_COL}, {_INTENSITY_COL}; found {names}"
        ) from exc


def _parse_row(row: tuple, cols: tuple[int, int, int]) -> tuple[str, int, int] | None:
    """Return (word, class index, intensity) for a lexicon row, or None if unusable."""
    word, code, intensity = (row[c] if c < len(row) else None for c in cols)
    if not isinstance(word, str) or not word.strip() or not isinstance(code, str):
        return None
    major = MINOR_TO_MAJOR.get(code.strip().upper())
    if major is None or isinstance(intensity, bool) or not isinstance(intensity, (int, float)):
        return None
    return word.strip(), major, int(min(9, max(1, intensity)))


def load_lexicon(path: str | Path, *, supplement: bool = True) -> dict[str, tuple[int, int]]:
    """Read the DUTIR emotion ontology spreadsheet.

    Args:
        path: the ``.xlsx`` file (e.g. ``dutir_emotion_ontology.xlsx``).
        supplement: add :data:`STICKER_SUPPLEMENT` words that the lexicon lacks.

    Returns:
        word -> (major class index into :data:`EMOTION_CLASSES`, intensity 1..9).

    Raises:
        LexiconError: the file is missing, unreadable, or lacks the expected columns.
    """
    import openpyxl  # local import: only needed when a lexicon is used

    path = Path(path)
    if not path.is_file():
        raise LexiconError(f"{path}: lexicon file not found")
    try:
        workbook = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises many types for bad files
        raise LexiconError(f"{path}: cannot read lexicon spreadsheet ({exc})") from exc
    try:
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        cols = _header_columns(next(rows, ()), path)
        lexicon: dict[str, tuple[int, int]] = {}
        for row in rows:
            parsed = _parse_row(row, cols)
            if parsed is None:
                continue
            word, major, intensity = parsed
            if word not in lexicon or intensity > lexicon[word][1]:
                lexicon[word] = (major, intensity)
    finally:
        workbook.close()
    if supplement:
        for word, entry in STICKER_SUPPLEMENT.items():
            lexicon.setdefault(word, entry)
    return lexicon


def _match_words(text: str, lexicon: Lexicon, max_len: int) -> list[str]:
    """Forward maximum matching of lexicon words in ``text`` (non-overlapping)."""
    matches: list[str] = []
    i = 0
    while i < len(text):
        for length in range(min(max_len, len(text) - i), 0, -1):
            if text[i : i + length] in lexicon:
                matches.append(text[i : i + length])
                i += length
                break
        else:
            i += 1
    return matches


def _score(text: str, lexicon: Lexicon, max_len: int | None) -> tuple[list[int], bool]:
    """Per-class intensity sums for ``text`` and whether any lexicon word matched."""
    scores = [0] * len(EMOTION_CLASSES)
    if not text or not lexicon:
        return scores, False
    if max_len is None:
        max_len = max(map(len, lexicon))
    matches = _match_words(text, lexicon, max_len)
    for word in matches:
        major, intensity = lexicon[word]
        scores[major] += intensity
    return scores, bool(matches)


def text_class_scores(text: str, lexicon: Lexicon, *, max_len: int | None = None) -> list[int]:
    """Summed intensity per class of the lexicon words found in ``text``.

    ``max_len`` (the longest lexicon word) is computed when not given; pass it
    when labelling many texts with the same lexicon.
    """
    return _score(text, lexicon, max_len)[0]


def label_text(text: str, lexicon: Lexicon, *, max_len: int | None = None) -> int | None:
    """Major emotion class index of ``text``, or ``None`` when no lexicon word occurs.

    Forward maximum matching, per-class intensity sums, argmax with ties going
    to the earlier class of :data:`EMOTION_CLASSES` (see the module docstring).
    """
    scores, matched = _score(text, lexicon, max_len)
    if not matched:
        return None
    return max(range(len(scores)), key=lambda k: (scores[k], -k))


def sticker_emotion_labels(stickers: Iterable[_StickerLike], lexicon: Lexicon, *,
                           hand_labels: bool | Mapping[str, HandLabel] = True) -> dict[str, int]:
    """Sticker id -> major emotion class index: lexicon labels, then the hand table on top.

    The lexicon labels a sticker by its name label first, else its OCR text;
    stickers matching no lexicon word get no lexicon label. With
    ``hand_labels=True`` (the default) the hand table :data:`HAND_LABELS_PATH`
    is then applied by :func:`apply_hand_labels` (only to stickers whose id
    and file name both match it); ``False`` returns the raw lexicon labels; a
    mapping (as from :func:`load_hand_labels`) is applied instead of the
    default table. Stickers with no label are absent from the result.
    """
    stickers = list(stickers)
    labels: dict[str, int] = {}
    if lexicon:
        max_len = max(map(len, lexicon))
        for sticker in stickers:
            label = label_text(sticker.name_label, lexicon, max_len=max_len)
            if label is None:
                label = label_text(sticker.ocr, lexicon, max_len=max_len)
            if label is not None:
                labels[sticker.sticker_id] = label
    if hand_labels is False:
        return labels
    table = None if hand_labels is True else hand_labels
    return apply_hand_labels(labels, stickers, table)


# --------------------------------------------------------------------------- hand labels

HAND_LABELS_PATH = Path(__file__).with_name("emotion_hand_labels.json")
"""The hand-read label table of the MOD stickers (see the module docstring)."""


class HandLabelError(ValueError):
    """The hand label table cannot be read or is malformed."""


@dataclass(frozen=True)
class HandLabel:
    """One hand-table entry: the sticker's file name and its class index (None: no label)."""

    file_name: str
    label: int | None
    note: str = ""


def _canonical_id(sticker_id: object) -> str:
    """Zero-padded form of a numeric sticker id ("37" -> "037"); other ids unchanged."""
    text = str(sticker_id).strip()
    return f"{int(text):03d}" if text.isdigit() else text


def _hand_entry(key: object, raw: object, path: Path) -> tuple[str, HandLabel]:
    """Validate one ``"id": {"file", "label", "note"?}`` entry of the table."""
    where = f"{path}: sticker {key!r}"
    if not isinstance(key, str) or not key.strip().isdigit():
        raise HandLabelError(f"{where}: sticker ids must be digit strings")
    if not isinstance(raw, dict) or set(raw) - {"file", "label", "note"}:
        raise HandLabelError(f"{where}: expected an object with keys file, label and optional note, got {raw!r}")
    file_name, label, note = raw.get("file"), raw.get("label"), raw.get("note", "")
    if not isinstance(file_name, str) or not file_name.strip():
        raise HandLabelError(f"{where}: missing file name")
    if "label" not in raw or (label is not None and label not in EMOTION_CLASSES):
        raise HandLabelError(f"{where}: label must be one of {EMOTION_CLASSES} or null, got {label!r}")
    if not isinstance(note, str):
        raise HandLabelError(f"{where}: note must be text")
    index = None if label is None else EMOTION_CLASSES.index(label)
    return _canonical_id(key), HandLabel(canonical_file_name(file_name), index, note)


def load_hand_labels(path: str | Path | None = None) -> dict[str, HandLabel]:
    """Read a hand label table (default :data:`HAND_LABELS_PATH`).

    The file is ``{"classes": [the 7 classes], "stickers": {"000": {"file":
    "我不管.gif", "label": "恶" or null, "note": "..."}, ...}}``.

    Returns:
        zero-padded sticker id -> :class:`HandLabel`.

    Raises:
        HandLabelError: the file is missing, not JSON, lists other classes,
            or has a malformed or duplicate entry.
    """
    path = HAND_LABELS_PATH if path is None else Path(path)
    raw = read_sticker_table(path, HandLabelError, "hand label table")
    if raw.get("classes", EMOTION_CLASSES) != EMOTION_CLASSES:
        raise HandLabelError(f"{path}: classes {raw.get('classes')!r} differ from {EMOTION_CLASSES}")
    table: dict[str, HandLabel] = {}
    for key, entry in raw["stickers"].items():
        sticker_id, hand = _hand_entry(key, entry, path)
        if sticker_id in table:
            raise HandLabelError(f"{path}: sticker {sticker_id} listed twice")
        table[sticker_id] = hand
    return table


def apply_hand_labels(labels: Mapping[str, int], stickers: Iterable[_StickerLike],
                      table: Mapping[str, HandLabel] | None = None) -> dict[str, int]:
    """Labels with the hand table applied on top (a new dict; ``labels`` is not changed).

    For each sticker whose id is in the table *and* whose ``file_name`` equals
    the table's file name (Unicode-normalised), the hand label replaces the
    given label, or removes it when the hand label is None. Stickers whose
    file name differs (another data folder, another numbering) or that have no
    ``file_name`` keep their given label.

    Args:
        labels: sticker id -> class index (e.g. the lexicon labels).
        stickers: the stickers the labels belong to.
        table: id -> :class:`HandLabel`; default :func:`load_hand_labels` ().
    """
    table = load_hand_labels() if table is None else table
    stickers = list(stickers)
    result = dict(labels)
    changed = added = removed = mismatched = 0
    for sticker in stickers:
        entry = table.get(_canonical_id(sticker.sticker_id))
        if entry is None:
            continue
        file_name = getattr(sticker, "file_name", None)
        if file_name is None or canonical_file_name(file_name) != entry.file_name:
            mismatched += 1
            continue
        before = result.get(sticker.sticker_id)
        if entry.label is None:
            result.pop(sticker.sticker_id, None)
        else:
            result[sticker.sticker_id] = entry.label
        changed += before is not None and entry.label is not None and before != entry.label
        added += before is None and entry.label is not None
        removed += before is not None and entry.label is None
    if mismatched:
        logger.info("hand emotion labels: %d stickers have another file name than the table's; "
                    "their lexicon labels are kept", mismatched)
    logger.info("hand emotion labels: %d changed, %d added, %d removed; %d of %d stickers labelled",
                changed, added, removed, len(result), len(stickers))
    return result


def class_distribution(labels: Mapping[str, int]) -> dict[str, int]:
    """Count of labels per class name (all classes listed, zero included)."""
    counts = {name: 0 for name in EMOTION_CLASSES}
    for label in labels.values():
        counts[EMOTION_CLASSES[label]] += 1
    return counts
