import math
import random

import pytest

from core.evaluation.protocol import evaluate, sticker_normalized
from core.evaluation.metrics import (PopularityRanker, candidate_sets, macro_recall_at_1, rank_of, recall_mrr,
                          truncated_map)


def test_rank_of_and_ties():
    assert rank_of([0.1, 0.9, 0.5], 1) == 1
    assert rank_of([0.1, 0.9, 0.5], 0) == 3
    assert rank_of([1.0, 1.0, 1.0], 0) == 3  # pessimistic without rng
    ranks = {rank_of([1.0, 1.0, 1.0], 0, random.Random(s)) for s in range(50)}
    assert ranks == {1, 2, 3}  # random tie-breaking covers every place


def test_recall_mrr_on_hand_made_ranks():
    out = recall_mrr([1, 2, 5, 10], "10")
    assert out["R10@1"] == 25.0 and out["R10@2"] == 50.0 and out["R10@5"] == 75.0
    assert math.isclose(out["MRR10"], 100 * (1 + 0.5 + 0.2 + 0.1) / 4)
    assert math.isclose(truncated_map([1, 2, 5, 10], 2), 100 * 1.5 / 4)


def test_macro_recall_weights_stickers_equally():
    # sticker a: 3 of 3 right; sticker b: 0 of 1 right -> micro 75, macro 50
    assert macro_recall_at_1([1, 1, 1, 4], ["a", "a", "a", "b"]) == 50.0


def test_candidate_sets_are_seeded_and_valid():
    pool = [f"{i:03d}" for i in range(30)]
    gold = ["001", "005", "001"]
    a, b = candidate_sets(gold, pool, 10, seed=3), candidate_sets(gold, pool, 10, seed=3)
    assert a == b and a != candidate_sets(gold, pool, 10, seed=4)
    for g, c in zip(gold, a):
        assert len(c) == 10 == len(set(c)) and g in c and set(c) <= set(pool)
    with pytest.raises(ValueError, match="exceeds"):
        candidate_sets(gold, pool[:5], 10, 0)


def test_evaluate_perfect_scorer_and_popularity():
    pool = [f"{i:03d}" for i in range(20)]
    samples = [{"sticker_id": pool[i % 3]} for i in range(9)]
    perfect = lambda s, cands: [1.0 if c == s["sticker_id"] else 0.0 for c in cands]  # noqa: E731
    out = evaluate(perfect, samples, pool, train_gold_ids=["000"] * 5, seed=0, candidates="all")
    assert out["R10@1"] == out["RALL@1"] == out["MRRALL"] == 100.0 and out["n"] == 9
    assert out["popularity"]["R10@1"] == pytest.approx(100 / 3)  # only sticker 000 is known
    assert PopularityRanker(["a", "a", "b"]).scores(["a", "b", "c"]) == [2.0, 1.0, 0.0]


def test_sticker_normalized_removes_base_rates_and_keeps_context_signal():
    pool = [f"{i:03d}" for i in range(30)]
    rng = random.Random(0)
    samples = [{"sticker_id": rng.choice(pool[:10]), "noise": rng.random()} for _ in range(400)]
    base = {c: 5.0 - i / 10 for i, c in enumerate(pool)}  # popular stickers score higher, whatever was said
    only_base = lambda s, cands: [base[c] + 0.01 * ((hash((s["noise"], c)) % 100) / 100) for c in cands]  # noqa: E731
    reads_context = lambda s, cands: [base[c] + (1.0 if c == s["sticker_id"] else 0.0) for c in cands]  # noqa: E731
    reference = samples[:200]
    raw = evaluate(only_base, samples[200:], pool, train_gold_ids=[], candidates="10")
    flat = evaluate(sticker_normalized(only_base, reference, pool), samples[200:], pool, [], candidates="10")
    assert raw["R10@1"] > 25  # the base rate alone looks good on popular golds (chance: 10)
    assert 2 < flat["R10@1"] < 25 and 15 < flat["MRR10"] < 45  # chance: 10 / 29.3
    kept = evaluate(sticker_normalized(reads_context, reference, pool), samples[200:], pool, [], candidates="10")
    assert kept["R10@1"] > 90
    with pytest.raises(ValueError, match="reference"):
        sticker_normalized(only_base, [], pool)
    with pytest.raises(ValueError, match="not in the reference pool"):
        sticker_normalized(only_base, reference, pool[:5])(samples[0], ["029"])


def test_paired_comparison_on_hand_made_ranks():
    from core.evaluation.metrics import paired_comparison

    ranks = [1, 1, 1, 2, 3, 1]
    other = [2, 1, 5, 1, 3, 4]
    out = paired_comparison(ranks, other)
    assert out["R@1_only_this"] == 3 and out["R@1_only_other"] == 1
    assert out["R@1_sign_test_p"] == pytest.approx(2 * (1 + 4) / 16)  # P(X <= 1), X ~ Bin(4, 1/2), two-sided
    differences = [100 * (1 / r - 1 / o) for r, o in zip(ranks, other)]
    assert out["MRR_difference"] == pytest.approx(sum(differences) / 6)
    assert paired_comparison([1, 2], [1, 2])["R@1_sign_test_p"] == 1.0
    with pytest.raises(ValueError, match="3 ranks against 2"):
        paired_comparison([1, 2, 3], [1, 2])
