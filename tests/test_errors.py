"""Error analysis (core.evaluation.errors): misses, recall per gold sticker, confusions, from ranked samples."""
from __future__ import annotations

import pytest

from core.evaluation.errors import RankedSample, confusions, misses, rank_samples, sticker_recall, summary


def sample(i, gold, rank, pick):
    top = (pick,) if rank > 1 else (gold,)
    return RankedSample(f"s{i}", gold, rank, top + ("x",), 10)


SAMPLES = [sample(0, "a", 1, "a"), sample(1, "a", 3, "b"), sample(2, "a", 2, "b"), sample(3, "c", 7, "b"),
           sample(4, "c", 1, "c"), sample(5, "d", 2, "a")]


def test_misses_worst_first_with_pick():
    got = misses(SAMPLES)
    assert [(s.sample_id, s.gold_rank, s.pick) for s in got] == [("s3", 7, "b"), ("s1", 3, "b"), ("s2", 2, "b"),
                                                                 ("s5", 2, "a")]


def test_recall_per_sticker_worst_first():
    rows = {r.sticker_id: r for r in sticker_recall(SAMPLES, k=5)}
    assert rows["a"].n == 3 and rows["a"].recall_at_1 == pytest.approx(1 / 3) and rows["a"].recall_at_k == 1.0
    assert rows["c"].recall_at_1 == 0.5 and rows["c"].recall_at_k == 0.5 and rows["c"].mean_rank == 4.0
    assert rows["d"].recall_at_1 == 0.0 and rows["d"].recall_at_k == 1.0
    assert [r.sticker_id for r in sticker_recall(SAMPLES, k=5)] == ["d", "a", "c"]


def test_confusions_most_frequent_first():
    assert confusions(SAMPLES) == [("a", "b", 2), ("c", "b", 1), ("d", "a", 1)]
    assert confusions(SAMPLES, top=1) == [("a", "b", 2)]
    assert confusions([sample(0, "a", 1, "a")]) == []


def test_summary():
    got = summary(SAMPLES, k=5)
    assert got["n"] == 6 and got["misses"] == 4
    assert got["recall_at_1"] == pytest.approx(2 / 6) and got["recall_at_5"] == pytest.approx(5 / 6)
    assert got["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 7 + 1 + 1 / 2) / 6)
    assert summary([])["n"] == 0


def test_rank_samples_agrees_with_the_selector(mini_selector):
    """The gold's rank and the pick are those of StickerSelector.rank (the demo's ranking)."""
    ids = mini_selector.sticker_ids()
    samples = [{"sample_id": f"d{i}#1", "speakers": ["[speaker1]", "[speaker2]"], "texts": ["你好呀", text],
                "sticker_id": ids[i % len(ids)]} for i, text in enumerate(["好困啊", "气死我了", "谢谢你", "再见"])]
    samples.append({"sample_id": "gone#1", "speakers": ["[speaker1]"], "texts": ["嗯"], "sticker_id": "012"})
    steps = []
    ranked, skipped = rank_samples(mini_selector.scorer, samples, keep=3, progress=lambda f, _: steps.append(f))
    assert skipped == ["gone#1"] and len(ranked) == 4 and steps[-1] == 1.0
    for got, s in zip(ranked, samples):
        order = [r.sticker_id for r in mini_selector.rank(s["texts"], semantic_top_k=0)]
        assert got.top == tuple(order[:3]) and got.gold_rank == order.index(s["sticker_id"]) + 1
        assert got.n_candidates == len(ids) and got.texts == tuple(s["texts"])
