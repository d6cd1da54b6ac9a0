"""Error analysis of a ranking over samples: the misses, recall per gold sticker, frequent confusions.

`rank_samples` scores every sample against every sticker of a scorer's bank with the one scoring
path (core.serving.scoring.SelectorScorer: cross-encoder + text scorer + prior, the demo's
ranking) and keeps, per sample, the top of the ranking and the gold sticker's rank. The other
functions read only those `RankedSample`s (easy to test, no model):

- `misses`: samples whose gold is not first, with the gold's rank and the model's pick;
- `sticker_recall`: R@1 and R@k per gold sticker (how often its samples had it first / in the top k);
- `confusions`: the most frequent (gold, pick) pairs among the misses;
- `summary`: n, R@1, R@5, MRR over all samples.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

Progress = Callable[[float, str], None]


@dataclass(frozen=True)
class RankedSample:
    sample_id: str
    gold: str
    gold_rank: int            # 1 = the model's first choice
    top: tuple[str, ...]      # the first sticker ids of the ranking, best first
    n_candidates: int
    speakers: tuple[str, ...] = ()
    texts: tuple[str, ...] = ()

    @property
    def pick(self) -> str:
        return self.top[0]

    @property
    def hit(self) -> bool:
        return self.gold_rank == 1

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StickerRecall:
    sticker_id: str
    n: int                # samples with this gold sticker
    recall_at_1: float
    recall_at_k: float
    mean_rank: float


def rank_samples(scorer, samples: Sequence[dict], *, keep: int = 10, progress: Progress | None = None,
                 batch: int = 64) -> tuple[list[RankedSample], list[str]]:
    """Ranks every sample (dicts with sample_id, speakers, texts, sticker_id) against every sticker of
    `scorer.bank` by the total score. Returns (ranked samples, ids of samples skipped because their
    gold is not a candidate). Ties keep the bank's order (a stable sort), so the pick and the gold's
    rank always agree."""
    rows = list(range(len(scorer.bank.ids)))
    if not rows:
        raise ValueError("no candidate stickers to rank")
    known = set(scorer.bank.ids)
    usable = [s for s in samples if str(s["sticker_id"]) in known]
    skipped = [str(s["sample_id"]) for s in samples if str(s["sticker_id"]) not in known]
    ranked = []
    for start in range(0, len(usable), batch):
        chunk = usable[start:start + batch]
        scorer.prepare_dialogues([s["texts"] for s in chunk])  # the text scorer's encoder, batched
        for sample in chunk:
            total = scorer.score(sample["speakers"], sample["texts"], rows).total
            gold_row = scorer.bank.position(str(sample["sticker_id"]))
            order = torch.argsort(total, descending=True, stable=True)
            gold_rank = 1 + int((order == gold_row).nonzero()[0, 0])
            ranked.append(RankedSample(str(sample["sample_id"]), str(sample["sticker_id"]), gold_rank,
                                       tuple(scorer.bank.ids[i] for i in order[:keep].tolist()), len(rows),
                                       tuple(str(x) for x in sample["speakers"]), tuple(str(x) for x in sample["texts"])))
        if progress:
            progress(min(1.0, (start + len(chunk)) / max(1, len(usable))), "ranking samples")
    return ranked, skipped


def misses(samples: Sequence[RankedSample]) -> list[RankedSample]:
    """Samples whose gold is not first, the worst (largest gold rank) first, then by sample id."""
    return sorted((s for s in samples if not s.hit), key=lambda s: (-s.gold_rank, s.sample_id))


def sticker_recall(samples: Sequence[RankedSample], k: int = 5) -> list[StickerRecall]:
    """R@1 and R@k per gold sticker, sorted worst first (R@1, then R@k, then mean rank), ties by id."""
    ranks: dict[str, list[int]] = defaultdict(list)
    for s in samples:
        ranks[s.gold].append(s.gold_rank)
    out = [StickerRecall(gold, len(r), sum(x == 1 for x in r) / len(r), sum(x <= k for x in r) / len(r),
                         sum(r) / len(r)) for gold, r in ranks.items()]
    return sorted(out, key=lambda x: (x.recall_at_1, x.recall_at_k, -x.mean_rank, x.sticker_id))


def confusions(samples: Sequence[RankedSample], top: int | None = 10) -> list[tuple[str, str, int]]:
    """The most frequent (gold, pick) pairs among the misses: [(gold, pick, count)], most frequent first."""
    counts = Counter((s.gold, s.pick) for s in samples if not s.hit)
    ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(gold, pick, n) for (gold, pick), n in ordered[:top]]


def summary(samples: Sequence[RankedSample], k: int = 5) -> dict:
    """n, misses, R@1, R@k and MRR over all samples (0 samples: zeros)."""
    n = len(samples)
    if not n:
        return {"n": 0, "misses": 0, "recall_at_1": 0.0, f"recall_at_{k}": 0.0, "mrr": 0.0}
    return {"n": n, "misses": sum(not s.hit for s in samples),
            "recall_at_1": sum(s.hit for s in samples) / n,
            f"recall_at_{k}": sum(s.gold_rank <= k for s in samples) / n,
            "mrr": sum(1.0 / s.gold_rank for s in samples) / n}
