"""Durable store for human "this sticker would also be acceptable" flags.

The ranking model picks one sticker for a dialogue; annotators using the demo
can flag *other* stickers that would also fit (label ``"acceptable"``) or
explicitly reject one (``"not_acceptable"``).  Those flags are extra positives
for multi-reference evaluation.

Storage
-------
* SQLite (default): one file, WAL journal, ``synchronous=FULL`` (a flag that
  has been acknowledged survives ``kill -9`` and power loss), ``busy_timeout``
  plus a retry loop for concurrent writers (several demo processes may share
  one file).  Write transactions use ``BEGIN IMMEDIATE`` so writers queue on
  the lock instead of failing on a read->write upgrade.
* PostgreSQL when given a ``postgresql://`` URL (driver: psycopg 3).

Both go through the same SQLAlchemy Core code; only the dialect's
``INSERT .. ON CONFLICT DO UPDATE`` constructor differs.  The schema is
versioned: ``schema_version`` records applied migrations and
:data:`MIGRATIONS` (ordered) is applied when a store is opened.

Records are keyed by ``(dialogue_hash, sticker_id, annotator)``: flagging the
same pair twice updates the row (upsert), :meth:`AnnotationStore.unflag`
deletes it.  ``dialogue_hash`` is the sha256 of :func:`normalize_dialogue`.

Export / import
---------------
:func:`export_dataset` writes one row per dialogue (accepted / rejected
sticker ids, votes per sticker) *and* a per-record table so that
:func:`import_dataset` is lossless; :func:`extra_positives` turns an export
into ``{dialogue_hash: {sticker ids}}`` for multi-reference recall.

Durability checks
-----------------
:class:`AckLog` / :func:`check_acknowledged` are used by the stress tests
(in-process and through the HTTP app): writers log each acknowledged flag
(fsync'ed) and the checker verifies every acknowledged flag is present exactly
once.

This module has no CLI, no UI and no hard-coded paths (see
``demo/annotations.py`` for the command line).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import operator
import os
import random
import re
import sqlite3
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

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
    "AckLog",
    "read_ack_files",
    "check_acknowledged",
]

LABELS: tuple[str, str] = ("acceptable", "not_acceptable")

MAX_DIALOGUE_CHARS = 100_000
MAX_STICKER_ID_CHARS = 256
MAX_ANNOTATOR_CHARS = 64
MAX_META_CHARS = 256  # source_sample_id, model_version

#: How long a write keeps retrying while another writer holds the SQLite lock.
DEFAULT_LOCK_TIMEOUT_S = 60.0
#: SQLite busy_timeout per attempt (the retry loop wraps it).
DEFAULT_BUSY_TIMEOUT_S = 10.0

_PG_MIGRATION_LOCK_KEY = 0x5717C3E5  # pg_advisory_xact_lock key for migrations


class AnnotationStoreError(RuntimeError):
    """The store cannot be opened or written (read-only, disk full, locked,
    unreachable server, unknown schema version...).  The message names the
    database path / URL (password masked)."""


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------


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


# --------------------------------------------------------------------------
# Schema and migrations
# --------------------------------------------------------------------------

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


#: Ordered migrations: (version, description, function(connection)).
#: Never edit an applied migration; append a new one.
MIGRATIONS: list[tuple[int, str, Callable[[Connection], None]]] = [
    (1, "annotations table with unique (dialogue_hash, sticker_id, annotator)", _m001_initial),
    (2, "provenance columns: source_sample_id, model_version, model_rank", _m002_provenance),
    (3, "indexes on annotator and updated_at", _m003_annotator_index),
]
SCHEMA_VERSION: int = MIGRATIONS[-1][0]
assert [m[0] for m in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))


# --------------------------------------------------------------------------
# Store
# --------------------------------------------------------------------------

_PRAGMA_NAME = re.compile(r"^[a-z_]+$")


def _resolve_target(url_or_path: str | os.PathLike) -> tuple[URL, str, Path | None]:
    """-> (sqlalchemy URL, backend 'sqlite'|'postgresql', sqlite file path or None)."""
    raw = os.fspath(url_or_path)
    if isinstance(raw, bytes):
        raw = os.fsdecode(raw)
    if not raw or not raw.strip():
        raise ValueError(f"empty database path/URL: {url_or_path!r}")
    if "://" not in raw:
        path = Path(raw).expanduser().absolute()
        return URL.create("sqlite", database=str(path)), "sqlite", path
    try:
        url = make_url(raw)
    except ArgumentError as exc:
        raise ValueError(f"cannot parse database URL {raw!r}: {exc}") from None
    driver = url.drivername
    backend = driver.split("+", 1)[0]
    if backend in ("postgresql", "postgres"):
        if "+" not in driver or backend == "postgres":
            url = url.set(drivername="postgresql+psycopg" if "+" not in driver
                          else "postgresql+" + driver.split("+", 1)[1])
        return url, "postgresql", None
    if backend == "sqlite":
        db = url.database or ""
        if db in ("", ":memory:") or url.query.get("mode") == "memory":
            return url, "sqlite", None
        if db.startswith("file:"):
            db = db[len("file:"):]
        path = Path(db).expanduser().absolute()
        if not url.query.get("uri"):
            url = url.set(database=str(path))
        return url, "sqlite", path
    raise ValueError(
        f"unsupported database URL {url.render_as_string(hide_password=True)!r}: "
        "use a file path, sqlite:///path or postgresql://user:pass@host/db"
    )


class AnnotationStore:
    """Annotation store (SQLite file or PostgreSQL).  Thread-safe; several
    processes may share one SQLite file.

    ``url_or_path``: a file path (SQLite), ``sqlite:///relative.db``,
    ``sqlite:////abs/path.db``, ``sqlite:///file:/abs/path.db?mode=ro&uri=true``
    (read-only) or ``postgresql://user:pass@host:port/db``.

    Keyword options: ``lock_timeout`` (s, total time a write keeps retrying
    while the SQLite file is locked), ``busy_timeout`` (s, SQLite busy handler
    per attempt), ``sqlite_pragmas`` (extra ``{name: value}`` PRAGMAs run on
    every new SQLite connection, e.g. ``max_page_count``).
    """

    def __init__(
        self,
        url_or_path: str | os.PathLike,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT_S,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_S,
        sqlite_pragmas: Mapping[str, Any] | None = None,
    ) -> None:
        self._engine: Engine | None = None
        url, backend, path = _resolve_target(url_or_path)
        self.backend = backend
        self.path: Path | None = path
        self.url = url.render_as_string(hide_password=True)
        self._where = str(path) if path is not None else self.url
        self._lock_timeout = float(lock_timeout)
        self.journal_mode: str | None = None
        if backend == "sqlite":
            if path is not None and not url.query.get("uri"):
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise AnnotationStoreError(
                        f"cannot create the directory for annotation database {path}: "
                        f"{exc.strerror or exc}"
                    ) from exc
                if path.exists() and path.is_dir():
                    raise AnnotationStoreError(f"annotation database path {path} is a directory")
            self._engine = self._make_sqlite_engine(url, path, busy_timeout, sqlite_pragmas or {})
            from sqlalchemy.dialects.sqlite import insert as dialect_insert
        else:
            try:
                self._engine = sa.create_engine(
                    url, pool_pre_ping=True,
                    connect_args={} if "connect_timeout" in url.query else {"connect_timeout": 10},
                )
            except (NoSuchModuleError, ImportError) as exc:
                raise AnnotationStoreError(
                    f"PostgreSQL driver missing for {self.url} (pip install 'psycopg[binary]'): {exc}"
                ) from exc

            @event.listens_for(self._engine, "connect")
            def _pg_on_connect(dbapi_conn, _record):  # pragma: no cover - exercised indirectly
                # a flag must be durable when flag() returns, whatever the
                # server default is
                with dbapi_conn.cursor() as cur:
                    cur.execute("SET synchronous_commit TO on")
                dbapi_conn.commit()

            from sqlalchemy.dialects.postgresql import insert as dialect_insert
        self._insert = dialect_insert
        try:
            self.schema_version = _migrate(self, SCHEMA_VERSION)
        except BaseException:
            self.close()
            raise

    # ---- engine / error handling ------------------------------------------------

    def _make_sqlite_engine(self, url: URL, path: Path | None, busy_timeout: float,
                            pragmas: Mapping[str, Any]) -> Engine:
        for name, value in pragmas.items():
            if not _PRAGMA_NAME.match(name) or not isinstance(value, (int, str)) or (
                isinstance(value, str) and not re.match(r"^[A-Za-z0-9_]+$", value)
            ):
                raise ValueError(f"invalid sqlite pragma {name!r}={value!r}")
        kwargs: dict[str, Any] = {
            "connect_args": {"timeout": float(busy_timeout), "check_same_thread": False},
        }
        if path is None:  # in-memory: one shared connection
            kwargs["poolclass"] = sa.pool.StaticPool
        engine = sa.create_engine(url, **kwargs)
        busy_ms = int(busy_timeout * 1000)
        store = self

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # pragma: no cover - exercised indirectly
            # autocommit at the driver level: we emit BEGIN ourselves (below)
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            try:
                cur.execute(f"PRAGMA busy_timeout = {busy_ms}")
                if path is not None:
                    try:
                        row = cur.execute("PRAGMA journal_mode = WAL").fetchone()
                        store.journal_mode = str(row[0]).lower() if row else None
                    except sqlite3.OperationalError as exc:
                        if "readonly" not in str(exc) and "read-only" not in str(exc):
                            raise
                cur.execute("PRAGMA synchronous = FULL")
                cur.execute("PRAGMA foreign_keys = ON")
                for name, value in pragmas.items():
                    cur.execute(f"PRAGMA {name} = {value}")
            finally:
                cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):  # pragma: no cover - exercised indirectly
            write = conn.get_execution_options().get("annotations_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine

    def _is_retryable(self, exc: BaseException) -> bool:
        orig = getattr(exc, "orig", exc)
        if self.backend == "sqlite":
            msg = str(orig).lower()
            return "database is locked" in msg or "database table is locked" in msg or "busy" in msg
        sqlstate = getattr(orig, "sqlstate", None)
        return sqlstate in ("40001", "40P01")

    def _wrap(self, exc: BaseException, action: str) -> AnnotationStoreError:
        orig = getattr(exc, "orig", None) or exc
        msg = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
        low = msg.lower()
        where = self._where
        if "readonly" in low or "read-only" in low or "read only" in low:
            text = f"annotation database {where} is read-only; cannot {action} ({msg})"
        elif "disk is full" in low or "no space" in low or "disk full" in low:
            text = f"annotation database {where}: disk is full; cannot {action} ({msg})"
        elif "unable to open database file" in low:
            text = (f"cannot open annotation database {where}: the file or its directory is "
                    f"missing, not writable or on a read-only file system ({msg})")
        elif "file is not a database" in low:
            text = f"{where} is not an SQLite annotation database ({msg})"
        elif "disk i/o error" in low:
            text = f"I/O error on annotation database {where} (read-only or full disk?); cannot {action} ({msg})"
        elif self._is_retryable(exc):
            text = (f"annotation database {where} stayed locked for more than "
                    f"{self._lock_timeout:g}s; cannot {action} ({msg})")
        else:
            text = f"annotation database {where}: cannot {action}: {msg}"
        return AnnotationStoreError(text)

    def _run(self, fn: Callable[[Connection], Any], *, write: bool, action: str) -> Any:
        """Run ``fn(conn)`` in one transaction, retrying while locked."""
        if self._engine is None:
            raise AnnotationStoreError(f"annotation store {self._where} is closed")
        deadline = time.monotonic() + self._lock_timeout
        attempt = 0
        while True:
            try:
                with self._engine.connect() as conn:
                    if write:
                        conn.execution_options(annotations_write=True)
                    with conn.begin():
                        return fn(conn)
            except AnnotationStoreError:
                raise
            except DBAPIError as exc:
                if self._is_retryable(exc) and time.monotonic() < deadline:
                    attempt += 1
                    time.sleep(min(0.5, 0.005 * 2 ** min(attempt, 7)) * random.uniform(0.5, 1.5))
                    continue
                raise self._wrap(exc, action) from exc
            except (SQLAlchemyError, sqlite3.Error, OSError) as exc:
                raise self._wrap(exc, action) from exc

    # ---- public API ----------------------------------------------------------

    def flag(
        self,
        *,
        dialogue_text: str,
        sticker_id: str,
        annotator: str = "anonymous",
        label: str = "acceptable",
        source_sample_id: str | None = None,
        model_version: str | None = None,
        model_rank: int | None = None,
    ) -> Annotation:
        """Record (or update) ``annotator``'s label for (dialogue, sticker).
        The write is committed and durable when this returns.  Provenance
        fields given as None keep their previous value on update."""
        text = _check_dialogue(dialogue_text)
        values = {
            "dialogue_hash": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "dialogue_text": text,
            "sticker_id": _check_sticker_id(sticker_id),
            "annotator": _check_annotator(annotator),
            "label": _check_label(label),
            "source_sample_id": _check_optional_str("source_sample_id", source_sample_id),
            "model_version": _check_optional_str("model_version", model_version),
            "model_rank": _check_rank(model_rank),
        }
        t = annotations_table

        def work(conn: Connection) -> Annotation:
            now = _utcnow()
            stmt = self._insert(t).values(**values, created_at=now, updated_at=now)
            ex = stmt.excluded
            stmt = stmt.on_conflict_do_update(
                index_elements=list(_KEY_COLUMNS),
                set_={
                    "label": ex.label,
                    "dialogue_text": ex.dialogue_text,
                    "updated_at": ex.updated_at,
                    "source_sample_id": sa.func.coalesce(ex.source_sample_id, t.c.source_sample_id),
                    "model_version": sa.func.coalesce(ex.model_version, t.c.model_version),
                    "model_rank": sa.func.coalesce(ex.model_rank, t.c.model_rank),
                },
            )
            conn.execute(stmt)
            row = conn.execute(sa.select(t).where(*self._key_where(values))).one()
            return _row_to_annotation(row)

        return self._run(work, write=True, action="save the flag")

    def unflag(self, *, dialogue_text: str, sticker_id: str, annotator: str = "anonymous") -> bool:
        """Delete ``annotator``'s record for (dialogue, sticker).  Returns
        whether a record existed."""
        text = _check_dialogue(dialogue_text)
        key = {
            "dialogue_hash": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "sticker_id": _check_sticker_id(sticker_id),
            "annotator": _check_annotator(annotator),
        }

        def work(conn: Connection) -> bool:
            res = conn.execute(sa.delete(annotations_table).where(*self._key_where(key)))
            return (res.rowcount or 0) > 0

        return self._run(work, write=True, action="remove the flag")

    def get(self, *, dialogue_text: str, sticker_id: str, annotator: str = "anonymous") -> Annotation | None:
        """The record for one (dialogue, sticker, annotator), or None."""
        text = _check_dialogue(dialogue_text)
        key = {
            "dialogue_hash": hashlib.sha256(text.encode("utf-8")).hexdigest(),
            "sticker_id": _check_sticker_id(sticker_id),
            "annotator": _check_annotator(annotator),
        }
        row = self._run(
            lambda c: c.execute(sa.select(annotations_table).where(*self._key_where(key))).first(),
            write=False, action="read annotations")
        return _row_to_annotation(row) if row is not None else None

    def for_dialogue(self, dialogue_text: str) -> list[Annotation]:
        """All records for a dialogue (any annotator), by sticker id then annotator."""
        h = hashlib.sha256(_check_dialogue(dialogue_text).encode("utf-8")).hexdigest()
        return self._select(annotations_table.c.dialogue_hash == h)

    def all(self) -> list[Annotation]:
        """Every record, ordered by dialogue hash, sticker id, annotator."""
        return self._select()

    def count(self) -> int:
        return int(self._run(
            lambda c: c.execute(sa.select(sa.func.count()).select_from(annotations_table)).scalar_one(),
            write=False, action="count annotations"))

    def agreement(self) -> dict:
        """Inter-annotator agreement on items labelled by >= 2 annotators; see
        :func:`compute_agreement`."""
        return compute_agreement(self.all())

    def integrity_check(self) -> str:
        """``"ok"`` when SQLite's ``PRAGMA integrity_check`` passes (else its
        report); for PostgreSQL ``"ok"`` when a simple query works."""
        if self.backend == "sqlite":
            rows = self._run(lambda c: c.exec_driver_sql("PRAGMA integrity_check").all(),
                             write=False, action="check integrity")
            lines = [str(r[0]) for r in rows]
            return "ok" if lines == ["ok"] else "\n".join(lines)
        self._run(lambda c: c.execute(sa.select(sa.literal(1))).scalar_one(),
                  write=False, action="check the connection")
        return "ok"

    def merge_records(self, records: Iterable[Mapping[str, Any] | Annotation], *,
                      batch_size: int = 500) -> int:
        """Merge full records (as produced by :meth:`Annotation.to_dict`) into
        the store: new keys are inserted, existing keys are updated only when
        the incoming record is newer (``updated_at``) and differs.  Returns the
        number of records inserted or changed (0 when re-importing the same
        data)."""
        prepared = [_prepare_record(r) for r in records]
        changed = 0
        for start in range(0, len(prepared), batch_size):
            batch = prepared[start:start + batch_size]
            changed += self._run(lambda c, b=batch: self._merge_batch(c, b), write=True,
                                 action="import annotations")
        return changed

    def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def __enter__(self) -> "AnnotationStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"AnnotationStore({self._where!r}, backend={self.backend!r})"

    # ---- helpers ------------------------------------------------------------------

    @staticmethod
    def _key_where(values: Mapping[str, Any]) -> list:
        t = annotations_table
        return [t.c[k] == values[k] for k in _KEY_COLUMNS]

    def _select(self, *where: Any) -> list[Annotation]:
        t = annotations_table
        stmt = sa.select(t).where(*where).order_by(t.c.dialogue_hash, t.c.sticker_id, t.c.annotator)
        rows = self._run(lambda c: c.execute(stmt).all(), write=False, action="read annotations")
        return [_row_to_annotation(r) for r in rows]

    def _merge_batch(self, conn: Connection, batch: list[dict[str, Any]]) -> int:
        t = annotations_table
        changed = 0
        for rec in batch:
            existing = conn.execute(sa.select(t).where(*self._key_where(rec))).first()
            if existing is None:
                conn.execute(sa.insert(t).values(**rec))
                changed += 1
                continue
            old = _row_to_annotation(existing)
            same = all(getattr(old, k) == rec[k] for k in (
                "label", "dialogue_text", "source_sample_id", "model_version", "model_rank"))
            if same or rec["updated_at"] <= old.updated_at:
                continue
            update = {k: v for k, v in rec.items() if k not in _KEY_COLUMNS and k != "created_at"}
            update["created_at"] = min(old.created_at, rec["created_at"])
            conn.execute(sa.update(t).where(*self._key_where(rec)).values(**update))
            changed += 1
        return changed


def _row_to_annotation(row: Any) -> Annotation:
    m = row._mapping
    return Annotation(
        dialogue_hash=m["dialogue_hash"],
        dialogue_text=m["dialogue_text"],
        sticker_id=m["sticker_id"],
        label=m["label"],
        annotator=m["annotator"],
        created_at=_as_utc(m["created_at"]),
        updated_at=_as_utc(m["updated_at"]),
        source_sample_id=m.get("source_sample_id"),
        model_version=m.get("model_version"),
        model_rank=m.get("model_rank"),
    )


def _prepare_record(rec: Mapping[str, Any] | Annotation) -> dict[str, Any]:
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


def _read_schema_version(conn: Connection) -> int:
    if not sa.inspect(conn).has_table("schema_version"):
        return 0
    v = conn.execute(sa.select(sa.func.max(schema_version_table.c.version))).scalar()
    return int(v or 0)


def _migrate(store: AnnotationStore, target: int = SCHEMA_VERSION) -> int:
    """Bring the store's schema to ``target`` (applied in order, in one
    transaction, serialised between processes).  Returns the version."""
    if not 0 <= target <= SCHEMA_VERSION:
        raise ValueError(f"unknown schema version {target}")

    def newer_error(v: int) -> AnnotationStoreError:
        return AnnotationStoreError(
            f"annotation database {store._where} has schema version {v}, newer than this code "
            f"supports ({SCHEMA_VERSION}); upgrade the software")

    current = store._run(_read_schema_version, write=False, action="read the schema version")
    if current > SCHEMA_VERSION:
        raise newer_error(current)
    if current >= target:
        return current

    def work(conn: Connection) -> int:
        if store.backend == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK_KEY})
        schema_version_table.create(conn, checkfirst=True)
        cur = _read_schema_version(conn)
        if cur > SCHEMA_VERSION:
            raise newer_error(cur)
        for version, description, fn in MIGRATIONS:
            if cur < version <= target:
                fn(conn)
                conn.execute(sa.insert(schema_version_table).values(
                    version=version, description=description, applied_at=_utcnow()))
                cur = version
        return cur

    return store._run(work, write=True, action="create or upgrade the schema")


# --------------------------------------------------------------------------
# Agreement
# --------------------------------------------------------------------------


def _cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    n = len(pairs)
    if n == 0:
        return None
    po = sum(a == b for a, b in pairs) / n
    ca = Counter(a for a, _ in pairs)
    cb = Counter(b for _, b in pairs)
    pe = sum(ca[c] * cb[c] for c in LABELS) / (n * n)
    if math.isclose(pe, 1.0):
        return None
    return (po - pe) / (1.0 - pe)


def _fleiss_kappa(items: Sequence[Mapping[str, int]], n_raters: int) -> float | None:
    n_items = len(items)
    if n_items == 0 or n_raters < 2:
        return None
    p_bar = sum(
        (sum(counts.get(c, 0) ** 2 for c in LABELS) - n_raters) / (n_raters * (n_raters - 1))
        for counts in items
    ) / n_items
    pj = [sum(counts.get(c, 0) for counts in items) / (n_items * n_raters) for c in LABELS]
    pe = sum(p * p for p in pj)
    if math.isclose(pe, 1.0):
        return None
    return (p_bar - pe) / (1.0 - pe)


def compute_agreement(annotations: Iterable[Annotation | Mapping[str, Any]]) -> dict:
    """Agreement statistics over items (dialogue_hash, sticker_id) labelled by
    at least two annotators.

    Returns a JSON-serialisable dict:

    * ``n_records``, ``n_items_total`` (all items), ``n_items`` (items with
      >= 2 annotators), ``n_annotators`` / ``annotators`` (on those items),
      ``n_ratings``, ``label_counts``;
    * ``percent_agreement``: mean pairwise agreement over the items, in %
      (None when there are no such items); ``unanimous_items``;
    * ``cohen_kappa``: one entry per annotator pair sharing >= 1 item:
      ``{"annotators": [a, b], "n_items", "percent_agreement", "kappa"}``
      (kappa None when chance agreement is 1, e.g. both used one label only);
      ``mean_cohen_kappa``;
    * ``fleiss_kappa`` over the largest group of items having the same number
      (>= 2) of raters (``fleiss_n_raters``, ``fleiss_n_items``), and
      ``fleiss_by_n_raters`` for every such group.
    """
    items: dict[tuple[str, str], dict[str, str]] = defaultdict(dict)
    n_records = 0
    for a in annotations:
        get = a.get if isinstance(a, Mapping) else (lambda k, _a=a: getattr(_a, k))
        items[(get("dialogue_hash"), get("sticker_id"))][get("annotator")] = get("label")
        n_records += 1
    multi = {k: v for k, v in items.items() if len(v) >= 2}
    annotators = sorted({a for labs in multi.values() for a in labs})
    label_counts = Counter(lab for labs in multi.values() for lab in labs.values())
    result: dict[str, Any] = {
        "n_records": n_records,
        "n_items_total": len(items),
        "n_items": len(multi),
        "n_annotators": len(annotators),
        "annotators": annotators,
        "n_ratings": sum(len(v) for v in multi.values()),
        "label_counts": {lab: label_counts.get(lab, 0) for lab in LABELS},
        "percent_agreement": None,
        "unanimous_items": 0,
        "cohen_kappa": [],
        "mean_cohen_kappa": None,
        "fleiss_kappa": None,
        "fleiss_n_raters": None,
        "fleiss_n_items": None,
        "fleiss_by_n_raters": [],
    }
    if not multi:
        return result
    agree_fracs = []
    for labs in multi.values():
        n = len(labs)
        counts = Counter(labs.values())
        agree_fracs.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
        result["unanimous_items"] += len(counts) == 1
    result["percent_agreement"] = 100.0 * sum(agree_fracs) / len(agree_fracs)

    pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for labs in multi.values():
        for a, b in itertools.combinations(sorted(labs), 2):
            pairs[(a, b)].append((labs[a], labs[b]))
    cohen = []
    for (a, b), lab_pairs in sorted(pairs.items()):
        cohen.append({
            "annotators": [a, b],
            "n_items": len(lab_pairs),
            "percent_agreement": 100.0 * sum(x == y for x, y in lab_pairs) / len(lab_pairs),
            "kappa": _cohen_kappa(lab_pairs),
        })
    result["cohen_kappa"] = cohen
    kappas = [c["kappa"] for c in cohen if c["kappa"] is not None]
    result["mean_cohen_kappa"] = sum(kappas) / len(kappas) if kappas else None

    groups: dict[int, list[Counter]] = defaultdict(list)
    for labs in multi.values():
        groups[len(labs)].append(Counter(labs.values()))
    by_n = [
        {"n_raters": n, "n_items": len(g), "kappa": _fleiss_kappa(g, n)}
        for n, g in sorted(groups.items())
    ]
    result["fleiss_by_n_raters"] = by_n
    best = max(by_n, key=lambda g: (g["n_items"], g["n_raters"]))
    result["fleiss_kappa"] = best["kappa"]
    result["fleiss_n_raters"] = best["n_raters"]
    result["fleiss_n_items"] = best["n_items"]
    return result


# --------------------------------------------------------------------------
# Export / import
# --------------------------------------------------------------------------

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


def extra_positives(path: str | os.PathLike | AnnotationStore) -> dict[str, set[str]]:
    """``{dialogue_hash: accepted sticker ids}`` from an export (or a store),
    for multi-reference recall.  Only dialogues with >= 1 accepted sticker.
    Look up a sample with ``dialogue_hash(its dialogue text)``."""
    if isinstance(path, AnnotationStore):
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
    form (:func:`core.dialogue.sample_dialogue_text`), has its ``dialogue_hash``."""

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
        from core.dialogue import sample_dialogue_text  # core.dialogue imports core.data

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
    if isinstance(path, AnnotationStore):
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


# --------------------------------------------------------------------------
# Acknowledgement logs (stress / durability checks)
# --------------------------------------------------------------------------


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
