"""The "Error analysis" tab and the rank view's "why the pick over the gold" panel (gradio only;
the work is in :mod:`demo.analysis_service` and ``core``).

:func:`analysis_tab` ranks every sample of a test split (or an uploaded MOD-format dialogues file)
and shows the misses (gold not first: the gold's rank, the model's pick), recall per gold sticker
(R@1, R@5: the worst and best stickers as a bar plot) and the most frequent confusions
(gold → pick: plot and table). Clicking a miss loads its dialogue into the rank view, ranks it and
switches there (``demo.rank_tab.load_into_rank_view``). :func:`contrastive_panel` explains, for a
loaded example, why the model's pick scores above the gold sticker.
"""
from __future__ import annotations

import html
from types import SimpleNamespace
from typing import Any

import gradio as gr

from demo.analysis_service import UPLOAD, AnalysisService, Contrast, contrastive
from demo.app import KEEP, PRIVATE, STATUS, _handle_errors, _md_escape, _notes_md, _progress_fn
from demo.plots import font_families, highlighted_value
from demo.service import DemoService

__all__ = ["analysis_tab", "confusion_figure", "contrastive_panel", "misses_html", "recall_figure"]

MAX_MISSES_SHOWN = 300
PLOT_STICKERS = 10  # worst and best stickers in the recall plot
MISS_CLICK = ("element.addEventListener('click', (e) => { const tr = e.target.closest('tr[data-sample]');"
              " if (tr) trigger('click', {sample: tr.dataset.sample}); });")
CONTRAST_METHODS = [("Integrated Gradients / 积分梯度", "integrated_gradients"),
                    ("Gradient × input / 梯度×输入", "gradient")]


# --------------------------------------------------------------------------- formatting


def _name(service: DemoService, sticker_id: str, width: int = 10) -> str:
    try:
        info = service.info(sticker_id)
    except ValueError:  # a sticker the selector no longer knows
        return sticker_id
    name = info.name or info.ocr
    return f"{sticker_id} {name[:width]}" if name else sticker_id


def misses_html(service: DemoService, analysis: Any) -> str:
    """The misses as an HTML table, one clickable row per sample (``data-sample``)."""
    misses = analysis.misses
    if not misses:
        return "<p id='analysis-no-misses'>No misses: the gold sticker is first for every sample. / 全部命中。</p>"
    head = ("<tr><th>sample / 样本</th><th>gold / 标准答案</th><th>gold rank / 排名</th>"
            "<th>model's pick / 模型首选</th><th>last turn / 最后一句</th></tr>")
    body = []
    for s in misses[:MAX_MISSES_SHOWN]:
        last = " ".join(s.texts[-1].split()) if s.texts else ""
        body.append(f"<tr data-sample='{html.escape(s.sample_id, quote=True)}' style='cursor:pointer'>"
                    f"<td>{html.escape(s.sample_id)}</td><td>{html.escape(_name(service, s.gold))}</td>"
                    f"<td>{s.gold_rank} / {s.n_candidates}</td><td>{html.escape(_name(service, s.pick))}</td>"
                    f"<td>{html.escape(last[:40])}</td></tr>")
    more = (f"<p>Showing the worst {MAX_MISSES_SHOWN} of {len(misses)} misses.</p>"
            if len(misses) > MAX_MISSES_SHOWN else "")
    return (f"<div style='max-height:360px;overflow-y:auto'><table class='analysis-misses'>{head}{''.join(body)}"
            f"</table></div>{more}")


def _figure(height: float):
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, height), dpi=90)
    return figure, figure.add_subplot(1, 1, 1)


def recall_figure(service: DemoService, analysis: Any):
    """R@1 and R@5 of the worst and the best gold stickers (horizontal bars), a matplotlib Figure."""
    import matplotlib

    recall = analysis.recall()
    shown = recall if len(recall) <= 2 * PLOT_STICKERS else recall[:PLOT_STICKERS] + recall[-PLOT_STICKERS:]
    with matplotlib.rc_context({"font.family": font_families()}):
        figure, axes = _figure(1.2 + 0.32 * len(shown))
        positions = list(range(len(shown)))[::-1]
        axes.barh([p + 0.2 for p in positions], [r.recall_at_k for r in shown], height=0.4, label="R@5",
                  color="#9ecae1")
        axes.barh([p - 0.2 for p in positions], [r.recall_at_1 for r in shown], height=0.4, label="R@1",
                  color="#3182bd")
        axes.set_yticks(positions, [f"{_name(service, r.sticker_id, 6)} (n={r.n})" for r in shown], fontsize=8)
        axes.set_xlim(0, 1)
        axes.set_xlabel("recall")
        part = "all stickers" if len(shown) == len(recall) else f"worst {PLOT_STICKERS} (top), best {PLOT_STICKERS}"
        axes.set_title(f"Recall per gold sticker: {part}", fontsize=10)
        if len(shown) < len(recall):
            axes.axhline(PLOT_STICKERS - 0.5, color="#999", linewidth=0.8, linestyle="--")
        axes.legend(loc="lower right", fontsize=8)
        figure.tight_layout()
    return figure


def confusion_figure(service: DemoService, analysis: Any, top: int = 10):
    """The most frequent (gold → pick) pairs among the misses, a matplotlib Figure."""
    import matplotlib

    pairs = analysis.confusions(top)
    with matplotlib.rc_context({"font.family": font_families()}):
        figure, axes = _figure(1.2 + 0.32 * max(1, len(pairs)))
        positions = list(range(len(pairs)))[::-1]
        axes.barh(positions, [n for _, _, n in pairs], color="#e6550d")
        axes.set_yticks(positions, [f"{_name(service, g, 6)} → {_name(service, p, 6)}" for g, p, _ in pairs],
                        fontsize=8)
        axes.set_xlabel("misses")
        axes.set_title("Most frequent confusions (gold → model's pick)" if pairs else "No misses", fontsize=10)
        figure.tight_layout()
    return figure


def _summary_md(analysis: Any) -> str:
    s = analysis.summary
    skipped = (f" {len(analysis.skipped)} samples skipped (gold sticker not a candidate)."
               if analysis.skipped else "")
    line = (f"**{_md_escape(analysis.name)}**: {s['n']} samples ranked against every sticker; "
            f"R@1 {s['recall_at_1']:.3f}, R@5 {s['recall_at_5']:.3f}, MRR {s['mrr']:.3f}; "
            f"{s['misses']} misses.{skipped} Click a miss to open it in the rank view. / 点击一行在排序页打开。")
    return line + ("\n\n" + _notes_md(analysis.notes) if analysis.notes else "")


# --------------------------------------------------------------------------- the tab


def analysis_tab(service: DemoService, ui: SimpleNamespace, tabs: Any, *,
                 splits: dict[str, list[dict]] | None = None) -> AnalysisService:
    """Builds the tab (``tabs``: the page's ``gr.Tabs``, switched to the rank view on a click)."""
    from demo.rank_tab import load_into_rank_view

    analysis = AnalysisService(service, splits)
    sources = analysis.sources()
    with gr.Tab("Error analysis / 错误分析", id="analysis"):
        gr.Markdown("Rank every sample of a test split (or of an uploaded MOD-format dialogues file) and see "
                    "where the model goes wrong. / 对测试集的每个样本排序，查看模型的错误。")
        with gr.Row():
            source = gr.Radio(sources, value=sources[0][1], label="Samples / 样本", elem_id="analysis-source")
            upload = gr.File(label="MOD-format dialogues file (.json) / 对话文件", file_types=[".json"],
                             type="filepath", elem_id="analysis-upload")
        run = gr.Button("Analyse / 分析", variant="primary", elem_id="analysis-run")
        status = gr.Markdown("", elem_id="analysis-status")
        state = gr.State(None)
        misses = gr.HTML("", elem_id="analysis-misses", js_on_load=MISS_CLICK)
        with gr.Row():
            recall_plot = gr.Plot(label="Recall per gold sticker / 各表情召回率", elem_id="analysis-recall")
            confusion_plot = gr.Plot(label="Confusions / 混淆", elem_id="analysis-confusions")
        confusion_table = gr.Dataframe(headers=["gold / 标准答案", "model's pick / 模型首选", "misses / 次数"],
                                       interactive=False, elem_id="analysis-confusion-table")

    @_handle_errors(STATUS, KEEP, KEEP, KEEP, KEEP, KEEP)
    def on_run(source_value, upload_path, progress=gr.Progress()):
        if upload_path and source_value != UPLOAD and not analysis.splits:
            source_value = UPLOAD
        result = analysis.analyse(source_value, upload_path, progress=_progress_fn(progress))
        table = [[_name(service, g, 20), _name(service, p, 20), n] for g, p, n in result.confusions(20)]
        return (_summary_md(result), result, misses_html(service, result), recall_figure(service, result),
                confusion_figure(service, result), table)

    load_fn, load_outputs = load_into_rank_view(ui)

    def on_miss(result, no_prior, evt: gr.EventData):
        data = evt._data if isinstance(evt._data, dict) else {}
        try:
            text, key = analysis.load_miss(result, str(data.get("sample", "")))
        except ValueError as exc:  # DemoError: shown in the tab, the rank view is left as it is
            gr.Warning(str(exc))
            return (gr.update(),) * (1 + len(load_outputs))
        return (gr.Tabs(selected="rank"), *load_fn(text, key, bool(no_prior)))

    run.click(on_run, [source, upload], [status, state, misses, recall_plot, confusion_plot, confusion_table],
              concurrency_id="model", **PRIVATE)
    misses.click(on_miss, [state, ui.no_prior], [tabs, *load_outputs], concurrency_id="model", **PRIVATE)
    return analysis


# --------------------------------------------------------------------------- contrastive saliency


def contrast_rows(contrast: Contrast, top: int = 12) -> list[list[Any]]:
    """The tokens that move s(pick) - s(gold) most: [token, cross-encoder, text scorer, total]."""
    tokens = sorted(contrast.explanation.tokens, key=lambda t: -abs(t.total))[:top]
    return [[t.token.strip() or "␣", *(float(f"{v:.3g}") for v in (t.cross, t.text, t.total))] for t in tokens]


def _contrast_md(contrast: Contrast) -> str:
    e = contrast.explanation
    ranks = f" (ranks {contrast.pick_rank} and {contrast.gold_rank})" if contrast.gold_rank else ""
    lines = [f"s(**{_md_escape(contrast.pick)}**, the pick) − s(**{_md_escape(contrast.gold)}**, gold){ranks} = "
             f"{e.score:.4g}: cross-encoder {e.cross:.4g}, text scorer {e.text:.4g}, prior {e.prior:.4g}.",
             f"The dialogue tokens' attributions add up to {e.attributed:.4g} of the {e.explained:.4g} that the "
             f"dialogue adds over an all-[PAD] dialogue. Red: pushes toward the pick; blue: toward the gold. "
             f"/ 红色偏向模型首选，蓝色偏向标准答案。"]
    return "<br>".join(lines) + ("\n\n" + _notes_md(e.notes) if e.notes else "")


def contrastive_panel(service: DemoService, ui: SimpleNamespace) -> None:
    """"Why the model's pick over the gold sticker" for a loaded example, in the rank view."""
    with gr.Column(elem_id="contrast-panel"):
        gr.Markdown("### Why the pick over the gold? / 为何首选而非标准答案\nWhich words make the model score its "
                    "first sticker above the example's gold sticker (cross-encoder + text scorer).")
        method = gr.Radio(CONTRAST_METHODS, value="integrated_gradients", label="Method / 方法",
                          elem_id="contrast-method")
        button = gr.Button("Explain pick vs gold / 解释", elem_id="contrast-btn")
        status = gr.Markdown("", elem_id="contrast-status")
        text = gr.HighlightedText(label="s(pick) − s(gold) per token / 每个词的贡献", show_legend=False,
                                  combine_adjacent=False, elem_id="contrast-text")
        table = gr.Dataframe(headers=["token / 词", "cross-encoder", "text scorer", "total / 合计"],
                             interactive=False, elem_id="contrast-table")

    @_handle_errors(KEEP, KEEP, STATUS)
    def on_contrast(dialogue, example_key, rows, view, method_value, alt, progress=gr.Progress()):
        result = contrastive(service, dialogue, example_key, ranking=rows,
                             ranked_text=(view or {}).get("text"), method=method_value, alternate=bool(alt),
                             progress=_progress_fn(progress))
        return highlighted_value(result.explanation.pairs()), contrast_rows(result), _contrast_md(result)

    button.click(on_contrast, [ui.dialogue, ui.example_state, ui.ranking_state, ui.view_state, method, ui.alternate],
                 [text, table, status], concurrency_id="model", **PRIVATE)
    # a new ranking: the last dialogue's explanation goes
    ui.ranking_id.change(lambda: (None, None, ""), None, [text, table, status], show_progress="hidden", **PRIVATE)
