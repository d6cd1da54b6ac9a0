"""`python -m train.evaluate`: score every sample of a MOD-format dialogue file.

    python -m train.evaluate --checkpoint CKPT --data DIR [--dialogues FILE]
                             [--candidates 10|all] [--seed S] [--output FILE.json]

Prints JSON: R10@1, R10@2, R10@5, MRR10, RALL@1, RALL@2, RALL@5, MRRALL (x100), n, the same
keys for a popularity ranker fitted on the training split of DIR's own dialogues under
"popularity", and per-sticker macro R10@1 under "macro_R10@1". Without --checkpoint it uses
the default model in assets/. Without --dialogues it scores DIR's easy and hard test splits.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core.checkpoint import load_selector
from core.data import load_mod, samples_from_file
from core.evaluation import evaluate, score_candidates
from core.features import PairEncoder
from core.image_encoder import FeatureCache, create_image_encoder
from core.sticker_bank import build_sticker_bank

from .paths import DEFAULT_MODEL_DIR, default_data_dir, default_feature_cache


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_MODEL_DIR), help="model folder (default: assets/)")
    p.add_argument("--data", help="folder with stickers/, img2id.json, ocr.json (default ../shared/data/mod)")
    p.add_argument("--dialogues", help="MOD-format dialogue file; every sample in it is scored")
    p.add_argument("--candidates", choices=["10", "all"], default="all")
    p.add_argument("--seed", type=int, default=0, help="fixes the 10-candidate sets")
    p.add_argument("--split-seed", type=int, default=0, help="split of DIR's dialogues (popularity fit)")
    p.add_argument("--all-limit", type=int, help="rank against every sticker for only this many seeded samples")
    p.add_argument("--output", help="write the JSON here too")
    p.add_argument("--feature-cache", help="safetensors file caching image features")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int)
    return p


def make_scorer(model, encoder, bank, batch_size: int):
    def score(sample: dict, candidates: list[str]) -> list[float]:
        context = encoder.context_ids(sample["speakers"], sample["texts"])
        rows = [bank.position(c) for c in candidates]
        return score_candidates(model, encoder, bank, context, rows, batch_size).tolist()
    return score


def run(args) -> dict:
    data_dir = Path(args.data) if args.data else default_data_dir()
    model, tokenizer = load_selector(args.checkpoint, device="cuda" if torch.cuda.is_available() else "cpu")
    encoder = PairEncoder(tokenizer, model.config)
    mod = load_mod(data_dir, seed=args.split_seed)  # the training split fits the popularity floor
    train_gold = [r["sticker_id"] for r in mod.splits["train"]]
    image_encoder = create_image_encoder(model.config.image_encoder)
    cache = FeatureCache(image_encoder, args.feature_cache or default_feature_cache(image_encoder.name))
    bank = build_sticker_bank(mod.stickers, cache, encoder, model.config.semantic_source)
    scorer = make_scorer(model, encoder, bank, args.batch_size)
    if args.dialogues:
        named = {"dialogues": samples_from_file(args.dialogues, mod.stickers)}
    else:
        named = {split: [dict(r) for r in mod.splits[split]] for split in ("easy_test", "hard_test")}
    results = {}
    for name, samples in named.items():
        if not samples:
            raise SystemExit(f"no scorable samples in {name} ({args.dialogues or data_dir})")
        bar = tqdm(total=len(samples), desc=f"score {name}", file=sys.stderr)
        results[name] = evaluate(scorer, samples, bank.ids, train_gold, seed=args.seed,
                                 candidates=args.candidates, all_limit=args.all_limit,
                                 progress=lambda i, n: bar.update(1))
        bar.close()
    result = results["dialogues"] if args.dialogues else results
    return result


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.WARNING)
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(text, encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
