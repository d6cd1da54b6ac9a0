"""Tests for core.data.mod and core.data.emotion on the synthesised mini MOD and, if present, the real data."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from core.data import emotion
from core.data.mod import (
    SAMPLE_COLUMNS,
    SPLIT_NAMES,
    STICKER_NUMBERINGS,
    DataError,
    LoadReport,
    Sticker,
    StickerSet,
    Turn,
    UnknownStickerError,
    UnknownStickerInDataError,
    build_samples,
    convert_dialogue_ids,
    early_release_to_official,
    load_dialogues,
    load_emotion_dict,
    load_mod,
    load_stickers,
    name_label_from_file,
    normalize_sticker_id,
    samples_from_file,
    split_samples,
)
from tests.support.mini_mod import (
    MINI_EMOTIONS,
    MISSING_IMAGE_ID,
    STICKER_FILES,
    make_mini_mod,
    real_lexicon_path,
    real_mod_dir,
)

REAL_MOD = real_mod_dir()
REAL_LEXICON = real_lexicon_path()
needs_real_mod = pytest.mark.skipif(not (REAL_MOD / "dialogues.json").is_file(),
                                    reason=f"real MOD data not found at {REAL_MOD}")


@pytest.fixture(scope="module")
def mini(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_mini_mod(tmp_path_factory.mktemp("mini"))


@pytest.fixture(scope="module")
def mini_stickers(mini: Path) -> StickerSet:
    return load_stickers(mini)


def _write_dialogues(path: Path, dialogues: object) -> Path:
    path.write_text(json.dumps(dialogues, ensure_ascii=False), encoding="utf-8")
    return path


def _sticker(sid: str, image: bool = True, name: str = "", ocr: str = "") -> Sticker:
    path = Path(f"/nonexistent/{sid}.gif") if image else None
    return Sticker(sid, f"{sid}.gif", path, ocr, name or sid)


def _turn(speaker: int, text: object, img: object = None, **extra: object) -> dict:
    turn = {"speaker_id": f"[speaker{speaker}]", "txt": text, **extra}
    if img is not None:
        turn["img_id"] = img
    return turn


# --------------------------------------------------------------------------- fixture builder


def test_mini_mod_is_fast_and_deterministic(tmp_path: Path) -> None:
    start = time.perf_counter()
    a = make_mini_mod(tmp_path / "a")
    assert time.perf_counter() - start < 0.5
    b = make_mini_mod(tmp_path / "b")
    for name in ("img2id.json", "ocr.json", "dialogues.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    assert sorted(p.name for p in (a / "stickers").iterdir()) == sorted(p.name for p in (b / "stickers").iterdir())
    assert len(list((a / "stickers").iterdir())) == len(STICKER_FILES) - 1
    other = make_mini_mod(tmp_path / "c", seed=1)
    assert (other / "dialogues.json").read_bytes() != (a / "dialogues.json").read_bytes()


def test_mini_mod_with_emotions(tmp_path: Path) -> None:
    root = make_mini_mod(tmp_path, with_emotions=True, n_dialogues=5)
    raw = json.loads((root / "dialogues.json").read_text(encoding="utf-8"))
    sticker_turns = [t for turns in raw.values() for t in turns if "img_id" in t]
    assert sticker_turns and all(isinstance(t["emotion_id"], int) for t in sticker_turns)
    assert load_emotion_dict(root / "emotion_dict.json") == MINI_EMOTIONS


# --------------------------------------------------------------------------- stickers


def test_sticker_ids_and_names() -> None:
    assert normalize_sticker_id("37") == normalize_sticker_id("037") == normalize_sticker_id(37) == "037"
    for bad in ("abc", -1, True, None, "3.5"):
        with pytest.raises(UnknownStickerError):
            normalize_sticker_id(bad)
    assert name_label_from_file("好困2.gif") == "好困"
    assert name_label_from_file("纠结0.jpeg") == "纠结"
    assert name_label_from_file("666.gif") == "666"
    assert name_label_from_file(None) == ""


def test_load_stickers_mini(mini_stickers: StickerSet) -> None:
    stickers = mini_stickers
    assert len(stickers) == len(STICKER_FILES)
    assert stickers.ids[0] == "000" and stickers.ids == sorted(stickers.ids)
    assert MISSING_IMAGE_ID not in stickers.ids_with_image()
    assert len(stickers.ids_with_image()) == len(STICKER_FILES) - 1
    missing = stickers[MISSING_IMAGE_ID]
    assert not missing.has_image and missing.image_path is None and missing.name_label == "得意"
    assert stickers["3"] is stickers["003"] is stickers[3]
    assert stickers["003"].name_label == "好困" and stickers["003"].has_image
    assert stickers["002"].ocr == ""
    assert "1" in stickers and "999" not in stickers and "x" not in stickers
    assert stickers.report.skipped == {"missing_image_file": 1}
    assert "得意.gif" in stickers.report.messages[0]
    with pytest.raises(UnknownStickerError, match="'999'"):
        stickers["999"]


def test_load_stickers_counts_unmapped_and_ocr_only(tmp_path: Path) -> None:
    root = make_mini_mod(tmp_path, n_dialogues=2)
    (root / "stickers" / "多余.png").write_bytes((root / "stickers" / "生气.png").read_bytes())
    ocr = json.loads((root / "ocr.json").read_text(encoding="utf-8"))
    ocr["250"] = {"ocr": "孤儿", "name": "孤儿.gif"}
    (root / "ocr.json").write_text(json.dumps(ocr, ensure_ascii=False), encoding="utf-8")
    report = load_stickers(root).report
    assert report.skipped["unmapped_image_file"] == 1
    assert report.skipped["ocr_without_map"] == 1
    assert any("多余.png" in m for m in report.messages)


def test_load_stickers_bad_map(tmp_path: Path) -> None:
    (tmp_path / "img2id.json").write_text('{"a.gif": "001", "b.gif": "1"}', encoding="utf-8")
    with pytest.raises(DataError, match="img2id.json.*001"):
        load_stickers(tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_stickers(tmp_path / "nowhere")


# --------------------------------------------------------------------------- dialogues and samples


def test_load_dialogues_and_samples_mini(mini: Path, mini_stickers: StickerSet) -> None:
    dialogues, report = load_dialogues(mini / "dialogues.json", mini_stickers)
    assert len(dialogues) == report.dialogues == 12
    assert all(isinstance(t, Turn) for turns in dialogues.values() for t in turns)
    samples = build_samples(dialogues, mini_stickers, report)
    assert report.samples == len(samples) > 20
    assert report.skipped["sticker_without_image"] == 1
    n_sticker_turns = sum(t.sticker_id is not None for turns in dialogues.values() for t in turns)
    assert len(samples) + report.skipped["sticker_without_image"] + report.skipped.get(
        "first_turn_sticker", 0) == n_sticker_turns
    for sample in samples:
        assert tuple(sample) == SAMPLE_COLUMNS
        turns = dialogues[sample["dialogue_id"]]
        index = sample["turn_index"]
        assert index >= 1 and sample["sample_id"] == f"{sample['dialogue_id']}#{index}"
        assert sample["texts"] == [t.text for t in turns[: index + 1]]
        assert sample["speakers"][-1] == turns[index].speaker
        assert sample["sticker_id"] == turns[index].sticker_id != MISSING_IMAGE_ID
        assert sample["emotion_id"] == -1
        assert len(sample["sticker_id"]) == 3


def test_build_samples_paper_rule() -> None:
    stickers = StickerSet([
        _sticker("000"), _sticker("001"), _sticker("002", image=False),
    ])
    dialogues = {"d": [Turn("[speaker1]", "你好", "000"), Turn("[speaker2]", "嗨"),
                       Turn("[speaker1]", "好的", "001", 4), Turn("[speaker2]", "嗯", "002")]}
    report = LoadReport()
    samples = build_samples(dialogues, stickers, report)
    assert [s["sample_id"] for s in samples] == ["d#2"]
    assert samples[0]["texts"] == ["你好", "嗨", "好的"] and samples[0]["emotion_id"] == 4
    assert report.skipped == {"first_turn_sticker": 1, "sticker_without_image": 1}


def test_malformed_json_names_file_and_position(tmp_path: Path, mini_stickers: StickerSet) -> None:
    path = tmp_path / "坏的.json"
    path.write_text('{"dialogue 1": [\n  {"speaker_id": "[speaker1]", "txt": "hi",}\n]}', encoding="utf-8")
    with pytest.raises(DataError, match=r"坏的\.json: malformed JSON at line 2, column"):
        load_dialogues(path, mini_stickers, on_error="skip")
    with pytest.raises(DataError, match="not found"):
        load_dialogues(tmp_path / "absent.json", mini_stickers)
    _write_dialogues(path, [1, 2])
    with pytest.raises(DataError, match="坏的.json.*expected an object"):
        load_dialogues(path, mini_stickers)


def test_unknown_sticker_raise_or_skip(tmp_path: Path, mini_stickers: StickerSet) -> None:
    path = _write_dialogues(tmp_path / "d.json", {
        "dialogue 7": [_turn(1, "你好"), _turn(2, "看这个", "999"), _turn(1, "好的", "1")]})
    with pytest.raises(DataError, match=r"d\.json: dialogue 'dialogue 7', turn 1: unknown sticker id '999'"):
        load_dialogues(path, mini_stickers)
    with pytest.raises(UnknownStickerError, match="dialogue 7"):
        load_dialogues(path, mini_stickers, on_error="raise")
    dialogues, report = load_dialogues(path, mini_stickers, on_error="skip")
    assert report.skipped == {"unknown_sticker": 1}
    assert "dialogue 7" in report.messages[0] and "999" in report.messages[0]
    turns = dialogues["dialogue 7"]
    assert [t.text for t in turns] == ["你好", "看这个", "好的"]
    assert turns[1].sticker_id is None and turns[2].sticker_id == "001"


def test_empty_text_and_bad_types(tmp_path: Path, mini_stickers: StickerSet) -> None:
    path = _write_dialogues(tmp_path / "d.json", {
        "dialogue 1": [_turn(1, "你好"), _turn(2, "  ", "001"), _turn(1, "嗯", "002")],
        "dialogue 2": [_turn(1, 42), "not a turn", {"txt": "无名"}, _turn(2, "好", "003", emotion_id="x")],
        "dialogue 3": "not a list",
        "dialogue 4": [],
    })
    with pytest.raises(DataError, match="dialogue 'dialogue 1', turn 1: empty turn text"):
        load_dialogues(path, mini_stickers)
    dialogues, report = load_dialogues(path, mini_stickers, on_error="skip")
    assert report.skipped == {"empty_text": 1, "bad_turn": 3, "bad_emotion_id": 1,
                              "bad_dialogue": 1, "empty_dialogue": 1}
    assert len(report.messages) == 7 and all("d.json" in m for m in report.messages)
    assert list(dialogues) == ["dialogue 1", "dialogue 2"] and report.dialogues == 2
    assert [t.text for t in dialogues["dialogue 1"]] == ["你好", "嗯"]
    assert dialogues["dialogue 2"][0].emotion_id is None
    with pytest.raises(ValueError, match="on_error"):
        load_dialogues(path, mini_stickers, on_error="ignore")  # type: ignore[arg-type]


def test_int_sticker_ids_accepted(tmp_path: Path, mini_stickers: StickerSet) -> None:
    path = _write_dialogues(tmp_path / "d.json", {"d": [_turn(1, "a"), _turn(2, "b", 5, emotion_id=2)]})
    samples = samples_from_file(path, mini_stickers)
    assert [(s["sticker_id"], s["emotion_id"]) for s in samples] == [("005", 2)]


def test_load_emotion_dict_orientations(tmp_path: Path) -> None:
    cases = {"a.json": {"开心": 1, "难过": 0}, "b.json": {"0": "难过", "1": "开心"}, "c.json": ["难过", "开心"]}
    for name, content in cases.items():
        path = _write_dialogues(tmp_path / name, content)
        assert load_emotion_dict(path) == ["难过", "开心"]
    gap = _write_dialogues(tmp_path / "gap.json", {"a": 0, "c": 2})
    assert load_emotion_dict(gap) == ["a", "emotion_1", "c"]
    dup = _write_dialogues(tmp_path / "dup.json", {"a": 0, "b": 0})
    with pytest.raises(DataError, match="dup.json.*emotion id 0"):
        load_emotion_dict(dup)


# --------------------------------------------------------------------------- sticker numberings


def test_early_release_to_official_boundaries() -> None:
    assert STICKER_NUMBERINGS == ("official", "early-release")
    cases = {"000": "000", "036": "036", "037": "038", "110": "111", "111": "113", "271": "273"}
    for early, official in cases.items():
        assert early_release_to_official(early) == official
    assert early_release_to_official(37) == early_release_to_official("37") == "038"
    converted = {early_release_to_official(k) for k in range(272)}
    assert len(converted) == 272 and not {"037", "112"} & converted and max(converted) == "273"
    for bad in ("272", 300, "abc", -1):
        with pytest.raises(UnknownStickerError):
            early_release_to_official(bad)


def test_load_dialogues_early_release(tmp_path: Path) -> None:
    stickers = StickerSet(_sticker(f"{k:03d}") for k in range(274))
    path = _write_dialogues(tmp_path / "early.json", {
        "dialogue 1": [_turn(1, "你好", "036"), _turn(2, "嗯", "37"), _turn(1, "好的", 111), _turn(2, "哈哈")],
        "dialogue 2": [_turn(1, "看", "272"), _turn(2, "再见", "271")]})
    with pytest.raises(UnknownStickerInDataError, match=r"early\.json, dialogue 'dialogue 2', turn 0.*'272'"):
        load_dialogues(path, stickers, sticker_ids="early-release")
    dialogues, report = load_dialogues(path, stickers, on_error="skip", sticker_ids="early-release")
    assert [t.sticker_id for t in dialogues["dialogue 1"]] == ["036", "038", "113", None]
    assert [(t.text, t.sticker_id) for t in dialogues["dialogue 2"]] == [("看", None), ("再见", "273")]
    assert report.skipped == {"unknown_sticker": 1} and "272" in report.messages[0]
    official, _ = load_dialogues(path, stickers, sticker_ids="official")  # 272 exists in the official numbering
    assert [t.sticker_id for t in official["dialogue 1"]] == ["036", "037", "111", None]
    samples = samples_from_file(path, stickers, sticker_ids="early-release")
    assert [s["sticker_id"] for s in samples] == ["038", "113", "273"]
    with pytest.raises(ValueError, match="sticker_ids"):
        load_dialogues(path, stickers, sticker_ids="upstream")
    raw = json.loads(path.read_text(encoding="utf-8"))
    with pytest.raises(UnknownStickerInDataError, match="'272'"):
        convert_dialogue_ids(raw)
    del raw["dialogue 2"]
    assert [t.get("img_id") for t in convert_dialogue_ids(raw)["dialogue 1"]] == ["036", "038", "113", None]
    assert convert_dialogue_ids(raw, "official") == raw


@needs_real_mod
def test_real_upstream_file_converts_to_the_official_one() -> None:
    upstream = json.loads((REAL_MOD / "dialogues_upstream.json").read_text(encoding="utf-8"))
    official = json.loads((REAL_MOD / "dialogues.json").read_text(encoding="utf-8"))
    converted = convert_dialogue_ids(upstream, "early-release")
    assert converted == official and list(converted) == list(official)
    assert upstream != official  # the files differ in their ids only


@needs_real_mod
def test_real_load_mod_early_release_equals_official(real) -> None:
    early = load_mod(REAL_MOD, dialogues_path=REAL_MOD / "dialogues_upstream.json", sticker_ids="early-release")
    assert early.samples == real.samples
    assert early.split_info == real.split_info
    assert early.split_rows == real.split_rows
    assert early.report.summary() == real.report.summary()
    as_official = load_mod(REAL_MOD, dialogues_path=REAL_MOD / "dialogues_upstream.json")  # the old mistake
    assert as_official.report.skipped["sticker_without_image"] == 6  # early 112 read as official 112


# --------------------------------------------------------------------------- splits


def _check_split_guarantees(splits, info) -> None:
    assert SPLIT_NAMES == ("train", "valid", "valid_hard", "easy_test", "hard_test")
    hard, valid_hard = set(info.held_out), set(info.held_out_valid)
    assert not hard & valid_hard  # the hard test's stickers are not model selection's
    assert set(info.never_in_train) == hard | valid_hard
    dialogue_sets = {name: set(splits[name]["dialogue_id"]) for name in SPLIT_NAMES}
    for i, a in enumerate(SPLIT_NAMES):
        for b in SPLIT_NAMES[i + 1:]:
            assert not dialogue_sets[a] & dialogue_sets[b], (a, b)
    train_gold = set(splits["train"]["sticker_id"])
    for name in ("train", "valid", "easy_test"):
        assert not set(splits[name]["sticker_id"]) & (hard | valid_hard), name
    for name in ("valid", "easy_test"):
        assert set(splits[name]["sticker_id"]) <= train_gold
    assert set(splits["hard_test"]["sticker_id"]) <= hard
    assert set(splits["valid_hard"]["sticker_id"]) <= valid_hard
    assert {name: len(splits[name]) for name in SPLIT_NAMES} == info.counts
    for name in SPLIT_NAMES:
        assert tuple(splits[name].column_names) == SAMPLE_COLUMNS


def test_split_mini_deterministic_and_leak_free(tmp_path: Path) -> None:
    root = make_mini_mod(tmp_path, n_dialogues=40)
    stickers = load_stickers(root)
    dialogues, report = load_dialogues(root / "dialogues.json", stickers)
    samples = build_samples(dialogues, stickers, report)
    splits, info = split_samples(samples, seed=3)
    again, info_again = split_samples(samples, seed=3)
    assert info == info_again
    for name in SPLIT_NAMES:
        assert splits[name]["sample_id"] == again[name]["sample_id"]
    _check_split_guarantees(splits, info)
    assert info.held_out and len(splits["hard_test"]) > 0 and len(splits["train"]) > 0
    assert info.held_out_valid and len(splits["valid_hard"]) > 0
    assert sum(info.counts.values()) + sum(info.dropped.values()) == len(samples)
    none, none_info = split_samples(samples, seed=3, hard_sticker_fraction=0.0)
    assert none_info.held_out == [] and len(none["hard_test"]) == 0
    assert none_info.held_out_valid == [] and len(none["valid_hard"]) == 0
    _check_split_guarantees(none, none_info)
    only_hard, only_hard_info = split_samples(samples, seed=3, valid_hard_sticker_fraction=0.0)
    assert only_hard_info.held_out == info.held_out and only_hard_info.held_out_valid == []
    _check_split_guarantees(only_hard, only_hard_info)


def test_load_mod_mini_end_to_end(mini: Path) -> None:
    data = load_mod(mini)
    assert data.emotion_source == "none" and data.emotion_names == [] and data.emotion_labels == {}
    assert all(s["emotion_id"] == -1 for s in data.samples)
    assert data.report.skipped["missing_image_file"] == 1
    assert data.report.skipped["sticker_without_image"] == 1
    _check_split_guarantees(data.splits, data.split_info)


def test_load_mod_with_data_emotions(tmp_path: Path) -> None:
    data = load_mod(make_mini_mod(tmp_path, with_emotions=True))
    assert data.emotion_source == "data" and data.emotion_names == MINI_EMOTIONS
    assert all(0 <= s["emotion_id"] < len(MINI_EMOTIONS) for s in data.samples)
    assert set(data.splits["train"]["emotion_id"]) - {-1}


def _tiny_xlsx(path: Path) -> Path:
    openpyxl = pytest.importorskip("openpyxl")
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(["词语", "词性种类", "词义数", "词义序号", "情感分类", "强度", "极性"])
    for row in [("开心", "adj", 2, 1, "PA", 5, 1), ("开心", "verb", 2, 2, "NN", 3, 2),
                ("愤怒", "adj", 1, 1, "NA", 5, 0), ("吃惊", "adj", 1, 1, "PC ", 5, 0),
                ("难过", "adj", 1, 1, "NB", 7, 2), ("害怕", "adj", 1, 1, "NI", 7, 2),
                (848, "x", 1, 1, "PA", 5, 1), ("坏码", "adj", 1, 1, "ZZ", 5, 1)]:
        sheet.append(row)
    book.save(path)
    return path


def test_load_lexicon_tiny_xlsx(tmp_path: Path) -> None:
    lexicon = emotion.load_lexicon(_tiny_xlsx(tmp_path / "lex.xlsx"), supplement=False)
    assert lexicon == {"开心": (0, 5), "愤怒": (2, 5), "吃惊": (6, 5), "难过": (3, 7), "害怕": (4, 7)}
    with_supplement = emotion.load_lexicon(tmp_path / "lex.xlsx")
    assert with_supplement["滚"] == emotion.STICKER_SUPPLEMENT["滚"]
    with pytest.raises(emotion.LexiconError, match="not found"):
        emotion.load_lexicon(tmp_path / "none.xlsx")


def test_load_mod_with_lexicon(tmp_path: Path) -> None:
    root = make_mini_mod(tmp_path / "mod")
    data = load_mod(root, lexicon_path=_tiny_xlsx(tmp_path / "lex.xlsx"))
    assert data.emotion_source == "lexicon" and data.emotion_names == emotion.EMOTION_CLASSES
    assert data.emotion_labels["004"] == 2  # 生气.png: OCR 气死我了 -> supplement 气死 (anger)
    assert data.emotion_labels["005"] == 0  # 开心0.jpg
    assert data.emotion_labels["007"] == 4  # 害怕.png
    for sample in data.samples:
        assert sample["emotion_id"] == data.emotion_labels.get(sample["sticker_id"], -1)


# --------------------------------------------------------------------------- emotion labelling


TINY_LEXICON = {"开心": (0, 5), "不开心": (3, 7), "生气": (2, 5), "害怕": (4, 5), "喜欢": (1, 5),
                "吃惊": (6, 3), "讨厌": (5, 3)}


def test_label_text_longest_match_and_ties() -> None:
    assert emotion.label_text("今天很开心", TINY_LEXICON) == 0
    assert emotion.label_text("我不开心", TINY_LEXICON) == 3  # longest match wins, no overlap
    assert emotion.text_class_scores("我不开心", TINY_LEXICON)[0] == 0
    assert emotion.label_text("生气又害怕", TINY_LEXICON) == 2  # tie 5 vs 5 -> earlier class
    assert emotion.label_text("害怕害怕生气", TINY_LEXICON) == 4
    assert emotion.label_text("没有情绪词", TINY_LEXICON) is None
    assert emotion.label_text("", TINY_LEXICON) is None
    assert emotion.label_text("开心", {}) is None


def test_sticker_labels_name_first_then_ocr() -> None:
    stickers = [_sticker("000", name="开心", ocr="讨厌讨厌讨厌"),  # name decides
                _sticker("001", name="哈哈", ocr="好吃惊"),  # name no match -> OCR
                _sticker("002", name="路过")]  # nothing -> absent
    labels = emotion.sticker_emotion_labels(stickers, TINY_LEXICON)
    assert labels == {"000": 0, "001": 6}
    assert emotion.class_distribution(labels)["乐"] == 1


def test_emotion_class_tables() -> None:
    assert emotion.EMOTION_CLASSES == ["乐", "好", "怒", "哀", "惧", "恶", "惊"]
    assert len(emotion.EMOTION_GLOSSES) == 7
    assert len(emotion.MINOR_TO_MAJOR) == 21
    assert Counter(emotion.MINOR_TO_MAJOR.values()) == {0: 2, 1: 5, 2: 1, 3: 4, 4: 3, 5: 5, 6: 1}
    for word, (major, intensity) in emotion.STICKER_SUPPLEMENT.items():
        assert word and 0 <= major < 7 and 1 <= intensity <= 9


@pytest.fixture(scope="module")
def real_lexicon() -> dict[str, tuple[int, int]]:
    if not REAL_LEXICON.is_file():
        pytest.skip(f"DUTIR lexicon not found at {REAL_LEXICON}")
    return emotion.load_lexicon(REAL_LEXICON)


def test_real_lexicon(real_lexicon: dict[str, tuple[int, int]]) -> None:
    assert len(real_lexicon) > 27_000
    assert real_lexicon["愤怒"][0] == 2  # code "NA" must not be read as missing
    assert real_lexicon["开心"] == (0, 5)  # highest-intensity sense kept
    assert Counter(m for m, _ in real_lexicon.values())[2] > 100
    assert emotion.label_text("我好害怕", real_lexicon) == 4


@needs_real_mod
def test_real_sticker_emotion_coverage(real_lexicon: dict[str, tuple[int, int]]) -> None:
    labels = emotion.sticker_emotion_labels(load_stickers(REAL_MOD), real_lexicon)
    assert 200 <= len(labels) <= 307
    assert all(count > 0 for count in emotion.class_distribution(labels).values())


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real() -> object:
    if not (REAL_MOD / "dialogues.json").is_file():
        pytest.skip(f"real MOD data not found at {REAL_MOD}")
    return load_mod(REAL_MOD, seed=0)


def test_real_stickers(real) -> None:
    stickers = real.stickers
    assert len(stickers) == 307 and len(stickers.ids_with_image()) == 306
    assert not stickers["112"].has_image and stickers["112"].name_label == "得意"
    assert stickers["37"].file_name == "搞笑2.gif" and stickers["037"].has_image
    assert stickers.report.skipped == {"missing_image_file": 1}


def test_real_samples(real) -> None:
    """Official ids (data README, "Sticker ids"): no dialogue uses 037 or 112 (the stickers the early release
    left out), so no sample is skipped for a gold sticker without image; ids run up to 273."""
    assert len(real.dialogues) == 818 == real.report.dialogues
    assert len(real.samples) == 3013 == real.report.samples
    assert "sticker_without_image" not in real.report.skipped
    assert real.report.skipped["first_turn_sticker"] == 380
    assert not {"unknown_sticker", "empty_text", "bad_turn"} & set(real.report.skipped)
    used = {t.sticker_id for turns in real.dialogues.values() for t in turns if t.sticker_id}
    assert sum(t.sticker_id is not None for turns in real.dialogues.values() for t in turns) == 3013 + 380
    assert "037" not in used and "112" not in used and max(used) == "273"
    targets = {s["sticker_id"] for s in real.samples}
    assert len(targets) == 232 and "112" not in targets and not any(int(t) >= 274 for t in targets)
    assert len({s["sample_id"] for s in real.samples}) == len(real.samples)


def test_real_split_seed0(real) -> None:
    info = real.split_info
    _check_split_guarantees(real.splits, info)
    n_used = len({s["sticker_id"] for s in real.samples})
    assert len(info.held_out) == round(0.1 * n_used) == len(info.held_out_valid)
    assert 150 <= info.counts["hard_test"] <= 300 and 100 <= info.counts["valid_hard"] <= 300
    assert info.counts["train"] > 1200 and info.counts["valid"] > 150 and info.counts["easy_test"] > 150
    assert sum(info.counts.values()) + sum(info.dropped.values()) == len(real.samples)
    _, other = split_samples(real.samples, seed=1)
    assert other.held_out != info.held_out
