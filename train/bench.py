"""`python -m train.bench`: how fast the selector ranks every sticker on this CPU.

    python -m train.bench --data DIR [--dialogues FILE] [--n N] [--output FILE.json]

For the default model (or --checkpoint) and DIR's stickers, over N real dialogues (default
60, seeded; from --dialogues, else DIR's easy and hard test splits), in one run:
- exhaustive: the paper's way, one full cross-encoder sequence per sticker (batched);
- fast: the path the demo uses (for a late-interaction model: the dialogue encoded once and one
  last layer per sticker, core.serving.fast_ranking);
each a full ranking of every sticker (scores, prior, sort): p50/p95 ms per dialogue, RALL@1/5
and MRRALL of both, and the share of dialogues whose top-10 (in order) is identical.
Also: the demo's ranking call (with semantic labels for its top 30), gradient saliency for one
sticker, Integrated Gradients (32 steps), training throughput of the full multitask objective
(paper layout vs late interaction, binary vs in-batch match loss), peak RSS, and the demo's cold start
(a new `python -m demo` process until its first /rank answer: the median of 3 starts with its
caches filled, and one first start with empty caches; --no-cold-start skips it).
Prints a table; writes JSON (fast_p50_ms, fast_p95_ms, exhaustive_p50_ms, top10_agreement,
rall5_fast, rall5_exhaustive, mrrall_fast, mrrall_exhaustive, peak_rss_mb, n, and more).
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch

from core.evaluation.metrics import percentile
from core.model.checkpoint import load_selector
from core.model.config import SelectorConfig
from core.data.mod import Turn, load_mod, samples_from_file
from core.serving.fast_ranking import part_cache_beside
from core.model.features import PairEncoder
from core.serving.inference import StickerSelector
from core.training.objective import MultitaskObjective
from core.model.sticker_bank import build_sticker_bank

from .cli import add_sticker_ids_argument, dialogue_numberings
from .paths import (DEFAULT_MODEL_DIR, default_data_dir, default_feature_cache, default_lexicon,
                    print_and_write_json, REPO)



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="folder with stickers/, img2id.json, ocr.json (default ../shared/data/mod)")
    p.add_argument("--dialogues", help="MOD-format dialogue file (default: DIR's easy + hard test splits)")
    add_sticker_ids_argument(p, applies_to="the --dialogues file when one is given (DIR/dialogues.json, read "
                                           "for the split, is then official), else to DIR/dialogues.json")
    p.add_argument("--n", type=int, default=60, help="dialogues to time (default 60)")
    p.add_argument("--output", help="write the JSON here too")
    p.add_argument("--checkpoint", default=str(DEFAULT_MODEL_DIR))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--saliency-n", type=int, default=10, help="dialogues for the saliency timings")
    p.add_argument("--train-steps", type=int, default=4, help="timed training steps per variant (0 skips)")
    p.add_argument("--batch-size", type=int, default=16, help="training batch for the throughput figure")
    p.add_argument("--feature-cache", help="safetensors file caching image features (default: the user cache)")
    p.add_argument("--no-cold-start", dest="cold_start", action="store_false")
    p.add_argument("--cold-start-runs", type=int, default=3,
                   help="demo starts with filled caches (median reported; default 3), plus one with empty caches")
    return p


def turns_of(sample: dict) -> list[Turn]:
    return [Turn(speaker, text) for speaker, text in zip(sample["speakers"], sample["texts"])]


def full_ranking(selector: StickerSelector, turns: list[Turn], exhaustive: bool) -> list[str]:
    """Every sticker, best first (scores, emotions, the popularity prior, sort; no semantic labels)."""
    return [r.sticker_id for r in selector.rank(turns, semantic_top_k=0, exhaustive=exhaustive)]


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, 1000.0 * (time.perf_counter() - start)


def ranking_metrics(ranks: list[int]) -> dict:
    n = max(len(ranks), 1)
    return {"rall1": 100.0 * sum(r <= 1 for r in ranks) / n, "rall5": 100.0 * sum(r <= 5 for r in ranks) / n,
            "mrrall": 100.0 * sum(1.0 / r for r in ranks) / n}


def bench_ranking(selector: StickerSelector, samples: list[dict]) -> dict:
    for exhaustive in (False, True):  # warm-up (first calls allocate, fill caches)
        full_ranking(selector, turns_of(samples[0]), exhaustive)
    fast_ms, exhaustive_ms, demo_ms = [], [], []
    fast_ranks, exhaustive_ranks, same_top10 = [], [], 0
    for sample in samples:
        turns = turns_of(sample)
        fast, ms = timed(full_ranking, selector, turns, False)
        fast_ms.append(ms)
        slow, ms = timed(full_ranking, selector, turns, True)
        exhaustive_ms.append(ms)
        _, ms = timed(selector.rank, turns)  # what the demo calls: + semantic labels of its top 30
        demo_ms.append(ms)
        fast_ranks.append(fast.index(sample["sticker_id"]) + 1)
        exhaustive_ranks.append(slow.index(sample["sticker_id"]) + 1)
        same_top10 += fast[:10] == slow[:10]
    fast_m, slow_m = ranking_metrics(fast_ranks), ranking_metrics(exhaustive_ranks)
    return {
        "fast_p50_ms": percentile(fast_ms, 0.5), "fast_p95_ms": percentile(fast_ms, 0.95),
        "exhaustive_p50_ms": percentile(exhaustive_ms, 0.5), "exhaustive_p95_ms": percentile(exhaustive_ms, 0.95),
        "demo_rank_p50_ms": percentile(demo_ms, 0.5), "demo_rank_p95_ms": percentile(demo_ms, 0.95),
        "top10_agreement": same_top10 / len(samples),
        "rall1_fast": fast_m["rall1"], "rall1_exhaustive": slow_m["rall1"],
        "rall5_fast": fast_m["rall5"], "rall5_exhaustive": slow_m["rall5"],
        "mrrall_fast": fast_m["mrrall"], "mrrall_exhaustive": slow_m["mrrall"],
        "fast_path": "late-interaction" if selector.fast is not None else "none (model has full attention)",
    }


def bench_saliency(selector: StickerSelector, samples: list[dict]) -> dict:
    gradient_ms, ig_ms, ig_updates = [], [], []
    for i, sample in enumerate(samples):
        turns = turns_of(sample)
        _, ms = timed(selector.saliency, turns, sample["sticker_id"], "gradient")
        gradient_ms.append(ms)
        if i < 3:
            updates = []
            _, ms = timed(selector.saliency, turns, sample["sticker_id"], "integrated_gradients", n_steps=32,
                          progress=lambda fraction, _: updates.append(fraction))
            ig_ms.append(ms)
            ig_updates.append(len(updates))
    return {"saliency_gradient_p50_ms": percentile(gradient_ms[1:] or gradient_ms, 0.5),
            "saliency_gradient_p95_ms": percentile(gradient_ms[1:] or gradient_ms, 0.95),
            "saliency_ig32_p50_ms": percentile(ig_ms, 0.5), "saliency_ig32_progress_updates": min(ig_updates or [0])}


def bench_training(checkpoint: str, mod, cache, steps: int, batch_size: int, seed: int) -> dict:
    """Samples/s of the full multitask objective (forward, backward, AdamW step) with the
    checkpoint's weights: full attention + binary match loss (the paper, and this project before
    the speed work), late interaction + binary, late interaction + in-batch match loss (the
    shipped model's recipe)."""
    train = [dict(r) for r in mod.splits["train"]]
    counts = dict(Counter(s["sticker_id"] for s in train))
    out = {}
    variants = (("full_attention", False, "binary"), ("late_interaction", True, "binary"),
                ("late_interaction_in_batch", True, "in_batch"))
    for name, late, match_loss in variants:
        model, tokenizer = load_selector(checkpoint)
        model.config.late_interaction = late
        encoder = PairEncoder(tokenizer, model.config)
        bank = build_sticker_bank(mod.stickers, cache, encoder, model.config.semantic_source, mod.emotion_labels)
        objective = MultitaskObjective(model, encoder, bank, gold_counts=counts, match_loss=match_loss)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        model.train()
        rng = random.Random(seed)
        times = []
        for step in range(steps + 1):  # the first step warms up
            batch = rng.sample(train, batch_size)
            start = time.perf_counter()
            losses = objective(batch, torch.Generator().manual_seed(step))
            losses["loss"].backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            times.append(time.perf_counter() - start)
        out[f"train_samples_per_s_{name}"] = batch_size * steps / sum(times[1:])
    return out


COLD_START_TIMEOUT_S = 180


def demo_start(checkpoint: str, data_dir: Path, feature_cache: str,
               sticker_ids: str = "official") -> tuple[float, float]:
    """(seconds until the page is served, until the first /rank answer) of a new `python -m demo`."""
    import tempfile

    import gradio_client

    from demo.launcher import free_port, wait_until_serving

    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        log = open(Path(tmp) / "demo.log", "wb")
        start = time.monotonic()
        process = subprocess.Popen(
            [sys.executable, "-m", "demo", "--port", str(port), "--checkpoint", checkpoint, "--data", str(data_dir),
             "--annotations", "off", "--user-stickers", "off", "--ocr", "off",
             "--feature-cache", feature_cache, "--sticker-ids", sticker_ids],
            cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/"
            wait_until_serving(process, url, COLD_START_TIMEOUT_S, interval=0.05,
                               describe=lambda: (Path(tmp) / "demo.log").read_text(errors="replace")[-2000:])
            served = time.monotonic() - start
            client = gradio_client.Client(url, verbose=False)
            client.predict("今天好累啊\n早点休息吧", api_name="/rank")
            first = time.monotonic() - start
        finally:
            process.terminate()
            process.wait(timeout=30)
            log.close()
    return served, first


def bench_cold_start(checkpoint: str, data_dir: Path, feature_cache: str, runs: int = 3,
                     sticker_ids: str = "official") -> dict:
    """The demo's cold start: a new process until its first /rank answer, `runs` times with the
    caches it keeps in runs/demo between starts already filled by this run (the median is
    `cold_start_s`), and once with empty caches (its very first start on a machine)."""
    import tempfile

    starts = [demo_start(checkpoint, data_dir, feature_cache, sticker_ids) for _ in range(runs)]
    with tempfile.TemporaryDirectory() as tmp:
        _, first_ever = demo_start(checkpoint, data_dir, str(Path(tmp) / "features.safetensors"), sticker_ids)
    return {"cold_start_s": statistics.median(f for _, f in starts),
            "cold_start_page_s": statistics.median(s for s, _ in starts),
            "cold_start_runs_s": [round(f, 2) for _, f in starts],
            "cold_start_empty_caches_s": first_ever}


def run(args) -> dict:
    torch.set_num_threads(args.threads)
    data_dir = Path(args.data) if args.data else default_data_dir()
    lexicon = default_lexicon()
    split_ids, file_ids = dialogue_numberings(args)
    mod = load_mod(data_dir, lexicon_path=lexicon if lexicon and Path(lexicon).exists() else None,
                   sticker_ids=split_ids)
    feature_cache = args.feature_cache or str(default_feature_cache(SelectorConfig.load(
        Path(args.checkpoint) / "config.json").image_encoder))
    start = time.perf_counter()
    selector = StickerSelector.load(args.checkpoint, stickers=mod.stickers, device="cpu",
                                    feature_cache_path=feature_cache,
                                    part_cache_path=part_cache_beside(feature_cache))  # the demo's caches, filled
    load_s = time.perf_counter() - start
    if args.dialogues:
        samples = samples_from_file(args.dialogues, mod.stickers, sticker_ids=file_ids)
    else:
        samples = [dict(r) for split in ("easy_test", "hard_test") for r in mod.splits[split]]
    samples = [s for s in samples if s["sticker_id"] in selector.bank.index]
    if not samples:
        raise SystemExit("no dialogues whose gold sticker is in the sticker set")
    samples = random.Random(args.seed).sample(samples, min(args.n, len(samples)))
    result = {"n": len(samples), "stickers": len(selector.bank.ids), "threads": args.threads,
              "checkpoint": str(args.checkpoint), "selector_load_s": load_s}
    result.update(bench_ranking(selector, samples))
    result.update(bench_saliency(selector, samples[: args.saliency_n]))
    if args.train_steps:
        result.update(bench_training(args.checkpoint, mod, selector.features, args.train_steps,
                                     args.batch_size, args.seed))
    if args.cold_start:
        result.update(bench_cold_start(str(args.checkpoint), data_dir, feature_cache, args.cold_start_runs,
                                       sticker_ids=split_ids))
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return result


def table(result: dict) -> str:
    rows = [("full ranking, fast path", "fast_p50_ms", "fast_p95_ms"),
            ("full ranking, exhaustive", "exhaustive_p50_ms", "exhaustive_p95_ms"),
            ("demo rank() (+ semantic labels, top 30)", "demo_rank_p50_ms", "demo_rank_p95_ms"),
            ("saliency, gradient (1 sticker)", "saliency_gradient_p50_ms", "saliency_gradient_p95_ms"),
            ("saliency, Integrated Gradients (32 steps)", "saliency_ig32_p50_ms", None)]
    lines = [f"n={result['n']} dialogues x {result['stickers']} stickers, {result['threads']} threads, "
             f"fast path: {result['fast_path']}", "", "| what | p50 ms | p95 ms |", "|---|---|---|"]
    for label, p50, p95 in rows:
        lines.append(f"| {label} | {result[p50]:.1f} | {result[p95]:.1f} |" if p95 else
                     f"| {label} | {result[p50]:.1f} | |")
    lines += ["", "| ranking | RALL@1 | RALL@5 | MRRALL |", "|---|---|---|---|"]
    for name in ("fast", "exhaustive"):
        lines.append(f"| {name} | {result['rall1_' + name]:.2f} | {result['rall5_' + name]:.2f} | "
                     f"{result['mrrall_' + name]:.2f} |")
    lines.append(f"\ntop-10 identical: {100 * result['top10_agreement']:.1f}% of dialogues")
    for key in ("train_samples_per_s_full_attention", "train_samples_per_s_late_interaction",
                "train_samples_per_s_late_interaction_in_batch"):
        if key in result:
            lines.append(f"{key}: {result[key]:.2f}")
    for key in ("selector_load_s", "cold_start_page_s", "cold_start_s", "cold_start_empty_caches_s"):
        if key in result:
            lines.append(f"{key}: {result[key]:.2f}")
    if "cold_start_runs_s" in result:
        lines.append(f"cold_start_runs_s: {result['cold_start_runs_s']}")
    lines.append(f"peak_rss_mb: {result['peak_rss_mb']:.0f}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    args = build_parser().parse_args(argv)
    result = run(args)
    print(table(result))
    print_and_write_json(result, args.output)
    return result


if __name__ == "__main__":
    main()
