"""core.serving.labels: cleaned semantic labels and spelled-out emotion classes."""
from __future__ import annotations

import pytest

from core.data.emotion import EMOTION_CLASSES
from core.serving.labels import clean_semantic_label, emotion_display, emotion_legend


@pytest.mark.parametrize("raw, clean", [
    ("无辜辜委屈", "无辜委屈"),          # a token doubled inside a word
    ("!", ""),                          # punctuation only
    ("了", ""),                         # a lone particle
    ("的 吧 了", ""),                   # particles only
    ("哈哈", "哈哈"),                   # a reduplicated word stays
    ("哈哈哈哈哈", "哈哈"),             # long runs become two
    ("谢谢你", "谢谢你"),
    ("好棒棒", "好棒棒"),
    ("厉害，厉害，厉害。", "厉害"),      # a repeated word once
    ("真的?", "真的"),
    ("[UNK] 晚安 [UNK]", "晚安"),
    ("ｏｋ！！", "ok"),                 # full-width → ASCII, punctuation dropped
    ("迷茫 害怕 无辜 委屈", "迷茫 害怕 无辜 委屈"),
    ("good  good night", "good night"),
    ("", ""),
    (None, ""),
    ("～～～", ""),
])
def test_clean_semantic_label(raw, clean):
    assert clean_semantic_label(raw) == clean


def test_emotions_spelled_out_in_both_languages():
    assert emotion_display("乐") == "乐 joy"
    assert emotion_display("好") == "好 fondness/like"
    assert emotion_display("emotion-17") == "emotion-17"   # a name without a gloss stays as it is
    assert [c for c, _ in emotion_legend()] == EMOTION_CLASSES
    assert emotion_legend(["惊", "x"]) == [("惊", "surprise")]
