"""Annotation records: the labels, the :class:`Annotation` dataclass, the
canonical form and hash of a dialogue, and the validation of every field.

Records are keyed by ``(dialogue_hash, sticker_id, annotator)``;
``dialogue_hash`` is the sha256 of :func:`normalize_dialogue`.

Plain Python (no SQLAlchemy), so that readers of exports
(:mod:`core.annotations.positives`) need no database driver.
"""

from __future__ import annotations

import dataclasses
import hashlib
import operator
import unicodedata
from datetime import datetime, timezone
from typing import Any, Mapping

LABELS: tuple[str, str] = ("acceptable", "not_acceptable")

MAX_DIALOGUE_CHARS = 100_000
MAX_STICKER_ID_CHARS = 256
MAX_ANNOTATOR_CHARS = 64
MAX_META_CHARS = 256  # source_sample_id, model_version


@dataclasses.dataclass(frozen=True)
class Annotation:
    dialogue_hash: str
    dialogue_text: str
    sticker_id: str
    label: str
    annotator: str
    created_at: datetime
    updated_at: datetime
    source_sample_id: str | None
    model_version: str | None
    model_rank: int | None

    @property
    def key(self) -> tuple[str, str, str]:
        """Unique key: (dialogue_hash, sticker_id, annotator)."""
        return (self.dialogue_hash, self.sticker_id, self.annotator)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (timestamps as ISO-8601 UTC strings)."""
        d = dataclasses.asdict(self)
        d["created_at"] = _iso(self.created_at)
        d["updated_at"] = _iso(self.updated_at)
        return d


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    if not isinstance(value, datetime):
        raise ValueError(f"not a timestamp: {value!r}")
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)


def _iso(value: datetime) -> str:
    return _as_utc(value).isoformat(timespec="microseconds")


# --------------------------------------------------------------------------
# Normalisation and validation
# --------------------------------------------------------------------------


def normalize_dialogue(text: str) -> str:
    """Canonical form of a dialogue: NFC, every line stripped with inner
    whitespace runs collapsed to one space, empty lines dropped, turns joined
    by ``"\\n"``.  A list/tuple of turns is accepted too (each item may itself
    contain several lines)."""
    if isinstance(text, (list, tuple)):
        parts = []
        for turn in text:
            if not isinstance(turn, str):
                raise ValueError(f"dialogue turns must be strings, got {turn!r}")
            parts.append(turn)
        text = "\n".join(parts)
    if not isinstance(text, str):
        raise ValueError(f"dialogue_text must be a string, got {_short(text)}")
    text = unicodedata.normalize("NFC", text)
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def dialogue_hash(text: str) -> str:
    """sha256 hex digest of :func:`normalize_dialogue` (UTF-8)."""
    return hashlib.sha256(normalize_dialogue(text).encode("utf-8")).hexdigest()


def _short(value: Any, limit: int = 80) -> str:
    r = repr(value)
    return r if len(r) <= limit else r[: limit - 4] + "...'"


_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


def _has_control(s: str) -> bool:
    return any(unicodedata.category(c) in _BAD_CATEGORIES for c in s)


def _check_dialogue(text: Any) -> str:
    norm = normalize_dialogue(text)
    if not norm:
        raise ValueError(f"dialogue_text is empty (after normalisation): {_short(text)}")
    if "\x00" in norm:
        raise ValueError(f"dialogue_text contains a NUL character: {_short(text)}")
    if len(norm) > MAX_DIALOGUE_CHARS:
        raise ValueError(
            f"dialogue_text too long ({len(norm)} > {MAX_DIALOGUE_CHARS} characters): {_short(text)}"
        )
    return norm


def _check_sticker_id(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"sticker_id must be a string (or int), got {_short(value)}")
    s = unicodedata.normalize("NFC", str(value)).strip()
    if not s:
        raise ValueError(f"sticker_id is empty: {value!r}")
    if len(s) > MAX_STICKER_ID_CHARS:
        raise ValueError(f"sticker_id too long ({len(s)} > {MAX_STICKER_ID_CHARS}): {_short(value)}")
    if _has_control(s):
        raise ValueError(f"sticker_id contains control characters: {_short(value)}")
    return s


def _check_annotator(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"annotator must be a string, got {_short(value)}")
    s = unicodedata.normalize("NFC", value).strip()
    if not s:
        raise ValueError(f"annotator name is empty: {value!r}")
    if len(s) > MAX_ANNOTATOR_CHARS:
        raise ValueError(
            f"annotator name too long ({len(s)} > {MAX_ANNOTATOR_CHARS} characters): {_short(value)}"
        )
    if _has_control(s):
        raise ValueError(f"annotator name contains control characters: {_short(value)}")
    return s


def _check_label(value: Any) -> str:
    if not isinstance(value, str) or value not in LABELS:
        raise ValueError(f"unknown label {_short(value)}; expected one of {LABELS}")
    return value


def _check_optional_str(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise ValueError(f"{name} must be a string or None, got {_short(value)}")
    s = unicodedata.normalize("NFC", str(value)).strip()
    if not s:
        return None
    if len(s) > MAX_META_CHARS:
        raise ValueError(f"{name} too long ({len(s)} > {MAX_META_CHARS}): {_short(value)}")
    if _has_control(s):
        raise ValueError(f"{name} contains control characters: {_short(value)}")
    return s


def _check_rank(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"model_rank must be a non-negative integer or None, got {value!r}")
    try:
        rank = operator.index(value)
    except TypeError:
        if isinstance(value, float) and value.is_integer():
            rank = int(value)
        else:
            raise ValueError(
                f"model_rank must be a non-negative integer or None, got {_short(value)}"
            ) from None
    if rank < 0 or rank > 2**31 - 1:
        raise ValueError(f"model_rank out of range: {value!r}")
    return rank


def _prepare_record(rec: Mapping[str, Any] | Annotation) -> dict[str, Any]:
    """A full record (a dict as written by :meth:`Annotation.to_dict`, or an
    :class:`Annotation`) validated and normalised into the store's column values;
    missing timestamps default to now, a missing label to ``"acceptable"``."""
    if isinstance(rec, Annotation):
        rec = rec.to_dict()
    try:
        text = _check_dialogue(rec["dialogue_text"])
        now = _utcnow()
        created = _as_utc(rec["created_at"]) if rec.get("created_at") else now
        updated = _as_utc(rec["updated_at"]) if rec.get("updated_at") else created
        return {
            # the hash is always derived from the text (the store's invariant)
            "dialogue_hash": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "dialogue_text": text,
            "sticker_id": _check_sticker_id(rec["sticker_id"]),
            "annotator": _check_annotator(rec.get("annotator") or "anonymous"),
            "label": _check_label(rec.get("label") or "acceptable"),
            "source_sample_id": _check_optional_str("source_sample_id", rec.get("source_sample_id")),
            "model_version": _check_optional_str("model_version", rec.get("model_version")),
            "model_rank": _check_rank(rec.get("model_rank")),
            "created_at": created,
            "updated_at": updated,
        }
    except KeyError as exc:
        raise ValueError(f"annotation record lacks field {exc.args[0]!r}: {_short(dict(rec), 200)}") from None

