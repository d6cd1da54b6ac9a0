"""The annotation queue without a browser: core.annotations.queue (queues, uploads),
core.annotations.progress (progress in the store: submit, skip, undo, restart, concurrency)
and demo.queue_service.QueueService (what the tab and the API call)."""
from __future__ import annotations

import json
import threading
import zipfile

import pytest

from core.annotations import AnnotationStore, dialogue_hash
from core.annotations.progress import QueueProgress
from core.annotations.queue import (AnnotationQueue, QueueError, QueueItem, disagreements, next_item, parse_jsonl,
                                    progress_counts, queue_from_file, upload_queue_name)
from demo.service import DemoError, DemoService
from tests.test_annotations import pg_url, store_url  # noqa: F401 - fixtures: SQLite, and PostgreSQL when set

D1 = "A: 你还没睡吗\nB: 好困啊，我去睡了"
D2 = "A: 考试过了\nB: 太好了"


def _queue(n: int = 5) -> AnnotationQueue:
    return AnnotationQueue("q", "test", [QueueItem(f"i{k}", f"A: hello {k}\nB: bye {k}") for k in range(n)])


# --------------------------------------------------------------------------- uploads


def test_jsonl_both_layouts_gold_and_ids():
    text = "\n".join([
        json.dumps({"dialogue": ["你好", "晚安"], "gold": "s1", "id": "a"}),
        "",
        json.dumps({"text": "A: hi\nB: there\nA: bye"}),
    ])
    items = parse_jsonl(text, known_stickers={"s1"})
    assert [i.item_id for i in items] == ["a", "line-3"]
    assert items[0].dialogue == "A: 你好\nB: 晚安" and items[0].gold == "s1"
    assert items[1].dialogue == "A: hi\nB: there\nA: bye" and items[1].gold is None


def test_jsonl_errors_name_every_bad_line():
    lines = [
        json.dumps({"text": "ok"}),                      # 1 fine
        "{not json",                                      # 2
        json.dumps({"dialogue": "a string"}),             # 3
        json.dumps({"text": "x", "gold": "nope"}),        # 4 unknown sticker
        json.dumps({"text": "x", "dialogue": ["y"]}),     # 5 both
        json.dumps({"text": "y", "id": "dup"}),           # 6
        json.dumps({"text": "z", "id": "dup"}),           # 7 duplicate id
        json.dumps(["a list"]),                           # 8
        json.dumps({"text": "  \n "}),                    # 9 empty
        json.dumps({"text": "t", "colour": "red"}),       # 10 unknown key
    ]
    with pytest.raises(QueueError) as info:
        parse_jsonl("\n".join(lines), known_stickers={"s1"}, source="mine.jsonl")
    message = str(info.value)
    assert message.startswith("mine.jsonl: ")
    for number in (2, 3, 4, 5, 7, 8, 9, 10):
        assert f"line {number}:" in message
    assert "line 1:" not in message and "line 6:" not in message
    assert "not valid JSON" in message and "unknown gold sticker id 'nope'" in message
    assert "already used on line 6" in message and "the dialogue is empty" in message
    with pytest.raises(QueueError, match=r"line 8: [^;]*\(and 4 more\)$"):
        parse_jsonl("\n".join(["[]"] * 12))
    with pytest.raises(QueueError, match="no dialogues"):
        parse_jsonl("\n\n")


def test_upload_files_jsonl_and_mod(tmp_path):
    from core.data.mod import load_stickers
    from tests.support.mini_mod import make_mini_mod

    path = tmp_path / "my queue.jsonl"
    path.write_text(json.dumps({"text": "A: 1\nB: 2"}) + "\n", encoding="utf-8")
    queue = queue_from_file(path)
    assert queue.name == upload_queue_name("my queue.jsonl", path.read_bytes())
    assert queue.name.startswith("upload:my_queue-") and queue.kind == "upload" and len(queue) == 1
    mod = make_mini_mod(tmp_path / "mod")
    stickers = load_stickers(mod)
    queue = queue_from_file(mod / "dialogues.json", mod_stickers=stickers)
    assert len(queue) > 10 and all(i.gold for i in queue.items) and queue.items[0].item_id.startswith("dialogue ")
    with pytest.raises(QueueError, match="need the MOD stickers"):
        queue_from_file(mod / "dialogues.json")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"d1": [{"speaker_id": "a", "txt": "hi"}, {"speaker_id": "b", "txt": "yo",
                                                                         "img_id": "999"}]}), encoding="utf-8")
    with pytest.raises(QueueError, match=r"bad.json: dialogue 'd1', turn 1: unknown sticker id '999'"):
        queue_from_file(bad, mod_stickers=stickers)


def test_progress_counts_and_next_item():
    queue = _queue(3)

    class A:
        def __init__(self, status):
            self.status = status

    answers = {"i0": A("submitted"), "i2": A("skipped"), "gone": A("submitted")}
    assert progress_counts(queue, answers) == {"done": 2, "submitted": 1, "skipped": 1, "remaining": 1, "total": 3}
    assert next_item(queue, answers).item_id == "i1"
    assert next_item(queue, {**answers, "i1": A("submitted")}) is None
    with pytest.raises(QueueError, match="used twice"):
        AnnotationQueue("x", "", [QueueItem("a", "A: 1"), QueueItem("a", "A: 2")])


# --------------------------------------------------------------------------- progress in the store


def test_submit_skip_undo_and_restart(store_url):
    db = store_url
    with AnnotationStore(db) as store:
        progress = QueueProgress(store)
        progress.submit(queue="q", item_id="i0", annotator="ann", dialogue_text=D1,
                        labels={"s1": "acceptable", "s2": "not_acceptable"}, source_sample_id="d#1",
                        model_ranks={"s1": 1, "s2": 2})
        progress.skip(queue="q", item_id="i1", annotator="ann", dialogue_text=D2)
        assert {(a.sticker_id, a.label, a.model_rank, a.source_sample_id) for a in store.all()} == {
            ("s1", "acceptable", 1, "d#1"), ("s2", "not_acceptable", 2, "d#1")}
    with AnnotationStore(db) as store:  # a restart: progress and flags are still there
        progress = QueueProgress(store)
        answers = progress.answers(queue="q", annotator="ann")
        assert {k: a.status for k, a in answers.items()} == {"i0": "submitted", "i1": "skipped"}
        assert progress.answers(queue="q", annotator="other") == {}
        assert progress.annotators("q") == {"ann": {"submitted": 1, "skipped": 1}}
        undone = progress.undo_last(queue="q", annotator="ann")  # the skip (latest)
        assert (undone.item_id, undone.status) == ("i1", "skipped") and store.count() == 2
        undone = progress.undo_last(queue="q", annotator="ann")  # the submission, flags included
        assert (undone.item_id, undone.labels) == ("i0", {"s1": "acceptable", "s2": "not_acceptable"})
        assert store.count() == 0 and progress.answers(queue="q", annotator="ann") == {}
        assert progress.undo_last(queue="q", annotator="ann") is None


def test_resubmit_replaces_labels_and_skip_takes_them_back(store_url):
    with AnnotationStore(store_url) as store:
        progress = QueueProgress(store)
        store.flag(dialogue_text=D1, sticker_id="s9", annotator="ann")  # a flag from the rank tab stays
        progress.submit(queue="q", item_id="i0", annotator="ann", dialogue_text=D1,
                        labels={"s1": "acceptable", "s2": "not_acceptable"})
        progress.submit(queue="q", item_id="i0", annotator="ann", dialogue_text=D1,
                        labels={"s2": "acceptable", "s3": "not_acceptable"})
        assert {(a.sticker_id, a.label) for a in store.all()} == {
            ("s9", "acceptable"), ("s2", "acceptable"), ("s3", "not_acceptable")}
        progress.skip(queue="q", item_id="i0", annotator="ann", dialogue_text=D1)
        assert {a.sticker_id for a in store.all()} == {"s9"}
        with pytest.raises(ValueError, match="unknown label"):
            progress.submit(queue="q", item_id="i1", annotator="ann", dialogue_text=D2, labels={"s1": "great"})
        assert progress.answers(queue="q", annotator="ann")["i0"].status == "skipped"


def test_concurrent_submitters_lose_nothing(tmp_path):
    db = tmp_path / "race.sqlite"
    AnnotationStore(db).close()
    n_threads, per_thread = 6, 12
    errors: list[BaseException] = []
    barrier = threading.Barrier(n_threads)

    def work(t: int) -> None:
        try:
            with AnnotationStore(db) as store:  # its own connection pool, as another process would
                progress = QueueProgress(store)
                barrier.wait()
                for k in range(per_thread):
                    who = f"ann{t % 3}"  # two threads per annotator, different items
                    progress.submit(queue="q", item_id=f"t{t}-{k}", annotator=who,
                                    dialogue_text=f"A: dialogue {t} {k}",
                                    labels={"s1": "acceptable", f"s{k}": "not_acceptable" if k != 1 else "acceptable"})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    with AnnotationStore(db) as store:
        progress = QueueProgress(store)
        assert sum(len(progress.answers(queue="q", annotator=f"ann{a}")) for a in range(3)) == n_threads * per_thread
        assert store.count() == n_threads * (2 * per_thread - 1)
        assert store.integrity_check() == "ok"


def test_saved_queues_survive_reopening(store_url):
    db = store_url
    items = [QueueItem("x", "A: hi", "s1").to_dict()]
    with AnnotationStore(db) as store:
        assert QueueProgress(store).save_queue("upload:f-1234", "f.jsonl", items) is True
        assert QueueProgress(store).save_queue("upload:f-1234", "f.jsonl", items) is False
    with AnnotationStore(db) as store:
        assert QueueProgress(store).saved_queues() == [("upload:f-1234", "f.jsonl", items)]


def test_disagreements():
    from datetime import datetime, timezone

    from core.annotations import Annotation

    now = datetime.now(timezone.utc)

    def ann(text, sticker, who, label):
        return Annotation(dialogue_hash(text), text, sticker, label, who, now, now, None, None, None)

    rows = disagreements([ann(D1, "s1", "a", "acceptable"), ann(D1, "s1", "b", "not_acceptable"),
                          ann(D1, "s2", "a", "acceptable"), ann(D1, "s2", "b", "acceptable"),
                          ann(D2, "s1", "c", "not_acceptable")])
    assert rows == [{"dialogue_hash": dialogue_hash(D1), "dialogue_text": D1, "sticker_id": "s1",
                     "acceptable": ["a"], "not_acceptable": ["b"]}]
    assert disagreements([ann(D1, "s1", "a", "acceptable"), ann(D1, "s1", "b", "not_acceptable")],
                         dialogue_hashes={dialogue_hash(D2)}) == []


# --------------------------------------------------------------------------- the service


@pytest.fixture
def mod(tmp_path):
    from core.data.mod import load_mod
    from tests.support.mini_mod import make_mini_mod

    return load_mod(make_mini_mod(tmp_path / "mod"))


@pytest.fixture
def service(tmp_path, mod, make_tiny_selector):
    from demo.queue_service import QueueService

    selector = make_tiny_selector([s for s in mod.stickers if s.has_image])
    store = AnnotationStore(tmp_path / "service.sqlite")
    yield QueueService(DemoService(selector, annotations=store, ocr_engine=None), mod.split_rows, top_k=4)
    store.close()


def test_state_lists_split_queues_and_the_top_k(service, mod):
    assert [name for _, name in service.queue_choices()] == ["valid", "easy_test", "hard_test"]
    state = service.state("alice", "valid", base_url="http://h:1")
    first = mod.split_rows["valid"][0]
    assert state["item_id"] == first["sample_id"] and state["gold"] == first["sticker_id"]
    assert (state["done"], state["total"], state["finished"], state["position"]) == (0, 3, False, 1)
    assert [c["key"] for c in state["candidates"]] == [1, 2, 3, 4]
    assert state["candidates"][0]["image_url"].startswith("http://h:1/gradio_api/file=/")
    assert {"sticker_id", "name", "ocr", "rank", "gold"} <= set(state["candidates"][0])
    assert state["dialogue"].startswith("A: ")
    for bad in ("nope", "", "train"):
        with pytest.raises(DemoError, match="Unknown queue"):
            service.state("alice", bad)


def test_submit_stores_flags_and_moves_on(service):
    state = service.state("alice", "valid")
    shown = [c["sticker_id"] for c in state["candidates"]]
    extra = next(s for s in service.demo.sticker_ids() if s not in shown)
    after = service.submit("alice", "valid", state["item_id"], [shown[1], extra])
    assert (after["done"], after["submitted"], after["remaining"]) == (1, 1, 2)
    assert after["item_id"] != state["item_id"] and "2 acceptable, 3 not acceptable" in after["message"]
    flags = {a.sticker_id: a for a in service.demo.annotations.for_dialogue(state["dialogue"])}
    assert {s: a.label for s, a in flags.items()} == {
        shown[0]: "not_acceptable", shown[1]: "acceptable", shown[2]: "not_acceptable",
        shown[3]: "not_acceptable", extra: "acceptable"}
    assert flags[shown[1]].model_rank == 2 and flags[shown[1]].source_sample_id == state["item_id"]
    assert flags[shown[1]].annotator == "alice" and flags[extra].model_rank > 4
    # another annotator starts at the beginning
    assert service.state("bob", "valid")["item_id"] == state["item_id"]


def test_submit_errors(service):
    state = service.state("alice", "valid")
    with pytest.raises(DemoError, match="Unknown sticker id 'no-such'"):
        service.submit("alice", "valid", state["item_id"], ["no-such"])
    with pytest.raises(DemoError, match="Unknown item 'dialogue 999#1' in queue 'valid'"):
        service.submit("alice", "valid", "dialogue 999#1", [])
    with pytest.raises(DemoError, match="Unknown queue"):
        service.submit("alice", "nope", state["item_id"], [])
    with pytest.raises(DemoError, match="list of sticker ids"):
        service.submit("alice", "valid", state["item_id"], {"a": 1})
    assert service.demo.annotations.count() == 0 and service.state("alice", "valid")["done"] == 0


def test_skip_undo_and_finish(service):
    first = service.state("alice", "hard_test")
    shown = [c["sticker_id"] for c in first["candidates"]]
    second = service.submit("alice", "hard_test", first["item_id"], [shown[0]])
    third = service.skip("alice", "hard_test", second["item_id"])
    assert (third["submitted"], third["skipped"], third["done"]) == (1, 1, 2)
    undone = service.undo("alice", "hard_test")  # the skip
    assert undone["item_id"] == second["item_id"] and undone["skipped"] == 0 and undone["accepted"] == []
    undone = service.undo("alice", "hard_test")  # the submission: shown again, ticks restored
    assert undone["item_id"] == first["item_id"] and undone["accepted"] == [shown[0]] and undone["done"] == 0
    assert service.demo.annotations.count() == 0
    assert service.undo("alice", "hard_test")["message"] == "Nothing to undo."
    state = service.state("alice", "hard_test")
    while not state["finished"]:
        state = service.skip("alice", "hard_test", state["item_id"])
    assert (state["item_id"], state["done"], state["total"], state["candidates"]) == (None, 3, 3, [])


def test_progress_survives_a_restart(tmp_path, mod, make_tiny_selector):
    from demo.queue_service import QueueService

    selector = make_tiny_selector([s for s in mod.stickers if s.has_image])
    db = tmp_path / "restart.sqlite"
    upload = tmp_path / "mine.jsonl"
    upload.write_text("\n".join(json.dumps({"text": f"A: line {k}\nB: ok", "gold": "003"}) for k in range(4)),
                      encoding="utf-8")
    with AnnotationStore(db) as store:
        service = QueueService(DemoService(selector, annotations=store, ocr_engine=None), mod.split_rows)
        state = service.state("alice", "valid")
        service.submit("alice", "valid", state["item_id"], [])
        queue = service.upload(upload, "mine.jsonl")
        assert queue.name in dict((n, n) for _, n in service.queue_choices())
        service.skip("alice", queue.name, service.state("alice", queue.name)["item_id"])
    with AnnotationStore(db) as store:
        service = QueueService(DemoService(selector, annotations=store, ocr_engine=None), mod.split_rows)
        assert service.state("alice", "valid")["done"] == 1
        again = service.state("alice", queue.name)
        assert (again["done"], again["total"], again["item_id"], again["gold"]) == (1, 4, "line-2", "003")


def test_upload_errors_are_clear(service, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"text": 3}\n', encoding="utf-8")
    with pytest.raises(DemoError, match=r"bad.jsonl: line 2: \"text\" must be a string"):
        service.upload(bad, "bad.jsonl")
    with pytest.raises(DemoError, match="Upload"):
        service.upload(None)
    assert [n for _, n in service.queue_choices()] == ["valid", "easy_test", "hard_test"]


def test_examples_queue_without_splits(tmp_path, make_tiny_selector):
    from demo.queue_service import QueueService

    with AnnotationStore(tmp_path / "a.sqlite") as store:
        service = QueueService(DemoService(make_tiny_selector(n=12), annotations=store, ocr_engine=None))
        assert [n for _, n in service.queue_choices()] == ["examples"]
        state = service.state("anon", "examples")
        assert state["total"] == len(service.demo.examples) and len(state["candidates"]) == 8


def test_review_and_export(service):
    state = service.state("alice", "valid")
    shown = [c["sticker_id"] for c in state["candidates"]]
    service.submit("alice", "valid", state["item_id"], [shown[0]])
    service.submit("bob", "valid", state["item_id"], [shown[0], shown[1]])
    rows = service.review("valid")
    assert [(r["sticker_id"], r["acceptable"], r["not_acceptable"]) for r in rows] == [(shown[1], ["bob"], ["alice"])]
    assert service.review("easy_test") == [] and len(service.review()) == 1
    assert service.progress_rows("valid") == [["valid", "alice", 1, 0, 2], ["valid", "bob", 1, 0, 2]]
    assert service.progress_rows() == service.progress_rows("valid")
    agreement = service.demo.agreement()
    assert agreement["n_items"] == 4 and agreement["cohen_kappa"][0]["annotators"] == ["alice", "bob"]
    path = service.export("jsonl")
    with zipfile.ZipFile(path) as archive:
        assert sorted(archive.namelist()) == ["dialogues.jsonl", "records.jsonl", "summary.json"]
        records = [json.loads(line) for line in archive.read("records.jsonl").decode().splitlines()]
    assert len(records) == 8
    with pytest.raises(DemoError, match="export format"):
        service.export("csv")


# --------------------------------------------------------------------------- kill -9

_SUBMITTER = r"""
import sys
from core.annotations import AnnotationStore
from core.annotations.progress import QueueProgress
db, who = sys.argv[1], sys.argv[2]
progress = QueueProgress(AnnotationStore(db))
for k in range(10_000):
    labels = {f"s{k % 7}": "acceptable", f"s{(k + 1) % 7}": "not_acceptable", f"s{(k + 3) % 7}": "not_acceptable"}
    progress.submit(queue="q", item_id=f"i{k}", annotator=who, dialogue_text=f"A: dialogue {k}\nB: ok", labels=labels)
    print(f"ack {k}", flush=True)
"""


@pytest.mark.slow
def test_kill_9_loses_no_acknowledged_submission(tmp_path):
    """Three processes submit as fast as they can and are killed with SIGKILL; every submission
    acknowledged before is stored, and every stored one is whole (progress row ⇔ its flags)."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    db = tmp_path / "kill.sqlite"
    AnnotationStore(db).close()
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}
    procs = [subprocess.Popen([sys.executable, "-c", _SUBMITTER, str(db), f"w{i}"], stdout=subprocess.PIPE,
                              text=True, cwd=repo, env=env) for i in range(3)]
    acked: dict[str, int] = {}
    while len(acked) < 3 or min(acked.values()) < 15:  # every writer well under way
        for i, p in enumerate(procs):
            line = p.stdout.readline()
            assert line, f"writer {i} stopped early"
            acked[f"w{i}"] = int(line.split()[1]) + 1
    for p in procs:
        p.send_signal(signal.SIGKILL)
    for i, p in enumerate(procs):  # acks already written but not yet read count too
        acked[f"w{i}"] += sum(1 for line in p.stdout.read().splitlines() if line.startswith("ack"))
        p.wait()
    with AnnotationStore(db) as store:
        assert store.integrity_check() == "ok"
        progress = QueueProgress(store)
        flags = {(a.dialogue_text, a.sticker_id, a.annotator): a.label for a in store.all()}
        for who, n_acked in acked.items():
            answers = progress.answers(queue="q", annotator=who)
            assert {f"i{k}" for k in range(n_acked)} <= set(answers)
            assert len(answers) <= n_acked + 1  # at most the one in flight
            for item_id, row in answers.items():
                k = int(item_id[1:])
                text = f"A: dialogue {k}\nB: ok"
                assert {s: flags.get((text, s, who)) for s in row.labels} == row.labels
            assert sum(1 for key in flags if key[2] == who) == 3 * len(answers)


def test_the_next_item_is_ranked_in_the_background(service):
    import time

    state = service.state("alice", "valid")
    queue = service.queue("valid")
    following = queue.items[1]
    key = ("valid", following.item_id, len(service.demo.sticker_ids()))
    deadline = time.monotonic() + 60
    while key not in service._rankings and time.monotonic() < deadline:
        time.sleep(0.05)
    assert key in service._rankings  # prefetched while the first item is shown
    after = service.submit("alice", "valid", state["item_id"], [])
    assert after["item_id"] == following.item_id
    assert [c["sticker_id"] for c in after["candidates"]] == service._rankings[key][:4]
