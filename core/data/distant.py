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
class EmoticonPairs:
    texts: list[str]      # messages with their tags removed
    labels: list[int]     # index into `tags` of the tag each message carried
    tags: list[str]       # the tag names (the "sticker texts" of this data)

    def __len__(self) -> int:
        return len(self.texts)


def emoticon_pairs(path: str | Path, *, min_count: int = 30, per_tag: int = 150, min_chars: int = 2,
                   max_chars: int = 60, seed: int = 0) -> EmoticonPairs:
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
    rng = random.Random(seed)
    pairs = []
    for label, tag in enumerate(tags):
        texts = sorted(set(by_tag[tag]))
        rng.shuffle(texts)
        pairs += [(text, label) for text in texts[:per_tag]]
    rng.shuffle(pairs)
    return EmoticonPairs([t for t, _ in pairs], [label for _, label in pairs], tags)
