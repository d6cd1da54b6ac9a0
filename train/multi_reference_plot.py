"""`python -m train.multi_reference_plot EVAL.json OUT.png`: single-gold vs multi-reference bars.

EVAL.json is the output of `python -m train.evaluate ... --extra-positives EXPORT --output EVAL.json`
(easy_test / hard_test, or a single --dialogues result). One panel per split: R10@1, MRR10,
RALL@1/2/5 and MRRALL with the gold sticker only, and with the stickers annotators accepted too.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("R10@1", "MRR10", "RALL@1", "RALL@2", "RALL@5", "MRRALL")


def plot(result: dict, path: str | Path, title: str | None = None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    splits = [s for s in ("easy_test", "hard_test") if s in result] or [None]
    fig, axes = plt.subplots(1, len(splits), figsize=(5.4 * len(splits), 3.7), sharey=True, squeeze=False)
    for ax, split in zip(axes[0], splits):
        single = result[split] if split else result
        multi = single["multi_reference"]
        keys = [k for k in KEYS if k in single and k in multi]
        xs = range(len(keys))
        width = 0.38
        bars = [ax.bar([x - width / 2 for x in xs], [single[k] for k in keys], width, color="#9aa7b8",
                       label="gold sticker only"),
                ax.bar([x + width / 2 for x in xs], [multi[k] for k in keys], width, color="#2f6db5",
                       label="gold + stickers accepted in the demo")]
        for group in bars:
            for bar in group:
                ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.8, f"{bar.get_height():.1f}",
                        ha="center", va="bottom", fontsize=6.5)
        ax.set_xticks(list(xs))
        ax.set_xticklabels(keys, fontsize=8)
        name = (split or "dialogues").replace("_", " ")
        n_all = multi.get("n_all")
        flagged = multi.get("n_with_extra_all", multi.get("n_with_extra"))
        ax.set_title(f"{name}: n={multi['n']}" + (f", ALL on {n_all}" if n_all else "")
                     + f" ({flagged} with accepted flags)", fontsize=9)
        ax.set_ylim(0, 108)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("× 100")
    axes[0][0].legend(fontsize=7.5, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def main(argv=None) -> Path:
    p = argparse.ArgumentParser(prog="python -m train.multi_reference_plot", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result", help="train.evaluate JSON made with --extra-positives")
    p.add_argument("output", help="PNG to write")
    p.add_argument("--title")
    args = p.parse_args(argv)
    out = plot(json.loads(Path(args.result).read_text(encoding="utf-8")), args.output, args.title)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
