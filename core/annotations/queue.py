"""Annotation queues: which dialogues to annotate, in which order, and how far each annotator is.

* :class:`QueueItem` / :class:`AnnotationQueue`: a named, ordered list of dialogues (canonical
  ``"A: …\\nB: …"`` text, optional gold sticker, optional MOD sample id).
* :func:`split_queue`: a built-in queue from a split's sample rows (``core.data.mod``).
* :func:`queue_from_file` / :func:`parse_jsonl` / :func:`parse_mod_file`: an uploaded file,
  MOD layout (``dialogues.json``: every sticker turn after the first is an item, as in
  :func:`core.data.mod.samples_from_file`) or JSONL (one ``{"dialogue": [turns]}`` or
  ``{"text": "one turn per line"}`` per line, optional ``"gold"`` and ``"id"``). Errors name
  the line (JSONL) or the dialogue and turn (MOD).
* :func:`progress_counts` / :func:`next_item`: where an annotator stands, from the answers
  stored by :class:`core.annotations.progress.QueueProgress`.
* :func:`disagreements`: the (dialogue, sticker) items annotators labelled differently.

No Gradio, no model, no paths: the demo (``demo/queue_service.py``) wires these to the store
and the ranking.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterable, Mapping

from core.data.dialogue import parse_dialogue, sample_dialogue_text

__all__ = ["AnnotationQueue", "MAX_QUEUE_ITEMS", "MAX_UPLOAD_BYTES", "QueueError", "QueueItem", "SPLIT_QUEUES",
           "disagreements", "next_item", "parse_jsonl", "parse_mod_file", "progress_counts", "queue_from_file",
           "split_queue", "upload_queue_name"]

#: The built-in queues, named after the splits of ``core.data.mod.load_mod``.
SPLIT_QUEUES = ("valid", "easy_test", "hard_test")
MAX_QUEUE_ITEMS = 20_000
MAX_UPLOAD_BYTES = 20 * 2**20
MAX_ID_CHARS = 200
_MAX_ERRORS_SHOWN = 8


class QueueError(ValueError):
    """A queue, an item or an uploaded file that cannot be used; the message says why (and where)."""


@dataclass(frozen=True)
class QueueItem:
    """One dialogue to annotate: ``dialogue`` is the canonical text the flags are keyed on."""

    item_id: str
    dialogue: str
    gold: str | None = None
    source_sample_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "QueueItem":
        return cls(str(d["item_id"]), str(d["dialogue"]), d.get("gold"), d.get("source_sample_id"))


@dataclass
class AnnotationQueue:
    """A named, ordered list of :class:`QueueItem` (item ids unique)."""

    name: str
    description: str
    items: list[QueueItem]
    kind: str = "split"  # "split", "examples" or "upload"
    _index: dict[str, int] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {}
        for i, item in enumerate(self.items):
            if item.item_id in self._index:
                raise QueueError(f"queue {self.name!r}: item id {item.item_id!r} is used twice")
            self._index[item.item_id] = i

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, item_id: object) -> bool:
        return item_id in self._index

    def item(self, item_id: object) -> QueueItem:
        """The item; :class:`QueueError` naming the queue for an unknown id."""
        key = str(item_id or "").strip()
        if key not in self._index:
            raise QueueError(f"Unknown item {key!r} in queue {self.name!r}.")
        return self.items[self._index[key]]

    def position(self, item_id: str) -> int:
        """1-based position of the item in the queue."""
        return self._index[item_id] + 1


# --------------------------------------------------------------------------- built-in queues


def split_queue(name: str, rows: Iterable[Mapping[str, Any]], description: str = "") -> AnnotationQueue:
    """A queue of a split's samples (``core.data.mod`` sample dicts): item id = sample id, the
    gold sticker and the sample id kept (flags made in it carry ``source_sample_id``)."""
    items = [QueueItem(str(r["sample_id"]), sample_dialogue_text(list(r["speakers"]), list(r["texts"])),
                       str(r["sticker_id"]), str(r["sample_id"])) for r in rows]
    return AnnotationQueue(name, description or f"{name.replace('_', ' ')} split ({len(items)} dialogues)", items)


# --------------------------------------------------------------------------- uploads


def upload_queue_name(file_name: str, content: bytes) -> str:
    """``upload:<file stem>-<8 hex digits of the content>``: the same file gives the same name
    (and so the same progress) after a restart."""
    stem = re.sub(r"[^\w.-]+", "_", Path(file_name).stem, flags=re.UNICODE).strip("_.")[:60] or "file"
    return f"upload:{stem}-{hashlib.sha256(content).hexdigest()[:8]}"


def _canonical(text: str) -> str:
    parsed = parse_dialogue(text)
    return parsed.canonical_text() if parsed else ""


def _jsonl_item(raw: Any, number: int, known: Collection[str] | None) -> QueueItem:
    """One JSONL record → item (``ValueError`` with the reason; the caller adds the line)."""
    if not isinstance(raw, dict):
        raise ValueError(f"expected a JSON object, got {type(raw).__name__}")
    unknown_keys = set(raw) - {"dialogue", "text", "gold", "id"}
    if unknown_keys:
        raise ValueError(f"unknown key(s) {sorted(unknown_keys)}; expected dialogue or text, gold, id")
    if ("dialogue" in raw) == ("text" in raw):
        raise ValueError('give exactly one of "dialogue" (a list of turns) or "text" (one turn per line)')
    if "dialogue" in raw:
        turns = raw["dialogue"]
        if not isinstance(turns, list) or not turns or not all(isinstance(t, str) for t in turns):
            raise ValueError('"dialogue" must be a non-empty list of strings')
        text = "\n".join(" ".join(t.split()) for t in turns)
    else:
        text = raw["text"]
        if not isinstance(text, str):
            raise ValueError('"text" must be a string')
    dialogue = _canonical(text)
    if not dialogue:
        raise ValueError("the dialogue is empty")
    gold = raw.get("gold")
    if gold is not None:
        if not isinstance(gold, (str, int)) or isinstance(gold, bool) or not str(gold).strip():
            raise ValueError('"gold" must be a sticker id (string)')
        gold = str(gold).strip()
        if known is not None and gold not in known:
            raise ValueError(f"unknown gold sticker id {gold!r}")
    item_id = raw.get("id", f"line-{number}")
    if not isinstance(item_id, (str, int)) or isinstance(item_id, bool) or not str(item_id).strip():
        raise ValueError('"id" must be a non-empty string or integer')
    item_id = str(item_id).strip()
    if len(item_id) > MAX_ID_CHARS or not item_id.isprintable():
        raise ValueError(f'"id" must be printable and at most {MAX_ID_CHARS} characters')
    return QueueItem(item_id, dialogue, gold, None)


def _raise_collected(source: str, errors: list[str]) -> None:
    if errors:
        more = f" (and {len(errors) - _MAX_ERRORS_SHOWN} more)" if len(errors) > _MAX_ERRORS_SHOWN else ""
        raise QueueError(f"{source}: " + "; ".join(errors[:_MAX_ERRORS_SHOWN]) + more)


def parse_jsonl(text: str, *, known_stickers: Collection[str] | None = None,
                source: str = "JSONL") -> list[QueueItem]:
    """Items of a JSONL text (blank lines skipped). Every bad line is reported, with its
    number, in one :class:`QueueError`; a repeated ``id`` names both lines."""
    items: list[QueueItem] = []
    errors: list[str] = []
    first_line: dict[str, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = _jsonl_item(json.loads(line), number, known_stickers)
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})")
            continue
        except ValueError as exc:
            errors.append(f"line {number}: {exc}")
            continue
        if item.item_id in first_line:
            errors.append(f"line {number}: id {item.item_id!r} already used on line {first_line[item.item_id]}")
            continue
        first_line[item.item_id] = number
        items.append(item)
    _raise_collected(source, errors)
    if not items:
        raise QueueError(f"{source}: no dialogues (expected one JSON object per line)")
    return items


def parse_mod_file(path: str | Path, stickers: Any, *, source: str | None = None) -> list[QueueItem]:
    """Items of a MOD-layout dialogues file: every sticker turn after the first, context up
    to it, its sticker as gold (``core.data.mod.samples_from_file``; bad data raises, naming
    the dialogue and turn). ``stickers``: a ``core.data.mod.StickerSet``."""
    from core.data.mod import DataError, UnknownStickerError, samples_from_file

    try:
        samples = samples_from_file(path, stickers, on_error="raise")
    except (DataError, UnknownStickerError) as exc:
        message = str(exc).replace(str(path), source or Path(path).name)
        raise QueueError(message) from None
    if not samples:
        raise QueueError(f"{source or Path(path).name}: no samples (no sticker turn after a dialogue's first turn)")
    return [QueueItem(str(s["sample_id"]), sample_dialogue_text(s["speakers"], s["texts"]), str(s["sticker_id"]),
                      None) for s in samples]


def _looks_like_mod(data: bytes) -> bool:
    try:
        raw = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return False
    return isinstance(raw, dict) and bool(raw) and all(isinstance(v, list) for v in raw.values())


def queue_from_file(path: str | Path, *, file_name: str | None = None, known_stickers: Collection[str] | None = None,
                    mod_stickers: Any = None) -> AnnotationQueue:
    """An uploaded file as a queue: ``.jsonl`` / ``.ndjson`` is JSONL, ``.json`` (or any file
    holding one JSON object of dialogue id → turns) the MOD layout. The queue is named by
    :func:`upload_queue_name`. ``mod_stickers`` (a ``StickerSet``) is needed for MOD files."""
    path = Path(path)
    shown = Path(file_name or path.name).name
    try:
        size = path.stat().st_size
        if size > MAX_UPLOAD_BYTES:
            raise QueueError(f"{shown}: {size / 2**20:.1f} MiB; the limit is {MAX_UPLOAD_BYTES // 2**20} MiB")
        data = path.read_bytes()
    except OSError as exc:
        raise QueueError(f"{shown}: cannot read the file ({exc.strerror or exc})") from None
    suffix = Path(shown).suffix.lower()
    is_mod = suffix == ".json" or (suffix not in (".jsonl", ".ndjson") and _looks_like_mod(data))
    if is_mod:
        if mod_stickers is None:
            raise QueueError(f"{shown}: MOD-format files need the MOD stickers (start the demo with --data DIR)")
        items = parse_mod_file(path, mod_stickers, source=shown)
    else:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise QueueError(f"{shown}: not UTF-8 text (byte {exc.start})") from None
        items = parse_jsonl(text, known_stickers=known_stickers, source=shown)
    if len(items) > MAX_QUEUE_ITEMS:
        raise QueueError(f"{shown}: {len(items)} dialogues; at most {MAX_QUEUE_ITEMS} per queue")
    kind = "MOD" if is_mod else "JSONL"
    return AnnotationQueue(upload_queue_name(shown, data), f"{shown} ({kind}, {len(items)} dialogues)", items,
                           kind="upload")


# --------------------------------------------------------------------------- progress


def progress_counts(queue: AnnotationQueue, answers: Mapping[str, Any]) -> dict[str, int]:
    """``{"done", "submitted", "skipped", "remaining", "total"}``; ``answers`` maps item id →
    an object with ``status`` (answers to items no longer in the queue are not counted)."""
    submitted = sum(1 for k, a in answers.items() if a.status == "submitted" and k in queue)
    skipped = sum(1 for k, a in answers.items() if a.status == "skipped" and k in queue)
    total = len(queue)
    return {"done": submitted + skipped, "submitted": submitted, "skipped": skipped,
            "remaining": total - submitted - skipped, "total": total}


def next_item(queue: AnnotationQueue, answers: Mapping[str, Any]) -> QueueItem | None:
    """The first item, in queue order, the annotator has neither submitted nor skipped."""
    return next((item for item in queue.items if item.item_id not in answers), None)


# --------------------------------------------------------------------------- review


def disagreements(annotations: Iterable[Any], *, dialogue_hashes: Collection[str] | None = None) -> list[dict]:
    """Items (dialogue, sticker) that two or more annotators labelled differently, most split
    first: ``{dialogue_hash, dialogue_text, sticker_id, acceptable: [names], not_acceptable: [names]}``.
    ``dialogue_hashes`` keeps only those dialogues (e.g. one queue's)."""
    votes: dict[tuple[str, str], dict[str, list[str]]] = defaultdict(lambda: {"acceptable": [], "not_acceptable": []})
    texts: dict[str, str] = {}
    for a in annotations:
        if dialogue_hashes is not None and a.dialogue_hash not in dialogue_hashes:
            continue
        votes[(a.dialogue_hash, a.sticker_id)][a.label].append(a.annotator)
        texts[a.dialogue_hash] = a.dialogue_text
    rows = [{"dialogue_hash": h, "dialogue_text": texts[h], "sticker_id": s,
             "acceptable": sorted(v["acceptable"]), "not_acceptable": sorted(v["not_acceptable"])}
            for (h, s), v in votes.items() if v["acceptable"] and v["not_acceptable"]]
    rows.sort(key=lambda r: (-min(len(r["acceptable"]), len(r["not_acceptable"])), r["dialogue_hash"],
                             r["sticker_id"]))
    return rows
