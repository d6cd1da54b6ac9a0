"""Durable store for human "this sticker would also be acceptable" flags.

The ranking model picks one sticker for a dialogue; annotators using the demo
can flag *other* stickers that would also fit (label ``"acceptable"``) or
explicitly reject one (``"not_acceptable"``).  Those flags are extra positives
for multi-reference evaluation.

Modules:

* :mod:`.records`: labels, the :class:`Annotation` record, dialogue
  normalisation / hashing and field validation;
* :mod:`.schema`: tables, :data:`MIGRATIONS` and :data:`SCHEMA_VERSION`;
* :mod:`.store`: :class:`AnnotationStore` (SQLite or PostgreSQL through
  SQLAlchemy Core) and :class:`AnnotationStoreError`;
* :mod:`.agreement`: :func:`compute_agreement` (Cohen's and Fleiss' kappa);
* :mod:`.export`: :func:`export_dataset`, :func:`load_export`,
  :func:`load_export_records`, :func:`import_dataset`;
* :mod:`.positives`: :func:`extra_positives`, :class:`ExtraPositives`,
  :func:`load_extra_positives` (imports no SQLAlchemy).

The names below are re-exported lazily (PEP 562): ``import core.annotations``
imports no submodule, and SQLAlchemy is imported only with the first name that
needs it.  No CLI, no UI and no hard-coded paths here (see
``demo/annotations.py`` for the command line).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name -> submodule defining it
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("LABELS", "Annotation", "normalize_dialogue", "dialogue_hash",
                     "MAX_DIALOGUE_CHARS", "MAX_STICKER_ID_CHARS", "MAX_ANNOTATOR_CHARS",
                     "MAX_META_CHARS"), "records"),
    **dict.fromkeys(("SCHEMA_VERSION", "MIGRATIONS", "annotations_table",
                     "schema_version_table"), "schema"),
    **dict.fromkeys(("AnnotationStore", "AnnotationStoreError", "DEFAULT_LOCK_TIMEOUT_S",
                     "DEFAULT_BUSY_TIMEOUT_S"), "store"),
    "compute_agreement": "agreement",
    **dict.fromkeys(("export_dataset", "load_export", "load_export_records", "import_dataset",
                     "EXPORT_FORMATS", "DIALOGUES_NAME", "RECORDS_NAME", "SUMMARY_NAME"),
                    "export"),
    **dict.fromkeys(("extra_positives", "ExtraPositives", "load_extra_positives"), "positives"),
}

__all__ = [
    "LABELS",
    "SCHEMA_VERSION",
    "MIGRATIONS",
    "AnnotationStoreError",
    "Annotation",
    "AnnotationStore",
    "normalize_dialogue",
    "dialogue_hash",
    "compute_agreement",
    "export_dataset",
    "load_export",
    "load_export_records",
    "import_dataset",
    "extra_positives",
    "ExtraPositives",
    "load_extra_positives",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:  # the names as type checkers and IDEs should see them
    from .agreement import compute_agreement
    from .export import (DIALOGUES_NAME, EXPORT_FORMATS, RECORDS_NAME, SUMMARY_NAME,
                         export_dataset, import_dataset, load_export, load_export_records)
    from .positives import ExtraPositives, extra_positives, load_extra_positives
    from .records import (LABELS, MAX_ANNOTATOR_CHARS, MAX_DIALOGUE_CHARS, MAX_META_CHARS,
                          MAX_STICKER_ID_CHARS, Annotation, dialogue_hash, normalize_dialogue)
    from .schema import MIGRATIONS, SCHEMA_VERSION, annotations_table, schema_version_table
    from .store import (DEFAULT_BUSY_TIMEOUT_S, DEFAULT_LOCK_TIMEOUT_S, AnnotationStore,
                        AnnotationStoreError)
