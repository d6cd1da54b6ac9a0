"""Annotation-queue progress in the annotation store: :class:`QueueProgress`.

A submission in the queue is stored as ordinary flags (``annotations`` rows, label
``"acceptable"`` / ``"not_acceptable"``) **plus** one ``queue_progress`` row
``(queue, item_id, annotator) -> status, labels`` written in the *same* transaction, so a
submission is all there or not at all (SQLite ``BEGIN IMMEDIATE`` + ``synchronous=FULL``,
PostgreSQL ``synchronous_commit=on``: the guarantees of :meth:`AnnotationStore.flag`).
``labels`` keeps the ``{sticker_id: label}`` the submission wrote, so that:

* re-submitting an item replaces its labels (stickers no longer labelled lose the flag),
* skipping an item that was submitted takes its labels back,
* :meth:`QueueProgress.undo_last` removes the annotator's latest submission or skip in a
  queue, flags included.

Uploaded queues are kept in ``annotation_queues`` (:meth:`QueueProgress.save_queue`), so
they and their progress are still there after a restart. No Gradio, no model here.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .records import (_as_utc, _check_annotator, _check_dialogue, _check_label, _check_optional_str,
                      _check_rank, _check_sticker_id, _utcnow)
from .schema import _PROGRESS_KEY, annotation_queues_table, annotations_table, queue_progress_table

if TYPE_CHECKING:
    from .store import AnnotationStore

__all__ = ["PROGRESS_STATUSES", "ProgressRow", "QueueProgress"]

PROGRESS_STATUSES = ("submitted", "skipped")


@dataclass(frozen=True)
class ProgressRow:
    """One answered queue item: ``labels`` is what the submission wrote (empty for a skip)."""

    queue: str
    item_id: str
    annotator: str
    status: str
    dialogue_hash: str
    labels: dict[str, str]
    updated_at: datetime


def _row(row: Any) -> ProgressRow:
    m = row._mapping
    return ProgressRow(m["queue"], m["item_id"], m["annotator"], m["status"], m["dialogue_hash"],
                       json.loads(m["labels"] or "{}"), _as_utc(m["updated_at"]))


def _check_name(what: str, value: Any) -> str:
    name = _check_optional_str(what, value)
    if name is None:
        raise ValueError(f"{what} is empty: {value!r}")
    return name


class QueueProgress:
    """Queue progress and uploaded queues, stored beside the flags of ``store``."""

    def __init__(self, store: "AnnotationStore") -> None:
        self.store = store

    # ------------------------------------------------------------------ answers

    def submit(self, *, queue: str, item_id: str, annotator: str, dialogue_text: str,
               labels: Mapping[str, str], source_sample_id: str | None = None,
               model_version: str | None = None, model_ranks: Mapping[str, int] | None = None) -> ProgressRow:
        """Store ``labels`` (``{sticker_id: label}``) as ``annotator``'s flags on the dialogue and
        mark the item submitted, in one transaction; durable when this returns."""
        return self._answer("submitted", queue, item_id, annotator, dialogue_text, labels,
                            source_sample_id, model_version, model_ranks or {})

    def skip(self, *, queue: str, item_id: str, annotator: str, dialogue_text: str) -> ProgressRow:
        """Mark the item skipped (labels of an earlier submission of it are taken back)."""
        return self._answer("skipped", queue, item_id, annotator, dialogue_text, {}, None, None, {})

    def _answer(self, status: str, queue: str, item_id: str, annotator: str, dialogue_text: str,
                labels: Mapping[str, str], source_sample_id: str | None, model_version: str | None,
                model_ranks: Mapping[str, int]) -> ProgressRow:
        text = _check_dialogue(dialogue_text)
        key = {"queue": _check_name("queue", queue), "item_id": _check_name("item_id", item_id),
               "annotator": _check_annotator(annotator)}
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        checked = {_check_sticker_id(s): _check_label(lab) for s, lab in labels.items()}
        flags = [{"dialogue_hash": digest, "dialogue_text": text, "sticker_id": sid,
                  "annotator": key["annotator"], "label": label,
                  "source_sample_id": _check_optional_str("source_sample_id", source_sample_id),
                  "model_version": _check_optional_str("model_version", model_version),
                  "model_rank": _check_rank(model_ranks.get(sid))} for sid, label in checked.items()]

        def work(conn: Connection) -> ProgressRow:
            now = _utcnow()
            previous = self._get(conn, key)
            if previous is not None:
                stale = [s for s in previous.labels if s not in checked]
                self._delete_flags(conn, previous.dialogue_hash, key["annotator"], stale)
            for values in flags:
                self.store._upsert_flag(conn, values, now)
            stmt = self.store._insert(queue_progress_table).values(
                **key, status=status, dialogue_hash=digest, labels=json.dumps(checked, ensure_ascii=False),
                created_at=now, updated_at=now)
            ex = stmt.excluded
            conn.execute(stmt.on_conflict_do_update(
                index_elements=list(_PROGRESS_KEY),
                set_={"status": ex.status, "dialogue_hash": ex.dialogue_hash, "labels": ex.labels,
                      "updated_at": ex.updated_at}))
            return self._get(conn, key)

        return self.store._run(work, write=True, action=f"save the queue {status} item")

    def undo_last(self, *, queue: str, annotator: str) -> ProgressRow | None:
        """Take back ``annotator``'s latest answer (submission or skip) in ``queue``: its row
        and the flags it wrote. Returns what was undone (None when there was nothing)."""
        key = {"queue": _check_name("queue", queue), "annotator": _check_annotator(annotator)}
        t = queue_progress_table

        def work(conn: Connection) -> ProgressRow | None:
            row = conn.execute(sa.select(t).where(t.c.queue == key["queue"], t.c.annotator == key["annotator"])
                               .order_by(t.c.updated_at.desc(), t.c.id.desc()).limit(1)).first()
            if row is None:
                return None
            last = _row(row)
            self._delete_flags(conn, last.dialogue_hash, last.annotator, list(last.labels))
            conn.execute(sa.delete(t).where(t.c.id == row._mapping["id"]))
            return last

        return self.store._run(work, write=True, action="undo the last queue answer")

    def answers(self, *, queue: str, annotator: str) -> dict[str, ProgressRow]:
        """``{item_id: ProgressRow}`` of everything ``annotator`` answered in ``queue``."""
        t = queue_progress_table
        where = (t.c.queue == _check_name("queue", queue), t.c.annotator == _check_annotator(annotator))
        rows = self.store._run(lambda c: c.execute(sa.select(t).where(*where).order_by(t.c.id)).all(),
                               write=False, action="read queue progress")
        return {r.item_id: r for r in map(_row, rows)}

    def annotators(self, queue: str) -> dict[str, dict[str, int]]:
        """``{annotator: {"submitted": n, "skipped": m}}`` for one queue."""
        t = queue_progress_table
        stmt = (sa.select(t.c.annotator, t.c.status, sa.func.count()).where(t.c.queue == _check_name("queue", queue))
                .group_by(t.c.annotator, t.c.status))
        rows = self.store._run(lambda c: c.execute(stmt).all(), write=False, action="read queue progress")
        out: dict[str, dict[str, int]] = {}
        for annotator, status, n in rows:
            out.setdefault(annotator, dict.fromkeys(PROGRESS_STATUSES, 0))[status] = int(n)
        return out

    # ------------------------------------------------------------------ uploaded queues

    def save_queue(self, name: str, description: str, items: list[dict[str, Any]]) -> bool:
        """Keep an uploaded queue (its items as JSON); False when one of that name exists
        (names carry a digest of the items, so the same name means the same items)."""
        t = annotation_queues_table
        values = {"name": _check_name("queue", name), "description": str(description),
                  "items": json.dumps(items, ensure_ascii=False)}

        def work(conn: Connection) -> bool:
            if conn.execute(sa.select(t.c.name).where(t.c.name == values["name"])).first() is not None:
                return False
            conn.execute(sa.insert(t).values(**values, created_at=_utcnow()))
            return True

        return self.store._run(work, write=True, action="save the uploaded queue")

    def saved_queues(self) -> list[tuple[str, str, list[dict[str, Any]]]]:
        """(name, description, items) of every uploaded queue, oldest first."""
        t = annotation_queues_table
        rows = self.store._run(lambda c: c.execute(sa.select(t).order_by(t.c.created_at, t.c.name)).all(),
                               write=False, action="read the uploaded queues")
        return [(r._mapping["name"], r._mapping["description"], json.loads(r._mapping["items"])) for r in rows]

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _get(conn: Connection, key: Mapping[str, str]) -> ProgressRow | None:
        t = queue_progress_table
        row = conn.execute(sa.select(t).where(*(t.c[k] == key[k] for k in _PROGRESS_KEY))).first()
        return _row(row) if row is not None else None

    @staticmethod
    def _delete_flags(conn: Connection, digest: str, annotator: str, sticker_ids: list[str]) -> None:
        if not sticker_ids:
            return
        t = annotations_table
        conn.execute(sa.delete(t).where(t.c.dialogue_hash == digest, t.c.annotator == annotator,
                                        t.c.sticker_id.in_(sticker_ids)))
