"""Synthesise a tiny, deterministic MOD-layout dataset for tests.

``make_mini_mod(root)`` writes::

    root/img2id.json       file name -> zero-padded id ("000".."012")
    root/ocr.json          id without leading zeros -> {"ocr", "name"} (some OCR empty)
    root/stickers/         12 small generated images: PNG (RGBA), JPEG, GIF, an
                           animated GIF with a transparent colour
    root/dialogues.json    official DSTC10 raw format, Chinese text, alternating speakers
    root/emotion_dict.json (only with ``with_emotions=True``) {name: id}

Like the real data, one mapped sticker ("012" -> 得意.gif, :data:`MISSING_IMAGE_ID`)
has no image file (``missing_image=False`` turns that off) and appears as a gold
sticker in the first dialogue. Sticker use is skewed (a head sticker, a tail).
Nothing is copied from the real data; everything is generated here.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from PIL import Image

__all__ = ["MISSING_IMAGE_ID", "MINI_EMOTIONS", "STICKER_FILES", "make_mini_mod", "real_lexicon_path",
           "real_mod_dir", "shared_data_dir"]

# (file name, OCR text) in id order; the last one has no image when missing_image=True.
STICKER_FILES: list[tuple[str, str]] = [
    ("再见.gif", "再见啦"),
    ("好的1.jpeg", "好的好的"),
    ("哈哈.gif", ""),
    ("好困2.gif", "好困啊"),
    ("生气.png", "气死我了"),
    ("开心0.jpg", "开心"),
    ("谢谢.jpeg", ""),
    ("害怕.png", "好害怕"),
    ("吃惊1.gif", "吃惊"),
    ("无语.jpeg", "无语"),
    ("加油.png", "加油！"),
    ("晚安2.jpg", ""),
    ("得意.gif", ""),
]
MISSING_IMAGE_ID = "012"
MINI_EMOTIONS: list[str] = ["快乐", "喜欢", "生气", "悲伤", "害怕", "厌恶", "惊讶"]
# Emotion id per sticker for with_emotions=True (sticker index -> emotion id).
_STICKER_EMOTION = [0, 1, 0, 3, 2, 0, 1, 4, 6, 5, 1, 3, 0]
# Sampling weights: sticker 001 is the head, 011 the tail, 012 (no image) rare.
_WEIGHTS = [3, 10, 6, 3, 3, 2, 2, 2, 2, 2, 2, 1, 1]
_PHRASES = [
    "你好呀", "今天天气真好", "我有点困了", "你在干嘛", "晚上吃什么", "好无聊啊",
    "明天见", "哈哈哈太好笑了", "别生气嘛", "真的吗", "我不信", "好吧好吧",
    "谢谢你", "加油哦", "吓我一跳", "我们去玩吧",
]
_COLOURS = [(220, 60, 60), (60, 160, 60), (60, 60, 220), (230, 200, 40)]


def _still_image(index: int, mode: str) -> Image.Image:
    """A 24x24 two-colour image; RGBA variants get a transparent corner."""
    colour = _COLOURS[index % len(_COLOURS)]
    image = Image.new("RGBA", (24, 24), colour + (255,))
    image.paste((255 - colour[0], 255 - colour[1], 255 - colour[2], 255), (6, 6, 18, 18))
    if mode == "RGBA":
        image.paste((0, 0, 0, 0), (0, 0, 8, 8))
        return image
    return image.convert(mode)


def _write_animated_gif(path: Path, index: int) -> None:
    """3-frame GIF whose palette index 0 is transparent (top-left corner)."""
    frames = []
    for k in range(3):
        frame = Image.new("P", (24, 24), 1)
        frame.putpalette([0, 0, 0, *_COLOURS[(index + k) % 4], 255, 255, 255] + [0] * (253 * 3))
        frame.paste(0, (0, 0, 8, 8))
        frame.paste(2, (10, 10, 20, 20))
        frames.append(frame)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=80, loop=0,
                   transparency=0, disposal=2)


def _write_image(path: Path, index: int) -> None:
    """Write sticker ``index`` in the format its extension names."""
    suffix = path.suffix.lower()
    if suffix == ".gif" and index % 2 == 0:
        _write_animated_gif(path, index)
    elif suffix == ".gif":
        _still_image(index, "RGB").convert("P").save(path)
    elif suffix == ".png":
        _still_image(index, "RGBA").save(path)
    else:
        _still_image(index, "RGB").save(path, format="JPEG", quality=80)


def _sticker_turn(rng: random.Random, n_stickers: int) -> int:
    """Draw a sticker index with the skewed weights."""
    return rng.choices(range(n_stickers), weights=_WEIGHTS[:n_stickers])[0]


def _dialogue(rng: random.Random, number: int, with_emotions: bool) -> list[dict]:
    """One dialogue: 6-9 alternating turns, >= 2 sticker turns after the first."""
    n_turns = rng.randint(6, 9)
    sticker_turns = set(rng.sample(range(1, n_turns), 2))
    sticker_turns |= {i for i in range(n_turns) if rng.random() < 0.25}
    turns = []
    for i in range(n_turns):
        turn = {"speaker_id": f"[speaker{i % 2 + 1}]", "txt": rng.choice(_PHRASES)}
        if i in sticker_turns:
            index = _sticker_turn(rng, len(STICKER_FILES))
            if number == 1 and i == max(sticker_turns):
                index = int(MISSING_IMAGE_ID)  # gold sticker without image, like real id 112
            turn["img_id"] = f"{index:03d}"
            if with_emotions:
                turn["emotion_id"] = _STICKER_EMOTION[index]
        turns.append(turn)
    return turns


def _write_json(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, ensure_ascii=False, indent=1), encoding="utf-8")


def make_mini_mod(root: Path, *, n_dialogues: int = 12, seed: int = 0, with_emotions: bool = False,
                  missing_image: bool = True) -> Path:
    """Write the mini dataset under ``root`` (created if needed) and return ``root``.

    Args:
        root: target folder.
        n_dialogues: number of dialogues ("dialogue 1".."dialogue N").
        seed: dialogue content seed (images and sticker table are fixed).
        with_emotions: put ``emotion_id`` on sticker turns and write ``emotion_dict.json``.
        missing_image: leave sticker "012" (得意.gif) without an image file.
    """
    root = Path(root)
    image_dir = root / "stickers"
    image_dir.mkdir(parents=True, exist_ok=True)
    for index, (file_name, _) in enumerate(STICKER_FILES):
        if missing_image and f"{index:03d}" == MISSING_IMAGE_ID:
            continue
        _write_image(image_dir / file_name, index)
    _write_json(root / "img2id.json", {name: f"{i:03d}" for i, (name, _) in enumerate(STICKER_FILES)})
    _write_json(root / "ocr.json", {str(i): {"ocr": ocr, "name": name}
                                    for i, (name, ocr) in enumerate(STICKER_FILES)})
    rng = random.Random(seed)
    dialogues = {f"dialogue {n}": _dialogue(rng, n, with_emotions) for n in range(1, n_dialogues + 1)}
    _write_json(root / "dialogues.json", dialogues)
    if with_emotions:
        _write_json(root / "emotion_dict.json", {name: i for i, name in enumerate(MINI_EMOTIONS)})
    return root


def shared_data_dir() -> Path:
    """The shared research-data folder (``../shared/data`` beside the repository).

    ``MOD_DATA_DIR`` overrides it; it may name either the MOD folder itself
    (holding ``dialogues.json``) or the data folder above it (holding ``mod/``).
    Nothing is checked for existence: tests skip when files are absent.
    """
    env = os.environ.get("MOD_DATA_DIR")
    if env:
        path = Path(env)
        return path.parent if (path / "dialogues.json").is_file() else path
    return Path(__file__).resolve().parents[2].parent / "shared" / "data"


def real_mod_dir() -> Path:
    """The real MOD data folder (see :func:`shared_data_dir`)."""
    env = os.environ.get("MOD_DATA_DIR")
    if env and (Path(env) / "dialogues.json").is_file():
        return Path(env)
    return shared_data_dir() / "mod"


def real_lexicon_path() -> Path:
    """The DUTIR lexicon spreadsheet in the shared data folder."""
    return shared_data_dir() / "lexicon" / "dutir_emotion_ontology.xlsx"
