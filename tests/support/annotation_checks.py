"""Acknowledgement logs for the annotation store's durability tests.

Writers (in-process or HTTP clients) log each flag they send to their own
fsync'ed :class:`AckLog`; :func:`check_acknowledged` then verifies that every
acknowledged flag is in the store exactly once, with its label.  Used by
``tests/test_annotations_stress.py`` and ``tests/test_annotations_app_stress.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Mapping

from core.annotations.records import _check_annotator, _check_sticker_id, dialogue_hash

if TYPE_CHECKING:
    from core.annotations.store import AnnotationStore

__all__ = ["AckLog", "read_ack_files", "check_acknowledged"]


class AckLog:
    """Append-only JSON-lines log of a writer's flags, fsync'ed per line.

    Call :meth:`intent` just before sending a flag and :meth:`ack` once the
    store (or the HTTP endpoint) has confirmed it.  Each line: ``{"event":
    "intent"|"ack", "dialogue_text", "sticker_id", "annotator", "label",
    "t"}``.  A line cut short by ``kill -9`` is ignored by the reader."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self._fh = open(self.path, "a", encoding="utf-8")

    def _write(self, event_name: str, fields: Mapping[str, Any]) -> None:
        rec = {"event": event_name, **fields, "t": time.time()}
        self._fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def intent(self, *, dialogue_text: str, sticker_id: str, annotator: str = "anonymous",
               label: str = "acceptable") -> None:
        self._write("intent", {"dialogue_text": dialogue_text, "sticker_id": sticker_id,
                               "annotator": annotator, "label": label})

    def ack(self, *, dialogue_text: str, sticker_id: str, annotator: str = "anonymous",
            label: str = "acceptable") -> None:
        self._write("ack", {"dialogue_text": dialogue_text, "sticker_id": sticker_id,
                            "annotator": annotator, "label": label})

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "AckLog":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_ack_files(ack_files: Iterable[str | os.PathLike]) -> Iterator[dict[str, Any]]:
    """Complete lines of the given ack logs, in file order (lines without an
    ``event`` field count as acks; a torn last line is skipped)."""
    for f in ack_files:
        with open(f, "rb") as fh:
            data = fh.read()
        for line in data.split(b"\n"):
            if not line.strip():
                continue
            try:
                rec = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError):
                continue  # torn write from a killed writer
            rec.setdefault("event", "ack")
            rec["_file"] = str(f)
            yield rec


def check_acknowledged(store: AnnotationStore, ack_files: Iterable[str | os.PathLike]) -> dict:
    """Verify that every acknowledged flag in ``ack_files`` is in ``store``
    exactly once with its label (the last acknowledged one, or one a later
    un-acknowledged intent may have written before the writer died).

    Returns a report dict: ``ok`` (bool), ``acked`` (ack lines), ``acked_keys``,
    ``intents``, ``store_records``, ``missing``, ``duplicates``,
    ``label_mismatch`` (lists of examples, at most 20 each, plus counts
    ``n_missing`` etc.) and ``unacked_present`` (records present that were
    only intended - allowed)."""
    ack_files = list(ack_files)
    acked: dict[tuple[str, str, str], str] = {}
    pending: dict[tuple[str, str, str], set[str]] = defaultdict(set)
    intent_keys: set[tuple[str, str, str]] = set()
    n_ack_lines = n_intents = 0
    for rec in read_ack_files(ack_files):
        key = (dialogue_hash(rec["dialogue_text"]), _check_sticker_id(rec["sticker_id"]),
               _check_annotator(rec.get("annotator") or "anonymous"))
        label = rec.get("label") or "acceptable"
        if rec["event"] == "intent":
            n_intents += 1
            intent_keys.add(key)
            pending[key].add(label)
        else:
            n_ack_lines += 1
            acked[key] = label
            pending.pop(key, None)
    rows = store.all()
    counts = Counter(a.key for a in rows)
    labels = {a.key: a.label for a in rows}
    missing = [k for k in acked if counts[k] == 0]
    duplicates = [k for k, c in counts.items() if c > 1]
    mismatch = [
        (k, acked[k], labels[k]) for k in acked
        if counts[k] and labels[k] != acked[k] and labels[k] not in pending.get(k, ())
    ]
    unacked_present = sum(1 for k in intent_keys if k not in acked and counts[k])
    return {
        "ok": not missing and not duplicates and not mismatch,
        "ack_files": len(ack_files),
        "acked": n_ack_lines,
        "acked_keys": len(acked),
        "intents": n_intents,
        "store_records": len(rows),
        "n_missing": len(missing),
        "n_duplicates": len(duplicates),
        "n_label_mismatch": len(mismatch),
        "missing": missing[:20],
        "duplicates": duplicates[:20],
        "label_mismatch": mismatch[:20],
        "unacked_present": unacked_present,
    }
