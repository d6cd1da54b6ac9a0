"""The ranking as the page shows it: gallery tiles and an HTML table with a score-breakdown bar.

Pure functions of :func:`demo.service.ranked_to_json` rows (no gradio): the rank tab
(:mod:`demo.rank_tab`) sends only the rows on show (the top ``shown``), as one small HTML
string, and the gallery tiles point at cached thumbnails the browser already has.

A row's score is ``cross + text + prior`` (``core.serving.scoring.ScoreBreakdown``): the
cross-encoder's share, the text scorer's share (both read the dialogue) and the popularity
prior's (it does not). The bar draws the three from a zero line, positive shares to the right,
negative ones to the left, all rows on one scale; a prior that the ranking leaves out ("rank
without the prior") is drawn faded.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Sequence
from html import escape

from core.serving.labels import emotion_display, emotion_legend

__all__ = ["EMPTY_TILES", "EMPTY_VIEW", "preload_html", "ranking_html", "shares", "tiles_html", "view_token"]

PARTS = (("cross", "cross-encoder / 模型"), ("text", "text scorer / 文本"), ("prior", "prior / 先验"))
EMPTY_VIEW = ("<div class='rank-view rank-empty' data-view=''>Rank a dialogue to see the stickers here. "
              "/ 排序后在此显示结果。</div>")


def shares(row: dict, with_prior: bool = True) -> dict[str, float]:
    """The row's score by part: ``cross`` (the cross-encoder), ``text``, ``prior``."""
    counted_prior = float(row["prior"]) if with_prior else 0.0
    return {"cross": float(row["score"]) - float(row["text"]) - counted_prior, "text": float(row["text"]),
            "prior": float(row["prior"])}


def view_token(canonical_text: str, with_prior: bool, shown: int) -> str:
    """Names what a view shows (dialogue, prior switch, rows): the page's marker that it changed."""
    digest = hashlib.sha1(canonical_text.encode("utf-8")).hexdigest()[:10]
    return f"{digest}-{'p' if with_prior else 'np'}-{shown}"


EMPTY_TILES = "<div class='tiles-empty'>Ranked stickers, best first / 排序结果</div>"


def tiles_html(rows: Sequence[dict], shown: int, thumbnail: Callable[[str], str], *, token: str,
               gold_id: str | None = None) -> str:
    """The top ``shown`` rows as clickable tiles (thumbnail and caption), best first. The images
    are eager ``<img>`` of the thumbnails the page preloaded (:func:`preload_html`)."""
    tiles = []
    for row in rows[:shown]:
        gold = " ★gold" if row["sticker_id"] == gold_id else ""
        label = row["name"] or row["ocr"] or row["sticker_id"]
        caption = escape(f"#{row['rank']}{gold} · {row['score']:.2f} · {label}")
        tiles.append(f"<button class='thumbnail-item tile{' gold' if gold else ''}' data-sticker='"
                     f"{escape(row['sticker_id'])}' title='{caption}'><img src='/gradio_api/file="
                     f"{escape(thumbnail(row['sticker_id']))}' alt='{caption}'><span class='cap'>{caption}</span>"
                     "</button>")
    head = (f"<div class='tiles-head'>Ranked stickers, best first (top {len(tiles)}) / 排序结果 — click one to "
            "select it / 点选</div>")
    return f"<div class='tiles-view' data-view='{escape(token)}'>{head}<div class='tiles'>{''.join(tiles)}</div></div>"


def preload_html(paths: Sequence[str]) -> str:
    """Invisible ``<img>`` tags of every thumbnail, loaded with the page: the browser then has each
    tile in its image cache, and a ranking shows its tiles without fetching them."""
    tags = "".join(f"<img src='/gradio_api/file={escape(p)}' alt='' decoding='async'>" for p in paths)
    return f"<div class='thumb-preload' aria-hidden='true'>{tags}</div>"


def _bar(parts: dict[str, float], scale: float, with_text: bool, with_prior: bool) -> str:
    left, right = [], []
    for name, _ in PARTS:
        if name == "text" and not with_text:
            continue
        value = parts[name]
        width = min(100.0, abs(value) / scale * 100.0) if scale > 0 else 0.0
        faded = " faded" if name == "prior" and not with_prior else ""
        span = f"<span class='seg seg-{name}{faded}' style='width:{width:.1f}%'></span>"
        (right if value >= 0 else left).append(span)
    tip = " + ".join(f"{name} {parts[name]:+.2f}" for name, _ in PARTS if name != "text" or with_text)
    if not with_prior:
        tip += " (prior not counted / 不计先验)"
    return (f"<div class='sbar' title='{escape(tip)}'><span class='sbar-neg'>{''.join(reversed(left))}</span>"
            f"<span class='sbar-zero'></span><span class='sbar-pos'>{''.join(right)}</span></div>")


def _emotions(row: dict) -> str:
    lines = [f"{escape(emotion_display(e['emotion']))} {e['probability']:.0%}" for e in row["emotions"]]
    if not lines:
        return "—"
    return "<b>" + lines[0] + "</b>" + "".join(f"<br>{line}" for line in lines[1:])


def _legend(with_text: bool, with_prior: bool, emotion_names: Sequence[str]) -> str:
    parts = "".join(f"<span class='key'><span class='seg seg-{name}'></span>{escape(title)}</span>"
                    for name, title in PARTS if name != "text" or with_text)
    prior = "" if with_prior else " <i>Ranked without the prior (faded). / 排序不计先验（淡色）。</i>"
    emotions = " · ".join(f"{escape(c)} {escape(g)}" for c, g in emotion_legend(list(emotion_names)))
    emotion_line = f"<div>Emotions / 情绪: {emotions}</div>" if emotions else ""
    return f"<div class='rank-legend'><div>Score / 分数 = {parts}{prior}</div>{emotion_line}</div>"


def ranking_html(rows: Sequence[dict], shown: int, *, token: str, gold_id: str | None = None,
                 with_text: bool = True, with_prior: bool = True, emotion_names: Sequence[str] = (),
                 labelled: Collection[str] | None = None) -> str:
    """The top ``shown`` rows as an HTML table (``with_text=False``: no text-scorer column).
    ``labelled``: the stickers whose semantic label is computed (None: all); the others show "…"
    and the table is marked ``data-labels='pending'`` until they are."""
    top = list(rows[:shown])
    breakdown = [shares(r, with_prior) for r in top]
    scale = max((max(sum(v for v in b.values() if v > 0), -sum(v for v in b.values() if v < 0))
                 for b in breakdown), default=0.0)
    head = ["#", "sticker<br>表情", "score<br>分数", "breakdown<br>构成", "cross-enc.<br>模型"]
    head += ["text<br>文本"] if with_text else []
    head += ["prior<br>先验", "p(match)<br>匹配", "emotion (top 3)<br>情绪", "semantic label<br>语义标签",
             "OCR text<br>图中文字"]
    body, pending = [], False
    for row, parts in zip(top, breakdown):
        waiting = labelled is not None and row["sticker_id"] not in labelled
        pending = pending or waiting
        label = "…" if waiting else (escape(row["semantic_label"]) or "—")
        gold = row["sticker_id"] == gold_id
        name = f"{escape(row['name'])}<br><span class='sid'>{escape(row['sticker_id'])}</span>" if row["name"] \
            else escape(row["sticker_id"])
        cells = [f"{row['rank']}{' ★' if gold else ''}", name, f"{row['score']:.2f}",
                 _bar(parts, scale, with_text, with_prior), f"{parts['cross']:.2f}"]
        cells += [f"{parts['text']:.2f}"] if with_text else []
        cells += [f"{parts['prior']:.2f}", f"{row['probability']:.2f}", _emotions(row),
                  label, escape(row["ocr"]) or "—"]
        classes = ["num", "name", "num", "bar", "num"] + (["num"] if with_text else []) + \
            ["num", "num", "emo", "label", "ocr"]
        tds = "".join(f"<td class='{c}'>{v}</td>" for c, v in zip(classes, cells))
        body.append(f"<tr class='{'gold' if gold else ''}' data-sticker='{escape(row['sticker_id'])}'>{tds}</tr>")
    header = "".join(f"<th>{h}</th>" for h in head)
    count = (f"<div class='rank-count'>Showing the top {len(top)} of {len(rows)} / 显示前 {len(top)} 个，"
             f"共 {len(rows)} 个</div>")
    state = "pending" if pending else "done"
    return (f"<div class='rank-view' data-view='{escape(token)}' data-labels='{state}'>{_legend(with_text, with_prior, emotion_names)}"
            f"<div class='rank-scroll'><table class='rank-table'><thead><tr>{header}</tr></thead>"
            f"<tbody>{''.join(body)}</tbody></table></div>{count}</div>")
