"""Scoring samples against candidate sets, beside the popularity floor."""
from __future__ import annotations

import random
from typing import Callable, Iterable, Sequence

import torch

from core.model.features import PairEncoder
from core.evaluation.metrics import (PopularityRanker, candidate_sets, paired_comparison, prediction_diversity, rank_of, recall_mrr,
                      summarize)
from core.model.mmbert import StickerSelectorModel
from core.model.sticker_bank import StickerBank


def score_candidates(model: StickerSelectorModel, encoder: PairEncoder, bank: StickerBank,
                     context_ids: list[int], rows: Sequence[int], batch_size: int = 64) -> torch.Tensor:
    """Cross-encoder scores (positive-class logit) of one dialogue against bank rows, one full
    sequence per pair (the reference the fast path is tested against): (len(rows),)."""
    from core.serving.scoring import SelectorScorer

    scorer = SelectorScorer(model, encoder, bank, exhaustive=True, batch_size=batch_size)
    return scorer.cross_logits(context_ids, list(rows))[0][:, 1]


def sticker_normalized(score_fn: Callable[[dict, list[str]], Sequence[float]], reference_samples: Sequence[dict],
                       pool: Sequence[str]) -> Callable[[dict, list[str]], list[float]]:
    """`score_fn` with each sticker's scores standardised over reference dialogues (z-scores).

    A ranker's score mixes what it read in the dialogue with a per-sticker base rate (how often
    it saw the sticker win). Subtracting each sticker's mean over, e.g., training dialogues and
    dividing by its spread leaves only how much *this* dialogue favours the sticker compared with
    others; ranked this way a model without context signal is at chance (R10@1 ~ 10). Used as a
    popularity-robust view beside the raw metrics (train.evaluate --reference-contexts)."""
    if not reference_samples:
        raise ValueError("sticker_normalized needs at least one reference sample")
    pool = list(pool)
    table = torch.tensor([list(map(float, score_fn(s, pool))) for s in reference_samples])  # (R, P)
    mean, std = table.mean(0), table.std(0, unbiased=False).clamp(min=1e-6)
    stats = {sid: (float(m), float(d)) for sid, m, d in zip(pool, mean, std)}

    def normalized(sample: dict, candidates: list[str]) -> list[float]:
        unknown = [c for c in candidates if c not in stats]
        if unknown:
            raise ValueError(f"stickers {unknown[:5]} were not in the reference pool")
        return [(v - stats[c][0]) / stats[c][1] for c, v in zip(candidates, score_fn(sample, candidates))]

    return normalized


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
             progress: Callable | None = None,
             extra_positives: Sequence[Iterable[str] | None] | None = None) -> dict:
    """Metrics of `score_fn` and of the popularity ranker on the same candidate sets.

    candidates="10": gold + 9 random stickers (fixed by seed); "all": also every sticker of the
    pool (RALL, MRRALL). all_limit: rank against the whole pool only for a seeded subset of that
    many samples (reported as n_all); R10 always covers every sample. Cross-encoder scores of a
    pair do not depend on the other candidates, so the 10-sets reuse the whole-pool scores.

    extra_positives: one set of sticker ids per sample that are also right answers (e.g. the
    stickers annotators accepted in the demo). Adds "multi_reference": the same metrics where a
    sample's rank is the best rank among gold + extra positives within its candidate set (see
    :func:`multi_reference_rank`), on the very same candidate sets and scores, plus counts
    (see :func:`multi_reference_summary`). Everything else is unchanged.
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
    extras = _check_extra_positives(extra_positives, gold)
    scores10: dict[int, list[float]] = {}  # kept only for multi-reference ranks

    def model_scores(i: int, cands: list[str]) -> list[float]:
        if i in whole_pool:
            if i not in cache:
                cache[i] = dict(zip(pool, map(float, score_fn(samples[i], pool))))
            scores = [cache[i][c] for c in cands]
        else:
            scores = list(map(float, score_fn(samples[i], cands)))
        if extras is not None and cands is sets10[i]:
            scores10[i] = scores
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
    result["vs_popularity_10"] = paired_comparison(ranks10, pop10)
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
    if extras is not None:
        whole = None
        if all_indices:
            whole = (all_indices, [[cache[i][c] for c in pool] for i in all_indices], ranks_all, pop_all)
        result["multi_reference"] = _multi_reference(extras, gold, sets10, scores10, ranks10, pop10, popularity,
                                                     pool, whole, seed)
    return result


def _multi_reference(extras, gold, sets10, scores10, ranks10, pop10, popularity, pool, whole, seed) -> dict:
    """The "multi_reference" block of :func:`evaluate`: ranks where gold + extra positives count, on the
    same candidate sets and scores (whole: (indices, their whole-pool scores, ranks, popularity ranks) or None)."""
    rng = random.Random(seed + 1)  # own tie-breaking stream: the single-gold ranks stay as they are
    n = len(gold)
    m10 = [multi_reference_rank(scores10[i], sets10[i], gold[i], extras[i], ranks10[i], rng) for i in range(n)]
    p10 = [multi_reference_rank(popularity.scores(sets10[i]), sets10[i], gold[i], extras[i], pop10[i], rng)
           for i in range(n)]
    m_all = p_all = ranks_all = pop_all = None
    all_indices = []
    if whole is not None:
        all_indices, whole_scores, ranks_all, pop_all = whole
        m_all = [multi_reference_rank(whole_scores[j], pool, gold[i], extras[i], ranks_all[j], rng)
                 for j, i in enumerate(all_indices)]
        pool_pop = popularity.scores(pool)
        p_all = [multi_reference_rank(pool_pop, pool, gold[i], extras[i], pop_all[j], rng)
                 for j, i in enumerate(all_indices)]
    summary = multi_reference_summary(m10, m_all, ranks10, ranks_all, extras, sets10, all_indices, pool)
    summary["popularity"] = multi_reference_summary(p10, p_all, pop10, pop_all, extras, sets10, all_indices, pool,
                                                    counts=False)
    return summary


def _check_extra_positives(extra_positives, gold: Sequence[str]) -> list[set[str]] | None:
    """One set per sample, as strings, without the sample's gold sticker (None stays None)."""
    if extra_positives is None:
        return None
    extra_positives = list(extra_positives)
    if len(extra_positives) != len(gold):
        raise ValueError(f"extra_positives has {len(extra_positives)} entries for {len(gold)} samples")
    return [{str(x) for x in (e or ())} - {g} for e, g in zip(extra_positives, gold)]


def multi_reference_rank(scores: Sequence[float], candidates: Sequence[str], gold: str, extras: set[str],
                         gold_rank: int, rng: random.Random) -> int:
    """Best rank among the positives (gold + `extras`) present in `candidates`.

    `gold_rank` is the sample's single-gold rank (ties already broken); with no extra positive
    among the candidates it is returned as is, so a sample without extras keeps its rank and a
    multi-reference rank is never worse than the single-gold one. Otherwise the best positive
    (highest score) is ranked among the non-positive candidates: 1 + how many score higher, ties
    with non-positives broken by `rng` (a tie between positives costs nothing).
    """
    present = [k for k, c in enumerate(candidates) if c in extras]
    if not present:
        return gold_rank
    positives = set(extras) | {gold}
    best = max(scores[k] for k in range(len(candidates)) if candidates[k] in positives)
    higher = tied = 0
    for c, s in zip(candidates, scores):
        if c in positives:
            continue
        higher += s > best
        tied += s == best
    rank = 1 + higher + (rng.randint(0, tied) if tied else 0)
    return min(rank, gold_rank)


def multi_reference_summary(ranks10: Sequence[int], ranks_all: Sequence[int] | None,
                            single10: Sequence[int], single_all: Sequence[int] | None,
                            extras: Sequence[set[str]], sets10: Sequence[list[str]],
                            all_indices: Sequence[int], pool: Sequence[str], counts: bool = True) -> dict:
    """R10@k / MRR10 (and RALL@k / MRRALL) of multi-reference ranks, with how many samples had extra
    positives in the pool (n_with_extra; n_extra_positives pairs, n_extra_not_in_pool ignored),
    within their 10-candidate set (n_with_extra_in_10) and among the whole-pool samples
    (n_with_extra_all); `improved_*` counts samples whose rank got better."""
    out = recall_mrr(ranks10, "10")
    out["n"] = len(ranks10)
    out["improved_10"] = sum(m < r for m, r in zip(ranks10, single10))
    if ranks_all is not None:
        out.update(recall_mrr(ranks_all, "ALL"))
        out["n_all"] = len(ranks_all)
        out["improved_all"] = sum(m < r for m, r in zip(ranks_all, single_all))
    if counts:
        in_pool = set(pool)
        out["n_with_extra"] = sum(1 for e in extras if e & in_pool)
        out["n_extra_positives"] = sum(len(e & in_pool) for e in extras)
        out["n_extra_not_in_pool"] = sum(len(e - in_pool) for e in extras)
        out["n_with_extra_in_10"] = sum(1 for e, c in zip(extras, sets10) if e & set(c))
        if ranks_all is not None:
            out["n_with_extra_all"] = sum(1 for i in all_indices if extras[i] & in_pool)
    return out
