"""The "Rank & explain" tab: dialogue and candidates, the ranking, the selected sticker, then the
saliency and flag panels (built by :func:`rank_tab`; ``demo.app._rank_tab`` calls it).

Ranking is quick because a click sends only what is new: every sticker is scored, but the page
gets the top :data:`TOP_K` (thumbnails made once at start, an HTML table) with their semantic
labels; "Show more" adds :data:`TOP_K` rows at a time. The full ranking stays on the server
(``ui.ranking_state``). Each ranking clears what belonged to the previous one (saliency, heat
map, flag message, selected tile, warnings).
"""
from __future__ import annotations

import itertools
from types import SimpleNamespace
from typing import Any

import gradio as gr

from demo.app import (KEEP, PRIVATE, STATUS, _handle_errors, _md_escape, _notes_md, _progress_fn,
                      _username)
from demo.analysis_tab import contrastive_panel
from demo.dialogue import parse_dialogue
from demo.plots import heatmap_image, highlighted_value
from demo.rank_format import EMPTY_TILES, EMPTY_VIEW, preload_html, ranking_html, tiles_html, view_token
from demo.service import DemoService, rank_in, ranked_to_json, rerank_rows

__all__ = ["TOP_K", "load_into_rank_view", "rank_tab"]

TOP_K = 20  # rows shown after a ranking, and added by each "Show more"
FLAG_HEADERS = ["sticker / 表情", "label / 标注", "annotator / 标注者", "model rank / 模型排名", "updated (UTC) / 更新"]
DIALOGUE_PLACEHOLDER = ("One turn per line; optional A:/B: prefixes (甲：/乙： too). / 每行一句，可加 A:/B: 前缀。\n"
                        "Unprefixed lines alternate speakers; the LAST line is the one the sticker goes with.\n"
                        "A: 今天加班到好晚\nB: 辛苦啦，早点休息\nA: 好困啊，我去睡了")
MODE_CHOICES = [("All stickers / 全部表情", "all"),
                ("Random 10 (gold + 9 when an example is loaded) / 随机 10 个", "random10"),
                ("My choice / 自选", "choice")]
METHOD_CHOICES = [("Gradient × input / 梯度×输入", "gradient"),
                  ("Integrated Gradients / 积分梯度", "integrated_gradients")]
LABEL_CHOICES = [("acceptable / 可以", "acceptable"), ("not acceptable / 不可以", "not_acceptable")]
CLOSE_TOASTS = "() => { document.querySelectorAll('.toast-close').forEach((b) => b.click()); }"
ROW_CLICK = ("element.addEventListener('click', (e) => { const item = e.target.closest('[data-sticker]');"
             " if (!item) return; element.querySelectorAll('.selected').forEach((x) => x.classList.remove('selected'));"
             " item.classList.add('selected'); trigger('click', {sticker: item.dataset.sticker}); });")
NO_SELECTION = "Pick a sticker in the ranking (click a tile or a row) or in the list. / 点选一个表情。"


# --------------------------------------------------------------------------- formatting


def _flag_rows(annotations: list[Any]) -> list[list[Any]]:
    return [[a.sticker_id, a.label, a.annotator, "" if a.model_rank is None else a.model_rank,
             a.updated_at.strftime("%Y-%m-%d %H:%M:%S") if hasattr(a.updated_at, "strftime") else str(a.updated_at)]
            for a in annotations]


def _selected_md(service: DemoService, sticker_id: str | None, ranking: list[dict] | None) -> str:
    """What the model says about the selected sticker (:class:`DemoError` for an unknown id)."""
    if not sticker_id:
        return NO_SELECTION
    from core.serving.labels import emotion_display

    info = service.info(sticker_id)
    row = rank_in(ranking, sticker_id)
    parts = [f"**{_md_escape(info.label)}**"]
    if row:
        emotions = " · ".join(f"{emotion_display(e['emotion'])} {e['probability']:.0%}" for e in row["emotions"])
        label = row["semantic_label"] or "—"
        parts.append(f"rank / 排名 **{row['rank']}**, score / 分数 {row['score']:.3f} (p = {row['probability']:.2f}); "
                     f"emotion / 情绪: {_md_escape(emotions or '—')}; semantic label / 语义标签: "
                     f"**{_md_escape(label)}**; OCR text / 图中文字: {_md_escape(row['ocr'] or '—')}")
    else:
        parts.append(f"OCR text / 图中文字: {_md_escape(info.ocr or '—')} (not in the current ranking / 不在当前排序中)")
    return "<br>".join(parts)


def _view(service: DemoService, rows: list[dict], view: dict) -> tuple[str, str, Any]:
    """(tiles HTML, table HTML, "Show more" button) of a view: the top ``view["shown"]`` rows."""
    shown = view["shown"]
    token = view_token(view["text"], view["with_prior"], shown)
    gallery = tiles_html(rows, shown, service.thumbnail, token=token, gold_id=view["gold"])
    table = ranking_html(rows, shown, token=token,
                         gold_id=view["gold"], with_text=service.has_text_scorer, with_prior=view["with_prior"],
                         emotion_names=service.emotion_names(), labelled=set(view["labelled"]))
    more = gr.update(visible=shown < len(rows), value=f"Show {TOP_K} more / 再显示 {TOP_K} 个")
    return gallery, table, more


def _label_shown(service: DemoService, rows: list[dict], view: dict) -> None:
    """Fills in the semantic labels of the rows on show that have none yet (in place)."""
    todo = [r for r in rows[:view["shown"]] if r["sticker_id"] not in view["labelled"]]
    if todo:
        labels = service.semantic_labels(view["text"], [r["sticker_id"] for r in todo])
        for row, label in zip(todo, labels):
            row["semantic_label"] = label
            view["labelled"].append(row["sticker_id"])


# --------------------------------------------------------------------------- the tab


def rank_tab(service: DemoService, *, require_login: bool) -> SimpleNamespace:
    """Builds the tab; returns its components (``ui``: the add tab and other tabs use some)."""
    ui = SimpleNamespace()
    with gr.Tab("Rank & explain / 排序与解释", id="rank"):
        ui.ranking_state = gr.State([])    # the whole last ranking as JSON rows (ranked_to_json)
        ui.view_state = gr.State(None)     # what is on show: dialogue, gold, rows shown, prior switch
        ui.ranking_id = gr.State(0)        # a new number per ranking: what listeners of "a new ranking" watch
        # (not ranking_state: Gradio hashes a watched State's whole value before and after every event)
        ui.example_state = gr.State(None)  # key of the loaded example
        with gr.Row():
            with gr.Column(scale=2):
                ui.example = gr.Dropdown([(e.title, e.key) for e in service.examples.values()], value=None,
                                         label="Load an example / 示例", elem_id="example")
                ui.dialogue = gr.Textbox(lines=7, max_lines=20, label="Dialogue / 对话 (one turn per line / 每行一句)",
                                         placeholder=DIALOGUE_PLACEHOLDER, elem_id="dialogue")
                ui.alternate = gr.Radio([("alternate speakers / 轮流发言", True),
                                         ("same speaker as line above / 同上一行", False)],
                                        value=True, label="Lines without A:/B: / 无前缀的行", elem_id="alternate")
                ui.preview = gr.Markdown("", elem_id="dialogue-preview")
                ui.mode = gr.Radio(MODE_CHOICES, value="all", label="Candidates / 候选", elem_id="mode")
                ui.chosen = gr.Dropdown(service.sticker_choices(), multiselect=True, label="My choice / 自选",
                                        visible=False, elem_id="chosen")
                ui.seed = gr.Number(0, precision=0, label="Random seed / 随机种子", visible=False, elem_id="seed")
                ui.no_prior = gr.Checkbox(False, label="Rank without the prior (dialogue content only) / 排序不计先验",
                                          elem_id="no-prior")
                ui.rank_btn = gr.Button("Rank stickers / 排序", variant="primary", elem_id="rank-btn")
                ui.rank_status = gr.Markdown("", elem_id="rank-status")
            with gr.Column(scale=3):
                ui.gallery = gr.HTML(EMPTY_TILES, elem_id="ranking-gallery", js_on_load=ROW_CLICK)
        ui.table = gr.HTML(EMPTY_VIEW, elem_id="ranking-table", js_on_load=ROW_CLICK)
        gr.HTML(preload_html([service.thumbnail(s) for s in service.sticker_ids()]), elem_id="thumb-preload",
                js_on_load=None)
        ui.more_btn = gr.Button(f"Show {TOP_K} more / 再显示 {TOP_K} 个", visible=False, size="sm", elem_id="more-btn")
        with gr.Row(elem_id="selected-row"):
            ui.selected = gr.Dropdown(service.sticker_choices(), value=None, label="Selected sticker / 选中的表情",
                                      elem_id="selected-sticker", scale=1)
            ui.selected_info = gr.Markdown(NO_SELECTION, elem_id="selected-info")
        with gr.Row(elem_id="explain-row"):
            _saliency_panel(service, ui)
            _flag_panel(service, ui, require_login=require_login)
        contrastive_panel(service, ui)  # "why the pick over the gold" (demo/analysis_tab.py)
    _wire_ranking(service, ui)
    _wire_view(service, ui)
    return ui


def load_into_rank_view(ui: SimpleNamespace) -> tuple[Any, list[Any]]:
    """For other tabs: ``(fn, outputs)`` that put a dialogue (and an example key, or None) into this
    tab and rank it, as "Rank" does (all stickers, the prior switch as it is set), e.g.
    ``button.click(fn, [text, key], outputs)``. ``fn(text, example_key)``; switching to the tab
    (``gr.Tabs(selected="rank")``) is up to the caller."""
    return ui.load_fn, ui.load_outputs


def _cleared(ui: SimpleNamespace) -> list[Any]:
    """Outputs that belong to one ranking (saliency, heat map, their messages, the flag message)."""
    return [ui.saliency_text, ui.heatmap, ui.saliency_status, ui.flag_status]


def _wire_ranking(service: DemoService, ui: SimpleNamespace) -> None:
    """The rank tab's events: dialogue preview, candidate mode, examples, ranking."""
    def on_dialogue(text, alt):
        parsed = parse_dialogue(text, alternate=bool(alt))
        return parsed.preview_markdown() + ("\n\n" + _notes_md(parsed.notices) if parsed.notices else "")

    def on_mode(choice):
        return gr.update(visible=choice == "choice"), gr.update(visible=choice == "random10")

    @_handle_errors(KEEP, None, STATUS)
    def on_example(key):
        if not key:
            return gr.update(), None, ""
        example = service.example(key)
        return example.text, key, _notes_md([example.loaded_note])

    ranking_ids = itertools.count(1)

    @_handle_errors(*[KEEP] * 8, STATUS, *[KEEP] * 5)
    def on_rank(text, alt, mode_value, chosen_ids, seed_value, example_key, no_prior, last_view=None, labels=0):
        """The ranking on show at once; the semantic labels of its rows follow (``on_labels``)."""
        outcome = service.rank(text, mode=mode_value, chosen=chosen_ids, seed=seed_value, alternate=bool(alt),
                               example_key=example_key, with_prior=not no_prior, labels=labels)
        rows = ranked_to_json(outcome.ranked)
        flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
        view = {"text": outcome.parsed.canonical_text(), "gold": outcome.gold_id, "shown": TOP_K,
                "with_prior": outcome.with_prior, "labelled": [r["sticker_id"] for r in rows[:labels]],
                "flags": bool(flags)}
        gallery, table, more = _view(service, rows, view)
        unchanged = not flags and last_view is not None and not last_view.get("flags")  # nothing to re-send
        return (gallery, table, rows, view, outcome.top_id, _selected_md(service, outcome.top_id, rows),
                gr.update() if unchanged else flags, more, _notes_md([*outcome.notices, outcome.summary()]),
                None, None, "", "", next(ranking_ids))

    @_handle_errors(KEEP, KEEP, KEEP, KEEP)
    def on_labels(rows, view, selected):
        if not rows or not view or all(r["sticker_id"] in view["labelled"] for r in rows[:view["shown"]]):
            return gr.update(), gr.update(), gr.update(), gr.update()
        view = {**view, "labelled": list(view["labelled"])}
        _label_shown(service, rows, view)
        return _view(service, rows, view)[1], rows, view, _selected_md(service, selected, rows)

    def on_prepare(text, alt):  # the dialogue encoded while the user types: Rank then only scores stickers
        service.prepare(text, alternate=bool(alt))

    ui.dialogue.change(on_dialogue, [ui.dialogue, ui.alternate], ui.preview, trigger_mode="always_last",
                       show_progress="hidden", **PRIVATE) \
        .then(on_prepare, [ui.dialogue, ui.alternate], None, concurrency_id="model", show_progress="hidden",
              **PRIVATE)
    ui.alternate.change(on_dialogue, [ui.dialogue, ui.alternate], ui.preview, show_progress="hidden", **PRIVATE)
    ui.mode.change(on_mode, ui.mode, [ui.chosen, ui.seed], show_progress="hidden", **PRIVATE)
    ui.example.change(on_example, ui.example, [ui.dialogue, ui.example_state, ui.rank_status], **PRIVATE)
    rank_inputs = [ui.dialogue, ui.alternate, ui.mode, ui.chosen, ui.seed, ui.example_state, ui.no_prior,
                   ui.view_state]
    rank_outputs = [ui.gallery, ui.table, ui.ranking_state, ui.view_state, ui.selected, ui.selected_info,
                    ui.flags_table, ui.more_btn, ui.rank_status, *_cleared(ui), ui.ranking_id]
    @_handle_errors(KEEP, KEEP, KEEP, *[KEEP] * 8, STATUS, *[KEEP] * 5)
    def load_and_rank(text, example_key, no_prior=False):
        return (text, example_key, "all", *on_rank(text, True, "all", None, 0, example_key, no_prior, labels=TOP_K))

    ui.load_fn, ui.load_outputs = load_and_rank, [ui.dialogue, ui.example_state, ui.mode, *rank_outputs]
    for trigger in (ui.rank_btn.click, ui.dialogue.submit):
        trigger(None, None, None, js=CLOSE_TOASTS, **PRIVATE)  # the last dialogue's warnings go too
        trigger(on_rank, rank_inputs, rank_outputs, concurrency_id="model", show_progress="hidden", **PRIVATE) \
            .then(on_labels, [ui.ranking_state, ui.view_state, ui.selected],
                  [ui.table, ui.ranking_state, ui.view_state, ui.selected_info], concurrency_id="model",
                  show_progress="hidden", **PRIVATE)


def _wire_view(service: DemoService, ui: SimpleNamespace) -> None:
    """Events on a ranking on show: "Show more", the prior switch, selecting a sticker."""
    @_handle_errors(KEEP, KEEP, KEEP, KEEP, KEEP)
    def on_more(rows, view):
        if not rows or not view:
            return gr.update(), gr.update(), rows, view, gr.update(visible=False)
        view = {**view, "shown": view["shown"] + TOP_K, "labelled": list(view["labelled"])}
        _label_shown(service, rows, view)
        gallery, table, more = _view(service, rows, view)
        return gallery, table, rows, view, more

    @_handle_errors(KEEP, KEEP, KEEP, KEEP, KEEP, KEEP, STATUS)
    def on_prior(no_prior, rows, view, selected):
        if not rows or not view or view["with_prior"] == (not no_prior):
            return (gr.update(),) * 7
        rows = rerank_rows(rows, counted=view["with_prior"], with_prior=not no_prior)
        view = {**view, "with_prior": not no_prior, "labelled": list(view["labelled"])}
        _label_shown(service, rows, view)
        gallery, table, more = _view(service, rows, view)
        return gallery, table, rows, view, more, _selected_md(service, selected, rows), gr.update()

    def on_row_click(evt: gr.EventData):
        data = evt._data if isinstance(evt._data, dict) else {}
        return str(data["sticker"]) if data.get("sticker") else gr.update()

    @_handle_errors(STATUS, KEEP, KEEP, KEEP, KEEP)
    def on_selected(sticker_id, rows):  # a new sticker: the last one's saliency and flag message go
        return _selected_md(service, sticker_id, rows), None, None, "", ""

    ui.more_btn.click(on_more, [ui.ranking_state, ui.view_state],
                      [ui.gallery, ui.table, ui.ranking_state, ui.view_state, ui.more_btn],
                      concurrency_id="model", show_progress="hidden", **PRIVATE)
    ui.no_prior.input(on_prior, [ui.no_prior, ui.ranking_state, ui.view_state, ui.selected],
                      [ui.gallery, ui.table, ui.ranking_state, ui.view_state, ui.more_btn, ui.selected_info,
                       ui.rank_status], concurrency_id="model", show_progress="hidden", **PRIVATE)
    for clickable in (ui.gallery, ui.table):  # a tile or a row: select its sticker
        clickable.click(on_row_click, None, ui.selected, show_progress="hidden", **PRIVATE)
    ui.selected.change(on_selected, [ui.selected, ui.ranking_state], [ui.selected_info, *_cleared(ui)],
                       show_progress="hidden", **PRIVATE)


# --------------------------------------------------------------------------- panels


def _saliency_panel(service: DemoService, ui: SimpleNamespace) -> None:
    """Word saliency of the dialogue for the selected sticker (gradient × input or Integrated Gradients)."""
    with gr.Column(elem_id="saliency-panel"):
        gr.Markdown("### Word saliency / 词语显著性\nHow strongly each dialogue token moves the matching "
                    "score of the selected sticker. / 每个词对选中表情匹配分数的影响。")
        method = gr.Radio(METHOD_CHOICES, value="gradient", label="Method / 方法", elem_id="method")
        steps = gr.Slider(4, 128, value=32, step=4, label="Integrated Gradients steps / 积分步数", elem_id="ig-steps")
        button = gr.Button("Explain / 解释", elem_id="saliency-btn")
        ui.saliency_status = gr.Markdown("", elem_id="saliency-status")
        ui.saliency_text = gr.HighlightedText(label="Saliency (red = more important) / 显著性（越红越重要）",
                                              show_legend=False, combine_adjacent=False, elem_id="saliency-text")
        ui.heatmap = gr.Image(label="Heat map / 热图", type="pil", interactive=False, elem_id="saliency-heatmap")

    @_handle_errors(KEEP, KEEP, STATUS)
    def on_saliency(text, sticker_id, method_value, n_steps, alt, progress=gr.Progress()):
        pairs = service.saliency(text, sticker_id, method_value, n_steps=n_steps, alternate=bool(alt),
                                 progress=_progress_fn(progress))
        image = heatmap_image(pairs, title=f"{method_value.replace('_', ' ')} saliency for sticker {sticker_id}")
        note = f"{len(pairs)} tokens; scores scaled to the largest. / {len(pairs)} 个词，按最大值缩放。"
        return highlighted_value(pairs), image, _notes_md([note])

    button.click(on_saliency, [ui.dialogue, ui.selected, method, steps, ui.alternate],
                 [ui.saliency_text, ui.heatmap, ui.saliency_status], concurrency_id="model", **PRIVATE)


def _flag_panel(service: DemoService, ui: SimpleNamespace, *, require_login: bool) -> None:
    """Flag the selected sticker as also (not) acceptable for the dialogue; the dialogue's flags."""
    with gr.Column(elem_id="flag-panel"):
        gr.Markdown("### Flag as also acceptable / 标注为也合适\nThe model ranks one sticker first; mark "
                    "other stickers that would also fit this dialogue. / 标出其他也适合这段对话的表情。")
        annotator = gr.Textbox(value="", label="Annotator name / 标注者", placeholder="anonymous",
                               visible=not require_login, elem_id="annotator", max_length=64)
        if require_login:
            gr.Markdown("Flags are saved under your login name. / 标注以登录名保存。")
        ui.flag_label = gr.Radio(LABEL_CHOICES, value="acceptable", label="Label / 标注", elem_id="flag-label")
        with gr.Row():
            flag_btn = gr.Button("Flag selected sticker / 标注选中的表情", variant="secondary", elem_id="flag-btn",
                                 interactive=service.can_flag)
            unflag_btn = gr.Button("Remove my flag / 删除我的标注", elem_id="unflag-btn", interactive=service.can_flag)
        off = "Flagging is off (start with --annotations DB). / 标注已关闭。"
        ui.flag_status = gr.Markdown("" if service.can_flag else off, elem_id="flag-status")
        ui.flags_table = gr.Dataframe(headers=FLAG_HEADERS, label="Flags for this dialogue / 本对话的标注",
                                      interactive=False, elem_id="flags-table")

    def shown(view, flags):  # the view notes that the flags table is not empty (a new ranking must clear it)
        return {**view, "flags": bool(flags)} if view else view

    @_handle_errors(STATUS, KEEP, KEEP)
    def on_flag(text, sticker_id, label_value, typed, alt, rows, example_key, view, request: gr.Request):
        who = service.annotator_for(typed, _username(request))
        row = rank_in(rows, sticker_id)
        record = service.flag(text, sticker_id, annotator=who, label=label_value, alternate=bool(alt),
                              model_rank=row["rank"] if row else None, example_key=example_key)
        flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
        note = (f"Saved: sticker {record.sticker_id} marked {record.label} by {record.annotator}. "
                f"/ 已保存：{record.annotator} 将表情 {record.sticker_id} 标为 {record.label}。")
        return _notes_md([note]), flags, shown(view, flags)

    @_handle_errors(STATUS, KEEP, KEEP)
    def on_unflag(text, sticker_id, typed, alt, view, request: gr.Request):
        who = service.annotator_for(typed, _username(request))
        removed = service.unflag(text, sticker_id, annotator=who, alternate=bool(alt))
        flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
        note = (f"Removed {who}'s flag on {sticker_id}. / 已删除 {who} 对 {sticker_id} 的标注。" if removed
                else f"{who} had no flag on {sticker_id}. / {who} 没有标注 {sticker_id}。")
        return _notes_md([note]), flags, shown(view, flags)

    flag_btn.click(on_flag, [ui.dialogue, ui.selected, ui.flag_label, annotator, ui.alternate, ui.ranking_state,
                             ui.example_state, ui.view_state], [ui.flag_status, ui.flags_table, ui.view_state],
                   **PRIVATE)
    unflag_btn.click(on_unflag, [ui.dialogue, ui.selected, annotator, ui.alternate, ui.view_state],
                     [ui.flag_status, ui.flags_table, ui.view_state], **PRIVATE)
