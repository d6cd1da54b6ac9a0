"""Multi-reference evaluation and training with the stickers annotators accepted in the demo.

* ``core.evaluation.protocol.evaluate(..., extra_positives=...)`` on hand-made rankings;
* matching an export to samples: by ``source_sample_id``, else by the dialogue hash of the
  sample in the demo's canonical form (flags made through the real ``DemoService``);
* ``python -m train.evaluate --extra-positives`` and ``python -m train --extra-positives`` on
  the synthetic MOD folder (tests/support/mini_mod.py).
"""
from __future__ import annotations

import json
import math
import random
import zlib
from collections import Counter

import pytest

from core.annotations import AnnotationStore, ExtraPositives, export_dataset, load_extra_positives
from core.data.mod import load_mod
from core.data.dialogue import parse_dialogue, sample_dialogue_text, sample_text
from core.evaluation.protocol import evaluate, multi_reference_rank
from tests.support.mini_mod import make_mini_mod

POOL = list("abcdefghij")  # 10 stickers: the 10-candidate set is the whole pool


def _table_scorer(orders: list[str]):
    """Sample i's scores: its order string, best first (no ties)."""
    def score(sample, candidates):
        order = orders[sample["i"]]
        return [-float(order.index(c)) for c in candidates]
    return score


# gold rank -> multi-reference rank, by hand:
#   0: gold b at 3, extra c at 1                       -> 1
#   1: gold a at 2, extra e at 6 (worse)               -> 2
#   2: gold j at 1, extra a at 4                        -> 1
#   3: gold f at 10, extras: f itself and "zzz" (not in the pool) -> 10
#   4: gold g at 5, extras h at 4 and i at 2            -> 2 (only "c" is above i)
ORDERS = ["cabdefghij", "dabcefghij", "jbcadefghi", "abcdeghijf", "cidhgabefj"]
GOLD = ["b", "a", "j", "f", "g"]
EXTRAS = [{"c"}, {"e"}, {"a"}, {"f", "zzz"}, {"h", "i"}]
SINGLE = [3, 2, 1, 10, 5]
MULTI = [1, 2, 1, 10, 2]


def _samples():
    return [{"i": i, "sticker_id": g} for i, g in enumerate(GOLD)]


def _expected(ranks, prefix):
    n = len(ranks)
    out = {f"R{prefix}@{k}": 100.0 * sum(r <= k for r in ranks) / n for k in (1, 2, 5)}
    out[f"MRR{prefix}"] = 100.0 * sum(1 / r for r in ranks) / n
    return out


def test_hand_made_rankings_single_and_multi_reference():
    for i, (order, gold) in enumerate(zip(ORDERS, GOLD)):
        assert sorted(order) == POOL and order.index(gold) + 1 == SINGLE[i]
    scorer = _table_scorer(ORDERS)
    out = evaluate(scorer, _samples(), POOL, train_gold_ids=["a"], seed=0, candidates="all",
                   extra_positives=EXTRAS)
    for prefix in ("10", "ALL"):
        for key, value in _expected(SINGLE, prefix).items():
            assert out[key] == pytest.approx(value), key
        for key, value in _expected(MULTI, prefix).items():
            assert out["multi_reference"][key] == pytest.approx(value), key
    multi = out["multi_reference"]
    assert multi["n"] == multi["n_all"] == 5
    assert multi["n_with_extra"] == 4  # sample 3 has only its gold and an unknown id
    assert multi["n_extra_positives"] == 5 and multi["n_extra_not_in_pool"] == 1
    assert multi["n_with_extra_in_10"] == multi["n_with_extra_all"] == 4
    assert multi["improved_10"] == multi["improved_all"] == 2
    # the popularity floor gets the same treatment and can only improve
    pop, pop_multi = out["popularity"], multi["popularity"]
    for key in ("R10@1", "R10@5", "MRR10", "RALL@1", "MRRALL"):
        assert pop_multi[key] >= pop[key]
    assert "n_with_extra" not in pop_multi


def test_without_extra_positives_nothing_changes():
    rng = random.Random(1)
    pool = [f"{i:03d}" for i in range(30)]
    samples = [{"sticker_id": pool[rng.randrange(30)]} for _ in range(40)]
    coarse = lambda s, cands: [float(zlib.crc32(f"{s['sticker_id']}|{c}".encode()) % 3)  # noqa: E731
                               for c in cands]  # three score levels: many ties
    base = evaluate(coarse, samples, pool, ["000", "001"], seed=3, candidates="all", all_limit=25)
    assert "multi_reference" not in base
    empty = evaluate(coarse, samples, pool, ["000", "001"], seed=3, candidates="all", all_limit=25,
                     extra_positives=[set()] * len(samples))
    assert {k: v for k, v in empty.items() if k != "multi_reference"} == base
    for key in ("R10@1", "R10@2", "R10@5", "MRR10", "RALL@1", "RALL@5", "MRRALL"):
        assert empty["multi_reference"][key] == base[key]
        assert empty["multi_reference"]["popularity"][key] == base["popularity"][key]
    assert empty["multi_reference"]["n_with_extra"] == 0
    # with extras, single-gold numbers (tie-breaking included) are untouched and multi >= single
    # each sample's extra: a sticker with the top score level
    extras = [{next(c for c in pool if coarse(s, [c])[0] == 2.0), "nope"} for s in samples]
    with_extras = evaluate(coarse, samples, pool, ["000", "001"], seed=3, candidates="all", all_limit=25,
                           extra_positives=extras)
    assert {k: v for k, v in with_extras.items() if k != "multi_reference"} == base
    for key in ("R10@1", "R10@5", "MRR10", "RALL@1", "RALL@5", "MRRALL"):
        assert with_extras["multi_reference"][key] >= base[key]
    assert with_extras["multi_reference"]["MRRALL"] > base["MRRALL"]
    assert with_extras["multi_reference"]["n_extra_not_in_pool"] == len(samples)
    with pytest.raises(ValueError, match="2 entries for 40 samples"):
        evaluate(coarse, samples, pool, [], extra_positives=[set(), set()])


def test_multi_reference_rank_ties():
    cands = ["g", "e", "x", "y"]
    # gold and extra tie at the top: no cost; the non-positive x ties too -> rank 1 or 2
    ranks = {multi_reference_rank([1.0, 1.0, 1.0, 0.0], cands, "g", {"e"}, 3, random.Random(s))
             for s in range(40)}
    assert ranks == {1, 2}
    # an extra that is not a candidate leaves the gold rank as it is
    assert multi_reference_rank([0.0, 0.5, 0.9, 0.1], cands[:1] + ["x", "y", "z"], "g", {"e"}, 4,
                                random.Random(0)) == 4
    # never worse than the single-gold rank (tie luck included)
    assert multi_reference_rank([1.0, 1.0, 1.0, 0.0], cands, "g", {"e"}, 1, random.Random(0)) == 1


# ----------------------------------------------------------------- matching samples <- demo flags


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_mod(tmp_path_factory.mktemp("multiref") / "mod", n_dialogues=16)


@pytest.fixture(scope="module")
def mod(mini):
    return load_mod(mini)


@pytest.fixture(scope="module")
def service(mod, tmp_path_factory, make_tiny_selector):
    """The demo's real flagging path (DemoService) over the mini stickers."""
    pytest.importorskip("core.serving.inference")
    from demo.service import DemoService, load_examples

    selector = make_tiny_selector([s for s in mod.stickers if s.has_image])
    store = AnnotationStore(tmp_path_factory.mktemp("flags") / "flags.sqlite")
    return DemoService(selector, examples=load_examples(mod), annotations=store, ocr_engine=None)


def test_sample_dialogue_text_is_the_demos_key():
    speakers = ["[speaker2]", "[speaker1]", "[speaker2]"]
    texts = ["  你好\t呀 ", "", "B: 好的\u200b"]
    text = sample_dialogue_text(speakers, texts)
    assert text == "A: 你好 呀\nB: …\nA: B: 好的"
    # the example text keeps the zero-width space; the stored key (what the demo parses) drops it
    assert sample_text(speakers, texts) == "A: 你好 呀\nB: …\nA: B: 好的\u200b"
    # what the demo stores for the example text it shows is the same string
    assert parse_dialogue(sample_text(speakers, texts)).canonical_text() == text


def _flags(service, mod):
    """Flags like annotators make them in the demo; returns the sample each one is about."""
    train = [dict(r) for r in mod.splits["train"]]
    easy = [dict(r) for r in mod.splits["easy_test"]]
    ex = next(e for e in service.examples.values() if e.sample_id == easy[0]["sample_id"])
    # 1. UI: example loaded -> the flag carries source_sample_id
    service.flag(ex.text, "002", annotator="ann1", example_key=ex.key)
    # 2. /flag API on the example's text typed with other whitespace and no example -> by hash
    typed = "\n\n".join("  " + line.replace(": ", ":   ") for line in sample_text(easy[1]["speakers"],
                                                                                  easy[1]["texts"]).split("\n"))
    service.flag(typed, "003", annotator="ann1")
    # 3. a rejected sticker (majority not_acceptable) and a tie are not positives
    service.flag(typed, "004", annotator="ann1", label="not_acceptable")
    service.flag(typed, "005", annotator="ann1")
    service.flag(typed, "005", annotator="ann2", label="not_acceptable")
    return train, easy


def test_export_matches_samples_by_id_then_by_hash(service, mod, tmp_path):
    train, easy = _flags(service, mod)
    export_dataset(service.annotations, tmp_path / "export", "jsonl")
    extra = load_extra_positives(tmp_path / "export")
    assert extra.by_sample_id == {easy[0]["sample_id"]: {"002"}}
    assert list(extra.by_hash.values()) == [{"003"}]
    assert extra.for_sample(easy[0]) == {"002"}
    assert extra.for_sample(easy[1]) == {"003"}
    # the sample-id flag applies to that sample only, even for another sample with the same text
    twin = {**easy[0], "sample_id": "other#1"}
    assert extra.for_sample(twin) == set()
    # a hash flag applies to every sample with that dialogue (speaker names / spacing may differ)
    renamed = {**easy[1], "sample_id": "x#9", "speakers": ["[speaker2]" if s == "[speaker1]" else "[speaker1]"
                                                           for s in easy[1]["speakers"]],
               "texts": [f" {t}  " for t in easy[1]["texts"]]}
    assert extra.for_sample(renamed) == {"003"}
    assert ExtraPositives.sample_hash(renamed) == ExtraPositives.sample_hash(easy[1])
    assert load_extra_positives(service.annotations).by_hash == extra.by_hash
    # an export of per-dialogue rows only (no records table): the row's source_sample_id decides
    (tmp_path / "rows").mkdir()
    (tmp_path / "rows" / "dialogues.jsonl").write_bytes((tmp_path / "export" / "dialogues.jsonl").read_bytes())
    rows_only = load_extra_positives(tmp_path / "rows" / "dialogues.jsonl")
    assert (rows_only.by_sample_id, rows_only.by_hash) == (extra.by_sample_id, extra.by_hash)


# ----------------------------------------------------------------- train / train.evaluate CLIs

FAST = ["--recipe", "tiny", "--image-encoder", "random_projection:16", "--lexicon", "none"]


@pytest.fixture(scope="module")
def training_export(mod, tmp_path_factory):
    """An export with flags on training samples (kept / skipped for each reason) and on test ones."""
    from train.trainer import extra_positive_samples  # noqa: F401 - the function under test exists

    held_out = set(mod.split_info.never_in_train)  # the hard test's and valid_hard's stickers
    train = [dict(r) for r in mod.splits["train"]]
    outside = {ExtraPositives.sample_hash(s) for s in mod.samples
               if s["dialogue_id"] not in {t["dialogue_id"] for t in train}}
    counts = Counter(ExtraPositives.sample_hash(s) for s in train)
    # training samples whose dialogue text is theirs alone (the mini data repeats short texts)
    own = [s for s in train if ExtraPositives.sample_hash(s) not in outside
           and counts[ExtraPositives.sample_hash(s)] == 1]
    shared = [s for s in train if ExtraPositives.sample_hash(s) in outside]
    assert len(own) >= 2, "the mini data should have training dialogues of their own"
    first, second = own[0], own[1]
    ok = next(c for c in ("008", "009", "010", "006") if c not in held_out and c != first["sticker_id"])
    ok2 = next(c for c in ("010", "011", "006") if c not in held_out and c != second["sticker_id"] and c != ok)
    store = AnnotationStore(tmp_path_factory.mktemp("train-flags") / "f.sqlite")
    text = lambda s: sample_dialogue_text(s["speakers"], s["texts"])  # noqa: E731
    store.flag(dialogue_text=text(first), sticker_id=ok, annotator="a", source_sample_id=first["sample_id"])
    store.flag(dialogue_text=text(first), sticker_id=sorted(held_out)[0], annotator="a",
               source_sample_id=first["sample_id"])  # held out: never a training target
    store.flag(dialogue_text=text(first), sticker_id="012", annotator="a",
               source_sample_id=first["sample_id"])  # no image: not in the bank
    store.flag(dialogue_text=text(second), sticker_id=ok2, annotator="a")  # by hash
    store.flag(dialogue_text=text(second), sticker_id=second["sticker_id"], annotator="a")  # its gold
    if shared:  # same text as a valid/test sample: must not become training data
        store.flag(dialogue_text=text(shared[0]), sticker_id=ok, annotator="a")
    easy = dict(mod.splits["easy_test"][0])
    store.flag(dialogue_text=text(easy), sticker_id=ok, annotator="a", source_sample_id=easy["sample_id"])
    out = tmp_path_factory.mktemp("train-export") / "export"
    export_dataset(store, out, "parquet")
    return {"path": out, "expected": {(first["sample_id"], ok), (second["sample_id"], ok2)},
            "held_out": held_out,
            # training samples whose text is also a valid/test sample's: the flag is skipped for each
            "shared": counts[ExtraPositives.sample_hash(shared[0])] if shared else 0}


def test_extra_positive_training_samples_are_used(mini, mod, training_export, tmp_path, monkeypatch):
    from core.training.objective import MultitaskObjective
    from train import trainer

    seen: list[dict] = []
    original = MultitaskObjective.forward

    def recording_forward(self, samples, generator):
        seen.extend(samples)
        return original(self, samples, generator)

    monkeypatch.setattr(MultitaskObjective, "forward", recording_forward)
    trainer.main([*FAST, "--data", str(mini), "--output", str(tmp_path / "run"), "--test-candidates", "none",
                  "--feature-cache", str(tmp_path / "f.safetensors"),
                  "--extra-positives", str(training_export["path"])])
    used = {(s["sample_id"].split("+accepted:")[0], s["sticker_id"]) for s in seen if "+accepted:" in s["sample_id"]}
    assert used == training_export["expected"]  # one epoch: every extra sample went through the objective
    extra = [s for s in seen if "+accepted:" in s["sample_id"]]
    assert not {s["sticker_id"] for s in extra} & training_export["held_out"]
    train_dialogues = {t["dialogue_id"] for t in seen if "+accepted:" not in t["sample_id"]}
    assert {s["dialogue_id"] for s in extra} <= train_dialogues
    info = json.loads((tmp_path / "run" / "best" / "training_info.json").read_text())
    counts = info["extra_positives"]
    assert info["n_train"] == len(mod.splits["train"]) + 2
    assert counts["added"] == 2 and counts["samples_matched"] == 2
    assert counts["skipped_held_out"] == 1 and counts["skipped_not_in_bank"] == 1 and counts["skipped_gold"] == 1
    assert counts["skipped_eval_dialogue"] == training_export["shared"]


def test_train_evaluate_cli_reports_multi_reference(mini, mod, tmp_path, capsys):
    from train import evaluate as evaluate_cli
    from train import trainer

    trainer.main([*FAST, "--data", str(mini), "--output", str(tmp_path / "run"), "--test-candidates", "none",
                  "--max-steps", "1", "--feature-cache", str(tmp_path / "f.safetensors")])
    easy = [dict(r) for r in mod.splits["easy_test"]]
    hard = [dict(r) for r in mod.splits["hard_test"]]
    store = AnnotationStore(tmp_path / "flags.sqlite")
    # every easy-test sample: all other stickers acceptable -> multi-reference R@1 = 100 on its sets
    others = [s.sticker_id for s in mod.stickers if s.has_image]
    for s in easy:
        for c in others:
            if c != s["sticker_id"]:
                store.flag(dialogue_text=sample_dialogue_text(s["speakers"], s["texts"]), sticker_id=c,
                           annotator="a", source_sample_id=s["sample_id"])
    h = hard[0]
    store.flag(dialogue_text=sample_text(h["speakers"], h["texts"]), sticker_id="000", annotator="a")  # by hash
    store.flag(dialogue_text="A: a dialogue that is in no split", sticker_id="000", annotator="a")
    export_dataset(store, tmp_path / "export", "jsonl")
    result = evaluate_cli.main(["--checkpoint", str(tmp_path / "run" / "best"), "--data", str(mini),
                                "--candidates", "all", "--feature-cache", str(tmp_path / "f.safetensors"),
                                "--extra-positives", str(tmp_path / "export")])
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(result))
    multi = result["easy_test"]["multi_reference"]
    assert multi["n_with_extra"] == len(easy) == multi["n"]
    assert multi["R10@1"] == multi["RALL@1"] == multi["MRRALL"] == 100.0
    assert multi["R10@1"] >= result["easy_test"]["R10@1"]
    hard_multi = result["hard_test"]["multi_reference"]
    expected_hard = sum(1 for s in hard if ExtraPositives.sample_hash(s) == ExtraPositives.sample_hash(h)
                        and s["sticker_id"] != "000")
    assert hard_multi["n_with_extra"] == expected_hard >= (0 if h["sticker_id"] == "000" else 1)
    report = result["extra_positives"]
    assert report["matched_by_sample_id"] == len(easy)
    assert report["matched_by_dialogue_hash"] == 1 and report["unmatched_dialogues"] == 1
    assert not math.isnan(hard_multi["MRRALL"])


def test_flags_on_valid_or_test_dialogues_never_become_training_samples(tmp_path):
    from types import SimpleNamespace

    from train.trainer import extra_positive_samples

    def sample(dialogue, index, texts, gold):
        return {"sample_id": f"{dialogue}#{index}", "dialogue_id": dialogue, "turn_index": index,
                "speakers": ["[speaker1]", "[speaker2]"][: len(texts)], "texts": texts, "sticker_id": gold,
                "emotion_id": -1}

    train = [sample("d1", 1, ["你好", "好困啊"], "1"), sample("d2", 1, ["吃了吗", "吃了"], "2")]
    valid = sample("d3", 1, ["你好", "好困啊"], "3")  # same text as d1#1, in the valid split
    mod = SimpleNamespace(samples=[*train, valid], splits={"train": {"dialogue_id": ["d1", "d2"]}},
                          emotion_source="lexicon")
    store = AnnotationStore(tmp_path / "f.sqlite")
    store.flag(dialogue_text="A: 你好\nB: 好困啊", sticker_id="5", annotator="a")  # by hash: shared text
    store.flag(dialogue_text="A: 你好\nB: 好困啊", sticker_id="6", annotator="a", source_sample_id="d3#1")
    store.flag(dialogue_text="A: 吃了吗\nB: 吃了", sticker_id="7", annotator="a")  # by hash: d2 only
    store.flag(dialogue_text="A: 吃了吗\nB: 吃了", sticker_id="8", annotator="a", source_sample_id="d2#1")
    store.flag(dialogue_text="A: 吃了吗\nB: 吃了", sticker_id="9", annotator="a",
               label="not_acceptable", source_sample_id="d2#1")
    export_dataset(store, tmp_path / "e", "jsonl")
    added, counts = extra_positive_samples(train, mod, [str(i) for i in range(10)], {"8"}, tmp_path / "e")
    assert [(s["sample_id"], s["sticker_id"], s["dialogue_id"], s["emotion_id"]) for s in added] == [
        ("d2#1+accepted:7", "7", "d2", -1)]
    assert counts["skipped_eval_dialogue"] == 1 and counts["skipped_held_out"] == 1 and counts["added"] == 1


def test_multi_reference_plot(tmp_path):
    from PIL import Image

    from train.multi_reference_plot import main

    scorer = _table_scorer(ORDERS)
    out = evaluate(scorer, _samples(), POOL, train_gold_ids=["a"], seed=0, candidates="all", extra_positives=EXTRAS)
    (tmp_path / "eval.json").write_text(json.dumps({"easy_test": out, "hard_test": out}))
    path = main([str(tmp_path / "eval.json"), str(tmp_path / "fig.png"), "--title", "t"])
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 500
