"""`python -m train.tradeoff`: how a scorer trades seen stickers against unseen ones.

    python -m train.tradeoff [--checkpoint CKPT] [--data DIR] [--offsets -1 -0.5 0 0.5 1 2 4]
                             [--output FILE.json]

One scorer serves stickers seen in training and stickers it never saw (held out, or added later).
What decides how the two kinds compare is the popularity prior's value for a sticker unknown to
training (core.serving.prior: by default log(1 + the known stickers' mean count)). This entry
point moves that value by each offset δ (in log-prior units, times the prior's weight in the
score), everything else of CKPT unchanged, and reports on `valid` / `valid_hard` (what weights are
chosen on: mean MRR10 over 10-candidate sets of seeds 1, 2, as train.text_scorer does) and on the
easy / hard test splits (R10@1 and RALL@5 as train.evaluate computes them, seed 0), for the
checkpoint's own prior rule and for both rules of core.serving.prior.

A large δ ranks a sticker first for being unseen: the hard split's gold is always unseen and most
of its negatives are seen, so hard R10@1 climbs towards what the dialogue decides among the unseen
candidates alone, while easy falls. The table shows where a single scorer can stand.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

from core.data.mod import load_mod
from core.evaluation.metrics import candidate_sets, expected_reciprocal_rank
from core.evaluation.protocol import evaluate
from core.serving.prior import UNKNOWN_RULES
from core.serving.scoring import load_scorer

from .cli import add_sticker_ids_argument
from .paths import DEFAULT_MODEL_DIR, default_data_dir, default_feature_cache, print_and_write_json

SPLITS = ("valid", "valid_hard", "easy_test", "hard_test")
VALID_SEEDS = (1, 2)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.tradeoff", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_MODEL_DIR), help="selector with a prior (default: the shipped model)")
    p.add_argument("--data")
    add_sticker_ids_argument(p, applies_to="DIR/dialogues.json")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--offsets", type=float, nargs="+", default=[-1.0, -0.5, 0.0, 0.5, 1.0, 2.0, 4.0],
                   help="added to the log prior of stickers unknown to training")
    p.add_argument("--feature-cache", help="safetensors file caching image features")
    p.add_argument("--output", help="write the JSON here too")
    return p


def score_tables(scorer, samples: dict[str, list[dict]]) -> dict[str, torch.Tensor]:
    """{split: (N, P)} the dialogue-dependent score (cross-encoder + text scorer shares) of every sticker."""
    rows = list(range(len(scorer.bank.ids)))
    scorer.prepare_dialogues([s["texts"] for split in samples.values() for s in split])
    return {name: torch.stack([scorer.score(s["speakers"], s["texts"], rows).sum(("cross", "text")) for s in split])
            for name, split in samples.items()}


def valid_mrr(table: torch.Tensor, samples: list[dict], pool: list[str]) -> float:
    """Mean MRR10 over the 10-candidate sets of VALID_SEEDS (ties broken at random, in expectation), as
    train.text_scorer chooses weights."""
    index = {sid: i for i, sid in enumerate(pool)}
    gold = [s["sticker_id"] for s in samples]
    rows, columns, gold_column = [], [], []
    for seed in VALID_SEEDS:
        for i, candidates in enumerate(candidate_sets(gold, pool, 10, seed)):
            rows.append(i)
            columns.append([index[c] for c in candidates])
            gold_column.append(candidates.index(gold[i]))
    scores = table[torch.tensor(rows).unsqueeze(1), torch.tensor(columns)]                 # (M, 10)
    return 100.0 * float(expected_reciprocal_rank(scores, torch.tensor(gold_column)))


def frontier(tables, samples, pool, prior, offsets, train_gold) -> list[dict]:
    """One row per offset: the validation objective and the test metrics."""
    index = {sid: i for i, sid in enumerate(pool)}
    out = []
    for offset in offsets:
        log_prior = torch.tensor([prior.log_prior(s) + (offset if prior.is_unknown(s) else 0.0) for s in pool])
        shares = prior.weight * log_prior                                              # (P,)
        row = {"offset": offset}
        for split, split_samples in samples.items():
            table = tables[split] + shares
            if split.startswith("valid"):
                row[f"{split}_MRR10"] = round(valid_mrr(table, split_samples, pool), 2)
                continue
            own = {s["sample_id"]: table[i] for i, s in enumerate(split_samples)}
            result = evaluate(lambda s, c: [float(own[s["sample_id"]][index[x]]) for x in c], split_samples, pool,
                              train_gold, seed=0, candidates="all")
            row[split] = {k: round(result[k], 2) for k in ("R10@1", "MRR10", "RALL@5")}
            row[split]["popularity_R10@1"] = round(result["popularity"]["R10@1"], 2)
        row["valid_mean_MRR10"] = round((row["valid_MRR10"] + row["valid_hard_MRR10"]) / 2, 2)
        out.append(row)
    return out


def run(args) -> dict:
    mod = load_mod(Path(args.data) if args.data else default_data_dir(), seed=args.split_seed,
                   sticker_ids=args.sticker_ids)
    scorer = load_scorer(args.checkpoint, mod.stickers, feature_cache=args.feature_cache or default_feature_cache)
    if scorer.prior is None or not scorer.prior.weight:
        raise SystemExit(f"{args.checkpoint} has no prior with a weight: nothing decides how seen and unseen compare")
    pool = list(scorer.bank.ids)
    samples = {split: [dict(r) for r in mod.splits[split] if r["sticker_id"] in scorer.bank.index] for split in SPLITS}
    train_gold = [r["sticker_id"] for r in mod.splits["train"]]
    tables = score_tables(scorer, samples)
    rules = {}
    for rule in UNKNOWN_RULES:
        prior = replace(scorer.prior, unknown=rule)
        rules[rule] = {"unknown_log_prior": round(prior.unknown_log_prior, 4),
                       "rows": frontier(tables, samples, pool, prior, args.offsets, train_gold)}
    return {"checkpoint": str(args.checkpoint), "prior_weight": scorer.prior.weight,
            "checkpoint_rule": scorer.prior.unknown, "unknown_stickers": sum(scorer.prior.is_unknown(s) for s in pool),
            "n": {split: len(rows) for split, rows in samples.items()}, "rules": rules}


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    result = run(args)
    print_and_write_json(result, args.output)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
