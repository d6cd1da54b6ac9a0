"""Extra positives for multi-reference evaluation: the stickers annotators
accepted, read from an export (or a store) and matched with dataset samples.

Imports no SQLAlchemy (nor anything that does) at module level, so evaluation
code can import it cheaply; a store passed in was opened by code that already
imported :mod:`core.annotations.store`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, Iterable, Mapping

from .export import _dialogue_rows, load_export, load_export_records
from .records import _check_optional_str, _check_sticker_id, dialogue_hash

if TYPE_CHECKING:
    from .store import AnnotationStore

__all__ = ["extra_positives", "ExtraPositives", "load_extra_positives"]


def _is_store(obj: Any) -> bool:
    """Whether ``obj`` is an :class:`~core.annotations.store.AnnotationStore`,
    without importing the store module (no instance exists before it is)."""
    store = sys.modules.get(f"{__package__}.store")
    return store is not None and isinstance(obj, store.AnnotationStore)


def extra_positives(path: str | os.PathLike | AnnotationStore) -> dict[str, set[str]]:
    """``{dialogue_hash: accepted sticker ids}`` from an export (or a store),
    for multi-reference recall.  Only dialogues with >= 1 accepted sticker.
    Look up a sample with ``dialogue_hash(its dialogue text)``."""
    if _is_store(path):
        rows = _dialogue_rows(path.all())
    else:
        rows = load_export(path).to_list()
    return {r["dialogue_hash"]: set(r["accepted_sticker_ids"])
            for r in rows if r["accepted_sticker_ids"]}


@dataclasses.dataclass
class ExtraPositives:
    """Accepted stickers of an export, ready to be matched with dataset samples.

    A (dialogue, sticker) pair is accepted when most of its votes say ``"acceptable"`` (as
    ``accepted_sticker_ids`` in the export).  Each record of an accepted pair that carries a
    ``source_sample_id`` (flagged on a loaded example in the demo UI) makes it apply to the
    sample with that ``sample_id``; a record without one (flagged through ``/flag`` or on a
    typed dialogue) makes it apply to every sample whose dialogue, in the demo's canonical
    form (:func:`core.data.dialogue.sample_dialogue_text`), has its ``dialogue_hash``."""

    by_sample_id: dict[str, set[str]]
    by_hash: dict[str, set[str]]
    source: str | None = None

    @property
    def n_dialogues(self) -> int:
        return len(self.by_sample_id) + len(self.by_hash)

    @property
    def n_pairs(self) -> int:
        return sum(map(len, self.by_sample_id.values())) + sum(map(len, self.by_hash.values()))

    @staticmethod
    def sample_hash(sample: Mapping[str, Any]) -> str:
        """``dialogue_hash`` of a sample (``speakers``, ``texts``) as the demo stores it."""
        from core.data.dialogue import sample_dialogue_text  # core.data.dialogue imports core.data.mod

        return dialogue_hash(sample_dialogue_text(list(sample["speakers"]), list(sample["texts"])))

    def for_sample(self, sample: Mapping[str, Any]) -> set[str]:
        """Accepted sticker ids for one sample (may include its gold sticker)."""
        found = set(self.by_sample_id.get(str(sample.get("sample_id")), ()))
        if self.by_hash:
            found |= self.by_hash.get(self.sample_hash(sample), set())
        return found

    def for_samples(self, samples: Iterable[Mapping[str, Any]]) -> list[set[str]]:
        """One set per sample (see :meth:`for_sample`)."""
        return [self.for_sample(s) for s in samples]


def load_extra_positives(path: str | os.PathLike | AnnotationStore) -> ExtraPositives:
    """:class:`ExtraPositives` from an export (directory or file, as written by
    ``python -m demo.annotations export``) or a store.  Uses the per-annotator records
    when the export has them, else the per-dialogue rows (their ``source_sample_id``)."""
    if _is_store(path):
        records: list[Mapping[str, Any]] | None = [a.to_dict() for a in path.all()]
        source = path.url
    else:
        records, source = load_export_records(path), str(path)
    by_sample: dict[str, set[str]] = defaultdict(set)
    by_hash: dict[str, set[str]] = defaultdict(set)
    if records is None:
        for r in load_export(path).to_list():
            accepted = set(r.get("accepted_sticker_ids") or ())
            if not accepted:
                continue
            if r.get("source_sample_id"):
                by_sample[str(r["source_sample_id"])] |= accepted
            else:
                by_hash[dialogue_hash(r["dialogue_text"])] |= accepted
        return ExtraPositives(dict(by_sample), dict(by_hash), source)
    pairs: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
    for r in records:
        # the hash is derived from the text (the store's invariant), not trusted from the file
        pairs[(dialogue_hash(r["dialogue_text"]), _check_sticker_id(r["sticker_id"]))].append(r)
    for (h, sticker), group in pairs.items():
        votes = Counter(r.get("label") or "acceptable" for r in group)
        if votes["acceptable"] <= votes["not_acceptable"]:
            continue
        for r in group:
            sid = _check_optional_str("source_sample_id", r.get("source_sample_id"))
            if sid:
                by_sample[sid].add(sticker)
            else:
                by_hash[h].add(sticker)
    return ExtraPositives(dict(by_sample), dict(by_hash), source)
