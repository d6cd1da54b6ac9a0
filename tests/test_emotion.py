"""Tests for the hand emotion label table (core/data/emotion_hand_labels.json) and how it is applied."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from pathlib import Path

import pytest

from core.data import emotion
from core.data.mod import Sticker, load_mod, load_stickers
from tests.support.mini_mod import make_mini_mod, real_lexicon_path, real_mod_dir

REAL_MOD = real_mod_dir()
REAL_LEXICON = real_lexicon_path()
needs_real_mod = pytest.mark.skipif(not (REAL_MOD / "img2id.json").is_file(),
                                    reason=f"real MOD data not found at {REAL_MOD}")
needs_real_lexicon = pytest.mark.skipif(not REAL_LEXICON.is_file(),
                                        reason=f"DUTIR lexicon not found at {REAL_LEXICON}")

LEXICON = {"开心": (0, 5), "生气": (2, 5), "害怕": (4, 5), "讨厌": (5, 5), "吃惊": (6, 5)}
JOY, LIKE, ANGER, SAD, FEAR, DISGUST, SURPRISE = range(7)


def _sticker(sid: str, file_name: str | None, name: str = "", ocr: str = "") -> Sticker:
    return Sticker(sid, file_name, None, ocr, name)


def _write_table(path: Path, stickers: dict, classes: list[str] | None = None) -> Path:
    path.write_text(json.dumps({"classes": classes or emotion.EMOTION_CLASSES, "stickers": stickers},
                               ensure_ascii=False), encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the shipped table


def test_hand_table_well_formed() -> None:
    raw = json.loads(emotion.HAND_LABELS_PATH.read_text(encoding="utf-8"))
    assert raw["classes"] == emotion.EMOTION_CLASSES
    assert all(entry["label"] in emotion.EMOTION_CLASSES or entry["label"] is None
               for entry in raw["stickers"].values())
    table = emotion.load_hand_labels()
    assert sorted(table) == [f"{i:03d}" for i in range(307)]  # every MOD sticker was read
    assert all(h.label is None or 0 <= h.label < 7 for h in table.values())
    assert len({h.file_name for h in table.values()}) == 307  # file names are unique
    counts = Counter(h.label for h in table.values())
    assert all(counts[k] > 0 for k in range(7))


def test_load_hand_labels_rejects_malformed(tmp_path: Path) -> None:
    good = {"000": {"file": "a.gif", "label": "乐"}, "1": {"file": "b.gif", "label": None, "note": "x"}}
    table = emotion.load_hand_labels(_write_table(tmp_path / "ok.json", good))
    assert table == {"000": emotion.HandLabel("a.gif", JOY), "001": emotion.HandLabel("b.gif", None, "x")}
    bad_tables = {
        "class": {"000": {"file": "a.gif", "label": "joy"}},
        "index": {"000": {"file": "a.gif", "label": 0}},
        "no_label": {"000": {"file": "a.gif"}},
        "no_file": {"000": {"label": "乐"}},
        "extra_key": {"000": {"file": "a.gif", "label": "乐", "lexicon": "恶"}},
        "id": {"abc": {"file": "a.gif", "label": "乐"}},
        "duplicate": {"37": {"file": "a.gif", "label": "乐"}, "037": {"file": "a.gif", "label": "好"}},
    }
    for name, stickers in bad_tables.items():
        with pytest.raises(emotion.HandLabelError):
            emotion.load_hand_labels(_write_table(tmp_path / f"{name}.json", stickers))
    with pytest.raises(emotion.HandLabelError, match="classes"):
        emotion.load_hand_labels(_write_table(tmp_path / "classes.json", good, classes=["a", "b"]))
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    with pytest.raises(emotion.HandLabelError, match="cannot read"):
        emotion.load_hand_labels(tmp_path / "broken.json")
    with pytest.raises(emotion.HandLabelError, match="cannot read"):
        emotion.load_hand_labels(tmp_path / "missing.json")


# --------------------------------------------------------------------------- applying the table


def test_hand_labels_applied_on_top_of_lexicon() -> None:
    stickers = [_sticker("000", "开心.gif", name="开心"),      # lexicon joy, hand: anger
                _sticker("001", "讨厌.gif", name="讨厌"),      # lexicon disgust, hand: none
                _sticker("002", "路过.gif", name="路过"),      # lexicon nothing, hand: surprise
                _sticker("003", "害怕.gif", name="害怕"),      # not in the table: lexicon kept
                _sticker("004", "吃惊.gif", name="吃惊")]      # hand agrees with the lexicon
    table = {"000": emotion.HandLabel("开心.gif", ANGER), "001": emotion.HandLabel("讨厌.gif", None),
             "002": emotion.HandLabel("路过.gif", SURPRISE), "004": emotion.HandLabel("吃惊.gif", SURPRISE)}
    raw = emotion.sticker_emotion_labels(stickers, LEXICON, hand_labels=False)
    assert raw == {"000": JOY, "001": DISGUST, "003": FEAR, "004": SURPRISE}
    corrected = emotion.sticker_emotion_labels(stickers, LEXICON, hand_labels=table)
    assert corrected == {"000": ANGER, "002": SURPRISE, "003": FEAR, "004": SURPRISE}
    assert emotion.apply_hand_labels(raw, stickers, table) == corrected
    assert raw == {"000": JOY, "001": DISGUST, "003": FEAR, "004": SURPRISE}  # input left unchanged
    # an empty lexicon still gets the hand labels
    assert emotion.sticker_emotion_labels(stickers, {}, hand_labels=table) == {"000": ANGER, "002": SURPRISE,
                                                                              "004": SURPRISE}


def test_mismatched_file_name_is_not_overridden() -> None:
    table = {"000": emotion.HandLabel("我不管.gif", None), "001": emotion.HandLabel("好的.gif", ANGER),
             "037": emotion.HandLabel("搞笑2.gif", SAD)}
    stickers = [_sticker("000", "开心.gif", name="开心"),  # same id, other sticker
                _sticker("001", None, name="生气"),  # no file name: nothing to check against
                _sticker("37", "搞笑2.gif", name="讨厌")]  # unpadded id, same file: applied
    labels = emotion.sticker_emotion_labels(stickers, LEXICON, hand_labels=table)
    assert labels == {"000": JOY, "001": ANGER, "37": SAD}

    class NoFileName:  # a sticker-like object without a file_name attribute
        sticker_id, name_label, ocr = "000", "开心", ""

    assert emotion.sticker_emotion_labels([NoFileName()], LEXICON, hand_labels=table) == {"000": JOY}


def test_file_names_compared_unicode_normalised() -> None:
    nfd = "cafe\u0301.gif"  # é decomposed, as macOS file systems may store it
    table = {"000": emotion.HandLabel("caf\u00e9.gif", FEAR)}
    assert emotion.apply_hand_labels({}, [_sticker("000", nfd)], table) == {"000": FEAR}


def test_shipped_table_leaves_the_mini_mod_alone(tmp_path: Path) -> None:
    # the synthesised data reuses ids 000..012 with other sticker names: no override may apply
    stickers = load_stickers(make_mini_mod(tmp_path / "mod"))
    assert (emotion.sticker_emotion_labels(stickers, LEXICON)
            == emotion.sticker_emotion_labels(stickers, LEXICON, hand_labels=False))


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_stickers():
    if not (REAL_MOD / "img2id.json").is_file():
        pytest.skip(f"real MOD data not found at {REAL_MOD}")
    return load_stickers(REAL_MOD)


@pytest.fixture(scope="module")
def real_lexicon() -> dict[str, tuple[int, int]]:
    if not REAL_LEXICON.is_file():
        pytest.skip(f"DUTIR lexicon not found at {REAL_LEXICON}")
    return emotion.load_lexicon(REAL_LEXICON)


@needs_real_mod
def test_hand_table_matches_real_stickers(real_stickers) -> None:
    table = emotion.load_hand_labels()
    assert len(real_stickers) == len(table) == 307
    for sticker in real_stickers:
        assert table[sticker.sticker_id].file_name == sticker.file_name, sticker.sticker_id


@needs_real_mod
@needs_real_lexicon
def test_real_hand_labels_fix_known_misreadings(real_stickers, real_lexicon) -> None:
    raw = emotion.sticker_emotion_labels(real_stickers, real_lexicon, hand_labels=False)
    labels = emotion.sticker_emotion_labels(real_stickers, real_lexicon)
    by_name = {s.file_name: s.sticker_id for s in real_stickers}
    # the lexicon's misreadings
    assert raw[by_name["迷茫1.gif"]] == DISGUST and raw[by_name["厉害.gif"]] == FEAR
    assert raw[by_name["生气.gif"]] == DISGUST and raw[by_name["安静0.jpeg"]] == LIKE
    # stickers about being lost, scared, innocent or wronged are no longer disgust
    words = ("迷茫", "害怕", "无辜", "委屈")
    lost = [s for s in real_stickers if s.name_label in words or any(w in s.ocr for w in words[2:])]
    assert {s.file_name for s in lost} >= {"迷茫1.gif", "迷茫2.jpg", "害怕1.gif", "害怕2.jpg"}
    assert all(labels.get(s.sticker_id) != DISGUST for s in lost)
    assert labels[by_name["害怕1.gif"]] == labels[by_name["害怕2.jpg"]] == FEAR
    assert labels[by_name["迷茫1.gif"]] == FEAR  # the timid kitten: 小心翼翼 / 害怕 / 不敢动
    for name in ("厉害.gif", "厉害0.jpeg", "厉害.jpg"):  # "awesome", read as fear by the lexicon
        assert labels[by_name[name]] == LIKE
    assert labels[by_name["生气.gif"]] == ANGER and labels[by_name["安静0.jpeg"]] == ANGER
    assert by_name["我不管.gif"] not in labels  # no clear emotion: the lexicon label is removed
    assert 220 <= len(labels) <= 307 and all(n > 0 for n in emotion.class_distribution(labels).values())
    # a sticker renamed in another data folder keeps its lexicon label
    renamed = [dataclasses.replace(s, file_name="x" + s.file_name) if s.file_name == "迷茫1.gif" else s
               for s in real_stickers]
    assert emotion.sticker_emotion_labels(renamed, real_lexicon)[by_name["迷茫1.gif"]] == DISGUST


@needs_real_mod
@needs_real_lexicon
def test_load_mod_uses_hand_labels_by_default(real_stickers, real_lexicon) -> None:
    if not (REAL_MOD / "dialogues.json").is_file():
        pytest.skip(f"real MOD dialogues not found at {REAL_MOD}")
    data = load_mod(REAL_MOD, seed=0, lexicon_path=REAL_LEXICON)
    assert data.emotion_source == "lexicon"
    assert data.emotion_labels == emotion.sticker_emotion_labels(real_stickers, real_lexicon)
    assert data.emotion_labels != emotion.sticker_emotion_labels(real_stickers, real_lexicon, hand_labels=False)
    for sample in data.samples:
        assert sample["emotion_id"] == data.emotion_labels.get(sample["sticker_id"], -1)
