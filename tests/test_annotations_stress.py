"""Multi-process durability stress test for the SQLite annotation store.

PROCS writer processes (spawn) each flag N items against one SQLite file and
log every flag to their own fsync'ed ack file (``AckLog``: an *intent* line
before ``flag()``, an *ack* line after it returned).  Then:

1. clean run: all writers finish; every acknowledged flag must be stored
   exactly once with its label, and nothing else may be stored;
2. crash run: the parent ``kill -9``s every writer mid-way; every flag that
   was acknowledged before the kill must still be there exactly once and
   ``integrity_check() == "ok"``.

Sizes: ANNOT_STRESS_N (flags per writer, default 40) and ANNOT_STRESS_PROCS
(default 16).  Run with ``-s`` to see the figures.  The checker is
:func:`tests.support.annotation_checks.check_acknowledged` (re-exported here), so the same
check can be run on ack logs written by HTTP clients.

Marked ``slow`` (each run takes 10-30 s on 2 busy cores, mostly spawning 16
interpreters): still part of the default run, deselect with ``-m "not slow"``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import signal
import time
from pathlib import Path

import pytest

from core.annotations import LABELS, AnnotationStore
from tests.support.annotation_checks import AckLog, check_acknowledged

pytestmark = pytest.mark.slow

__all__ = ["check_acknowledged", "run_writers"]

N = int(os.environ.get("ANNOT_STRESS_N", "40"))
PROCS = int(os.environ.get("ANNOT_STRESS_PROCS", "16"))

DIALOGUES = [
    f"A: message number {i}, how are you?\nB: fine, thanks {'!' * (i % 4)}\nA: ok"
    for i in range(12)
]


def _writer(db: str, ack_path: str, writer_id: int, n: int, seed: int, barrier=None) -> None:
    """One writer process: ``n`` flags (about 1 in 5 re-flags an earlier key
    with the other label, exercising the upsert), each logged intent/ack.
    Opens the store, then waits at ``barrier`` so all writers start together."""
    rng = random.Random(seed)
    annotator = f"writer-{writer_id:02d}"
    store = AnnotationStore(db)
    if barrier is not None:
        barrier.wait(timeout=600)
    labels: dict[tuple[str, str], str] = {}
    with AckLog(ack_path) as log:
        for i in range(n):
            if labels and i % 5 == 4:
                key = rng.choice(sorted(labels))
                label = LABELS[1 - LABELS.index(labels[key])]
            else:
                key = (rng.choice(DIALOGUES), str(rng.randrange(200)))
                label = "acceptable" if rng.random() < 0.8 else "not_acceptable"
            dialogue, sticker = key
            fields = dict(dialogue_text=dialogue, sticker_id=sticker, annotator=annotator,
                          label=label)
            log.intent(**fields)
            store.flag(**fields, model_version="stress", model_rank=i % 10)
            log.ack(**fields)
            labels[key] = label
    store.close()


def _count_acks(paths: list[Path]) -> list[int]:
    out = []
    for p in paths:
        try:
            out.append(p.read_bytes().count(b'"event": "ack"'))
        except FileNotFoundError:
            out.append(0)
    return out


def _ack_times(paths: list[Path]) -> tuple[float, float] | None:
    first, last = None, None
    for p in paths:
        for line in p.read_bytes().split(b"\n"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            t = rec.get("t")
            if t is None:
                continue
            first = t if first is None else min(first, t)
            last = t if last is None else max(last, t)
    return None if first is None else (first, last)


def run_writers(db: str | Path, workdir: Path, procs: int, n: int, kill_after_acks: int | None = None,
                timeout: float = 600.0) -> dict:
    """Start ``procs`` writer processes; with ``kill_after_acks`` SIGKILL them
    once every writer has acknowledged at least one flag and the total
    reaches that number.  Returns figures (ack files, exit codes, timings)."""
    ctx = mp.get_context("spawn")
    workdir.mkdir(parents=True, exist_ok=True)
    ack_files = [workdir / f"acks-{i:02d}.jsonl" for i in range(procs)]
    for f in ack_files:
        f.unlink(missing_ok=True)
    t0 = time.monotonic()
    barrier = ctx.Barrier(procs + 1)
    ps = [ctx.Process(target=_writer, args=(str(db), str(f), i, n, 1000 + i, barrier), daemon=True)
          for i, f in enumerate(ack_files)]
    for p in ps:
        p.start()
    killed = False
    deadline = t0 + timeout
    try:  # all writers spawned, imported and opened the store
        barrier.wait(timeout=timeout)
    except Exception:  # pragma: no cover - a writer died while starting
        pass
    start_wall = time.time()
    startup_s = time.monotonic() - t0
    if kill_after_acks is not None:
        while time.monotonic() < deadline:
            counts = _count_acks(ack_files)
            if min(counts) >= 1 and sum(counts) >= kill_after_acks:
                break
            if not any(p.is_alive() for p in ps):
                break
            time.sleep(0.02)
        for p in ps:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
        killed = True
    for p in ps:
        p.join(max(1.0, deadline - time.monotonic()))
    elapsed = time.monotonic() - t0
    for p in ps:
        if p.is_alive():  # pragma: no cover - only on a hang
            os.kill(p.pid, signal.SIGKILL)
            p.join()
    span = _ack_times(ack_files)
    acks = sum(_count_acks(ack_files))
    flag_phase = (span[1] - start_wall) if span else None
    return {
        "ack_files": ack_files,
        "exitcodes": [p.exitcode for p in ps],
        "killed": killed,
        "elapsed_s": elapsed,
        "startup_s": startup_s,
        "flag_phase_s": flag_phase,
        "acks": acks,
        "flags_per_s": acks / flag_phase if flag_phase and flag_phase > 0 else None,
    }


def _print_figures(title: str, run: dict, report: dict) -> None:
    rate = run["flags_per_s"]
    rate_text = f"{rate:.0f} flags/s" if rate else "n/a"
    print(
        f"\n[stress] {title}: {PROCS} procs x N={N}; acked {report['acked']} flags "
        f"({report['acked_keys']} keys), store has {report['store_records']} records; "
        f"missing {report['n_missing']}, duplicates {report['n_duplicates']}, "
        f"label mismatches {report['n_label_mismatch']}, unacked-but-present "
        f"{report['unacked_present']}; wall {run['elapsed_s']:.1f}s (spawn+open "
        f"{run['startup_s']:.1f}s, flagging {run['flag_phase_s'] or 0:.1f}s); "
        f"throughput {rate_text} with {PROCS} concurrent writers"
    )


def test_concurrent_writers_every_ack_stored_once(tmp_path):
    db = tmp_path / "stress.db"
    run = run_writers(db, tmp_path / "clean", PROCS, N)
    assert run["exitcodes"] == [0] * PROCS, run["exitcodes"]
    with AnnotationStore(db) as store:
        report = check_acknowledged(store, run["ack_files"])
        _print_figures("clean run", run, report)
        assert report["ok"], report
        assert report["acked"] == PROCS * N
        # nothing was written that was not acknowledged, nothing twice
        assert store.count() == report["acked_keys"] == report["store_records"]
        assert store.integrity_check() == "ok"


def test_kill_9_writers_acknowledged_flags_survive(tmp_path):
    db = tmp_path / "stress-kill.db"
    # writers would run "forever" (N*1000 flags): the parent kills them once
    # they have acknowledged about PROCS*N/2 flags between them
    target = max(PROCS, PROCS * N // 2)
    run = run_writers(db, tmp_path / "kill", PROCS, N * 1000, kill_after_acks=target)
    assert run["killed"]
    assert all(code == -signal.SIGKILL for code in run["exitcodes"]), run["exitcodes"]
    with AnnotationStore(db) as store:
        assert store.integrity_check() == "ok"
        report = check_acknowledged(store, run["ack_files"])
        _print_figures("kill -9 run", run, report)
        assert report["ok"], report
        assert report["acked"] >= target
        # at most one in-flight (unacknowledged) flag per writer can be extra
        assert report["store_records"] - report["acked_keys"] <= PROCS
        # the store is still fully usable after the crash
        store.flag(dialogue_text=DIALOGUES[0], sticker_id="after-crash", annotator="parent")
        assert store.get(dialogue_text=DIALOGUES[0], sticker_id="after-crash",
                         annotator="parent") is not None
