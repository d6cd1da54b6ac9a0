"""Durability of flags made through the real app: ``python -m demo`` + its ``/flag`` endpoint.

The server is a subprocess (``python -m demo`` on a tiny saved checkpoint, the starter
stickers, ``--annotations <tmp sqlite>``, ``--user-stickers off``, ``--ocr off``, a free
port on 127.0.0.1).  CLIENTS threads, each with its own ``gradio_client.Client``, send N
flags each to ``/flag`` (about 1 in 5 re-flags an earlier key with the other label, so the
upsert is exercised) and log them in their own :class:`tests.support.annotation_checks.AckLog`: an
*intent* line before the call, an *ack* line only after ``/flag`` returned the stored
record.  Then:

1. clean run: every acknowledged flag is in the database exactly once with its label,
   nothing else is stored, ``integrity_check() == "ok"``;
2. kill run: the parent ``kill -9``s the server once about half of the flags are
   acknowledged.  With the server dead, the database file is opened directly: every flag
   acknowledged before the kill is there exactly once (in-flight, unacknowledged flags may
   or may not be), no corruption.  The server is restarted on the same database, the
   clients reconnect, re-send the flag that was in flight and finish; the same check then
   covers every flag.

Sizes: ANNOT_APP_STRESS_N (flags per client, default 20) and ANNOT_APP_STRESS_CLIENTS
(default 16).  Run with ``-s`` to see the figures.  Marked ``slow`` (each test starts the
server once or twice: ~15-20 s each for torch + gradio on 2 cores); still part of the
default run, deselect with ``-m "not slow"``.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio_client
import pytest

from core.annotations import LABELS, AnnotationStore, dialogue_hash
from core.data.dialogue import parse_dialogue
from demo.user_stickers import load_starter_stickers
from tests.support.annotation_checks import AckLog, check_acknowledged
from tests.support.demo_server import free_port, wait_until_serving

pytestmark = pytest.mark.slow

N = int(os.environ.get("ANNOT_APP_STRESS_N", "20"))
CLIENTS = int(os.environ.get("ANNOT_APP_STRESS_CLIENTS", "16"))
TIMEOUT_S = float(os.environ.get("ANNOT_APP_STRESS_TIMEOUT", "900"))

REPO = Path(__file__).resolve().parents[1]
DIALOGUES = [
    "A: 你还没睡吗\nB: 还在加班呢\nA: 早点休息吧",
    "A: Guess what, I passed the exam!\nB: Congratulations!",
    "A: 我把手机落在出租车上了\nB: what?? again?\nA: 无语了，真的",
    "A: 你的快递我帮你拿了\nB: 太感谢了，你真好",
    *(f"A: message {i}, 今天怎么样?\nB: 还行{'!' * (i % 3)}\nA: ok {i}" for i in range(8)),
]
# What the server stores is the canonical text; the ack logs must use the same key.
DIALOGUES = [parse_dialogue(d).canonical_text() for d in DIALOGUES]
CANCELLED = (asyncio.CancelledError, concurrent.futures.CancelledError)


class Server:
    """``python -m demo`` as a subprocess that can be killed and restarted on the same DB.

    ``url`` / ``generation`` change on every start; ``down`` is set just before a kill so a
    client whose call fails knows to wait for the next generation instead of failing."""

    def __init__(self, model_dir: Path, db: Path, log_path: Path) -> None:
        self.model_dir, self.db, self.log_path = model_dir, db, log_path
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self.generation = 0
        self.down = False
        self.cond = threading.Condition()
        self.start_seconds: list[float] = []

    def start(self, timeout: float = 300.0) -> None:
        port = free_port()
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        t0 = time.monotonic()
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "demo", "--host", "127.0.0.1", "--port", str(port),
                 "--checkpoint", str(self.model_dir), "--starter", "--annotations", str(self.db),
                 "--user-stickers", "off", "--ocr", "off"],
                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(self.process, url, timeout, describe=self.log_tail)
        self.start_seconds.append(time.monotonic() - t0)
        with self.cond:
            self.url, self.down = url, False
            self.generation += 1
            self.cond.notify_all()

    def kill9(self) -> None:
        with self.cond:
            self.down = True
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=60)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait_for_generation_after(self, generation: int, deadline: float) -> str:
        with self.cond:
            while self.generation <= generation:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("the demo server was not restarted in time")
                self.cond.wait(min(left, 1.0))
            return self.url

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")[-chars:]
        except OSError:
            return ""


def _connect(url: str) -> gradio_client.Client:
    return gradio_client.Client(url, analytics_enabled=False, verbose=False)


def _client_thread(server: Server, idx: int, n: int, ack_path: Path, acked: list[int],
                   errors: list[str], deadline: float) -> None:
    """Flag ``n`` items through ``/flag``; ack each only after the call returned.

    A failed call is retried (same flag, new connection) only when the server was killed
    meanwhile; any other failure is an error of the test."""
    rng = random.Random(7000 + idx)
    annotator = f"client-{idx:02d}"
    labels: dict[tuple[str, str], str] = {}
    sticker_ids = [s.sticker_id for s in load_starter_stickers()]
    try:
        with AckLog(ack_path) as log:
            generation, client = server.generation, _connect(server.url)
            for i in range(n):
                if labels and i % 5 == 4:
                    key = rng.choice(sorted(labels))
                    label = LABELS[1 - LABELS.index(labels[key])]
                else:
                    key = (rng.choice(DIALOGUES), rng.choice(sticker_ids))
                    label = "acceptable" if rng.random() < 0.8 else "not_acceptable"
                dialogue, sticker = key
                fields = dict(dialogue_text=dialogue, sticker_id=sticker, annotator=annotator, label=label)
                log.intent(**fields)
                while True:
                    try:
                        record = client.predict(dialogue, sticker, annotator, label, api_name="/flag")
                        break
                    except (Exception, *CANCELLED) as exc:
                        with server.cond:
                            killed = server.down or server.generation != generation
                        if not killed or time.monotonic() > deadline:
                            raise AssertionError(f"{annotator} flag {i}: {exc!r}") from exc
                        url = server.wait_for_generation_after(generation, deadline)
                        client.close()
                        generation, client = server.generation, _connect(url)
                got = (record["dialogue_hash"], record["sticker_id"], record["annotator"], record["label"])
                assert got == (dialogue_hash(dialogue), sticker, annotator, label), (got, fields)
                log.ack(**fields)
                acked[idx] += 1
                labels[key] = label
            client.close()
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        errors.append(f"client {idx}: {exc!r}")


def _run_clients(server: Server, workdir: Path, n: int, kill_after_acks: int | None = None,
                 after_kill=None) -> dict:
    """CLIENTS threads x ``n`` flags; with ``kill_after_acks`` the server is killed -9 once
    that many flags are acknowledged, ``after_kill()`` runs with the server dead, then the
    server is restarted and the clients finish."""
    workdir.mkdir(parents=True, exist_ok=True)
    ack_files = [workdir / f"acks-{i:02d}.jsonl" for i in range(CLIENTS)]
    acked = [0] * CLIENTS
    errors: list[str] = []
    deadline = time.monotonic() + TIMEOUT_S
    threads = [threading.Thread(target=_client_thread, args=(server, i, n, f, acked, errors, deadline),
                                daemon=True, name=f"flag-client-{i}") for i, f in enumerate(ack_files)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    out: dict = {"ack_files": ack_files, "errors": errors}
    if kill_after_acks is not None:
        while sum(acked) < kill_after_acks and not errors and any(t.is_alive() for t in threads):
            assert time.monotonic() < deadline, "timed out before the kill"
            time.sleep(0.01)
        assert not errors, errors
        kill_t = time.monotonic()
        server.kill9()
        out["acks_at_kill"] = sum(acked)
        out["flag_s_before_kill"] = kill_t - t0
        out["after_kill"] = after_kill()
        restart_t = time.monotonic()
        server.start()
        out["down_s"] = time.monotonic() - kill_t
        out["restart_s"] = time.monotonic() - restart_t
    for t in threads:
        t.join(max(1.0, deadline - time.monotonic()))
    assert not any(t.is_alive() for t in threads), "flag clients hung"
    out["elapsed_s"] = time.monotonic() - t0
    out["acks"] = sum(acked)
    flagging = out["elapsed_s"] - out.get("down_s", 0.0)
    out["flags_per_s"] = out["acks"] / flagging if flagging > 0 else None
    return out


def _figures(title: str, run: dict, report: dict, server: Server) -> str:
    rate = f"{run['flags_per_s']:.1f} flags/s" if run.get("flags_per_s") else "n/a"
    starts = ", ".join(f"{s:.1f}s" for s in server.start_seconds)
    return (f"\n[app-stress] {title}: {CLIENTS} gradio clients x N={N} through /flag; acked "
            f"{report['acked']} flags ({report['acked_keys']} keys), store has {report['store_records']} "
            f"records; missing {report['n_missing']}, duplicates {report['n_duplicates']}, label "
            f"mismatches {report['n_label_mismatch']}, unacked-but-present {report['unacked_present']}; "
            f"{rate} (wall {run['elapsed_s']:.1f}s, server start(s) {starts})")


@pytest.fixture(scope="module")
def model_dir(tiny_checkpoint):
    return tiny_checkpoint


def test_app_flags_from_concurrent_clients_are_stored_once(model_dir, tmp_path):
    db = tmp_path / "flags.sqlite"
    server = Server(model_dir, db, tmp_path / "server.log")
    server.start()
    try:
        run = _run_clients(server, tmp_path / "acks", N)
        assert not run["errors"], (run["errors"], server.log_tail())
    finally:
        server.stop()
    with AnnotationStore(db) as store:
        report = check_acknowledged(store, run["ack_files"])
        print(_figures("clean run", run, report, server))
        assert report["ok"], report
        assert report["acked"] == CLIENTS * N
        # nothing was stored that was not acknowledged, nothing twice
        assert store.count() == report["acked_keys"] == report["store_records"]
        assert store.integrity_check() == "ok"


def test_app_kill_9_mid_run_loses_no_acknowledged_flag(model_dir, tmp_path):
    db = tmp_path / "flags-kill.sqlite"
    server = Server(model_dir, db, tmp_path / "server.log")
    target = max(CLIENTS, CLIENTS * N // 2)

    def check_with_server_dead() -> dict:
        with AnnotationStore(db) as store:  # opening recovers the killed server's WAL
            integrity = store.integrity_check()
            report = check_acknowledged(store, sorted((tmp_path / "acks").glob("acks-*.jsonl")))
        return {"integrity": integrity, "report": report}

    server.start()
    try:
        run = _run_clients(server, tmp_path / "acks", N, kill_after_acks=target,
                           after_kill=check_with_server_dead)
        assert not run["errors"], (run["errors"], server.log_tail())
    finally:
        server.stop()
    at_kill = run["after_kill"]
    print(_figures("kill -9: checked while the server was dead", run, at_kill["report"], server)
          + f"; {run['acks_at_kill']} acks when killed, server down {run['down_s']:.1f}s")
    assert at_kill["integrity"] == "ok"
    assert at_kill["report"]["ok"], at_kill["report"]
    assert at_kill["report"]["acked"] >= target
    # at most the flag each client had in flight can be there unacknowledged
    assert at_kill["report"]["store_records"] - at_kill["report"]["acked_keys"] <= CLIENTS
    with AnnotationStore(db) as store:
        report = check_acknowledged(store, run["ack_files"])
        print(_figures("kill -9: after the restart and the rest of the flags", run, report, server))
        assert store.integrity_check() == "ok"
        assert report["ok"], report
        # the in-flight flags were re-sent after the restart: every flag ended acknowledged
        assert report["acked"] == CLIENTS * N
        assert store.count() == report["acked_keys"] == report["store_records"]
