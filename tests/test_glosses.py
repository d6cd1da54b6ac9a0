"""Tests for the usage-gloss table (core/data/sticker_glosses.json) and the name+ocr+gloss sticker text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.data import glosses
from core.data.emotion import load_hand_labels
from core.data.mod import Sticker, load_stickers
from core.serving.text_scorer import STICKER_TEXTS, TextScorerConfig, sticker_text
from tests.support.mini_mod import real_mod_dir

REAL_MOD = real_mod_dir()
needs_real_mod = pytest.mark.skipif(not (REAL_MOD / "img2id.json").is_file(),
                                    reason=f"real MOD data not found at {REAL_MOD}")


def _write(path: Path, stickers: object) -> Path:
    path.write_text(json.dumps({"stickers": stickers}, ensure_ascii=False), encoding="utf-8")
    return path


def test_packaged_table_glosses_every_mod_sticker_under_its_file_name() -> None:
    table = glosses.load_glosses()
    assert sorted(table) == [f"{i:03d}" for i in range(307)]
    hand = load_hand_labels()  # the other hand-read table names the same files
    assert all(table[sid].file_name == hand[sid].file_name for sid in table)
    assert all(10 <= len(g.text) <= glosses.MAX_GLOSS_CHARS for g in table.values())
    assert len({g.text for g in table.values()}) == 307  # one sentence per sticker, not a template


@needs_real_mod
def test_real_stickers_get_their_gloss() -> None:
    stickers = load_stickers(REAL_MOD)
    assert all(glosses.gloss_of(s) for s in stickers)
    pity = stickers["167"]
    text = sticker_text(pity, "name+ocr+gloss")
    assert text.startswith(sticker_text(pity, "name+ocr")) and glosses.gloss_of(pity) in text


def test_gloss_applies_only_where_id_and_file_match(tmp_path: Path) -> None:
    table = glosses.load_glosses(_write(tmp_path / "g.json", {"7": {"file": "可怜1.gif", "gloss": "求同情时发送"}}))
    assert glosses.gloss_of(Sticker("007", "可怜1.gif", None, "", "可怜"), table) == "求同情时发送"
    assert glosses.gloss_of(Sticker("007", "别的.gif", None, "", "别的"), table) == ""   # other data folder
    assert glosses.gloss_of(Sticker("008", "可怜1.gif", None, "", "可怜"), table) == ""  # other numbering
    assert glosses.gloss_of(Sticker("007", None, None, "", "可怜"), table) == ""


def test_sticker_text_with_gloss_falls_back_on_name_and_ocr() -> None:
    assert "name+ocr+gloss" in STICKER_TEXTS
    added = Sticker("user_1", "mine.png", None, "好耶", "开心")  # a sticker the table does not know
    assert sticker_text(added, "name+ocr+gloss") == sticker_text(added, "name+ocr") == "开心 好耶"
    assert TextScorerConfig(encoder="tiny", sticker_text="name+ocr+gloss").sticker_text == "name+ocr+gloss"
    with pytest.raises(ValueError, match="gloss"):
        sticker_text(added, "gloss")


@pytest.mark.parametrize("stickers, message", [
    ({"x1": {"file": "a.gif", "gloss": "一句话"}}, "digit strings"),
    ({"1": {"file": "a.gif"}}, "keys file and gloss"),
    ({"1": {"file": "a.gif", "gloss": "一句话", "note": ""}}, "keys file and gloss"),
    ({"1": {"file": " ", "gloss": "一句话"}}, "missing file name"),
    ({"1": {"file": "a.gif", "gloss": ""}}, "gloss must be text"),
    ({"1": {"file": "a.gif", "gloss": "长" * 121}}, "gloss must be text"),
    ({"1": {"file": "a.gif", "gloss": "一句话"}, "001": {"file": "b.gif", "gloss": "另一句"}}, "listed twice"),
    ([], '"stickers" object'),
])
def test_malformed_tables_are_refused_naming_the_entry(tmp_path: Path, stickers, message) -> None:
    with pytest.raises(glosses.GlossError, match=message):
        glosses.load_glosses(_write(tmp_path / "g.json", stickers))


def test_unreadable_tables_are_refused(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(glosses.GlossError, match="broken.json"):
        glosses.load_glosses(tmp_path / "broken.json")
    with pytest.raises(glosses.GlossError, match="missing.json"):
        glosses.load_glosses(tmp_path / "missing.json")
