"""core.data.distant: (comment, emoticon tag) pairs for the text encoder's distant-supervision stage."""
from __future__ import annotations

import pytest

from core.data.distant import emoticon_pairs

LINES = ["今天考试又挂了[泪][泪]", "[哈哈]笑死我了", "好开心[哈哈][心]", "[泪]", "[泪]呜呜呜好难过", "没有表情的一行",
         "太长了" * 30 + "[泪]", "哈哈哈哈[哈哈]", "[心]爱你", "你好[罕见]", "考试又挂了 [泪]"]


def write(tmp_path, lines=LINES):
    path = tmp_path / "comments.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_pairs_strip_tags_pair_each_tag_and_drop_rare_ones(tmp_path):
    pairs = emoticon_pairs(write(tmp_path), min_count=2, per_tag=10)
    assert pairs.tags == sorted(["哈哈", "泪", "心"])            # 罕见 occurs once; too-long and tag-only lines dropped
    got = sorted((text, pairs.tags[label]) for text, label in zip(pairs.texts, pairs.labels))
    assert got == sorted([("今天考试又挂了", "泪"), ("笑死我了", "哈哈"), ("好开心", "哈哈"), ("好开心", "心"),
                          ("呜呜呜好难过", "泪"), ("哈哈哈哈", "哈哈"), ("爱你", "心"), ("考试又挂了", "泪")])
    assert all("[" not in text for text in pairs.texts) and len(pairs) == 8


def test_per_tag_caps_and_seed_fixes_the_sample(tmp_path):
    lines = [f"第{i}条评论[哈哈]" for i in range(50)] + [f"第{i}条[泪]" for i in range(5)]
    path = write(tmp_path, lines)
    pairs = emoticon_pairs(path, min_count=1, per_tag=7, seed=3)
    counts = {tag: pairs.labels.count(i) for i, tag in enumerate(pairs.tags)}
    assert counts == {"哈哈": 7, "泪": 5}
    again = emoticon_pairs(path, min_count=1, per_tag=7, seed=3)
    assert (again.texts, again.labels) == (pairs.texts, pairs.labels)
    assert emoticon_pairs(path, min_count=1, per_tag=7, seed=4).texts != pairs.texts


@pytest.mark.parametrize("kwargs, message", [({"min_count": 0}, "min_count"), ({"per_tag": 0}, "per_tag"),
                                             ({"min_count": 100}, "no emoticon tag occurs 100 times")])
def test_bad_settings_and_empty_results_are_named(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        emoticon_pairs(write(tmp_path), **kwargs)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(ValueError, match="no such corpus file"):
        emoticon_pairs(tmp_path / "nope.txt")


CONV = """E
M 我考试又挂了
M 好可怜
M 明天请你吃饭
M 好的 好的!
E
M 你是谁
M Jack
M 这个给你
M 谢谢你特意从很远的地方带过来给我这么多好吃的东西
E
M 你好
"""


def test_reply_pairs_pair_each_line_with_its_short_reply_within_a_scene(tmp_path):
    from core.data.distant import reply_pairs

    (tmp_path / "a.conv").write_text(CONV, encoding="utf-8")
    pairs = reply_pairs(tmp_path, max_reply_chars=6)
    got = sorted((text, pairs.tags[label]) for text, label in zip(pairs.texts, pairs.labels))
    # no pair across scenes, none with a reply without Chinese (Jack) or longer than 6 characters
    assert got == sorted([("我考试又挂了", "好可怜"), ("好可怜", "明天请你吃饭"), ("明天请你吃饭", "好的 好的!"),
                          ("Jack", "这个给你")])
    capped = reply_pairs(tmp_path / "a.conv", max_reply_chars=6, limit=2)
    assert len(capped) == 2 and set(capped.texts) <= set(pairs.texts)


def test_reply_pairs_cap_frequent_replies_and_name_bad_input(tmp_path):
    from core.data.distant import reply_pairs

    lines = "".join(f"E\nM 第{i}句话\nM 什么?\n" for i in range(30))
    (tmp_path / "b.conv").write_text(lines, encoding="utf-8")
    pairs = reply_pairs(tmp_path, per_reply=5)
    assert pairs.tags == ["什么?"] and len(pairs) == 5
    with pytest.raises(ValueError, match="no subtitle dialogue file"):
        reply_pairs(tmp_path / "empty_dir_missing")
    with pytest.raises(ValueError, match="per_reply"):
        reply_pairs(tmp_path, per_reply=0)
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "c.conv").write_text("E\nM Hello\nM OK\n", encoding="utf-8")
    with pytest.raises(ValueError, match="no \\(line, short reply\\) pair"):
        reply_pairs(tmp_path / "c")
