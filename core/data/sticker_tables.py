"""Hand-made per-sticker tables kept in the repository (core/data/emotion_hand_labels.json,
core/data/sticker_glosses.json): reading their common frame, and the file-name form they match on."""
from __future__ import annotations

import json
import unicodedata
from pathlib import Path


def canonical_file_name(file_name: object) -> str:
    """A sticker file name as the tables compare it (stripped, Unicode NFC)."""
    return unicodedata.normalize("NFC", str(file_name).strip())


def read_sticker_table(path: Path, error: type[ValueError], what: str) -> dict:
    """The parsed JSON object at `path`, which must hold a "stickers" object; `error` (naming the file) when
    it is missing, unreadable, not JSON or has no such object."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: cannot read {what} ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("stickers"), dict):
        raise error(f'{path}: expected an object with a "stickers" object')
    return raw
