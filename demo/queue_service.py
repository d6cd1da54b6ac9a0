"""The annotation queue's actions, without gradio: :class:`QueueService`.

Built on :class:`demo.service.DemoService` (ranking, sticker facts, the annotation store) and
``core.annotations.queue`` / ``core.annotations.progress`` (queues, stored progress). Every
method returns plain JSON-friendly dicts and turns bad input into a :class:`DemoError`.

What a submission stores (one transaction, see ``core/annotations/progress.py``): every ticked
sticker as ``"acceptable"``; every sticker of the model's top-k that was shown and *not* ticked
as ``"not_acceptable"``; nothing for the other stickers of the grid that were not ticked (they
were not looked at one by one). So agreement counts compare real judgements on the top-k.
"""
from __future__ import annotations

import logging
import tempfile
import threading
import time
import zipfile
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from core.annotations.queue import (SPLIT_QUEUES, AnnotationQueue, QueueError, QueueItem, disagreements,
                                    next_item, progress_counts, queue_from_file, split_queue)
from demo.service import DemoError, DemoService

__all__ = ["DEFAULT_TOP_K", "EXPORT_CHOICES", "QueueService"]

logger = logging.getLogger(__name__)

DEFAULT_TOP_K = 8
EXPORT_CHOICES = ("jsonl", "parquet")
_RANK_CACHE = 256


def _store_errors() -> tuple[type[BaseException], ...]:
    from core.annotations import AnnotationStoreError

    return (AnnotationStoreError, ValueError)


class QueueService:
    """Queues (the splits of the loaded MOD data, or the demo's examples; uploaded files),
    the next item for an annotator with the model's top-k, submit / skip / undo, review.

    Args:
        demo: the page's :class:`DemoService` (its selector ranks, its store keeps the flags).
        splits: split name → ``core.data.mod`` sample rows (``ModData.split_rows``); the
            built-in queues are ``valid``, ``easy_test``, ``hard_test`` when present, else
            ``examples`` (the dialogues the rank tab lists).
        top_k: candidates shown per dialogue (digits 1–9 toggle them in the page).
    """

    def __init__(self, demo: DemoService, splits: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
                 *, top_k: int = DEFAULT_TOP_K) -> None:
        self.demo = demo
        self.top_k = max(1, min(9, int(top_k)))
        self._lock = threading.RLock()
        self._rankings: OrderedDict[tuple[str, str, int], list[str]] = OrderedDict()
        self._prefetching = False
        self._queues: dict[str, AnnotationQueue] = {}
        for name in SPLIT_QUEUES:
            rows = (splits or {}).get(name)
            if rows:
                self._queues[name] = split_queue(name, rows)
        if not self._queues and demo.examples:
            items = [QueueItem(e.key, _canonical(e.text), e.gold_id, e.sample_id) for e in demo.examples.values()]
            self._queues["examples"] = AnnotationQueue("examples", f"the demo's examples ({len(items)} dialogues)",
                                                       items, kind="examples")
        self.progress = None
        if demo.annotations is not None:
            from core.annotations.progress import QueueProgress

            self.progress = QueueProgress(demo.annotations)
            try:
                for name, description, items in self.progress.saved_queues():
                    self._queues.setdefault(name, AnnotationQueue(
                        name, description, [QueueItem.from_dict(i) for i in items], kind="upload"))
            except _store_errors() as exc:
                logger.warning("cannot read the uploaded queues: %s", exc)

    # ------------------------------------------------------------------ queues

    def queue_choices(self) -> list[tuple[str, str]]:
        """(label, name) of every queue, built-in first."""
        return [(f"{q.name} — {q.description}", q.name) for q in self._queues.values()]

    def default_queue(self) -> str | None:
        return next(iter(self._queues), None)

    def queue(self, name: object) -> AnnotationQueue:
        key = str(name or "").strip()
        if key not in self._queues:
            known = ", ".join(self._queues) or "none"
            known_zh = ", ".join(self._queues) or "无"
            raise DemoError(f"Unknown queue {key!r}; the queues are: {known}.",
                            zh=f"未知的队列 {key!r}；现有队列：{known_zh}。")
        return self._queues[key]

    def upload(self, path: str | Path | None, file_name: str | None = None) -> AnnotationQueue:
        """Make a queue of an uploaded MOD-format (``.json``) or JSONL file and keep it in the store."""
        if not path:
            raise DemoError("Upload a .jsonl or MOD-format .json file first.",
                            zh="请先上传 .jsonl 或 MOD 格式的 .json 文件。")
        try:
            queue = queue_from_file(path, file_name=file_name, known_stickers=set(self.demo.sticker_ids()),
                                    mod_stickers=self._mod_stickers())
        except QueueError as exc:  # its text names the file and the problem
            raise DemoError(str(exc), zh=f"无法载入队列文件：{exc}") from None
        with self._lock:
            if self.progress is not None:
                try:
                    self.progress.save_queue(queue.name, queue.description, [i.to_dict() for i in queue.items])
                except _store_errors() as exc:
                    raise DemoError(f"Could not save the queue: {exc}", zh=f"无法保存队列：{exc}") from None
            self._queues.setdefault(queue.name, queue)
        return self._queues[queue.name]

    def _mod_stickers(self) -> Any:
        """The selector's MOD stickers (numeric ids) as a ``StickerSet``; None without any."""
        from core.data.mod import StickerSet

        numeric = [self.demo.selector.sticker(s) for s in self.demo.sticker_ids() if s.isdigit()]
        return StickerSet(numeric) if numeric else None

    # ------------------------------------------------------------------ items

    def _ranking(self, queue: AnnotationQueue, item: QueueItem) -> list[str]:
        """Every sticker id for the item, best first (cached per queue, item and sticker count)."""
        key = (queue.name, item.item_id, len(self.demo.sticker_ids()))
        with self._lock:
            if key in self._rankings:
                self._rankings.move_to_end(key)
                return self._rankings[key]
        ranked = [r.sticker_id for r in self.demo.rank(item.dialogue, labels=0).ranked]  # no semantic labels
        with self._lock:
            self._rankings[key] = ranked
            while len(self._rankings) > _RANK_CACHE:
                self._rankings.popitem(last=False)
        return ranked

    def image_url(self, sticker_id: str, base_url: str = "") -> str | None:
        path = self.demo.info(sticker_id).image_path
        if not path or not Path(path).is_file():
            return None
        return f"{base_url.rstrip('/')}/gradio_api/file={quote(str(Path(path).resolve()), safe='/')}"

    def candidates(self, queue: AnnotationQueue, item: QueueItem, base_url: str = "") -> list[dict[str, Any]]:
        """The model's top-k for the item: ``{key, sticker_id, rank, name, ocr, image_url, gold}``."""
        out = []
        for i, sid in enumerate(self._ranking(queue, item)[:self.top_k]):
            info = self.demo.info(sid)
            out.append({"key": i + 1, "sticker_id": sid, "rank": i + 1, "name": info.name or info.ocr or sid,
                        "ocr": info.ocr, "image_url": self.image_url(sid, base_url), "gold": sid == item.gold})
        return out

    def state(self, annotator: str, queue_name: object, *, item_id: str | None = None, base_url: str = "",
              accepted: Sequence[str] = (), message: str = "") -> dict[str, Any]:
        """The progress JSON: ``item_id`` (the next item, or ``item_id`` when given; None when
        the queue is done), ``dialogue``, ``gold``, ``candidates``, ``accepted`` (ids to show
        ticked), ``done`` / ``submitted`` / ``skipped`` / ``remaining`` / ``total``, ``finished``."""
        queue = self.queue(queue_name)
        answers = self._answers(queue, annotator)
        item = self._item(queue, item_id) if item_id else next_item(queue, answers)
        out: dict[str, Any] = {"queue": queue.name, "annotator": annotator, **progress_counts(queue, answers),
                               "item_id": None, "position": None, "dialogue": None, "gold": None,
                               "candidates": [], "accepted": list(accepted), "message": message}
        out["finished"] = item is None
        if item is not None:
            out.update(item_id=item.item_id, position=queue.position(item.item_id), dialogue=item.dialogue,
                       gold=item.gold, candidates=self.candidates(queue, item, base_url))
            following = next((i for i in queue.items[queue.position(item.item_id):] if i.item_id not in answers), None)
            if following is not None:
                self._prefetch(queue, following)
        return out

    def _prefetch(self, queue: AnnotationQueue, item: QueueItem) -> None:
        """Rank ``item`` in the background (one at a time) while the annotator reads the current one,
        so that submitting shows the next item without waiting for the model."""
        key = (queue.name, item.item_id, len(self.demo.sticker_ids()))
        with self._lock:
            if key in self._rankings or self._prefetching:
                return
            self._prefetching = True

        def work() -> None:
            try:
                self._ranking(queue, item)
            except Exception as exc:  # noqa: BLE001 - a failed prefetch only costs the wait later
                logger.info("prefetch of %s failed: %s", item.item_id, exc)
            finally:
                self._prefetching = False

        threading.Thread(target=work, name="queue-prefetch", daemon=False).start()  # exit waits for it

    # ------------------------------------------------------------------ answers

    def submit(self, annotator: str, queue_name: object, item_id: object, accepted: object,
               *, base_url: str = "") -> dict[str, Any]:
        """Store the item's labels (ticked: acceptable; shown top-k not ticked: not acceptable),
        mark it submitted; returns :meth:`state` with the next item."""
        progress, queue = self._progress(), self.queue(queue_name)
        item = self._item(queue, item_id)
        ticked = self._accepted_ids(accepted)
        ranking = self._ranking(queue, item)
        labels = {sid: "not_acceptable" for sid in ranking[:self.top_k]}
        labels.update(dict.fromkeys(ticked, "acceptable"))
        rank_of = {sid: i + 1 for i, sid in enumerate(ranking)}
        try:
            progress.submit(queue=queue.name, item_id=item.item_id, annotator=annotator, dialogue_text=item.dialogue,
                            labels=labels, source_sample_id=item.source_sample_id,
                            model_version=self.demo.model_version or None,
                            model_ranks={s: rank_of[s] for s in labels if s in rank_of})
        except _store_errors() as exc:
            raise DemoError(f"Could not save the submission: {exc}", zh=f"无法保存提交：{exc}") from None
        n_ok = len(ticked)
        note = f"Saved {item.item_id}: {n_ok} acceptable, {len(labels) - n_ok} not acceptable."
        return self.state(annotator, queue.name, base_url=base_url, message=note)

    def skip(self, annotator: str, queue_name: object, item_id: object, *, base_url: str = "") -> dict[str, Any]:
        progress, queue = self._progress(), self.queue(queue_name)
        item = self._item(queue, item_id)
        try:
            progress.skip(queue=queue.name, item_id=item.item_id, annotator=annotator, dialogue_text=item.dialogue)
        except _store_errors() as exc:
            raise DemoError(f"Could not save the skip: {exc}", zh=f"无法保存跳过记录：{exc}") from None
        return self.state(annotator, queue.name, base_url=base_url, message=f"Skipped {item.item_id}.")

    def undo(self, annotator: str, queue_name: object, *, base_url: str = "") -> dict[str, Any]:
        """Take back the annotator's latest submission or skip in the queue; the undone item is
        shown again with its earlier ticks."""
        progress, queue = self._progress(), self.queue(queue_name)
        try:
            last = progress.undo_last(queue=queue.name, annotator=annotator)
        except _store_errors() as exc:
            raise DemoError(f"Could not undo: {exc}", zh=f"无法撤销：{exc}") from None
        if last is None:
            return self.state(annotator, queue.name, base_url=base_url, message="Nothing to undo.")
        ticked = [s for s, lab in last.labels.items() if lab == "acceptable"]
        item_id = last.item_id if last.item_id in queue else None
        return self.state(annotator, queue.name, item_id=item_id, base_url=base_url, accepted=ticked,
                          message=f"Undid the {last.status} answer to {last.item_id}.")

    # ------------------------------------------------------------------ review and export

    def _records(self, queue_name: object | None) -> list[Any]:
        """Every flag, or the flags on one queue's dialogues."""
        store = self.demo._store()
        hashes = None
        if queue_name:
            from core.annotations import dialogue_hash

            hashes = {dialogue_hash(i.dialogue) for i in self.queue(queue_name).items}
        try:
            records = store.all()
        except _store_errors() as exc:
            raise DemoError(f"Could not read the flags: {exc}", zh=f"无法读取标注：{exc}") from None
        return records if hashes is None else [a for a in records if a.dialogue_hash in hashes]

    def review(self, queue_name: object | None = None) -> list[dict[str, Any]]:
        """Items where annotators disagree (all flags, or one queue's dialogues)."""
        return disagreements(self._records(queue_name))

    def agreement(self, queue_name: object | None = None) -> dict[str, Any]:
        """``core.annotations.compute_agreement`` over all flags or one queue's."""
        from core.annotations import compute_agreement

        return compute_agreement(self._records(queue_name))

    def progress_rows(self, queue_name: object | None = None) -> list[list[Any]]:
        """``[queue, annotator, submitted, skipped, remaining]`` for one queue or every queue."""
        names = [self.queue(queue_name).name] if queue_name else list(self._queues)
        rows = []
        for name in names:
            try:
                counts = self._progress().annotators(name)
            except _store_errors() as exc:
                raise DemoError(f"Could not read the progress: {exc}", zh=f"无法读取进度：{exc}") from None
            total = len(self._queues[name])
            rows += [[name, who, c["submitted"], c["skipped"], total - c["submitted"] - c["skipped"]]
                     for who, c in sorted(counts.items())]
        return rows

    def export(self, fmt: str = "jsonl") -> Path:
        """What ``python -m demo.annotations export --format FMT`` writes, zipped."""
        from core.annotations import export_dataset

        if fmt not in EXPORT_CHOICES:
            raise DemoError(f"Unknown export format {fmt!r}; expected one of {', '.join(EXPORT_CHOICES)}.",
                            zh=f"未知的导出格式 {fmt!r}；可选：{', '.join(EXPORT_CHOICES)}。")
        store = self.demo._store()
        work = Path(tempfile.mkdtemp(prefix="annotations-export-"))
        try:
            export_dataset(store, work / "export", fmt)
        except _store_errors() as exc:
            raise DemoError(f"Could not export the annotations: {exc}", zh=f"无法导出标注：{exc}") from None
        target = work / f"annotations-{fmt}-{time.strftime('%Y%m%d-%H%M%S')}.zip"
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
            for file in sorted((work / "export").rglob("*")):
                if file.is_file():
                    archive.write(file, file.relative_to(work / "export").as_posix())
        return target

    # ------------------------------------------------------------------ helpers

    def _progress(self) -> Any:
        if self.progress is None:
            raise DemoError("Annotating is turned off (no annotation database).", zh="标注已关闭（没有标注数据库）。")
        return self.progress

    def _answers(self, queue: AnnotationQueue, annotator: str) -> dict[str, Any]:
        if self.progress is None:
            return {}
        try:
            return self.progress.answers(queue=queue.name, annotator=annotator)
        except _store_errors() as exc:
            raise DemoError(f"Could not read the progress: {exc}", zh=f"无法读取进度：{exc}") from None

    @staticmethod
    def _item(queue: AnnotationQueue, item_id: object) -> QueueItem:
        try:
            return queue.item(item_id)
        except QueueError as exc:  # the one error of AnnotationQueue.item: an unknown item id
            key = str(item_id or "").strip()
            raise DemoError(str(exc), zh=f"队列 {queue.name!r} 中没有条目 {key!r}。") from None

    def _accepted_ids(self, accepted: object) -> list[str]:
        if accepted is None or accepted == "":
            return []
        if isinstance(accepted, str):
            accepted = [a for a in accepted.split(",")]
        if not isinstance(accepted, (list, tuple)):
            raise DemoError(f"accepted must be a list of sticker ids, got {type(accepted).__name__}.",
                            zh=f"accepted 必须是表情 ID 的列表，收到的是 {type(accepted).__name__}。")
        return list(dict.fromkeys(self.demo.check_sticker_id(a) for a in accepted if str(a).strip()))


def _canonical(text: str) -> str:
    from core.data.dialogue import parse_dialogue

    return parse_dialogue(text).canonical_text()
