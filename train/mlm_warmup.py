"""`python -m train.mlm_warmup`: warm up the backbone and its (new) MLM head on informal Chinese.

The e5 checkpoint has no MLM head, so the masked-context task starts from a random one. This
trains BERT + the tied MLM head with BERT masking on lines of ../shared/data/zh_corpus and the
training split's MOD dialogues, and reports the masked-token loss on the validation dialogues
before and after. Train from it with `python -m train --init-from OUTPUT`.

    python -m train.mlm_warmup --output runs/mlm_warmup --steps 150
"""
from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core.model.checkpoint import save_selector
from core.model.features import mask_context
from core.model.mmbert import IGNORE_INDEX
from core.training.loop import seeded_generator

from .paths import shared_data_dir
from .options import build_model, parse_args as parse_train_args, prepare_data

log = logging.getLogger("train.mlm_warmup")


def corpus_lines(limit: int, seed: int) -> list[str]:
    root = shared_data_dir() / "zh_corpus"
    lines = []
    for path in sorted(root.glob("*.txt")) + sorted((root / "subtitles").glob("*.conv")):
        with open(path, encoding="utf-8", errors="replace") as handle:
            for line in handle:
                line = line.strip().removeprefix("M ").strip()
                if 4 <= len(line) <= 200 and line != "E":
                    lines.append(line)
    random.Random(seed).shuffle(lines)
    return lines[:limit]


class _Positions:
    def __init__(self, positions):
        self.context_positions = positions


def mlm_batch(tokenizer, texts: list[str], max_length: int, special: list[int], generator):
    rows = [[tokenizer.cls_token_id] + tokenizer(t, add_special_tokens=False)["input_ids"][: max_length - 2]
            + [tokenizer.sep_token_id] for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r)
        mask[i, :len(r)] = 1
    positions = [_Positions(list(range(1, len(r) - 1))) for r in rows]
    masked, labels = mask_context(ids, positions, 0.15, tokenizer.mask_token_id, len(tokenizer), generator, special)
    return masked, mask, labels


def mlm_loss(model, ids, mask, labels) -> torch.Tensor:
    hidden = model.bert(input_ids=ids, attention_mask=mask)   # (B, T, H)
    logits = model.mlm_head(hidden[labels != IGNORE_INDEX])                     # (N, V)
    return torch.nn.functional.cross_entropy(logits, labels[labels != IGNORE_INDEX])


@torch.no_grad()
def held_out_loss(model, tokenizer, texts, max_length, special) -> float:
    model.eval()
    losses = []
    for start in range(0, len(texts), 32):
        ids, mask, labels = mlm_batch(tokenizer, texts[start:start + 32], max_length, special,
                                      seeded_generator(7, start))
        losses.append(mlm_loss(model, ids, mask, labels).item())
    model.train()
    return sum(losses) / max(len(losses), 1)


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    p = argparse.ArgumentParser(prog="python -m train.mlm_warmup", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/mlm_warmup")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--corpus-lines", type=int, default=20000)
    p.add_argument("--threads", type=int)
    args, train_flags = p.parse_known_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    train_args = parse_train_args(train_flags)  # the same recipe/backbone/vocabulary as `python -m train`
    mod = prepare_data(train_args)
    model, tokenizer = build_model(train_args, mod, feature_dim=1280)
    special = sorted(set(tokenizer.all_special_ids))
    max_length = model.config.max_length
    train_dialogues = [t for r in mod.splits["train"] for t in r["texts"]]
    valid_dialogues = [" ".join(r["texts"][-3:]) for r in mod.splits["valid"]]
    texts = corpus_lines(args.corpus_lines, train_args.seed) + train_dialogues
    random.Random(train_args.seed).shuffle(texts)
    before = held_out_loss(model, tokenizer, valid_dialogues, max_length, special)
    optimizer = torch.optim.AdamW(list(model.bert.parameters()) + list(model.mlm_head.parameters()), lr=args.lr)
    model.train()
    for step in tqdm(range(args.steps), desc="mlm warm-up"):
        batch = [texts[(step * args.batch_size + i) % len(texts)] for i in range(args.batch_size)]
        loss = mlm_loss(model, *mlm_batch(tokenizer, batch, max_length, special, seeded_generator(3, step)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    after = held_out_loss(model, tokenizer, valid_dialogues, max_length, special)
    result = {"valid_mlm_loss_before": before, "valid_mlm_loss_after": after, "steps": args.steps,
              "batch_size": args.batch_size, "texts": len(texts)}
    save_selector(Path(args.output), model, tokenizer, result)
    (Path(args.output) / "warmup.json").write_text(json.dumps(result, indent=2))
    log.info("held-out masked-token loss %.3f -> %.3f", before, after)
    return result


if __name__ == "__main__":
    main()
