"""demo.dialogue: speaker prefixes, alternation, hostile text."""
from __future__ import annotations

from pathlib import Path

from demo.dialogue import MAX_INPUT_CHARS, MAX_TURNS, parse_dialogue


def test_unprefixed_lines_alternate_from_a():
    parsed = parse_dialogue("你好\n在吗\n好困啊")
    assert parsed.labels == ["A", "B", "A"] and parsed.sender == "A"
    assert [t.speaker for t in parsed.turns()] == ["[speaker1]", "[speaker2]", "[speaker1]"]
    assert parsed.canonical_text() == "A: 你好\nB: 在吗\nA: 好困啊"


def test_prefixes_in_several_spellings():
    parsed = parse_dialogue("a: hi\nB：hello\n甲：吃了吗\n乙: 吃了\n[speaker2]: ok")
    assert parsed.labels == ["A", "B", "A", "B", "B"]
    assert parsed.texts == ["hi", "hello", "吃了吗", "吃了", "ok"]


def test_mixed_prefixes_fill_gaps():
    assert parse_dialogue("one\ntwo\nB: three\nfour").labels == ["B", "A", "B", "A"]
    assert parse_dialogue("one\nB: two\nthree", alternate=False).labels == ["B", "B", "B"]
    assert parse_dialogue("A: x\ny\nB: z\nw", alternate=False).labels == ["A", "A", "B", "B"]


def test_blank_lines_and_whitespace_dropped():
    parsed = parse_dialogue("\n  A:   hi   there \n\n\t\nB: \nB: yo\n")
    assert parsed.texts == ["hi there", "yo"] and parsed.labels == ["A", "B"]


def test_empty_and_control_only_input_is_empty():
    assert not parse_dialogue("")
    assert not parse_dialogue(None)
    assert not parse_dialogue("\x00\x01\u200b\n  \n")


def test_control_characters_stripped_with_notice():
    parsed = parse_dialogue("he\x00llo\u202e\nwor\x07ld")
    assert parsed.texts == ["hello", "world"]
    assert any("control" in n for n in parsed.notices)


def test_huge_input_keeps_the_end_with_notice():
    text = "\n".join(f"line {i}" for i in range(30000))  # ~ 300k characters
    parsed = parse_dialogue(text)
    assert parsed.texts[-1] == "line 29999"
    assert len(parsed.texts) == MAX_TURNS
    assert sum(len(t) for t in parsed.texts) <= MAX_INPUT_CHARS
    assert any("most recent" in n for n in parsed.notices)
    single = parse_dialogue("x" * 100_000)
    assert len(single.texts) == 1 and len(single.texts[0]) <= MAX_INPUT_CHARS


def test_preview_marks_sender_and_escapes():
    md = parse_dialogue("A: <b>hi</b>\n*bold*").preview_markdown()
    assert "&lt;b>" in md and "\\*bold\\*" in md and md.endswith("sends the sticker")


def test_saliency_display_helpers():
    from demo.plots import display_tokens, heatmap_image, highlighted_value

    pairs = [("[speaker1]", 0.1), ("▁你好", 0.5), ("##ing", 0.25), (" ", 0.1), ("吗", 0.0)]
    assert [t for t, _ in display_tokens(pairs)] == ["A: ", "你好", "ing", " ", "吗"]
    value = highlighted_value(pairs)
    assert value[1] == ("你好", 1.0) and value[3] == (" ", None)
    assert highlighted_value([("a", 0.0)]) == [("a", 0.0)]
    image = heatmap_image(pairs, title="t")
    assert image.mode == "RGB" and image.width > 100


def test_heat_map_uses_an_installed_cjk_font():
    from demo.plots import _CJK_FONT_FILES, font_families

    families = font_families()
    assert families[-1] == "DejaVu Sans"
    if any(Path(p).is_file() for p in _CJK_FONT_FILES):  # scripts/test.sh installs fonts-wqy-microhei
        assert len(families) > 1, "a CJK font file is installed but the heat map would not use it"
