"""`python -m train.fit_prior --checkpoint CKPT`: fit the popularity-prior weight on the valid split.

Counts come from the training split of DIR (the same split the model was trained on); the
weight w in `score + w * log(1 + count)` is chosen on the validation split's 10-candidate sets
(MRR10) and written to CKPT/sticker_prior.json. A text scorer in CKPT (train.text_scorer) is part of the
scores the weight is fitted on. w = 0 means the prior does not help. Stickers
held out of training (the hard split's) are not "known": they get the log of the mean count, their
expected count (core.serving.prior).
"""
from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

from core.data.mod import load_mod
from core.evaluation.metrics import candidate_sets
from core.serving.prior import PRIOR_FILE, StickerPrior, fit_weight
from core.serving.scoring import load_scorer, record_scoring_file

from .cli import add_sticker_ids_argument
from .paths import default_data_dir, default_feature_cache


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.fit_prior", description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--data")
    add_sticker_ids_argument(p, applies_to="DIR/dialogues.json (the numbering the checkpoint was trained with)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--seed", type=int, default=1, help="seed of the validation candidate sets")
    return p


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    mod = load_mod(Path(args.data) if args.data else default_data_dir(), seed=args.split_seed,
                   sticker_ids=args.sticker_ids)
    selector = load_scorer(args.checkpoint, mod.stickers, feature_cache=default_feature_cache, with_prior=False)
    bank = selector.bank
    counts = dict(Counter(r["sticker_id"] for r in mod.splits["train"]))
    valid = [dict(r) for r in mod.splits["valid"]]
    gold = [s["sticker_id"] for s in valid]
    sets = candidate_sets(gold, bank.ids, 10, args.seed)
    scorer = selector.pair_scorer(("cross", "text"))
    scores = [scorer(s, c) for s, c in zip(valid, sets)]
    known = [s for s in bank.ids if s not in set(mod.split_info.never_in_train)]  # the training candidates
    weight, table = fit_weight(counts, sets, scores, gold, known=known)
    StickerPrior(counts, weight, known).save(args.checkpoint)
    record_scoring_file(args.checkpoint, "prior", PRIOR_FILE)
    result = {"weight": weight, "valid_MRR10_by_weight": table, "n_valid": len(valid)}
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
