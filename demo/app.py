"""The Gradio UI: ``build_demo(selector, ...)`` returns a ``gr.Blocks`` (nothing is launched here).

One builder per part of the page (:func:`_rank_tab` with its :func:`_saliency_panel` and
:func:`_flag_panel`, :func:`_add_sticker_tab`, :func:`_annotations_tab`, :func:`_api`); every
handler is a thin call into :class:`demo.service.DemoService` plus formatting. Errors go through
one wrapper, :func:`_handle_errors`: bad input never raises out of a UI handler (it shows a
``gr.Warning`` and an error line, the server keeps serving and logs one line); the named API
endpoints ``/rank``, ``/saliency`` and ``/flag`` (for ``gradio_client``) raise ``gr.Error`` with
the same messages instead. Unexpected exceptions are logged with their traceback. See
``demo/README_API.md``.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import functools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402

from demo.service import (  # noqa: E402
    CANDIDATE_MODES,
    SALIENCY_METHODS,
    DemoError,
    DemoService,
    Example,
    StickerInfo,
    ranked_to_json,
)

__all__ = ["build_demo", "ranked_to_json", "CSS"]

logger = logging.getLogger(__name__)

CSS = """
#rank-status p, #saliency-status p, #flag-status p, #add-status p { margin: 0.2em 0; }
.demo-error { color: #b42318; font-weight: 600; }
.demo-note { color: #555; }
/* the ranking table (demo/rank_format.py) */
.rank-view { font-size: 0.92em; }
.rank-empty { color: #666; padding: 0.6em 0; }
.rank-legend { color: #444; margin: 0.3em 0; line-height: 1.6; }
.rank-legend .key { margin-right: 1.2em; white-space: nowrap; }
.rank-legend .seg { display: inline-block; width: 1.4em; height: 0.8em; margin-right: 0.3em; vertical-align: middle; }
.rank-scroll { max-height: 560px; overflow: auto; border: 1px solid #e5e7eb; border-radius: 6px; }
.rank-table { width: 100%; border-collapse: collapse; }
.rank-table th { position: sticky; top: 0; background: #f3f4f6; z-index: 1; white-space: nowrap;
                 font-weight: 600; text-align: left; padding: 4px 8px; line-height: 1.25; }
.rank-table td { padding: 4px 8px; border-top: 1px solid #eee; vertical-align: top; }
.rank-table td.num { white-space: nowrap; text-align: right; font-variant-numeric: tabular-nums; }
.rank-table td.name { min-width: 7em; }
.rank-table td.emo { white-space: nowrap; }
.rank-table td.label { min-width: 6em; }
.rank-table td.ocr { min-width: 9em; max-width: 22em; }
.rank-table .sid { color: #777; font-size: 0.85em; }
.rank-table tr.gold td { background: #fff7d6; }
.rank-table tbody tr { cursor: pointer; }
.rank-table tbody tr:hover td { background: #eef4ff; }
.rank-count { color: #666; margin: 0.3em 0; }
.sbar { display: flex; width: 150px; height: 12px; margin-top: 3px; }
.sbar-neg, .sbar-pos { display: flex; width: 50%; height: 100%; }
.sbar-neg { justify-content: flex-end; }
.sbar-zero { width: 1px; background: #333; }
.seg { display: inline-block; height: 100%; }
.seg-cross { background: #2563eb; }
.seg-text { background: #0d9488; }
.seg-prior { background: #9ca3af; }
.seg.faded { opacity: 0.3; }
.tiles-head, .tiles-empty { color: #555; font-size: 0.9em; margin-bottom: 4px; }
.tiles-empty { min-height: 120px; }
.tiles { display: grid; grid-template-columns: repeat(5, minmax(0, 1fr)); gap: 6px; max-height: 430px; overflow-y: auto; }
.tile { display: flex; flex-direction: column; align-items: center; padding: 4px; border: 2px solid #e5e7eb;
        border-radius: 6px; background: #fff; cursor: pointer; min-width: 0; }
.tile img { width: 100%; height: 96px; object-fit: contain; }
.tile .cap { font-size: 0.75em; color: #333; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; max-width: 100%; }
.tile.gold { border-color: #e0b100; }
.tile.selected { border-color: #f97316; box-shadow: 0 0 0 2px #fdba74; }
.rank-table tbody tr.selected td { background: #ffedd5; }
.thumb-preload { position: absolute; width: 1px; height: 1px; overflow: hidden; opacity: 0; pointer-events: none; }
.thumb-preload img { width: 1px; height: 1px; }
"""

OCR_ENGINES = ["auto", "rapidocr", "easyocr", "off"]
PRIVATE = {"api_visibility": "private"}  # UI events: not API endpoints


# --------------------------------------------------------------------------- errors

KEEP = object()    # in a fallback: leave this output as it is
STATUS = object()  # in a fallback: the error line goes here


def _handle_errors(*fallback: Any) -> Callable[[Callable], Callable]:
    """The one error wrapper of the demo's handlers.

    With ``fallback`` (a UI handler; one entry per output: :data:`KEEP`, :data:`STATUS` or a
    value): an error shows a ``gr.Warning`` and the handler returns ``fallback`` with the error
    line in the :data:`STATUS` slot. Without (an API endpoint): it raises ``gr.Error``.
    A :class:`DemoError` (bad input; its message is for the user) is logged as one line;
    any other exception with its traceback.
    """
    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def handler(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except DemoError as exc:
                message = str(exc)
                logger.info("%s: %s", fn.__name__, message)
            except Exception as exc:  # noqa: BLE001 - the server keeps serving
                logger.exception("%s failed", fn.__name__)
                message = (f"Something went wrong ({type(exc).__name__}: {exc}); the server log has the details."
                           f" / 出错了（{type(exc).__name__}），详情请查看服务器日志。")
            if not fallback:
                raise gr.Error(message, print_exception=False)  # logged above, once
            gr.Warning(message)
            values = tuple(_error_md(message) if v is STATUS else gr.update() if v is KEEP else v for v in fallback)
            return values if len(values) > 1 else values[0]

        return handler

    return wrap


# --------------------------------------------------------------------------- formatting


def _md_escape(text: str) -> str:
    for char in "\\`*_{}[]<>#|":
        text = text.replace(char, "\\" + char)
    return text


def _error_md(message: str) -> str:
    return f"<span class='demo-error'>⚠️ {_md_escape(str(message))}</span>"


def _notes_md(notes: list[str]) -> str:
    return "\n".join(f"<span class='demo-note'>ℹ️ {_md_escape(n)}</span><br>" for n in notes)


def _progress_fn(progress: Any):
    """Adapt gr.Progress to the selector's ``progress(fraction, desc=...)`` callback."""
    if progress is None:
        return None

    def report(fraction: float, desc: str | None = None, *args: Any, **kwargs: Any) -> None:
        try:
            progress(max(0.0, min(1.0, float(fraction))), desc=desc or kwargs.get("description"))
        except Exception:  # noqa: BLE001 - progress must never break the computation
            pass

    return report


def _header_md(service: DemoService, title: str | None = None) -> str:
    """The page's title line: what the demo is, the model (its name as is, no escapes) and the sticker count."""
    title = title or getattr(service, "title", "Sticker selection demo")
    version = (service.model_version or "unknown").replace("`", "'")
    n = len(service.sticker_ids())
    return (f"# {title}\nSelecting stickers in open-domain dialogue (MMBERT-style multitask cross-encoder) / "
            f"对话表情选择. Model / 模型: `{version}` · {n} stickers / {n} 个表情.")


def _username(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


# --------------------------------------------------------------------------- rank & explain tab


def _rank_tab(service: DemoService, *, require_login: bool) -> SimpleNamespace:
    """The "Rank & explain" tab (``demo/rank_tab.py``); returns its components (``ui``), which the
    add tab and other tabs use. ``demo.rank_tab.load_into_rank_view(ui)`` loads a dialogue into it."""
    from demo.rank_tab import rank_tab

    return rank_tab(service, require_login=require_login)


# --------------------------------------------------------------------------- other tabs


DISABLE_ADD = "() => { const b = document.querySelector('#add-btn'); if (b) b.disabled = true; }"


def _add_sticker_tab(service: DemoService, ui: SimpleNamespace, *, ocr_engine: str | None, header: Any) -> None:
    """Upload an image, read its text (OCR), add it as a sticker; it is a candidate at once. "Add
    sticker" is off while the text is being read; ``header`` (the page's title line) gets the new count."""
    with gr.Tab("Add stickers / 添加表情", id="add"):
        if not service.can_add:
            gr.Markdown("Adding stickers is off (start with --user-stickers DIR). / 添加表情已关闭。")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Sticker image (png, jpg, gif, webp; ≤ 20 MiB) / 表情图片",
                                 file_types=[".png", ".jpg", ".jpeg", ".gif", ".webp"], type="filepath",
                                 elem_id="upload", interactive=service.can_add)
                engine = gr.Radio(OCR_ENGINES, value="auto" if ocr_engine else "off",
                                  label="OCR engine (auto: rapidocr for Chinese+English, else easyocr) / 文字识别引擎",
                                  elem_id="ocr-engine")
                ocr_btn = gr.Button("Read text again / 重新识别", elem_id="ocr-btn")
                ocr_text = gr.Textbox(label="Text on the sticker (OCR; edit it) / 图中文字（可编辑）", max_length=200,
                                      elem_id="ocr-text")
                name = gr.Textbox(label="Name (optional, e.g. 晚安 / good night) / 名称（可选）", max_length=200,
                                  elem_id="sticker-name")
                add_btn = gr.Button("Add sticker / 添加表情", variant="primary", elem_id="add-btn",
                                    interactive=service.can_add)
                status = gr.Markdown("", elem_id="add-status")
            with gr.Column():
                preview = gr.Image(label="Preview (first frame) / 预览（第一帧）", type="pil", interactive=False,
                                   height=220, elem_id="upload-preview")
                user_gallery = gr.Gallery(label="Your stickers / 你的表情", columns=6, height=260, object_fit="contain",
                                          fit_columns=False, allow_preview=False, elem_id="user-gallery",
                                          value=service.user_sticker_tiles())

    read_uploads: set[str] = set()  # uploads whose text was read (or could not be): "Add sticker" waits for it

    @_handle_errors(None, "", STATUS)
    def on_upload(file_path, engine_value, progress=gr.Progress()):
        if not file_path:
            return None, gr.update(), ""
        try:
            reading = service.read_upload(file_path, engine_value, progress=_progress_fn(progress))
        finally:
            read_uploads.add(str(file_path))
        if reading.problem:
            gr.Warning(reading.problem)
        return reading.image, reading.text, _error_md(reading.note) if reading.problem else _notes_md([reading.note])

    def on_ocr_again(file_path, engine_value, progress=gr.Progress()):
        _, text, note = on_upload(file_path, engine_value, progress)
        return text, note

    def busy(reading: bool):  # "Add sticker" waits for the text (else it would be saved without it)
        add = gr.update(interactive=service.can_add and not reading,
                        value="Reading the text… / 正在识别…" if reading else "Add sticker / 添加表情")
        return add, gr.update(interactive=not reading)

    @_handle_errors(STATUS, KEEP, KEEP, KEEP, KEEP)
    def on_add(file_path, text, sticker_name, engine_value="off", progress=gr.Progress()):
        if file_path and engine_value != "off" and str(file_path) not in read_uploads:  # a click before OCR began
            raise DemoError("The text on this image is still being read: add the sticker when it is shown.",
                            zh="图中文字还在识别，识别完成后再添加。")
        progress(0.3, desc="storing and encoding the sticker")
        sticker = service.add_sticker(file_path, text or "", sticker_name or "")
        choices = service.sticker_choices()
        note = (f"Added {sticker.sticker_id} ({sticker.name_label or sticker.ocr or 'no text'}); it is a "
                f"candidate now — rank again to see it. / 已添加 {sticker.sticker_id}，重新排序即可看到。")
        return (_notes_md([note]), service.user_sticker_tiles(), gr.update(choices=choices),
                gr.update(choices=choices, value=sticker.sticker_id), _header_md(service))

    for event, handler, outputs in ((upload.upload, on_upload, [preview, ocr_text, status]),
                                    (ocr_btn.click, on_ocr_again, [ocr_text, status])):
        # js: the button is disabled in the page at once, not only when busy(True) comes back from the server
        event(lambda: busy(True), None, [add_btn, ocr_btn], js=DISABLE_ADD, show_progress="hidden", **PRIVATE) \
            .then(handler, [upload, engine], outputs, **PRIVATE) \
            .then(lambda: busy(False), None, [add_btn, ocr_btn], show_progress="hidden", **PRIVATE)
    add_btn.click(on_add, [upload, ocr_text, name, engine], [status, user_gallery, ui.chosen, ui.selected, header],
                  concurrency_id="model", **PRIVATE)


def _annotations_tab(service: DemoService, *, splits: Any = None, require_login: bool = False) -> Any:
    """The annotation queue and the review & agreement tabs (``demo/queue_tab.py``); returns the
    :class:`demo.queue_service.QueueService` they share with the API."""
    from demo.queue_service import QueueService
    from demo.queue_tab import queue_tab, review_tab

    queues = QueueService(service, splits)
    queue_tab(service, queues, require_login=require_login)
    review_tab(service, queues)
    return queues


def _analysis_tab(service: DemoService, ui: SimpleNamespace, tabs: Any, *, splits: Any = None) -> Any:
    from demo.analysis_tab import analysis_tab

    return analysis_tab(service, ui, tabs, splits=splits)


def _api(service: DemoService, queues: Any = None) -> None:
    """The named API endpoints ``/rank``, ``/saliency`` and ``/flag`` (errors raise ``gr.Error``), and the
    annotation queue's ``/annotate_next``, ``/annotate_submit``, ``/annotate_skip``, ``/annotate_undo``."""
    @_handle_errors()
    def rank(dialogue: str, candidates: str = "all", sticker_ids: list[str] | None = None,
             seed: int = 0) -> list[dict]:
        """Rank stickers for a dialogue (one turn per line; optional A:/B: prefixes; the last
        line is the sticker sender's turn). candidates: "all", "random10" or "choice" (then
        sticker_ids lists them). Returns [{sticker_id, rank, score, prior, text, probability,
        emotions: [{emotion, probability}] (top 3), semantic_label (top 30; cleaned), ocr, name}],
        best first (the README's HTTP API section explains each key)."""
        return ranked_to_json(service.rank(dialogue, mode=candidates, chosen=sticker_ids, seed=seed).ranked)

    @_handle_errors()
    def saliency(dialogue: str, sticker_id: str, method: str = "gradient", n_steps: int = 32) -> list[dict]:
        """Word saliency of the dialogue tokens for one sticker's matching score.
        method: "gradient" (gradient x (input - [PAD]), per token) or "integrated_gradients"; both explain the
        cross-encoder and text scorer shares of the score (core.serving.saliency).
        Returns [{token, score}] in dialogue order (raw scores, not normalised)."""
        pairs = service.saliency(dialogue, sticker_id, method, n_steps=n_steps)
        return [{"token": token, "score": score} for token, score in pairs]

    @_handle_errors()
    def flag(dialogue: str, sticker_id: str, annotator: str = "anonymous", label: str = "acceptable",
             request: gr.Request = None) -> dict:
        """Record that a sticker is also acceptable ("acceptable") or not ("not_acceptable") for
        the dialogue. With --auth the annotator is the logged-in user. Returns the stored record."""
        who = service.annotator_for(annotator, _username(request))
        record = service.flag(dialogue, sticker_id, annotator=who, label=label)
        return json.loads(json.dumps(record.to_dict(), default=str))

    gr.api(rank, api_name="rank", concurrency_id="model")
    gr.api(saliency, api_name="saliency", concurrency_id="model")
    gr.api(flag, api_name="flag")
    if queues is not None:
        from demo.queue_tab import queue_api

        queue_api(service, queues)


# --------------------------------------------------------------------------- build


def build_demo(selector: Any, *, sticker_info: dict[str, StickerInfo] | None = None,
               examples: list[Example] | None = None, annotations: Any = None, user_stickers: Any = None,
               ocr_engine: str | None = "auto", data_note: str = "", require_login: bool = False,
               static_dirs: list[str | Path] | None = None, title: str = "Sticker selection demo",
               splits: dict[str, list[dict]] | None = None, thumbnails: Any = None) -> gr.Blocks:
    """Build (not launch) the demo.

    Args:
        selector: a ``core.serving.inference.StickerSelector`` (its stickers are the candidates).
        sticker_info: display facts per sticker (names in English/Chinese, source).
        examples: dialogues to load (MOD easy/hard test samples with their gold sticker).
        annotations: ``core.annotations.AnnotationStore``; None turns flagging off.
        user_stickers: ``demo.user_stickers.UserStickerStore``; None turns adding off.
        ocr_engine: ``"auto"``, ``"rapidocr"``, ``"easyocr"`` or None (no OCR).
        data_note: where the stickers come from (shown at the top).
        require_login: the app is launched with ``auth``; only logged-in users flag, as themselves.
        static_dirs: directories with sticker images, registered with ``gr.set_static_paths``
            so the gallery may serve them (the sticker and user-sticker dirs are added
            automatically).
        splits: split name → ``core.data.mod`` sample rows (``ModData.split_rows``); the
            annotation queue offers ``valid``, ``easy_test`` and ``hard_test`` from them.
        thumbnails: ``demo.thumbnails.ThumbnailCache`` (default: one in the temp directory); every
            sticker's thumbnail is made here, before the page is served.
    """
    service = DemoService(selector, sticker_info=sticker_info, examples=examples or (), annotations=annotations,
                          user_stickers=user_stickers, ocr_engine=ocr_engine, data_note=data_note,
                          require_login=require_login, thumbnails=thumbnails)
    service.title = title
    service.prepare_thumbnails()
    dirs = service.static_dirs(static_dirs or ())
    if dirs:
        gr.set_static_paths(dirs)
    with gr.Blocks(title=title, analytics_enabled=False) as blocks:
        header = gr.Markdown(_header_md(service), elem_id="header")
        if data_note:
            gr.Markdown(_notes_md([data_note]), elem_id="data-note")
        with gr.Tabs() as tabs:
            ui = _rank_tab(service, require_login=require_login)
            _add_sticker_tab(service, ui, ocr_engine=ocr_engine, header=header)
            queues = _annotations_tab(service, splits=splits, require_login=require_login)
            _analysis_tab(service, ui, tabs, splits=splits)  # demo/analysis_tab.py
        _api(service, queues)
    blocks.demo_service = service  # for tests and scripts
    blocks.queue_service = queues
    return blocks


CANDIDATE_MODES, SALIENCY_METHODS  # re-exported names used by the docs  # noqa: B018
