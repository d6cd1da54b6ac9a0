"""Scoring samples against candidate sets, beside the popularity floor."""
from __future__ import annotations

import random
from typing import Callable, Sequence

import torch

from .features import PairEncoder, collate_pairs
from .metrics import PopularityRanker, candidate_sets, prediction_diversity, rank_of, recall_mrr, summarize
from .model import StickerSelectorModel
from .sticker_bank import StickerBank


@torch.inference_mode()
def score_candidates(model: StickerSelectorModel, encoder: PairEncoder, bank: StickerBank,
                     context_ids: list[int], rows: Sequence[int], batch_size: int = 64) -> torch.Tensor:
    """Cross-encoder scores (positive-class logit) of one dialogue against bank rows: (len(rows),)."""
    mask_ocr = not model.config.ocr_in_inputs
    device = model.sticker_projection.weight.device
    scores = []
    for start in range(0, len(rows), batch_size):
        chunk = list(rows[start:start + batch_size])
        pairs = [encoder.build(context_ids, bank.ocr_ids[r], mask_ocr=mask_ocr) for r in chunk]
        batch = collate_pairs(pairs, encoder.pad_id)
        batch["sticker_features"] = bank.features[torch.as_tensor(chunk)]
        batch = {k: v.to(device) for k, v in batch.items()}
        scores.append(model(**batch, compute_emotions=False).scores.float().cpu())
    return torch.cat(scores) if scores else torch.zeros(0)


def rank_samples(score_fn: Callable[[int, list[str]], Sequence[float]], gold_ids: Sequence[str],
                 sets: Sequence[list[str]], seed: int) -> tuple[list[int], list[str]]:
    """Gold ranks and top-1 ids of a scorer (sample index, candidates) -> scores."""
    rng = random.Random(seed)
    ranks, top1 = [], []
    for i, (gold, candidates) in enumerate(zip(gold_ids, sets)):
        scores = list(score_fn(i, candidates))
        ranks.append(rank_of(scores, candidates.index(gold), rng))
        top1.append(candidates[max(range(len(scores)), key=scores.__getitem__)])
    return ranks, top1


def evaluate(score_fn, samples: Sequence[dict], pool: Sequence[str], train_gold_ids: Sequence[str],
             seed: int = 0, candidates: str = "all", all_limit: int | None = None,
             progress: Callable | None = None) -> dict:
    """Metrics of `score_fn` and of the popularity ranker on the same candidate sets.

    candidates="10": gold + 9 random stickers (fixed by seed); "all": also every sticker of the
    pool (RALL, MRRALL). all_limit: rank against the whole pool only for a seeded subset of that
    many samples (reported as n_all); R10 always covers every sample. Cross-encoder scores of a
    pair do not depend on the other candidates, so the 10-sets reuse the whole-pool scores.
    """
    if candidates not in ("10", "all"):
        raise ValueError(f"candidates={candidates!r}; expected '10' or 'all'")
    pool = sorted(set(pool))
    unknown = sorted({s["sticker_id"] for s in samples} - set(pool))
    if unknown:
        raise ValueError(f"gold stickers {unknown[:10]} are not in the candidate pool")
    n = len(samples)
    gold = [s["sticker_id"] for s in samples]
    sets10 = candidate_sets(gold, pool, 10, seed)
    popularity = PopularityRanker(train_gold_ids)
    all_indices = list(range(n)) if candidates == "all" else []
    if all_indices and all_limit is not None and all_limit < n:
        all_indices = sorted(random.Random(seed).sample(range(n), all_limit))
    whole_pool = set(all_indices)
    cache: dict[int, dict[str, float]] = {}
    done = set()

    def model_scores(i: int, cands: list[str]) -> list[float]:
        if i in whole_pool:
            if i not in cache:
                cache[i] = dict(zip(pool, map(float, score_fn(samples[i], pool))))
            scores = [cache[i][c] for c in cands]
        else:
            scores = list(map(float, score_fn(samples[i], cands)))
        if progress and i not in done:
            done.add(i)
            progress(len(done), n)
        return scores

    def popularity_scores(i: int, cands: list[str]) -> list[float]:
        return popularity.scores(cands)

    ranks10, top1_10 = rank_samples(model_scores, gold, sets10, seed)
    pop10, pop_top1_10 = rank_samples(popularity_scores, gold, sets10, seed)
    result = summarize(ranks10, None, gold)
    result["popularity"] = summarize(pop10, None, gold)
    result["diversity_10"] = prediction_diversity(top1_10)
    result["popularity"]["diversity_10"] = prediction_diversity(pop_top1_10)
    if all_indices:
        sub_gold = [gold[i] for i in all_indices]
        sets_all = [pool] * len(all_indices)
        ranks_all, top1_all = rank_samples(lambda j, c: model_scores(all_indices[j], c), sub_gold, sets_all, seed)
        pop_all, pop_top1 = rank_samples(popularity_scores, sub_gold, sets_all, seed)
        result.update(recall_mrr(ranks_all, "ALL"))
        result["popularity"].update(recall_mrr(pop_all, "ALL"))
        result["n_all"] = result["popularity"]["n_all"] = len(all_indices)
        result["diversity_all"] = prediction_diversity(top1_all)
        result["popularity"]["diversity_all"] = prediction_diversity(pop_top1)
    result["pool_size"] = len(pool)
    return result
