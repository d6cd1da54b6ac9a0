"""The annotation store: :class:`AnnotationStore` and its error.

* SQLite (default): one file, WAL journal, ``synchronous=FULL`` (a flag that
  has been acknowledged survives ``kill -9`` and power loss), ``busy_timeout``
  plus a retry loop for concurrent writers (several demo processes may share
  one file).  Write transactions use ``BEGIN IMMEDIATE`` so writers queue on
  the lock instead of failing on a read->write upgrade.
* PostgreSQL when given a ``postgresql://`` URL (driver: psycopg 3).

Both go through the same SQLAlchemy Core code; only the dialect's
``INSERT .. ON CONFLICT DO UPDATE`` constructor differs.  Opening a store
applies the missing :data:`~core.annotations.schema.MIGRATIONS`.  Flagging the
same (dialogue, sticker, annotator) twice updates the row (upsert),
:meth:`AnnotationStore.unflag` deletes it.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, SQLAlchemyError

from .agreement import compute_agreement
from .records import (Annotation, _as_utc, _check_annotator, _check_dialogue, _check_label,
                      _check_optional_str, _check_rank, _check_sticker_id, _prepare_record,
                      _utcnow)
from .schema import (_KEY_COLUMNS, MIGRATIONS, SCHEMA_VERSION, _read_schema_version,
                     annotations_table, schema_version_table)

#: How long a write keeps retrying while another writer holds the SQLite lock.
DEFAULT_LOCK_TIMEOUT_S = 60.0
#: SQLite busy_timeout per attempt (the retry loop wraps it).
DEFAULT_BUSY_TIMEOUT_S = 10.0

_PG_MIGRATION_LOCK_KEY = 0x5717C3E5  # pg_advisory_xact_lock key for migrations


class AnnotationStoreError(RuntimeError):
    """The store cannot be opened or written (read-only, disk full, locked,
    unreachable server, unknown schema version...).  The message names the
    database path / URL (password masked)."""


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
        return self._run(lambda conn: self._upsert_flag(conn, values, _utcnow()), write=True,
                         action="save the flag")

    def _upsert_flag(self, conn: Connection, values: Mapping[str, Any], now: Any) -> Annotation:
        """Insert or update one checked flag (``values``: the key and value columns) inside
        the caller's transaction; returns the stored record."""
        t = annotations_table
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

