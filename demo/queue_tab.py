"""The annotation queue's tabs and API endpoints (thin: every action is a :class:`QueueService` call).

* :func:`queue_tab` — "Annotation queue": pick a queue (a split, the demo's examples, or an
  uploaded JSONL / MOD file), one dialogue at a time with the model's top-k as tiles plus a
  searchable grid of every sticker; tick what is acceptable. Keys (not while typing in a text
  box): 1–9 toggle the tiles, Enter submits and goes on, S skips, U undoes the last answer.
* :func:`review_tab` — "Annotations: review & agreement": agreement as a table (Fleiss' κ and
  Cohen's κ per annotator pair, counts), progress per annotator, the items annotators disagree
  on, and a download of the dataset ``python -m demo.annotations export`` writes; refreshed
  whenever the tab is opened.
* :func:`queue_api` — ``/annotate_next``, ``/annotate_submit``, ``/annotate_skip``, ``/annotate_undo``.

Imported by :mod:`demo.app` inside its builders (this module imports the app's error wrapper).
"""
from __future__ import annotations

import html
from types import SimpleNamespace
from typing import Any

import gradio as gr

from demo.app import KEEP, PRIVATE, STATUS, _handle_errors, _notes_md, _username
from demo.queue_service import EXPORT_CHOICES, QueueService
from demo.service import DemoService

__all__ = ["queue_api", "queue_tab", "review_tab"]

GRID_LIMIT = 60
AGREEMENT_HEADERS = ["annotators", "items", "agreement %", "κ (kappa)"]
PROGRESS_HEADERS = ["queue", "annotator", "submitted", "skipped", "remaining"]
REVIEW_HEADERS = ["dialogue", "sticker", "acceptable by", "not acceptable by"]

TILES_CSS = """
.qtiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(120px, 1fr)); gap: 8px; }
.qtile { position: relative; border: 2px solid #d0d5dd; border-radius: 10px; padding: 6px; cursor: pointer;
         text-align: center; background: #fff; user-select: none; }
.qtile:hover { border-color: #7a8699; }
.qtile.on { border-color: #12b76a; background: #ecfdf3; box-shadow: 0 0 0 2px #12b76a inset; }
.qtile img { width: 100%; height: 96px; object-fit: contain; }
.qkey { position: absolute; top: 4px; left: 6px; font-weight: 700; background: #101828; color: #fff;
        border-radius: 6px; padding: 0 6px; }
.qname { font-weight: 600; font-size: 0.9em; } .qocr { color: #667085; font-size: 0.8em; }
.qgold { position: absolute; top: 4px; right: 6px; color: #b54708; }
.qdialogue { font-size: 1.05em; line-height: 1.6; } .qlast { background: #fffaeb; border-radius: 4px; }
.qprogress progress { width: 100%; height: 14px; }
"""

# Installed once per page (guarded); toggling goes through the real checkboxes, so gradio sees it.
KEYS_JS = r"""
if (!window.__stickerQueueKeys) {
  window.__stickerQueueKeys = true;
  const boxes = () => Array.from(document.querySelectorAll('#queue-accept input[type=checkbox]'));
  const sync = () => {
    const b = boxes();
    document.querySelectorAll('#queue-tiles .qtile').forEach((t, i) => t.classList.toggle('on', !!(b[i] && b[i].checked)));
  };
  setInterval(sync, 150);
  document.addEventListener('click', (e) => {
    const tile = e.target.closest && e.target.closest('#queue-tiles .qtile');
    if (!tile) return;
    const box = boxes()[Number(tile.dataset.key) - 1];
    if (box) { box.click(); setTimeout(sync, 0); }
  });
  document.addEventListener('keydown', (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const panel = document.getElementById('queue-panel');
    if (!panel || panel.offsetParent === null) return;  // the queue tab is not shown
    const t = e.target, tag = ((t && t.tagName) || '').toLowerCase(), type = ((t && t.type) || '').toLowerCase();
    const typing = t && (t.isContentEditable || tag === 'textarea' || tag === 'select' ||
                         (tag === 'input' && !['checkbox', 'radio', 'button', 'submit'].includes(type)));
    if (typing) return;
    if (/^[1-9]$/.test(e.key)) {
      const box = boxes()[Number(e.key) - 1];
      if (box) { e.preventDefault(); box.click(); setTimeout(sync, 0); }
      return;
    }
    let id = null;
    if (e.key === 'Enter' && tag !== 'button') id = 'queue-submit';
    else if (e.key === 's' || e.key === 'S') id = 'queue-skip';
    else if (e.key === 'u' || e.key === 'U') id = 'queue-undo';
    const button = id && document.getElementById(id);
    if (button && !button.disabled) { e.preventDefault(); button.click(); }
  });
}
"""


# --------------------------------------------------------------------------- rendering


def _tiles_html(state: dict | None) -> str:
    if not state or not state.get("candidates"):
        return "<div class='qtiles'></div>"
    tiles = []
    for c in state["candidates"]:
        image = f"<img src='{html.escape(c['image_url'])}' alt='' loading='lazy'>" if c.get("image_url") else ""
        gold = "<span class='qgold' title='sent in the data'>★</span>" if c.get("gold") else ""
        tiles.append(f"<div class='qtile' data-key='{c['key']}' data-sticker='{html.escape(c['sticker_id'])}'>"
                     f"<span class='qkey'>{c['key']}</span>{gold}{image}"
                     f"<div class='qname'>{html.escape(c['name'])}</div>"
                     f"<div class='qocr'>{html.escape(c['ocr'] or c['sticker_id'])}</div></div>")
    return "<div class='qtiles'>" + "".join(tiles) + "</div>"


def _dialogue_html(state: dict | None) -> str:
    if not state:
        return ""
    if state.get("finished"):
        return "<div class='qdialogue'>🎉 <b>This queue is done.</b> Press U to undo the last answer, or pick " \
               "another queue. / 本队列已完成。</div>"
    lines = state["dialogue"].split("\n")
    rows = [f"<div class='{'qlast' if i == len(lines) - 1 else ''}'>{html.escape(line)}"
            f"{' ← the sticker goes here / 表情回复此句' if i == len(lines) - 1 else ''}</div>"
            for i, line in enumerate(lines)]
    gold = f" · gold (sent in the data): <b>{html.escape(state['gold'])}</b>" if state.get("gold") else ""
    head = f"<div class='qnote'>item <b>{html.escape(state['item_id'])}</b> (#{state['position']}){gold}</div>"
    return head + "<div class='qdialogue'>" + "".join(rows) + "</div>"


def _progress_html(state: dict | None) -> str:
    if not state:
        return ""
    return (f"<div class='qprogress'><progress value='{state['done']}' max='{max(1, state['total'])}'></progress>"
            f"<div><b>{state['done']} / {state['total']} done</b> · {state['submitted']} submitted · "
            f"{state['skipped']} skipped · queue <b>{html.escape(state['queue'])}</b> · annotator "
            f"<b>{html.escape(state['annotator'])}</b></div></div>")


def _render(state: dict) -> tuple:
    """(state, progress, dialogue, tiles, ticks, extra, status) for a :meth:`QueueService.state`."""
    shown = [c["sticker_id"] for c in state["candidates"]]
    choices = [(f"{c['key']} · {c['name']} ({c['sticker_id']})", c["sticker_id"]) for c in state["candidates"]]
    ticked = [s for s in state.get("accepted", []) if s in shown]
    extra = [s for s in state.get("accepted", []) if s not in shown]
    return (state, _progress_html(state), _dialogue_html(state), _tiles_html(state),
            gr.update(choices=choices, value=ticked), gr.update(value=extra),
            _notes_md([state["message"]]) if state.get("message") else "")


def _grid(demo: DemoService, query: str) -> tuple[list[tuple[str, str]], list[str], str]:
    """Gallery tiles, their sticker ids and a note, for the stickers matching ``query``
    (id, name or OCR text; case-insensitive; at most :data:`GRID_LIMIT`)."""
    words = str(query or "").lower().split()
    matches = []
    for sid in demo.sticker_ids():
        info = demo.info(sid)
        hay = f"{sid} {info.name} {info.name_en} {info.ocr}".lower()
        if all(w in hay for w in words) and info.image_path:
            matches.append(info)
    shown = matches[:GRID_LIMIT]
    note = f"{len(matches)} stickers match" + (f"; showing the first {GRID_LIMIT}" if len(matches) > GRID_LIMIT else "")
    return [(i.image_path, f"{i.sticker_id} · {i.name or i.ocr}") for i in shown], [i.sticker_id for i in shown], note


# --------------------------------------------------------------------------- the queue tab


def queue_tab(demo: DemoService, queues: QueueService, *, require_login: bool) -> SimpleNamespace:
    """The "Annotation queue" tab."""
    ui = SimpleNamespace()
    with gr.Tab("Annotation queue / 标注队列", id="queue") as ui.tab:
        ui.state = gr.State(None)
        ui.grid_ids = gr.State([])
        with gr.Column(elem_id="queue-panel"):
            with gr.Row():
                ui.annotator = gr.Textbox(label="Annotator / 标注者", placeholder="anonymous", max_length=64,
                                          visible=not require_login, elem_id="queue-annotator")
                ui.queue = gr.Dropdown(queues.queue_choices(), value=queues.default_queue(), label="Queue / 队列",
                                       elem_id="queue-name", scale=2)
                ui.upload = gr.File(label="Add a queue: .jsonl or MOD-format .json", type="filepath",
                                    file_types=[".jsonl", ".json", ".ndjson"], elem_id="queue-upload", height=110)
                ui.start = gr.Button("Start / continue · 开始", variant="secondary", elem_id="queue-start")
            ui.progress = gr.HTML("", elem_id="queue-progress", css_template=TILES_CSS)
            ui.dialogue = gr.HTML("", elem_id="queue-dialogue", css_template=TILES_CSS)
            ui.tiles = gr.HTML(_tiles_html(None), elem_id="queue-tiles", css_template=TILES_CSS, js_on_load=KEYS_JS)
            ui.accept = gr.CheckboxGroup([], label=f"Acceptable among the model's top {queues.top_k} "
                                         f"(keys 1–{queues.top_k}) / 可接受的表情", elem_id="queue-accept")
            with gr.Accordion("Any other sticker: search by id, name or OCR text / 搜索其他表情", open=False):
                ui.search = gr.Textbox(label="Search / 搜索", placeholder="e.g. 晚安, sleep, 012",
                                       elem_id="queue-search")
                ui.grid = gr.Gallery(label="Click a sticker to add or remove it", columns=10, height=260,
                                     object_fit="contain", allow_preview=False, elem_id="queue-grid")
                ui.extra = gr.Dropdown(demo.sticker_choices(), multiselect=True, value=[],
                                       label="Also acceptable (beyond the top-k) / 其他可接受的表情",
                                       elem_id="queue-extra")
            with gr.Row():
                ui.submit = gr.Button("Submit & next (Enter) / 提交", variant="primary", elem_id="queue-submit",
                                      interactive=queues.progress is not None)
                ui.skip = gr.Button("Skip (S) / 跳过", elem_id="queue-skip", interactive=queues.progress is not None)
                ui.undo = gr.Button("Undo last (U) / 撤销", elem_id="queue-undo",
                                    interactive=queues.progress is not None)
            ui.status = gr.Markdown("" if queues.progress is not None else
                                    "Annotating is off (start with --annotations DB).", elem_id="queue-status")
            gr.Markdown(f"**Keys / 快捷键:** 1–{queues.top_k} tick or untick a tile · Enter submit & next · S skip · "
                        "U undo the last answer (not while typing in a text box).\n\n"
                        "Tick every sticker that would fit the last turn. Stored as flags: ticked → "
                        "*acceptable*; shown in the top-k and not ticked → *not acceptable*; other stickers "
                        "of the grid not ticked → nothing. Progress is saved per annotator and queue. / "
                        "勾选所有合适的表情；未勾选的前 k 个记为不合适。")
    _wire_queue(demo, queues, ui)
    return ui


def _wire_queue(demo: DemoService, queues: QueueService, ui: SimpleNamespace) -> None:
    outputs = [ui.state, ui.progress, ui.dialogue, ui.tiles, ui.accept, ui.extra, ui.status]
    fallback = (KEEP,) * 6 + (STATUS,)

    @_handle_errors(*fallback)
    def on_load(typed, queue_name, request: gr.Request):
        return _render(queues.state(demo.annotator_for(typed, _username(request)), queue_name))

    @_handle_errors(*fallback)
    def on_submit(typed, queue_name, state, ticked, extra, request: gr.Request):
        who = demo.annotator_for(typed, _username(request))
        if not state or not state.get("item_id"):
            return _render(queues.state(who, queue_name, message="Nothing to submit: the queue is done."))
        return _render(queues.submit(who, queue_name, state["item_id"], [*(ticked or []), *(extra or [])]))

    @_handle_errors(*fallback)
    def on_skip(typed, queue_name, state, request: gr.Request):
        who = demo.annotator_for(typed, _username(request))
        if not state or not state.get("item_id"):
            return _render(queues.state(who, queue_name, message="Nothing to skip: the queue is done."))
        return _render(queues.skip(who, queue_name, state["item_id"]))

    @_handle_errors(*fallback)
    def on_undo(typed, queue_name, request: gr.Request):
        return _render(queues.undo(demo.annotator_for(typed, _username(request)), queue_name))

    @_handle_errors(KEEP, None, *fallback)  # the file box is emptied either way, ready for the next file
    def on_upload(path, typed, request: gr.Request):
        if not path:
            return (gr.update(), None, *(gr.update(),) * 7)
        queue = queues.upload(path)
        note = f"Added queue {queue.name}: {queue.description}."
        state = queues.state(demo.annotator_for(typed, _username(request)), queue.name, message=note)
        return (gr.update(choices=queues.queue_choices(), value=queue.name), None, *_render(state))

    def on_search(query):
        tiles, ids, note = _grid(demo, query)
        return gr.update(value=tiles, label=f"Click a sticker to add or remove it ({note})"), ids

    def on_grid_select(ids, extra, evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else (evt.index or [0])[0]
        if index is None or index >= len(ids):
            return gr.update()
        sid, extra = ids[index], list(extra or [])
        return [s for s in extra if s != sid] if sid in extra else [*extra, sid]

    load_inputs = [ui.annotator, ui.queue]
    for event in (ui.tab.select, ui.start.click, ui.queue.input, ui.annotator.submit):
        event(on_load, load_inputs, outputs, concurrency_id="model", **PRIVATE)
    ui.submit.click(on_submit, [*load_inputs, ui.state, ui.accept, ui.extra], outputs, concurrency_id="model",
                    **PRIVATE)
    ui.skip.click(on_skip, [*load_inputs, ui.state], outputs, concurrency_id="model", **PRIVATE)
    ui.undo.click(on_undo, load_inputs, outputs, concurrency_id="model", **PRIVATE)
    ui.upload.upload(on_upload, [ui.upload, ui.annotator], [ui.queue, ui.upload, *outputs], concurrency_id="model",
                     **PRIVATE)
    ui.search.change(on_search, ui.search, [ui.grid, ui.grid_ids], trigger_mode="always_last",
                     show_progress="hidden", **PRIVATE)
    ui.tab.select(on_search, ui.search, [ui.grid, ui.grid_ids], show_progress="hidden", **PRIVATE)
    ui.tab.select(lambda: gr.update(choices=queues.queue_choices()), None, ui.queue, show_progress="hidden",
                  **PRIVATE)  # queues uploaded in another session
    ui.grid.select(on_grid_select, [ui.grid_ids, ui.extra], ui.extra, show_progress="hidden", **PRIVATE)


# --------------------------------------------------------------------------- review & agreement


def _agreement_rows(agreement: dict) -> list[list[Any]]:
    def num(v, digits=3):
        return "n/a" if v is None else round(float(v), digits)

    rows = [[f"all ({agreement['fleiss_n_raters'] or 0} raters per item): Fleiss' κ",
             agreement["fleiss_n_items"] or 0, num(agreement["percent_agreement"], 1), num(agreement["fleiss_kappa"])]]
    rows += [[f"{c['annotators'][0]} / {c['annotators'][1]}: Cohen's κ", c["n_items"],
              num(c["percent_agreement"], 1), num(c["kappa"])] for c in agreement["cohen_kappa"]]
    return rows


def _agreement_md(agreement: dict) -> str:
    labels = agreement["label_counts"]
    return (f"**{agreement['n_records']}** flags on **{agreement['n_items_total']}** (dialogue, sticker) items; "
            f"**{agreement['n_items']}** items labelled by two or more of **{agreement['n_annotators']}** annotators "
            f"({labels.get('acceptable', 0)} acceptable / {labels.get('not_acceptable', 0)} not acceptable ratings), "
            f"{agreement['unanimous_items']} of them unanimous. / 一致性统计")


def review_tab(demo: DemoService, queues: QueueService) -> None:
    """The "Annotations: review & agreement" tab (refreshed each time it is opened)."""
    with gr.Tab("Annotations: review & agreement / 审核与一致性", id="annotations") as tab:
        with gr.Row():
            scope = gr.Dropdown([("all flags / 全部", "")] + queues.queue_choices(), value="",
                                label="Dialogues of / 范围", elem_id="review-queue", scale=3)
            refresh = gr.Button("Refresh agreement / 刷新", elem_id="agreement-btn", scale=1)
        summary = gr.Markdown("" if demo.can_flag else "No annotation database.", elem_id="agreement-summary")
        agreement = gr.Dataframe(headers=AGREEMENT_HEADERS, label="Agreement (κ: 1 = perfect, 0 = chance)",
                                 interactive=False, elem_id="agreement")
        progress = gr.Dataframe(headers=PROGRESS_HEADERS, label="Progress per annotator and queue",
                                interactive=False, elem_id="review-progress")
        review = gr.Dataframe(headers=REVIEW_HEADERS, label="Items annotators disagree on", interactive=False,
                              wrap=True, elem_id="review-table")
        with gr.Row():
            fmt = gr.Radio(list(EXPORT_CHOICES), value="jsonl", label="Format", elem_id="export-format")
            export = gr.Button("Download the annotations (zip) / 下载", elem_id="export-btn")
            file = gr.File(label="Export (as python -m demo.annotations export writes it)", elem_id="export-file",
                           height=110)
        status = gr.Markdown("", elem_id="review-status")

    @_handle_errors(KEEP, KEEP, KEEP, KEEP, KEEP, STATUS)
    def on_refresh(queue_name):
        stats = queues.agreement(queue_name or None)
        rows = queues.progress_rows(queue_name or None) if queues.progress is not None else []
        disagree = [[r["dialogue_text"].replace("\n", " ⏎ "), demo.info(r["sticker_id"]).label
                     if r["sticker_id"] in set(demo.sticker_ids()) else r["sticker_id"],
                     ", ".join(r["acceptable"]), ", ".join(r["not_acceptable"])]
                    for r in queues.review(queue_name or None)]
        choices = gr.update(choices=[("all flags / 全部", "")] + queues.queue_choices())
        return choices, _agreement_md(stats), _agreement_rows(stats), rows, disagree, ""

    @_handle_errors(KEEP, STATUS)
    def on_export(fmt_value):
        path = queues.export(fmt_value)
        return str(path), _notes_md([f"Ready: {path.name}"])

    outputs = [scope, summary, agreement, progress, review, status]
    for event in (tab.select, refresh.click, scope.input):
        event(on_refresh, scope, outputs, **PRIVATE)
    export.click(on_export, fmt, [file, status], **PRIVATE)


# --------------------------------------------------------------------------- API


def _base_url(request: gr.Request | None) -> str:
    try:
        headers = request.headers
        host = headers.get("x-forwarded-host") or headers.get("host")
        proto = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
    except Exception:  # noqa: BLE001 - no request (called directly): relative URLs
        return ""
    return f"{proto}://{host.split(',')[0].strip()}" if host else ""


def queue_api(demo: DemoService, queues: QueueService) -> None:
    """``/annotate_next``, ``/annotate_submit``, ``/annotate_skip``, ``/annotate_undo``."""
    @_handle_errors()
    def annotate_next(annotator: str, queue: str, request: gr.Request = None) -> dict:
        """The annotator's next item in the queue ("valid", "easy_test", "hard_test", "examples" or an
        uploaded queue) with the model's top-k and the progress. With --auth: the logged-in user."""
        who = demo.annotator_for(annotator, _username(request))
        return queues.state(who, queue, base_url=_base_url(request))

    @_handle_errors()
    def annotate_submit(annotator: str, queue: str, item_id: str, accepted: list[str] | None = None,
                        request: gr.Request = None) -> dict:
        """Store the item's labels: `accepted` sticker ids acceptable, the other top-k stickers not
        acceptable. Returns the progress with the next item."""
        who = demo.annotator_for(annotator, _username(request))
        return queues.submit(who, queue, item_id, accepted, base_url=_base_url(request))

    @_handle_errors()
    def annotate_skip(annotator: str, queue: str, item_id: str, request: gr.Request = None) -> dict:
        """Skip the item; returns the progress with the next item."""
        who = demo.annotator_for(annotator, _username(request))
        return queues.skip(who, queue, item_id, base_url=_base_url(request))

    @_handle_errors()
    def annotate_undo(annotator: str, queue: str, request: gr.Request = None) -> dict:
        """Take back the annotator's last submission or skip in the queue; returns that item again."""
        who = demo.annotator_for(annotator, _username(request))
        return queues.undo(who, queue, base_url=_base_url(request))

    gr.api(annotate_next, api_name="annotate_next", concurrency_id="model")
    gr.api(annotate_submit, api_name="annotate_submit", concurrency_id="model")
    gr.api(annotate_skip, api_name="annotate_skip", concurrency_id="model")
    gr.api(annotate_undo, api_name="annotate_undo", concurrency_id="model")
