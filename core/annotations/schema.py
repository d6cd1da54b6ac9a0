"""Schema of the annotation store: the tables, the ordered :data:`MIGRATIONS`
and :data:`SCHEMA_VERSION`.

``schema_version`` records the migrations applied; opening an
:class:`~core.annotations.store.AnnotationStore` applies the missing ones (see
``store._migrate``).  Never edit an applied migration; append a new one.
"""

from __future__ import annotations

from typing import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .records import MAX_ANNOTATOR_CHARS, MAX_META_CHARS, MAX_STICKER_ID_CHARS

_metadata = sa.MetaData()

#: Current (latest) shape of the annotations table, used for queries only:
#: the DDL comes from the migrations below.
annotations_table = sa.Table(
    "annotations",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("dialogue_hash", sa.String(64), nullable=False),
    sa.Column("dialogue_text", sa.Text(), nullable=False),
    sa.Column("sticker_id", sa.String(MAX_STICKER_ID_CHARS), nullable=False),
    sa.Column("label", sa.String(32), nullable=False),
    sa.Column("annotator", sa.String(MAX_ANNOTATOR_CHARS), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("source_sample_id", sa.String(MAX_META_CHARS)),
    sa.Column("model_version", sa.String(MAX_META_CHARS)),
    sa.Column("model_rank", sa.Integer()),
)

schema_version_table = sa.Table(
    "schema_version",
    _metadata,
    sa.Column("version", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("description", sa.String(200), nullable=False),
    sa.Column("applied_at", sa.DateTime(timezone=True), nullable=False),
)

_KEY_COLUMNS = ("dialogue_hash", "sticker_id", "annotator")

#: One row per (queue, item, annotator) the annotation queue has answered: ``status``
#: "submitted" or "skipped", ``labels`` the JSON ``{sticker_id: label}`` the submission
#: wrote into ``annotations`` (so that undo and re-submission can take them back).
queue_progress_table = sa.Table(
    "queue_progress",
    _metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("queue", sa.String(MAX_META_CHARS), nullable=False),
    sa.Column("item_id", sa.String(MAX_META_CHARS), nullable=False),
    sa.Column("annotator", sa.String(MAX_ANNOTATOR_CHARS), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("dialogue_hash", sa.String(64), nullable=False),
    sa.Column("labels", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

#: Uploaded queues (their items as JSON), so that they are still there after a restart.
annotation_queues_table = sa.Table(
    "annotation_queues",
    _metadata,
    sa.Column("name", sa.String(MAX_META_CHARS), primary_key=True),
    sa.Column("description", sa.Text(), nullable=False),
    sa.Column("items", sa.Text(), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)
_PROGRESS_KEY = ("queue", "item_id", "annotator")


def _m001_initial(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "annotations",
        md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("dialogue_hash", sa.String(64), nullable=False),
        sa.Column("dialogue_text", sa.Text(), nullable=False),
        sa.Column("sticker_id", sa.String(MAX_STICKER_ID_CHARS), nullable=False),
        sa.Column("label", sa.String(32), nullable=False),
        sa.Column("annotator", sa.String(MAX_ANNOTATOR_CHARS), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(*_KEY_COLUMNS, name="uq_annotations_item_annotator"),
        sa.CheckConstraint("label IN ('acceptable', 'not_acceptable')", name="ck_annotations_label"),
    )
    md.create_all(conn)


def _m002_provenance(conn: Connection) -> None:
    for ddl in (
        f"ALTER TABLE annotations ADD COLUMN source_sample_id VARCHAR({MAX_META_CHARS})",
        f"ALTER TABLE annotations ADD COLUMN model_version VARCHAR({MAX_META_CHARS})",
        "ALTER TABLE annotations ADD COLUMN model_rank INTEGER",
    ):
        conn.execute(sa.text(ddl))


def _m003_annotator_index(conn: Connection) -> None:
    conn.execute(sa.text(
        "CREATE INDEX IF NOT EXISTS ix_annotations_annotator ON annotations (annotator)"))
    conn.execute(sa.text(
        "CREATE INDEX IF NOT EXISTS ix_annotations_updated_at ON annotations (updated_at)"))


def _m004_queue(conn: Connection) -> None:
    md = sa.MetaData()
    sa.Table(
        "queue_progress",
        md,
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("queue", sa.String(MAX_META_CHARS), nullable=False),
        sa.Column("item_id", sa.String(MAX_META_CHARS), nullable=False),
        sa.Column("annotator", sa.String(MAX_ANNOTATOR_CHARS), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("dialogue_hash", sa.String(64), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint(*_PROGRESS_KEY, name="uq_queue_progress_item_annotator"),
        sa.CheckConstraint("status IN ('submitted', 'skipped')", name="ck_queue_progress_status"),
        sa.Index("ix_queue_progress_queue_annotator", "queue", "annotator"),
    )
    sa.Table(
        "annotation_queues",
        md,
        sa.Column("name", sa.String(MAX_META_CHARS), primary_key=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("items", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    md.create_all(conn)


#: Ordered migrations: (version, description, function(connection)).
#: Never edit an applied migration; append a new one.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "annotations table with unique (dialogue_hash, sticker_id, annotator)", _m001_initial),
    (2, "provenance columns: source_sample_id, model_version, model_rank", _m002_provenance),
    (3, "indexes on annotator and updated_at", _m003_annotator_index),
    (4, "annotation queue: queue_progress and annotation_queues tables", _m004_queue),
]
SCHEMA_VERSION: int = MIGRATIONS[-1][0]
assert [m[0] for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


def _read_schema_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    v = conn.execute(sa.select(sa.func.max(schema_version_table.c.version))).scalar()
    return int(v or 0)

