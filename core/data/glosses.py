"""Usage glosses: what a sticker is sent for, in a sentence, for stickers whose own text says too little.

A sticker's name and OCR text are often one or two words (可怜, 矮油, 复杂) whose chat meaning is
pragmatic: 可怜 is mostly sent about oneself, asking for sympathy; 矮油 teases. A sentence
encoder reads the literal words. The gloss table (:data:`GLOSSES_PATH`,
``core/data/sticker_glosses.json``) gives each MOD sticker one short Chinese sentence, written by
reading the sticker (picture, name and OCR text) and nothing else, never a dialogue: the feeling
or intent it expresses and the situation it is typically sent in. The text scorer can embed
``name + OCR + gloss`` (``--sticker-text name+ocr+gloss``); see docs/experiments.md, "Usage glosses".

Like the hand emotion labels (core.data.emotion), an entry applies only to a sticker whose id
*and* file name match the table, so another data folder or numbering falls back on name + OCR,
and a sticker added later is read through its own text until someone glosses it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .sticker_tables import canonical_file_name, read_sticker_table

GLOSSES_PATH = Path(__file__).with_name("sticker_glosses.json")
MAX_GLOSS_CHARS = 120


class GlossError(ValueError):
    """The gloss table cannot be read or is malformed."""


@dataclass(frozen=True)
class Gloss:
    file_name: str
    text: str


def load_glosses(path: str | Path | None = None) -> dict[str, Gloss]:
    """Read a gloss table (default :data:`GLOSSES_PATH`): ``{"stickers": {"000": {"file": "我不管.gif",
    "gloss": "..."}, ...}}`` -> zero-padded sticker id -> :class:`Gloss`. Raises GlossError naming the
    file and entry when the table is missing, not JSON, or has a malformed entry."""
    path = GLOSSES_PATH if path is None else Path(path)
    raw = read_sticker_table(path, GlossError, "the gloss table")
    table: dict[str, Gloss] = {}
    for key, entry in raw["stickers"].items():
        where = f"{path}: sticker {key!r}"
        if not isinstance(key, str) or not key.strip().isdigit():
            raise GlossError(f"{where}: sticker ids must be digit strings")
        if not isinstance(entry, dict) or set(entry) != {"file", "gloss"}:
            raise GlossError(f"{where}: expected an object with keys file and gloss, got {entry!r}")
        file_name, text = entry["file"], entry["gloss"]
        if not isinstance(file_name, str) or not file_name.strip():
            raise GlossError(f"{where}: missing file name")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_GLOSS_CHARS:
            raise GlossError(f"{where}: gloss must be text of 1..{MAX_GLOSS_CHARS} characters, got {text!r}")
        sticker_id = f"{int(key):03d}"
        if sticker_id in table:
            raise GlossError(f"{where}: sticker {sticker_id} listed twice")
        table[sticker_id] = Gloss(canonical_file_name(file_name), " ".join(text.split()))
    return table


@lru_cache(maxsize=1)
def _packaged_glosses() -> dict[str, Gloss]:
    return load_glosses()


def gloss_of(sticker, table: dict[str, Gloss] | None = None) -> str:
    """The gloss of a sticker (with .sticker_id and .file_name) when the table (default: the packaged one)
    has its id with the same file name; "" otherwise."""
    table = _packaged_glosses() if table is None else table
    entry = table.get(str(getattr(sticker, "sticker_id", "")))
    file_name = getattr(sticker, "file_name", None)
    if entry is None or not file_name or canonical_file_name(file_name) != entry.file_name:
        return ""
    return entry.text
