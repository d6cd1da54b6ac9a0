"""Tests for core/annotations/ and the demo.annotations CLI.

PostgreSQL variants run when ANNOTATIONS_TEST_PG_URL is set
(``eval "$(bash .ci/postgres.sh)"``); each test gets its own schema.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from core.annotations import store as ann
from core.annotations import (
    LABELS,
    MIGRATIONS,
    SCHEMA_VERSION,
    Annotation,
    AnnotationStore,
    AnnotationStoreError,
    compute_agreement,
    dialogue_hash,
    export_dataset,
    extra_positives,
    import_dataset,
    load_export,
    normalize_dialogue,
)

PG_URL = os.environ.get("ANNOTATIONS_TEST_PG_URL")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture
def pg_url():
    if not PG_URL:
        pytest.skip("ANNOTATIONS_TEST_PG_URL not set (eval \"$(bash .ci/postgres.sh)\")")
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    base = make_url(PG_URL)
    if "+" not in base.drivername:
        base = base.set(drivername="postgresql+psycopg")
    schema = f"annot_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    url = base.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "annotations.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url):
    s = AnnotationStore(store_url)
    yield s
    s.close()


@pytest.fixture
def sqlite_store(tmp_path):
    s = AnnotationStore(tmp_path / "annotations.db")
    yield s
    s.close()


def _populate(store: AnnotationStore) -> None:
    d1 = "A: hi there!\nB: how are you?"
    d2 = "A: I'm so tired today\nB: go to sleep"
    d3 = "A: ünïcödé 😀 dialogue"
    store.flag(dialogue_text=d1, sticker_id="10", annotator="alice", source_sample_id="s1",
               model_version="m1", model_rank=2)
    store.flag(dialogue_text=d1, sticker_id="10", annotator="bob", label="acceptable")
    store.flag(dialogue_text=d1, sticker_id="7", annotator="alice", label="not_acceptable",
               model_rank=5)
    store.flag(dialogue_text=d1, sticker_id="7", annotator="bob", label="acceptable")
    store.flag(dialogue_text=d1, sticker_id="7", annotator="carol", label="not_acceptable")
    store.flag(dialogue_text=d2, sticker_id="3", annotator="alice", source_sample_id="s2")
    store.flag(dialogue_text=d2, sticker_id="abc", annotator="bob", label="not_acceptable")
    store.flag(dialogue_text=d3, sticker_id="1", annotator="anonymous", model_version="m2",
               model_rank=0)


# --------------------------------------------------------------------------
# normalisation / validation
# --------------------------------------------------------------------------


def test_normalize_dialogue_and_hash():
    messy = "  A:   hello\t world  \r\n\n   \nB: cafe\u0301  \n"
    assert normalize_dialogue(messy) == "A: hello world\nB: caf\u00e9"
    assert normalize_dialogue(["A:  hello world", "  B: caf\u00e9"]) == "A: hello world\nB: caf\u00e9"
    assert normalize_dialogue("\n \n\t") == ""
    expected = hashlib.sha256("A: hello world\nB: caf\u00e9".encode()).hexdigest()
    assert dialogue_hash(messy) == expected
    assert dialogue_hash("A: hello world\nB: caf\u00e9") == expected
    assert dialogue_hash("A: hello world\nB: cafe") != expected
    # line structure matters (turns), inner whitespace does not
    assert dialogue_hash("a b") != dialogue_hash("a\nb")
    assert len(expected) == 64


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"dialogue_text": "  \n\t \n"}, "'  \\n\\t \\n'"),
        ({"dialogue_text": ""}, "empty"),
        ({"dialogue_text": 42}, "42"),
        ({"sticker_id": ""}, "sticker_id is empty: ''"),
        ({"sticker_id": "   "}, "'   '"),
        ({"sticker_id": None}, "None"),
        ({"annotator": "x" * 65}, "xxxxxxxx"),
        ({"annotator": "bad\x07name"}, "'bad\\x07name'"),
        ({"annotator": "two\nlines"}, "'two\\nlines'"),
        ({"annotator": ""}, "annotator name is empty"),
        ({"label": "maybe"}, "'maybe'"),
        ({"label": "Acceptable"}, "'Acceptable'"),
        ({"model_rank": -1}, "-1"),
        ({"model_rank": "first"}, "'first'"),
        ({"source_sample_id": "a\x00b"}, "source_sample_id"),
    ],
)
def test_flag_rejects_bad_input(sqlite_store, kwargs, needle):
    args = {"dialogue_text": "A: hi", "sticker_id": "1", **kwargs}
    with pytest.raises(ValueError) as info:
        sqlite_store.flag(**args)
    assert needle in str(info.value)
    assert sqlite_store.count() == 0


def test_annotator_too_long_message_names_length(sqlite_store):
    with pytest.raises(ValueError, match=r"too long \(65 > 64"):
        sqlite_store.flag(dialogue_text="hi", sticker_id="1", annotator="y" * 65)
    # 64 is fine; surrounding whitespace is stripped; unicode names are fine
    a = sqlite_store.flag(dialogue_text="hi", sticker_id="1", annotator="  " + "é" * 64 + " ")
    assert a.annotator == "é" * 64


def test_unflag_validates_too(sqlite_store):
    with pytest.raises(ValueError, match="sticker_id"):
        sqlite_store.unflag(dialogue_text="hi", sticker_id="")
    with pytest.raises(ValueError, match="empty"):
        sqlite_store.for_dialogue("   ")


# --------------------------------------------------------------------------
# upsert / unflag (both backends)
# --------------------------------------------------------------------------


def test_flag_upsert_and_unflag(store):
    d = "A: hi there\nB: hello"
    a1 = store.flag(dialogue_text=d, sticker_id="42", annotator="alice", source_sample_id="train-7",
                    model_version="bert-v1", model_rank=3)
    assert isinstance(a1, Annotation)
    assert a1.dialogue_hash == dialogue_hash(d) and a1.dialogue_text == d
    assert a1.label == "acceptable" and a1.model_rank == 3 and a1.source_sample_id == "train-7"
    assert a1.created_at.tzinfo is not None and a1.created_at.utcoffset().total_seconds() == 0
    time.sleep(0.002)
    # same annotator, same dialogue (differently formatted), same sticker -> update
    a2 = store.flag(dialogue_text="  A:  hi   there \n\n B: hello ", sticker_id=42,
                    annotator="alice", label="not_acceptable")
    assert store.count() == 1
    assert a2.label == "not_acceptable"
    assert a2.created_at == a1.created_at
    assert a2.updated_at > a1.updated_at
    # provenance not given on update -> kept
    assert (a2.source_sample_id, a2.model_version, a2.model_rank) == ("train-7", "bert-v1", 3)
    a3 = store.flag(dialogue_text=d, sticker_id="42", annotator="alice", model_version="bert-v2",
                    model_rank=1)
    assert (a3.label, a3.model_version, a3.model_rank) == ("acceptable", "bert-v2", 1)
    assert store.count() == 1

    store.flag(dialogue_text=d, sticker_id="42", annotator="bob")
    store.flag(dialogue_text=d, sticker_id="43", annotator="alice")
    store.flag(dialogue_text="another dialogue", sticker_id="42", annotator="alice")
    assert store.count() == 4
    recs = store.for_dialogue(d + "\n")
    assert [(r.sticker_id, r.annotator) for r in recs] == [("42", "alice"), ("42", "bob"), ("43", "alice")]
    assert store.get(dialogue_text=d, sticker_id="42", annotator="bob").label == "acceptable"

    assert store.unflag(dialogue_text=d, sticker_id="42", annotator="alice") is True
    assert store.unflag(dialogue_text=d, sticker_id="42", annotator="alice") is False
    assert store.get(dialogue_text=d, sticker_id="42", annotator="alice") is None
    assert store.count() == 3
    # only that annotator's record went away
    assert [(r.sticker_id, r.annotator) for r in store.for_dialogue(d)] == [("42", "bob"), ("43", "alice")]
    # default annotator
    store.flag(dialogue_text=d, sticker_id="99")
    assert store.get(dialogue_text=d, sticker_id="99").annotator == "anonymous"
    assert store.unflag(dialogue_text=d, sticker_id="99") is True
    assert store.integrity_check() == "ok"
    assert len(store.all()) == store.count() == 3


def test_concurrent_threads_same_key_no_duplicates(store):
    errors = []

    def worker(i):
        try:
            for j in range(15):
                store.flag(dialogue_text="shared", sticker_id="s", annotator="same",
                           label=LABELS[(i + j) % 2])
                store.flag(dialogue_text="shared", sticker_id=f"t{j}", annotator=f"w{i}")
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert store.count() == 1 + 6 * 15
    assert len(store.for_dialogue("shared")) == 1 + 6 * 15


def test_sqlite_is_wal_and_synchronous_full(sqlite_store):
    assert sqlite_store.journal_mode == "wal"
    with sqlite_store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() > 0
    raw = sqlite3.connect(sqlite_store.path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    raw.close()


def test_store_accepts_path_and_urls(tmp_path, monkeypatch):
    p = tmp_path / "sub" / "dir" / "a.db"
    with AnnotationStore(p) as s:  # PathLike, parent created
        s.flag(dialogue_text="x", sticker_id="1")
    with AnnotationStore(f"sqlite:///{p}") as s:
        assert s.count() == 1 and s.path == p
    monkeypatch.chdir(tmp_path)
    with AnnotationStore("sqlite:///sub/dir/a.db") as s:
        assert s.count() == 1
    with AnnotationStore("sqlite://") as s:  # in-memory
        s.flag(dialogue_text="x", sticker_id="1")
        assert s.count() == 1
    with pytest.raises(ValueError, match="unsupported"):
        AnnotationStore("mysql://u:p@localhost/db")
    with pytest.raises(ValueError):
        AnnotationStore("")


# --------------------------------------------------------------------------
# migrations
# --------------------------------------------------------------------------

V1_SQLITE_DDL = """
CREATE TABLE schema_version (
    version INTEGER NOT NULL PRIMARY KEY,
    description VARCHAR(200) NOT NULL,
    applied_at DATETIME NOT NULL
);
CREATE TABLE annotations (
    id INTEGER NOT NULL PRIMARY KEY,
    dialogue_hash VARCHAR(64) NOT NULL,
    dialogue_text TEXT NOT NULL,
    sticker_id VARCHAR(256) NOT NULL,
    label VARCHAR(32) NOT NULL,
    annotator VARCHAR(64) NOT NULL,
    created_at DATETIME NOT NULL,
    updated_at DATETIME NOT NULL,
    CONSTRAINT uq_annotations_item_annotator UNIQUE (dialogue_hash, sticker_id, annotator),
    CONSTRAINT ck_annotations_label CHECK (label IN ('acceptable', 'not_acceptable'))
);
INSERT INTO schema_version VALUES (1, 'annotations table', '2024-01-01 00:00:00.000000');
"""


def test_upgrade_handwritten_v1_sqlite_file(tmp_path):
    db = tmp_path / "old.db"
    raw = sqlite3.connect(db)
    raw.executescript(V1_SQLITE_DDL)
    h = dialogue_hash("old dialogue")
    raw.execute(
        "INSERT INTO annotations (dialogue_hash, dialogue_text, sticker_id, label, annotator,"
        " created_at, updated_at) VALUES (?, 'old dialogue', '5', 'acceptable', 'alice',"
        " '2024-01-02 03:04:05.000006', '2024-01-02 03:04:05.000006')", (h,))
    raw.commit()
    raw.close()

    with AnnotationStore(db) as s:
        assert s.schema_version == SCHEMA_VERSION
        (old,) = s.all()
        assert (old.dialogue_hash, old.sticker_id, old.annotator, old.label) == (h, "5", "alice", "acceptable")
        assert old.created_at.isoformat() == "2024-01-02T03:04:05.000006+00:00"
        assert (old.source_sample_id, old.model_version, old.model_rank) == (None, None, None)
        new = s.flag(dialogue_text="old dialogue", sticker_id="5", annotator="alice",
                     label="not_acceptable", model_rank=4)
        assert s.count() == 1 and new.model_rank == 4 and new.created_at == old.created_at
    raw = sqlite3.connect(db)
    versions = [r[0] for r in raw.execute("SELECT version FROM schema_version ORDER BY version")]
    cols = {r[1] for r in raw.execute("PRAGMA table_info(annotations)")}
    idx = {r[1] for r in raw.execute("PRAGMA index_list(annotations)")}
    raw.close()
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert {"source_sample_id", "model_version", "model_rank"} <= cols
    assert "ix_annotations_annotator" in idx
    # re-opening is a no-op
    with AnnotationStore(db) as s:
        assert s.schema_version == SCHEMA_VERSION and s.count() == 1


def _make_v1(url: str) -> None:
    """Create a version-1 database with the real first migration."""
    import sqlalchemy as sa

    store_url, _, _ = ann._resolve_target(url)
    engine = sa.create_engine(store_url)
    try:
        with engine.begin() as conn:
            ann.schema_version_table.create(conn)
            MIGRATIONS[0][2](conn)
            conn.execute(sa.insert(ann.schema_version_table).values(
                version=1, description=MIGRATIONS[0][1], applied_at=ann._utcnow()))
            now = ann._utcnow()
            conn.execute(sa.text(
                "INSERT INTO annotations (dialogue_hash, dialogue_text, sticker_id, label,"
                " annotator, created_at, updated_at) VALUES (:h, 'v1 text', 's', 'acceptable',"
                " 'bob', :t, :t)"), {"h": dialogue_hash("v1 text"), "t": now})
    finally:
        engine.dispose()


def test_upgrade_v1_database_both_backends(store_url):
    _make_v1(store_url)
    with AnnotationStore(store_url) as s:
        assert s.schema_version == SCHEMA_VERSION
        (rec,) = s.all()
        assert (rec.annotator, rec.model_rank) == ("bob", None)
        s.flag(dialogue_text="v1 text", sticker_id="s", annotator="bob", model_rank=2,
               source_sample_id="x")
        (rec,) = s.all()
        assert (rec.model_rank, rec.source_sample_id) == (2, "x")


def test_newer_schema_version_is_refused(store_url):
    import sqlalchemy as sa

    with AnnotationStore(store_url) as s:
        with s._engine.begin() as conn:
            conn.execute(sa.insert(ann.schema_version_table).values(
                version=SCHEMA_VERSION + 1, description="future", applied_at=ann._utcnow()))
    with pytest.raises(AnnotationStoreError, match=f"schema version {SCHEMA_VERSION + 1}"):
        AnnotationStore(store_url)


def test_concurrent_first_open_migrates_once(tmp_path):
    db = tmp_path / "race.db"
    errors, stores = [], []

    def opener():
        try:
            stores.append(AnnotationStore(db))
        except Exception as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for s in stores:
        s.close()
    raw = sqlite3.connect(db)
    assert [r[0] for r in raw.execute("SELECT version FROM schema_version ORDER BY 1")] == \
        list(range(1, SCHEMA_VERSION + 1))
    raw.close()


# --------------------------------------------------------------------------
# faults: read-only, full disk, locked, garbage
# --------------------------------------------------------------------------


def test_path_under_a_regular_file_is_a_clear_error(tmp_path):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    target = blocker / "annotations.db"
    with pytest.raises(AnnotationStoreError) as info:
        AnnotationStore(target)
    assert str(target) in str(info.value)


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs /proc")
def test_unwritable_location_is_a_clear_error_even_for_root():
    # /proc refuses file creation even to root
    target = Path("/proc") / f"annotations-{uuid.uuid4().hex}.db"
    with pytest.raises(AnnotationStoreError) as info:
        AnnotationStore(target)
    assert str(target) in str(info.value)


def test_read_only_database_write_is_a_clear_error(tmp_path):
    db = tmp_path / "ro.db"
    with AnnotationStore(db) as s:
        s.flag(dialogue_text="x", sticker_id="1")
    # read-only open (works for root too, unlike chmod)
    with AnnotationStore(f"sqlite:///file:{db}?mode=ro&uri=true") as ro:
        assert ro.count() == 1 and ro.integrity_check() == "ok"
        with pytest.raises(AnnotationStoreError) as info:
            ro.flag(dialogue_text="x", sticker_id="2")
        assert "read-only" in str(info.value) and str(db) in str(info.value)
        with pytest.raises(AnnotationStoreError, match="read-only"):
            ro.unflag(dialogue_text="x", sticker_id="1")
        assert ro.count() == 1


@pytest.mark.skipif(IS_ROOT, reason="root ignores directory permissions")
def test_read_only_directory_chmod(tmp_path):  # pragma: no cover - only as non-root
    d = tmp_path / "ro"
    d.mkdir()
    d.chmod(0o555)
    try:
        with pytest.raises(AnnotationStoreError) as info:
            AnnotationStore(d / "a.db")
        assert str(d / "a.db") in str(info.value)
    finally:
        d.chmod(0o755)


def test_full_disk_is_a_clear_error(tmp_path):
    db = tmp_path / "full.db"
    with AnnotationStore(db) as s:
        s.flag(dialogue_text="x", sticker_id="1")
    # max_page_count caps the file at its current size: like a full disk
    with AnnotationStore(db, sqlite_pragmas={"max_page_count": 1}) as s:
        with pytest.raises(AnnotationStoreError) as info:
            for i in range(50):
                s.flag(dialogue_text=f"{i} " + "long dialogue " * 3000, sticker_id="2")
        assert "disk is full" in str(info.value) and str(db) in str(info.value)
        assert s.count() == 1  # nothing half-written
        assert s.integrity_check() == "ok"


def test_not_a_database_file(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite" * 200)
    with pytest.raises(AnnotationStoreError, match="not an SQLite"):
        AnnotationStore(junk)


def test_locked_database_retries_then_errors(tmp_path):
    db = tmp_path / "locked.db"
    AnnotationStore(db).close()
    holder = sqlite3.connect(db, isolation_level=None, timeout=0, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO schema_version VALUES (999, 'x', '2024-01-01')")
    try:
        with AnnotationStore(db, lock_timeout=0.3, busy_timeout=0.05) as s:
            t0 = time.monotonic()
            with pytest.raises(AnnotationStoreError, match="locked"):
                s.flag(dialogue_text="x", sticker_id="1")
            assert time.monotonic() - t0 >= 0.3
            # lock released while the writer is retrying -> the flag succeeds
            timer = threading.Timer(0.3, holder.execute, args=("ROLLBACK",))
            timer.start()
            s2 = AnnotationStore(db, lock_timeout=10, busy_timeout=0.05)
            try:
                s2.flag(dialogue_text="x", sticker_id="1")
                assert s2.count() == 1
            finally:
                s2.close()
                timer.join()
    finally:
        holder.close()


def test_closed_store_raises(sqlite_store):
    sqlite_store.close()
    sqlite_store.close()  # idempotent
    with pytest.raises(AnnotationStoreError, match="closed"):
        sqlite_store.count()


def test_pg_bad_password_is_store_error_with_masked_url(pg_url):
    from sqlalchemy.engine import make_url

    bad = make_url(pg_url).set(password="definitely-wrong").render_as_string(hide_password=False)
    with pytest.raises(AnnotationStoreError) as info:
        AnnotationStore(bad)
    assert "definitely-wrong" not in str(info.value) and "***" in str(info.value)


# --------------------------------------------------------------------------
# agreement (hand-computed values)
# --------------------------------------------------------------------------


def _rec(item, annotator, label):
    return {"dialogue_hash": f"d{item}", "sticker_id": "s", "annotator": annotator, "label": label}


def test_cohen_kappa_hand_computed():
    # 2x2 table: both acc 20, A acc/B not 5, A not/B acc 10, both not 15 (n=50)
    # p_o = 35/50 = 0.7; p_A(acc)=25/50, p_B(acc)=30/50;
    # p_e = 0.5*0.6 + 0.5*0.4 = 0.5; kappa = (0.7-0.5)/(1-0.5) = 0.4
    cells = [("acceptable", "acceptable")] * 20 + [("acceptable", "not_acceptable")] * 5 + \
            [("not_acceptable", "acceptable")] * 10 + [("not_acceptable", "not_acceptable")] * 15
    recs = []
    for i, (a, b) in enumerate(cells):
        recs += [_rec(i, "A", a), _rec(i, "B", b)]
    recs.append(_rec(999, "A", "acceptable"))  # single-annotator item: ignored
    res = compute_agreement(recs)
    assert res["n_items"] == 50 and res["n_items_total"] == 51 and res["n_annotators"] == 2
    assert res["percent_agreement"] == pytest.approx(70.0)
    assert res["unanimous_items"] == 35
    (pair,) = res["cohen_kappa"]
    assert pair["annotators"] == ["A", "B"] and pair["n_items"] == 50
    assert pair["kappa"] == pytest.approx(0.4)
    assert res["mean_cohen_kappa"] == pytest.approx(0.4)
    # with exactly two raters Fleiss' kappa uses the pooled marginals:
    # p(acc) = 55/100, p_e = .55^2 + .45^2 = 0.505, kappa = (0.7-0.505)/0.495
    assert res["fleiss_kappa"] == pytest.approx((0.7 - 0.505) / 0.495)
    assert (res["fleiss_n_raters"], res["fleiss_n_items"]) == (2, 50)


def test_fleiss_kappa_hand_computed():
    # 3 raters, 4 items, counts (acc, not): (3,0) (2,1) (1,2) (3,0)
    # P_i = 1, 1/3, 1/3, 1 -> P_bar = 2/3; p_acc = 9/12, p_not = 3/12
    # P_e = 0.5625 + 0.0625 = 0.625; kappa = (2/3 - 0.625)/0.375 = 1/9
    A, N = "acceptable", "not_acceptable"
    table = [(A, A, A), (A, A, N), (A, N, N), (A, A, A)]
    recs = [_rec(i, r, lab) for i, labs in enumerate(table) for r, lab in zip("xyz", labs)]
    # plus two 2-rater items (a smaller group, must not change the headline value)
    recs += [_rec(10, "x", A), _rec(10, "y", N), _rec(11, "x", A), _rec(11, "z", A)]
    res = compute_agreement(recs)
    assert res["fleiss_kappa"] == pytest.approx(1 / 9)
    assert (res["fleiss_n_raters"], res["fleiss_n_items"]) == (3, 4)
    by_n = {g["n_raters"]: g for g in res["fleiss_by_n_raters"]}
    assert by_n[2]["n_items"] == 2 and by_n[3]["n_items"] == 4
    # pairwise percent agreement: mean of (1, 1/3, 1/3, 1, 0, 1) = 11/18
    assert res["percent_agreement"] == pytest.approx(100 * 11 / 18)
    pairs = {tuple(c["annotators"]): c for c in res["cohen_kappa"]}
    assert set(pairs) == {("x", "y"), ("x", "z"), ("y", "z")}
    # x/y share items 0,1,2,3,10: (A,A)(A,A)(A,N)(A,A)(A,N): p_o=3/5,
    # p_x(A)=1, p_y(A)=3/5 -> p_e = 3/5 -> kappa = 0
    assert pairs[("x", "y")]["n_items"] == 5
    assert pairs[("x", "y")]["kappa"] == pytest.approx(0.0)


def test_agreement_undefined_values_are_none(sqlite_store):
    res = sqlite_store.agreement()
    assert res["n_items"] == 0 and res["percent_agreement"] is None
    assert res["fleiss_kappa"] is None and res["cohen_kappa"] == [] and res["mean_cohen_kappa"] is None
    for i in range(3):  # both always "acceptable": p_e = 1 -> kappa undefined
        sqlite_store.flag(dialogue_text=f"d{i}", sticker_id="1", annotator="a")
        sqlite_store.flag(dialogue_text=f"d{i}", sticker_id="1", annotator="b")
    res = sqlite_store.agreement()
    assert res["percent_agreement"] == pytest.approx(100.0)
    assert res["cohen_kappa"][0]["kappa"] is None and res["fleiss_kappa"] is None
    json.dumps(res)  # JSON-serialisable


def test_store_agreement_matches_hand_value(store):
    A, N = "acceptable", "not_acceptable"
    cells = [(A, A)] * 4 + [(A, N)] * 1 + [(N, A)] * 2 + [(N, N)] * 3
    # p_o = 0.7; p_A(acc) = .5, p_B(acc) = .6 -> p_e = .5 -> kappa .4
    for i, (a, b) in enumerate(cells):
        store.flag(dialogue_text=f"dialogue {i}", sticker_id="9", annotator="ann1", label=a)
        store.flag(dialogue_text=f"dialogue {i}", sticker_id="9", annotator="ann2", label=b)
    res = store.agreement()
    assert res["cohen_kappa"][0]["kappa"] == pytest.approx(0.4)
    assert res["percent_agreement"] == pytest.approx(70.0)


# --------------------------------------------------------------------------
# export / import
# --------------------------------------------------------------------------

EXPECTED_FILES = {
    "parquet": ["dialogues.parquet", "records.parquet", "summary.json"],
    "jsonl": ["dialogues.jsonl", "records.jsonl", "summary.json"],
    "hf": ["dataset_dict.json", "dialogues", "records", "summary.json"],
}


def _snapshot(store):
    return sorted(tuple(sorted(a.to_dict().items())) for a in store.all())


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "hf"])
def test_export_import_round_trip(tmp_path, fmt):
    src = AnnotationStore(tmp_path / "src.db")
    _populate(src)
    out = tmp_path / f"export-{fmt}"
    ds = export_dataset(src, out, fmt)
    for name in EXPECTED_FILES[fmt]:
        assert (out / name).exists(), name
    assert len(ds) == 3
    rows = {r["dialogue_hash"]: r for r in ds.to_list()}
    d1 = rows[dialogue_hash("A: hi there!\nB: how are you?")]
    assert d1["accepted_sticker_ids"] == ["10"]          # 2 acceptable
    assert d1["rejected_sticker_ids"] == ["7"]           # 2 not vs 1 acceptable
    assert d1["votes"] == [{"sticker_id": "7", "acceptable": 1, "not_acceptable": 2},
                           {"sticker_id": "10", "acceptable": 2, "not_acceptable": 0}]
    assert d1["n_annotators"] == 3 and d1["source_sample_id"] == "s1"
    d2 = rows[dialogue_hash("A: I'm so tired today\nB: go to sleep")]
    assert d2["accepted_sticker_ids"] == ["3"] and d2["rejected_sticker_ids"] == ["abc"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["records"] == 8 and summary["counts"]["dialogues"] == 3
    assert summary["counts"]["labels"] == {"acceptable": 5, "not_acceptable": 3}
    assert summary["agreement"]["n_items"] == 2
    assert summary["format"] == fmt

    assert load_export(out).to_list() == ds.to_list()

    dst = AnnotationStore(tmp_path / "dst.db")
    assert import_dataset(dst, out) == 8
    assert _snapshot(dst) == _snapshot(src)  # lossless: annotators, times, provenance
    assert import_dataset(dst, out) == 0      # idempotent
    assert dst.count() == 8
    assert import_dataset(src, out) == 0      # merging into the source: no duplicates
    assert src.count() == 8

    # newer record in the export wins, older does not
    src.flag(dialogue_text="A: hi there!\nB: how are you?", sticker_id="7", annotator="carol",
             label="acceptable")
    export_dataset(src, out, fmt)
    assert import_dataset(dst, out) == 1
    assert _snapshot(dst) == _snapshot(src)
    assert dst.get(dialogue_text="A: hi there!\nB: how are you?", sticker_id="7",
                   annotator="carol").label == "acceptable"
    dst.flag(dialogue_text="A: hi there!\nB: how are you?", sticker_id="7", annotator="carol",
             label="not_acceptable")  # dst now newer than the export
    assert import_dataset(dst, out) == 0
    assert dst.get(dialogue_text="A: hi there!\nB: how are you?", sticker_id="7",
                   annotator="carol").label == "not_acceptable"
    src.close()
    dst.close()


@pytest.mark.parametrize("name", ["dialogues.parquet", "dialogues.jsonl", "records.jsonl"])
def test_load_and_import_single_files(tmp_path, name):
    src = AnnotationStore(tmp_path / "src.db")
    _populate(src)
    fmt = name.rsplit(".", 1)[1]
    out = tmp_path / "exp"
    ds = export_dataset(src, out, fmt)
    assert load_export(out / name).to_list() == ds.to_list()
    # a file next to its records table imports losslessly
    dst = AnnotationStore(tmp_path / "dst.db")
    assert import_dataset(dst, out / name) == 8
    assert _snapshot(dst) == _snapshot(src)
    src.close()
    dst.close()


def test_import_dialogues_only_reconstructs_votes(tmp_path):
    src = AnnotationStore(tmp_path / "src.db")
    _populate(src)
    out = tmp_path / "exp"
    export_dataset(src, out, "jsonl")
    lonely = tmp_path / "lonely"
    lonely.mkdir()
    shutil.copy(out / "dialogues.jsonl", lonely / "dialogues.jsonl")
    dst = AnnotationStore(tmp_path / "dst.db")
    assert import_dataset(dst, lonely) == 8
    assert import_dataset(dst, lonely / "dialogues.jsonl") == 0
    assert dst.count() == 8
    # annotator names are synthetic ("imported-<k>"); votes and decisions match
    a = {r["dialogue_hash"]: (r["accepted_sticker_ids"], r["rejected_sticker_ids"], r["votes"])
         for r in export_dataset(dst, tmp_path / "re", "jsonl").to_list()}
    b = {r["dialogue_hash"]: (r["accepted_sticker_ids"], r["rejected_sticker_ids"], r["votes"])
         for r in load_export(out).to_list()}
    assert a == b
    src.close()
    dst.close()


def test_export_empty_store_all_formats(tmp_path, sqlite_store):
    for fmt in ("parquet", "jsonl", "hf"):
        ds = export_dataset(sqlite_store, tmp_path / fmt, fmt)
        assert len(ds) == 0
        assert len(load_export(tmp_path / fmt)) == 0
        assert import_dataset(sqlite_store, tmp_path / fmt) == 0
    with pytest.raises(ValueError, match="'csv'"):
        export_dataset(sqlite_store, tmp_path / "x", "csv")
    with pytest.raises(FileNotFoundError):
        load_export(tmp_path / "missing")


def test_extra_positives(tmp_path, sqlite_store):
    _populate(sqlite_store)
    export_dataset(sqlite_store, tmp_path / "e", "parquet")
    pos = extra_positives(tmp_path / "e")
    assert pos == {
        dialogue_hash("A: hi there!\nB: how are you?"): {"10"},
        dialogue_hash("A: I'm so tired today\nB: go to sleep"): {"3"},
        dialogue_hash("A: ünïcödé 😀 dialogue"): {"1"},
    }
    assert extra_positives(sqlite_store) == pos
    # evaluation looks samples up by the hash of their (raw) dialogue text
    assert dialogue_hash("  A: hi there!  \n\nB:  how are you?") in pos


def test_package_and_extra_positives_import_no_sqlalchemy():
    # evaluation imports the extra positives without a database driver; the package
    # re-exports its names lazily
    code = ("import core.annotations.positives, core.annotations, sys; "
            "assert 'sqlalchemy' not in sys.modules")
    res = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr


def test_export_import_postgres(pg_url, tmp_path):
    with AnnotationStore(pg_url) as pg:
        _populate(pg)
        ds = export_dataset(pg, tmp_path / "e", "jsonl")
        assert len(ds) == 3
        with AnnotationStore(tmp_path / "copy.db") as lite:
            assert import_dataset(lite, tmp_path / "e") == 8
            assert _snapshot(lite) == _snapshot(pg)
        assert import_dataset(pg, tmp_path / "e") == 0
        assert pg.count() == 8


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------


def test_cli_export_import_summary(tmp_path, capsys):
    from demo.annotations import main

    db = tmp_path / "cli.db"
    with AnnotationStore(db) as s:
        _populate(s)
    for fmt in ("parquet", "jsonl", "hf"):
        assert main(["export", "--db", str(db), "--format", fmt, str(tmp_path / fmt)]) == 0
        assert f"as {fmt}" in capsys.readouterr().out
        copy = tmp_path / f"copy-{fmt}.db"
        assert main(["import", "--db", f"sqlite:///{copy}", str(tmp_path / fmt)]) == 0
        assert "8 records inserted or updated" in capsys.readouterr().out
        assert main(["import", "--db", str(copy), str(tmp_path / fmt)]) == 0
        assert "0 records inserted or updated (0 new)" in capsys.readouterr().out
    assert main(["summary", "--db", str(db)]) == 0
    out = capsys.readouterr().out
    assert "records:" in out and "8" in out and "Cohen's kappa" in out and "Fleiss" in out
    assert main(["summary", "--db", str(db), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["records"] == 8 and data["agreement"]["n_items"] == 2


def test_cli_errors(tmp_path, capsys):
    from demo.annotations import main

    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["summary", "--db", str(blocker / "a.db")]) == 1
    assert str(blocker / "a.db") in capsys.readouterr().err
    assert main(["import", "--db", str(tmp_path / "a.db"), str(tmp_path / "nothing")]) == 1
    assert "not found" in capsys.readouterr().err
    # reading commands do not create a database at a mistyped path
    for argv in (["summary", "--db", str(tmp_path / "typo.db")],
                 ["export", "--db", f"sqlite:///{tmp_path / 'typo.db'}", str(tmp_path / "o")]):
        assert main(argv) == 1
        assert "no annotation database" in capsys.readouterr().err
    assert not (tmp_path / "typo.db").exists()
    with pytest.raises(SystemExit) as info:
        main(["export", "--db", str(tmp_path / "a.db"), "--format", "csv", str(tmp_path / "o")])
    assert info.value.code == 2


def test_cli_postgres_summary(pg_url, capsys):
    from demo.annotations import main

    with AnnotationStore(pg_url) as s:
        _populate(s)
    assert main(["summary", "--db", pg_url]) == 0
    out = capsys.readouterr().out
    assert "records:" in out and "***" in out
