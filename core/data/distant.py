"""Distant supervision for reading stickers: chat lines paired with the emoticon sent with them.

Weibo comments carry emoticon tags (`[泪]`, `[鄙视]`, `[可怜]`, `[思考]`, ...) whose names read like
sticker names. A comment with its tags removed, paired with each tag it carried, is a (message,
sticker name) example: what people write beside an expression of pity, disdain or thought. Those
pairs cover far more expressions than the stickers of a dialogue dataset, which is what a text
encoder needs to learn in order to read stickers it was never trained on
(core.training.text_encoder; `train.text_scorer --distant-corpus`).
"""
from __future__ import annotations

import random
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

TAG = re.compile(r"\[([^\[\]\s]{1,6})\]")


@dataclass(frozen=True)
class DistantPairs:
    """Distant-supervision pairs: texts, each paired with one of a list of target texts."""

    texts: list[str]      # messages (their tags removed) or subtitle lines
    labels: list[int]     # index into `tags` of each text's target
    tags: list[str]       # the targets: emoticon tag names or short replies (the "sticker texts" of this data)

    def __len__(self) -> int:
        return len(self.texts)


def emoticon_pairs(path: str | Path, *, min_count: int = 30, per_tag: int = 150, min_chars: int = 2,
                   max_chars: int = 60, seed: int = 0) -> DistantPairs:
    """(message, tag) pairs from a file of one comment per line (e.g. zh_corpus/weibo_comments.txt).

    A message is the line without its `[tag]`s, kept when it has min_chars..max_chars characters;
    it is paired with each distinct tag of the line. Tags seen fewer than `min_count` times are
    dropped; at most `per_tag` messages (a seeded sample) are kept per tag, so frequent tags such
    as [哈哈] do not drown the rest. Pairs come out in a seeded random order."""
    if min_count < 1 or per_tag < 1 or not 0 < min_chars <= max_chars:
        raise ValueError(f"min_count={min_count}, per_tag={per_tag}, min_chars={min_chars}, max_chars={max_chars}: "
                         "need min_count >= 1, per_tag >= 1 and 0 < min_chars <= max_chars")
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such corpus file (one comment per line, with [tag] emoticons)")
    by_tag: dict[str, list[str]] = defaultdict(list)
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            found = TAG.findall(line)
            if not found:
                continue
            text = " ".join(TAG.sub(" ", line).split())
            if min_chars <= len(text) <= max_chars:
                for tag in dict.fromkeys(found):
                    by_tag[tag].append(text)
    tags = sorted(tag for tag, texts in by_tag.items() if len(texts) >= min_count)
    if not tags:
        raise ValueError(f"{path}: no emoticon tag occurs {min_count} times or more")
    return _sampled_pairs(by_tag, tags, per_tag, seed, tags)


def _sampled_pairs(texts_by_key: dict[str, list[str]], keys: list[str], per_key: int, seed: int, shown: list[str],
                   limit: int | None = None) -> DistantPairs:
    """At most `per_key` distinct texts of each key (a seeded sample), paired with the key's index, in a
    seeded random order, the first `limit` of them; `shown[i]` is the target text of key i."""
    rng = random.Random(seed)
    pairs = []
    for label, key in enumerate(keys):
        texts = sorted(set(texts_by_key[key]))
        rng.shuffle(texts)
        pairs += [(text, label) for text in texts[:per_key]]
    rng.shuffle(pairs)
    pairs = pairs[:limit]
    return DistantPairs([t for t, _ in pairs], [label for _, label in pairs], shown)


CJK = re.compile(r"[\u4e00-\u9fff]")
PUNCTUATION = re.compile(r"[\s\W_]+")


def _conv_scenes(path: Path):
    """Scenes of a subtitle .conv file ("E" starts a scene, "M text" is a line): lists of lines."""
    scene: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for line in handle:
            if line.startswith("E"):
                if scene:
                    yield scene
                scene = []
            elif line.startswith("M "):
                scene.append(" ".join(line[2:].split()))
    if scene:
        yield scene


def reply_pairs(path: str | Path, *, max_reply_chars: int = 12, per_reply: int = 20, limit: int = 20000,
                min_chars: int = 2, max_chars: int = 60, seed: int = 0) -> DistantPairs:
    """(line, short reply) pairs from subtitle dialogues: a .conv file or a folder of them (e.g.
    zh_corpus/subtitles). A sticker is a short reply to the turn before it; these pairs teach the encoder
    which short replies answer which lines, whatever the reply. A pair is two consecutive lines of a scene
    whose reply has 1..max_reply_chars characters (without punctuation and spaces; at least one Chinese
    character) and whose first line has min_chars..max_chars. The distinct replies (compared without
    punctuation) are the pairs' targets (`tags`); at most `per_reply` lines are kept per reply (a seeded
    sample, so 什么 and 好的 do not drown the rest), and at most `limit` pairs in all."""
    if max_reply_chars < 1 or per_reply < 1 or limit < 1 or not 0 < min_chars <= max_chars:
        raise ValueError(f"max_reply_chars={max_reply_chars}, per_reply={per_reply}, limit={limit}, "
                         f"min_chars={min_chars}, max_chars={max_chars}: need positive values and min_chars <= max_chars")
    path = Path(path)
    files = sorted(path.glob("*.conv")) if path.is_dir() else [path]
    if not files or not all(f.is_file() for f in files):
        raise ValueError(f"{path}: no subtitle dialogue file (.conv: 'E' starts a scene, 'M text' is a line)")
    by_reply: dict[str, list[str]] = defaultdict(list)
    shown: dict[str, str] = {}
    for file in files:
        for scene in _conv_scenes(file):
            for line, reply in zip(scene, scene[1:]):
                key = PUNCTUATION.sub("", reply)
                if 1 <= len(key) <= max_reply_chars and CJK.search(key) and min_chars <= len(line) <= max_chars:
                    by_reply[key].append(line)
                    shown.setdefault(key, reply)
    if not by_reply:
        raise ValueError(f"{path}: no (line, short reply) pair found")
    keys = sorted(by_reply)
    return _sampled_pairs(by_reply, keys, per_reply, seed, [shown[k] for k in keys], limit)
