"""Export / import of the annotations as a dataset.

:func:`export_dataset` writes one row per dialogue (accepted / rejected
sticker ids, votes per sticker) *and* a per-record table so that
:func:`import_dataset` is lossless; :func:`load_export` /
:func:`load_export_records` read an export back (any format).

No SQLAlchemy at import time (``datasets`` and ``pyarrow`` are imported when
used): :mod:`core.annotations.positives` reads exports through this module.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter, defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

from .agreement import compute_agreement
from .records import LABELS, Annotation, _iso, _prepare_record, _utcnow

if TYPE_CHECKING:
    from .store import AnnotationStore

EXPORT_FORMATS = ("parquet", "jsonl", "hf")
DIALOGUES_NAME = "dialogues"
RECORDS_NAME = "records"
SUMMARY_NAME = "summary.json"

_RECORD_FIELDS = ("dialogue_hash", "dialogue_text", "sticker_id", "label", "annotator",
                  "created_at", "updated_at", "source_sample_id", "model_version", "model_rank")


def _features():
    from datasets import Features, List, Value

    dialogues = Features({
        "dialogue_hash": Value("string"),
        "dialogue_text": Value("string"),
        "source_sample_id": Value("string"),
        "accepted_sticker_ids": List(Value("string")),
        "rejected_sticker_ids": List(Value("string")),
        "votes": List({
            "sticker_id": Value("string"),
            "acceptable": Value("int32"),
            "not_acceptable": Value("int32"),
        }),
        "n_annotators": Value("int32"),
    })
    records = Features({
        "dialogue_hash": Value("string"),
        "dialogue_text": Value("string"),
        "sticker_id": Value("string"),
        "label": Value("string"),
        "annotator": Value("string"),
        "created_at": Value("string"),
        "updated_at": Value("string"),
        "source_sample_id": Value("string"),
        "model_version": Value("string"),
        "model_rank": Value("int64"),
    })
    return dialogues, records


def _make_dataset(rows: Sequence[Mapping[str, Any]], features):
    from datasets import Dataset

    return Dataset.from_dict({k: [r.get(k) for r in rows] for k in features}, features=features)


def _sticker_sort_key(s: str) -> tuple:
    return (0, int(s), s) if s.isdigit() else (1, 0, s)


def _dialogue_rows(records: Sequence[Annotation]) -> list[dict[str, Any]]:
    by_dialogue: dict[str, list[Annotation]] = defaultdict(list)
    for a in records:
        by_dialogue[a.dialogue_hash].append(a)
    rows = []
    for h in sorted(by_dialogue):
        recs = by_dialogue[h]
        votes: dict[str, Counter] = defaultdict(Counter)
        for a in recs:
            votes[a.sticker_id][a.label] += 1
        sources = Counter(a.source_sample_id for a in recs if a.source_sample_id)
        source = min(sources, key=lambda s: (-sources[s], s)) if sources else None
        order = sorted(votes, key=_sticker_sort_key)
        rows.append({
            "dialogue_hash": h,
            "dialogue_text": recs[0].dialogue_text,
            "source_sample_id": source,
            # majority of votes; ties are in neither list (see "votes")
            "accepted_sticker_ids": [s for s in order
                                     if votes[s]["acceptable"] > votes[s]["not_acceptable"]],
            "rejected_sticker_ids": [s for s in order
                                     if votes[s]["not_acceptable"] > votes[s]["acceptable"]],
            "votes": [{"sticker_id": s, "acceptable": votes[s]["acceptable"],
                       "not_acceptable": votes[s]["not_acceptable"]} for s in order],
            "n_annotators": len({a.annotator for a in recs}),
        })
    return rows


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        with open(tmp_path, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _write_jsonl(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False, sort_keys=False) + "\n")
    _write_atomic(path, write)


def _summary(records: Sequence[Annotation], dialogue_rows: Sequence[Mapping[str, Any]],
             fmt: str, files: Mapping[str, str], store: Any) -> dict[str, Any]:
    from .schema import SCHEMA_VERSION  # SQLAlchemy: only when exporting a store

    labels = Counter(a.label for a in records)
    return {
        "format": fmt,
        "exported_at": _iso(_utcnow()),
        "schema_version": SCHEMA_VERSION,
        "source": getattr(store, "url", None),
        "files": dict(files),
        "counts": {
            "records": len(records),
            "dialogues": len(dialogue_rows),
            "items": len({(a.dialogue_hash, a.sticker_id) for a in records}),
            "stickers": len({a.sticker_id for a in records}),
            "annotators": len({a.annotator for a in records}),
            "labels": {lab: labels.get(lab, 0) for lab in LABELS},
            "dialogues_with_accepted": sum(1 for r in dialogue_rows if r["accepted_sticker_ids"]),
            "accepted_pairs": sum(len(r["accepted_sticker_ids"]) for r in dialogue_rows),
            "rejected_pairs": sum(len(r["rejected_sticker_ids"]) for r in dialogue_rows),
        },
        "agreement": compute_agreement(records),
    }


class _quiet_datasets:
    """Silence datasets' progress bars for the duration of a block."""

    def __enter__(self):
        import datasets

        self._was_enabled = datasets.is_progress_bar_enabled()
        datasets.disable_progress_bars()

    def __exit__(self, *exc):
        import datasets

        if self._was_enabled:
            datasets.enable_progress_bars()


def export_dataset(store: AnnotationStore, out_dir: str | os.PathLike, fmt: str = "parquet"):
    """Export the store to ``out_dir`` and return the per-dialogue
    :class:`datasets.Dataset`.

    Files (``fmt``): ``parquet`` -> ``dialogues.parquet`` + ``records.parquet``;
    ``jsonl`` -> ``dialogues.jsonl`` + ``records.jsonl``; ``hf`` -> a
    ``DatasetDict`` saved with ``save_to_disk`` (splits ``dialogues`` and
    ``records``).  Always also ``summary.json`` (counts and agreement).
    ``records`` holds one row per annotator record so that
    :func:`import_dataset` is lossless.

    Per-dialogue columns: dialogue_hash, dialogue_text, source_sample_id,
    accepted_sticker_ids / rejected_sticker_ids (majority of votes; ties in
    neither), votes (list of {sticker_id, acceptable, not_acceptable}),
    n_annotators."""
    fmt = str(fmt).lower().strip()
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {EXPORT_FORMATS}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"export destination {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    records = store.all()
    dialogue_rows = _dialogue_rows(records)
    record_rows = [a.to_dict() for a in records]
    dfeat, rfeat = _features()
    with _quiet_datasets():
        ds = _make_dataset(dialogue_rows, dfeat)
        rds = _make_dataset(record_rows, rfeat)
        if fmt == "parquet":
            files = {"dialogues": "dialogues.parquet", "records": "records.parquet"}
            _write_atomic(out / files["dialogues"], lambda p: ds.to_parquet(str(p)))
            _write_atomic(out / files["records"], lambda p: rds.to_parquet(str(p)))
        elif fmt == "jsonl":
            files = {"dialogues": "dialogues.jsonl", "records": "records.jsonl"}
            _write_jsonl(out / files["dialogues"], dialogue_rows)
            _write_jsonl(out / files["records"], record_rows)
        else:
            from datasets import DatasetDict

            files = {"dialogues": "dialogues/", "records": "records/"}
            # num_shards=1: an empty split is otherwise saved with no shard and
            # cannot be loaded back.
            DatasetDict({DIALOGUES_NAME: ds, RECORDS_NAME: rds}).save_to_disk(
                str(out), num_shards={DIALOGUES_NAME: 1, RECORDS_NAME: 1})
    summary = _summary(records, dialogue_rows, fmt, files, store)
    _write_atomic(out / SUMMARY_NAME, lambda p: p.write_text(
        json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"))
    return ds


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        if suffix == ".json" and text.lstrip().startswith("["):
            return list(json.loads(text))
        rows = []
        for lineno, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{lineno}: invalid JSON line: {exc}") from None
        return rows
    raise ValueError(f"unsupported export file {path} (expected .parquet, .jsonl or .json)")


def _kind_of(rows: Sequence[Mapping[str, Any]], path: Path) -> str:
    if path.stem.startswith(RECORDS_NAME):
        return RECORDS_NAME
    if path.stem.startswith(DIALOGUES_NAME):
        return DIALOGUES_NAME
    if rows and "annotator" in rows[0]:
        return RECORDS_NAME
    return DIALOGUES_NAME


def _is_hf_dir(p: Path) -> bool:
    return (p / "dataset_dict.json").is_file() or (p / "state.json").is_file()


def _find_export_file(directory: Path, kind: str) -> Path | None:
    for ext in (".parquet", ".jsonl", ".json"):
        candidate = directory / f"{kind}{ext}"
        if candidate.is_file():
            return candidate
    return None


def _load_hf(p: Path, kind: str):
    import datasets

    with _quiet_datasets():
        loaded = datasets.load_from_disk(str(p))
    if isinstance(loaded, datasets.DatasetDict):
        return loaded[kind] if kind in loaded else None
    if kind in loaded.column_names or (kind == DIALOGUES_NAME and "votes" in loaded.column_names) or (
        kind == RECORDS_NAME and "annotator" in loaded.column_names
    ):
        return loaded
    return None


def load_export(path: str | os.PathLike):
    """Per-dialogue :class:`datasets.Dataset` from an export: an export
    directory (any format) or a single ``.parquet`` / ``.jsonl`` / ``.json``
    file.  A records-only file is aggregated into per-dialogue rows."""
    p = Path(path)
    dfeat, rfeat = _features()
    if p.is_dir():
        if _is_hf_dir(p):
            ds = _load_hf(p, DIALOGUES_NAME)
            if ds is None:
                raise ValueError(f"{p}: saved dataset has no {DIALOGUES_NAME!r} split")
            return ds
        f = _find_export_file(p, DIALOGUES_NAME)
        if f is None:
            raise FileNotFoundError(
                f"no annotation export in {p} (expected dialogues.parquet, dialogues.jsonl "
                f"or a saved DatasetDict)")
        p = f
    if not p.exists():
        raise FileNotFoundError(f"annotation export not found: {p}")
    rows = _read_rows(p)
    with _quiet_datasets():
        if _kind_of(rows, p) == RECORDS_NAME:
            anns = [_annotation_from_record(r) for r in rows]
            return _make_dataset(_dialogue_rows(anns), dfeat)
        return _make_dataset(rows, dfeat)


def _annotation_from_record(rec: Mapping[str, Any]) -> Annotation:
    r = _prepare_record(rec)
    return Annotation(**{k: r[k] for k in _RECORD_FIELDS})


def load_export_records(path: str | os.PathLike) -> list[dict[str, Any]] | None:
    """Per-annotator records of an export (``records`` table / split), or None
    when the export carries only per-dialogue rows."""
    p = Path(path)
    if p.is_dir():
        if _is_hf_dir(p):
            ds = _load_hf(p, RECORDS_NAME)
            return None if ds is None else ds.to_list()
        f = _find_export_file(p, RECORDS_NAME)
        return _read_rows(f) if f is not None else None
    if not p.exists():
        raise FileNotFoundError(f"annotation export not found: {p}")
    rows = _read_rows(p)
    if _kind_of(rows, p) == RECORDS_NAME:
        return rows
    sibling = _find_export_file(p.parent, RECORDS_NAME)
    return _read_rows(sibling) if sibling is not None else None


def _records_from_votes(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Best effort for exports without per-annotator records: one synthetic
    annotator ("imported-<k>") per vote.  Deterministic, so re-importing does
    not duplicate."""
    out = []
    for row in rows:
        for v in row.get("votes") or []:
            labels = ["acceptable"] * int(v.get("acceptable") or 0) + \
                     ["not_acceptable"] * int(v.get("not_acceptable") or 0)
            for k, label in enumerate(labels, 1):
                out.append({
                    "dialogue_text": row["dialogue_text"],
                    "sticker_id": v["sticker_id"],
                    "annotator": f"imported-{k}",
                    "label": label,
                    "source_sample_id": row.get("source_sample_id"),
                })
    return out


def import_dataset(store: AnnotationStore, path: str | os.PathLike) -> int:
    """Merge an export (directory or file, any format) back into ``store``.
    Uses the per-annotator records when present (lossless; newer
    ``updated_at`` wins on conflict), else reconstructs records from the
    votes.  Never duplicates.  Returns the number of records inserted or
    changed."""
    records = load_export_records(path)
    if records is None:
        records = _records_from_votes(load_export(path).to_list())
    return store.merge_records(records)
