"""Word-saliency display helpers: token clean-up, HighlightedText values, a heat-map image."""
from __future__ import annotations

import io
import math
import os
import threading

from PIL import Image

__all__ = ["display_tokens", "font_families", "heatmap_image", "highlighted_value", "normalise_scores"]

_SPEAKERS = {"[speaker1]": "A:", "[speaker2]": "B:"}
_CJK_FONTS = ["WenQuanYi Micro Hei", "WenQuanYi Zen Hei", "Noto Sans CJK SC", "Noto Sans SC",
              "Source Han Sans SC", "Droid Sans Fallback", "SimHei", "Microsoft YaHei", "PingFang SC"]
_CJK_FONT_FILES = ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc", "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
                   "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc")  # Debian's packages
_mpl_lock = threading.Lock()  # pyplot state is global


def font_families() -> list[str]:
    """Font families for the heat map: an installed CJK font first, then DejaVu Sans.

    matplotlib caches the font list once; a CJK font installed after that (e.g. by
    scripts/setup.sh) is not in it, so known font files are added when no CJK family is found."""
    from matplotlib import font_manager

    available = {f.name for f in font_manager.fontManager.ttflist}
    if not available.intersection(_CJK_FONTS):
        for path in _CJK_FONT_FILES:
            if os.path.isfile(path):
                font_manager.fontManager.addfont(path)
        available = {f.name for f in font_manager.fontManager.ttflist}
    return [f for f in _CJK_FONTS if f in available] + ["DejaVu Sans"]


def display_tokens(pairs: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Word pieces made readable: ``▁`` → space, ``##`` joins, speaker tokens → ``A:``/``B:``."""
    out = []
    for i, (token, score) in enumerate(pairs):
        text = str(token)
        if text in _SPEAKERS:
            text = ("\n" if i else "") + _SPEAKERS[text] + " "
        elif text.startswith("##"):
            text = text[2:]
        elif text.startswith("▁"):
            text = (" " if i and not out[-1][0].endswith((" ", "\n")) else "") + text[1:]
        if text:
            out.append((text, float(score)))
    return out


def normalise_scores(scores: list[float]) -> list[float]:
    """Scores divided by the largest magnitude (to [-1, 1]; all zero stays zero)."""
    finite = [s if math.isfinite(s) else 0.0 for s in scores]
    peak = max((abs(s) for s in finite), default=0.0)
    return [s / peak if peak > 0 else 0.0 for s in finite]


def highlighted_value(pairs: list[tuple[str, float]]) -> list[tuple[str, float | None]]:
    """Value for ``gr.HighlightedText``: (text, score in [-1, 1]) per token; blanks unhighlighted."""
    tokens = display_tokens(pairs)
    return [(text, round(score, 3) if text.strip() else None)
            for (text, _), score in zip(tokens, normalise_scores([s for _, s in tokens]))]


def heatmap_image(pairs: list[tuple[str, float]], title: str = "", per_row: int = 12) -> Image.Image:
    """A heat map of token saliency (rows of ``per_row`` tokens, cell colour = score)."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    tokens = [(t.strip() or "␣", s) for t, s in display_tokens(pairs)] or [("(no tokens)", 0.0)]
    scores = normalise_scores([s for _, s in tokens])
    signed = any(s < 0 for s in scores)
    n_rows = math.ceil(len(tokens) / per_row)
    with _mpl_lock:
        with plt.rc_context({"font.family": font_families(), "axes.unicode_minus": False}):
            fig, ax = plt.subplots(figsize=(min(12, 0.9 * per_row + 1), 0.55 * n_rows + 0.9), dpi=100)
            cmap = plt.get_cmap("RdBu_r" if signed else "Reds")
            grid = [[math.nan] * per_row for _ in range(n_rows)]
            for i, score in enumerate(scores):
                grid[i // per_row][i % per_row] = score
            import numpy as np

            data = np.ma.masked_invalid(np.array(grid, dtype=float))
            image = ax.imshow(data, cmap=cmap, vmin=-1 if signed else 0, vmax=1, aspect="auto")
            for i, (text, _) in enumerate(tokens):
                score = scores[i]
                shown = text if len(text) <= 8 else text[:7] + "…"
                ax.text(i % per_row, i // per_row, shown, ha="center", va="center", fontsize=10,
                        color="white" if abs(score) > 0.6 else "black")
            ax.set_xticks([])
            ax.set_yticks([])
            if title:
                ax.set_title(title, fontsize=10)
            fig.colorbar(image, ax=ax, fraction=0.025, pad=0.01)
            fig.tight_layout()
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            plt.close(fig)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
