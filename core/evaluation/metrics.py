"""Ranking metrics (R10@k, MRR10, RALL@k, MRRALL), candidate sets, and the popularity floor."""
from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from typing import Iterable, Sequence

KS = (1, 2, 5)


def rank_of(scores: Sequence[float], gold_index: int, rng: random.Random | None = None) -> int:
    """1-based rank of the gold candidate; ties are broken uniformly at random (seeded rng).

    Without rng, ties count against the gold (the pessimistic rank).
    """
    gold = scores[gold_index]
    higher = sum(1 for i, s in enumerate(scores) if s > gold and i != gold_index)
    tied = sum(1 for i, s in enumerate(scores) if s == gold and i != gold_index)
    if tied and rng is not None:
        return 1 + higher + rng.randint(0, tied)
    return 1 + higher + tied


def recall_mrr(ranks: Sequence[int], prefix: str) -> dict[str, float]:
    """R{prefix}@k and MRR{prefix} (x100) from 1-based gold ranks."""
    n = len(ranks)
    if n == 0:
        return {**{f"R{prefix}@{k}": float("nan") for k in KS}, f"MRR{prefix}": float("nan")}
    out = {f"R{prefix}@{k}": 100.0 * sum(r <= k for r in ranks) / n for k in KS}
    out[f"MRR{prefix}"] = 100.0 * sum(1.0 / r for r in ranks) / n
    return out


def truncated_map(ranks: Sequence[int], k: int) -> float:
    """The DSTC10 scorer's "MAP@k": reciprocal rank, 0 beyond rank k (x100)."""
    return 100.0 * sum((1.0 / r if r <= k else 0.0) for r in ranks) / max(len(ranks), 1)


def macro_recall_at_1(ranks: Sequence[int], gold_ids: Sequence[str]) -> float:
    """R@1 averaged per gold sticker first, then over stickers (popularity-robust)."""
    per_sticker: dict[str, list[int]] = defaultdict(list)
    for rank, gold in zip(ranks, gold_ids):
        per_sticker[gold].append(rank)
    if not per_sticker:
        return float("nan")
    return 100.0 * sum(sum(r == 1 for r in v) / len(v) for v in per_sticker.values()) / len(per_sticker)


def candidate_sets(gold_ids: Sequence[str], pool: Sequence[str], size: int, seed: int) -> list[list[str]]:
    """Gold + (size-1) distinct random others from the pool, gold at a random position.

    Deterministic in (seed, sample order); the same seed gives every model the same sets.
    """
    pool = sorted(set(pool))
    if size > len(pool):
        raise ValueError(f"candidate set size {size} exceeds the pool of {len(pool)} stickers")
    rng = random.Random(seed)
    sets = []
    for gold in gold_ids:
        others = rng.sample([s for s in pool if s != gold], size - 1)
        others.insert(rng.randrange(size), gold)
        sets.append(others)
    return sets


class PopularityRanker:
    """Scores a sticker by how often it was the gold sticker in the training samples."""

    def __init__(self, gold_ids: Iterable[str]):
        self.counts = Counter(gold_ids)

    def scores(self, candidate_ids: Sequence[str]) -> list[float]:
        return [float(self.counts.get(c, 0)) for c in candidate_ids]


def summarize(ranks10: Sequence[int], ranks_all: Sequence[int] | None, gold_ids: Sequence[str]) -> dict:
    out = recall_mrr(ranks10, "10")
    if ranks_all is not None:
        out.update(recall_mrr(ranks_all, "ALL"))
    out["macro_R10@1"] = macro_recall_at_1(ranks10, gold_ids)
    out["n"] = len(ranks10)
    return out


def paired_comparison(ranks: Sequence[int], other_ranks: Sequence[int]) -> dict:
    """How a ranker compares with another on the same samples and candidate sets (e.g. the popularity
    floor): R@1 hits only one of them has, the exact two-sided sign test on those, and the mean
    reciprocal-rank difference (x100) with its standard error."""
    if len(ranks) != len(other_ranks):
        raise ValueError(f"{len(ranks)} ranks against {len(other_ranks)}")
    only = sum(r == 1 and o != 1 for r, o in zip(ranks, other_ranks))
    other_only = sum(o == 1 and r != 1 for r, o in zip(ranks, other_ranks))
    discordant = only + other_only
    tail = sum(math.comb(discordant, k) for k in range(min(only, other_only) + 1)) / 2 ** discordant
    differences = [100.0 * (1.0 / r - 1.0 / o) for r, o in zip(ranks, other_ranks)]
    n = len(differences)
    mean = sum(differences) / n if n else float("nan")
    spread = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1)) if n > 1 else float("nan")
    return {"R@1_only_this": only, "R@1_only_other": other_only, "R@1_sign_test_p": min(1.0, 2 * tail),
            "MRR_difference": mean, "MRR_difference_se": spread / math.sqrt(n) if n > 1 else float("nan")}


def prediction_diversity(top1_ids: Sequence[str]) -> dict:
    """How many distinct stickers a ranker puts first, and the share of the most common one."""
    counts = Counter(top1_ids)
    total = max(len(top1_ids), 1)
    return {"distinct_top1": len(counts), "most_common_share": max(counts.values(), default=0) / total,
            "counts": dict(counts.most_common())}


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (linear between the two nearest ranks; NaN for none), for benchmarks."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def expected_reciprocal_rank(scores: "torch.Tensor", gold: "torch.Tensor") -> "torch.Tensor":
    """(..., N, K) candidate scores, (N,) gold columns -> (...,) mean reciprocal rank of the gold, ties broken
    at random in expectation (a constant scorer is not perfect): mean over k <= ties of 1 / (1 + higher + k)."""
    import torch

    mine = scores.gather(-1, gold.expand(*scores.shape[:-1]).unsqueeze(-1))               # (..., N, 1)
    higher = (scores > mine).sum(-1).double()
    tied = (scores == mine).sum(-1).double() - 1
    # sum_{k=0..t} 1/(h+1+k) = H(h+t+1) - H(h), with H(n) = digamma(n+1) + Euler's constant
    return ((torch.digamma(higher + tied + 2) - torch.digamma(higher + 1)) / (tied + 1)).mean(-1)
