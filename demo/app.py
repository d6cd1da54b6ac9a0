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
import tempfile  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from types import SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import gradio as gr  # noqa: E402

from demo.dialogue import parse_dialogue  # noqa: E402
from demo.plots import heatmap_image, highlighted_value  # noqa: E402
from demo.service import (  # noqa: E402
    CANDIDATE_MODES,
    SALIENCY_METHODS,
    DemoError,
    DemoService,
    Example,
    StickerInfo,
    rank_in,
    ranked_to_json,
)

__all__ = ["build_demo", "ranked_to_json", "CSS"]

logger = logging.getLogger(__name__)

CSS = """
#rank-status p, #saliency-status p, #flag-status p, #add-status p { margin: 0.2em 0; }
.demo-error { color: #b42318; font-weight: 600; }
.demo-note { color: #555; }
"""

TABLE_HEADERS = ["#", "sticker", "score", "text", "prior", "p", "emotion (top-3)", "semantic label (model)",
                 "OCR text", "gold"]  # text / prior: the text scorer's and the popularity prior's parts of the score
FLAG_HEADERS = ["sticker", "label", "annotator", "model rank", "updated (UTC)"]
DIALOGUE_PLACEHOLDER = ("One turn per line; optional A:/B: prefixes (甲：/乙： too).\n"
                        "Unprefixed lines alternate speakers; the LAST line is the one the sticker goes with.\n"
                        "A: 今天加班到好晚\nB: 辛苦啦，早点休息\nA: 好困啊，我去睡了")
MODE_CHOICES = [("All stickers", "all"), ("Random 10 (gold + 9 when an example is loaded)", "random10"),
                ("My choice", "choice")]
METHOD_CHOICES = [("Gradient norm (paper Fig. 3)", "gradient"), ("Integrated Gradients", "integrated_gradients")]
OCR_ENGINES = ["auto", "rapidocr", "easyocr", "off"]
PRIVATE = {"api_visibility": "private"}  # UI events: not API endpoints
_PLACEHOLDER_IMAGE: list[str] = []


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
                message = f"Something went wrong ({type(exc).__name__}: {exc}); the server log has the details."
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


def _emotions(r: Any) -> str:
    return " · ".join(f"{name} {p:.0%}" for name, p in r.emotions) or "—"


def _placeholder_image() -> str:
    """A grey 'no image' PNG in the temp dir (stickers without an image still get a tile)."""
    if not _PLACEHOLDER_IMAGE or not Path(_PLACEHOLDER_IMAGE[0]).is_file():
        from PIL import Image, ImageDraw

        image = Image.new("RGB", (128, 128), (230, 230, 230))
        ImageDraw.Draw(image).text((30, 58), "no image", fill=(90, 90, 90))
        path = Path(tempfile.gettempdir()) / "sticker_demo_no_image.png"
        image.save(path)
        _PLACEHOLDER_IMAGE[:] = [str(path)]
    return _PLACEHOLDER_IMAGE[0]


def _gallery(outcome: Any, service: DemoService) -> list[tuple[str, str]]:
    items = []
    for r in outcome.ranked:
        path = r.image_path or service.info(r.sticker_id).image_path
        gold = " ★gold" if r.sticker_id == outcome.gold_id else ""
        label = r.name_label or r.ocr or r.sticker_id
        items.append((str(path) if path and Path(path).is_file() else _placeholder_image(),
                      f"#{r.rank}{gold} · {r.score:.2f} · {label}"))
    return items


def _table(outcome: Any) -> list[list[Any]]:
    rows = []
    for r in outcome.ranked:
        sticker = f"{r.name_label} · {r.sticker_id}" if r.name_label else r.sticker_id
        rows.append([r.rank, sticker, round(float(r.score), 3), round(float(r.text), 3), round(float(r.prior), 3),
                     round(float(r.probability), 3), _emotions(r), r.semantic_label or "—", r.ocr or "—",
                     "★" if r.sticker_id == outcome.gold_id else ""])
    return rows


def _flag_rows(annotations: list[Any]) -> list[list[Any]]:
    return [[a.sticker_id, a.label, a.annotator, "" if a.model_rank is None else a.model_rank,
             a.updated_at.strftime("%Y-%m-%d %H:%M:%S") if hasattr(a.updated_at, "strftime") else str(a.updated_at)]
            for a in annotations]


def _selected_md(service: DemoService, sticker_id: str | None, ranking: list[dict] | None) -> str:
    """What the model says about the selected sticker (:class:`DemoError` for an unknown id)."""
    if not sticker_id:
        return "Pick a sticker in the ranking (click a tile) or in the list."
    info = service.info(sticker_id)
    row = rank_in(ranking, sticker_id)
    parts = [f"**{_md_escape(info.label)}**"]
    if row:
        emotions = " · ".join(f"{e['emotion']} {e['probability']:.0%}" for e in row["emotions"]) or "—"
        parts.append(f"rank **{row['rank']}**, score {row['score']:.3f} (p = {row['probability']:.2f}); "
                     f"emotion: {_md_escape(emotions)}; semantic label the model reconstructs: "
                     f"**{_md_escape(row['semantic_label'] or '—')}**; OCR text: {_md_escape(row['ocr'] or '—')}")
    else:
        parts.append(f"OCR text: {_md_escape(info.ocr or '—')} (not in the current ranking)")
    return "<br>".join(parts)


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


def _username(request: gr.Request | None) -> str | None:
    return getattr(request, "username", None) if request is not None else None


# --------------------------------------------------------------------------- rank & explain tab


def _rank_tab(service: DemoService, *, require_login: bool) -> SimpleNamespace:
    """The "Rank & explain" tab: dialogue and candidates, the ranking, the selected sticker,
    then the saliency and flag panels. Returns its components (the add tab updates some)."""
    ui = SimpleNamespace()
    with gr.Tab("Rank & explain / 排序与解释", id="rank"):
        ui.ranking_state = gr.State([])    # last ranking as JSON rows
        ui.example_state = gr.State(None)  # key of the loaded example
        with gr.Row():
            with gr.Column(scale=2):
                ui.example = gr.Dropdown([(e.title, e.key) for e in service.examples.values()], value=None,
                                         label="Load an example / 示例", elem_id="example")
                ui.dialogue = gr.Textbox(lines=7, max_lines=20, label="Dialogue / 对话 (one turn per line)",
                                         placeholder=DIALOGUE_PLACEHOLDER, elem_id="dialogue")
                ui.alternate = gr.Radio([("alternate speakers", True), ("same speaker as line above", False)],
                                        value=True, label="Lines without A:/B:", elem_id="alternate")
                ui.preview = gr.Markdown("", elem_id="dialogue-preview")
                ui.mode = gr.Radio(MODE_CHOICES, value="all", label="Candidates", elem_id="mode")
                ui.chosen = gr.Dropdown(service.sticker_choices(), multiselect=True, label="My choice",
                                        visible=False, elem_id="chosen")
                ui.seed = gr.Number(0, precision=0, label="Random seed", visible=False, elem_id="seed")
                ui.rank_btn = gr.Button("Rank stickers / 排序", variant="primary", elem_id="rank-btn")
                ui.rank_status = gr.Markdown("", elem_id="rank-status")
            with gr.Column(scale=3):
                ui.gallery = gr.Gallery(label="Ranked stickers (best first)", columns=5, height=430,
                                        object_fit="contain", fit_columns=False, allow_preview=False,
                                        elem_id="ranking-gallery")
                ui.table = gr.Dataframe(headers=TABLE_HEADERS, label="Ranking", interactive=False, wrap=True,
                                        max_height=300, elem_id="ranking-table",
                                        column_widths=["5%", "18%", "10%", "10%", "8%", "20%", "14%", "9%", "6%"])
        with gr.Row(elem_id="selected-row"):
            ui.selected = gr.Dropdown(service.sticker_choices(), value=None, label="Selected sticker",
                                      elem_id="selected-sticker", scale=1)
            ui.selected_info = gr.Markdown(_selected_md(service, None, None), elem_id="selected-info")
        with gr.Row(elem_id="explain-row"):
            _saliency_panel(service, ui)
            _flag_panel(service, ui, require_login=require_login)
    _wire_ranking(service, ui)
    return ui


def _wire_ranking(service: DemoService, ui: SimpleNamespace) -> None:
    """The rank tab's events: dialogue preview, candidate mode, examples, ranking, selection."""
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

    @_handle_errors(KEEP, KEEP, KEEP, KEEP, KEEP, KEEP, STATUS)
    def on_rank(text, alt, mode_value, chosen_ids, seed_value, example_key, progress=gr.Progress()):
        outcome = service.rank(text, mode=mode_value, chosen=chosen_ids, seed=seed_value, alternate=bool(alt),
                               example_key=example_key, progress=_progress_fn(progress))
        flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
        rows = ranked_to_json(outcome.ranked)
        choices = [(f"#{r['rank']} · {service.info(r['sticker_id']).label}", r["sticker_id"]) for r in rows]
        return (_gallery(outcome, service), _table(outcome), rows, gr.update(choices=choices, value=outcome.top_id),
                _selected_md(service, outcome.top_id, rows), flags,
                _notes_md([*outcome.notices, outcome.summary()]))

    def on_gallery_select(rows, evt: gr.SelectData):
        index = evt.index if isinstance(evt.index, int) else (evt.index or [0])[0]
        if not rows or index is None or index >= len(rows):
            return gr.update()
        return rows[index]["sticker_id"]

    @_handle_errors(STATUS)
    def on_selected(sticker_id, rows):
        return _selected_md(service, sticker_id, rows)

    ui.dialogue.change(on_dialogue, [ui.dialogue, ui.alternate], ui.preview, trigger_mode="always_last",
                       show_progress="hidden", **PRIVATE)
    ui.alternate.change(on_dialogue, [ui.dialogue, ui.alternate], ui.preview, show_progress="hidden", **PRIVATE)
    ui.mode.change(on_mode, ui.mode, [ui.chosen, ui.seed], show_progress="hidden", **PRIVATE)
    ui.example.change(on_example, ui.example, [ui.dialogue, ui.example_state, ui.rank_status], **PRIVATE)
    rank_inputs = [ui.dialogue, ui.alternate, ui.mode, ui.chosen, ui.seed, ui.example_state]
    rank_outputs = [ui.gallery, ui.table, ui.ranking_state, ui.selected, ui.selected_info, ui.flags_table,
                    ui.rank_status]
    ui.rank_btn.click(on_rank, rank_inputs, rank_outputs, concurrency_id="model", **PRIVATE)
    ui.dialogue.submit(on_rank, rank_inputs, rank_outputs, concurrency_id="model", **PRIVATE)
    ui.gallery.select(on_gallery_select, ui.ranking_state, ui.selected, show_progress="hidden", **PRIVATE)
    ui.selected.change(on_selected, [ui.selected, ui.ranking_state], ui.selected_info, show_progress="hidden",
                       **PRIVATE)


def _saliency_panel(service: DemoService, ui: SimpleNamespace) -> None:
    """Word saliency of the dialogue for the selected sticker (gradient norm or Integrated Gradients)."""
    with gr.Column(elem_id="saliency-panel"):
        gr.Markdown("### Word saliency\nHow strongly each dialogue token moves the matching "
                    "score of the selected sticker.")
        method = gr.Radio(METHOD_CHOICES, value="gradient", label="Method", elem_id="method")
        steps = gr.Slider(4, 128, value=32, step=4, label="Integrated Gradients steps", elem_id="ig-steps")
        button = gr.Button("Explain / 解释", elem_id="saliency-btn")
        status = gr.Markdown("", elem_id="saliency-status")
        highlighted = gr.HighlightedText(label="Saliency (red = more important)", show_legend=False,
                                         combine_adjacent=False, elem_id="saliency-text")
        heatmap = gr.Image(label="Heat map", type="pil", interactive=False, elem_id="saliency-heatmap")

    @_handle_errors(KEEP, KEEP, STATUS)
    def on_saliency(text, sticker_id, method_value, n_steps, alt, progress=gr.Progress()):
        pairs = service.saliency(text, sticker_id, method_value, n_steps=n_steps, alternate=bool(alt),
                                 progress=_progress_fn(progress))
        image = heatmap_image(pairs, title=f"{method_value.replace('_', ' ')} saliency for sticker {sticker_id}")
        return highlighted_value(pairs), image, _notes_md([f"{len(pairs)} tokens; scores scaled to the largest."])

    button.click(on_saliency, [ui.dialogue, ui.selected, method, steps, ui.alternate],
                 [highlighted, heatmap, status], concurrency_id="model", **PRIVATE)


def _flag_panel(service: DemoService, ui: SimpleNamespace, *, require_login: bool) -> None:
    """Flag the selected sticker as also (not) acceptable for the dialogue; the dialogue's flags."""
    with gr.Column(elem_id="flag-panel"):
        gr.Markdown("### Flag as also acceptable\nThe model ranks one sticker first; mark "
                    "other stickers that would also fit this dialogue.")
        annotator = gr.Textbox(value="", label="Annotator name", placeholder="anonymous",
                               visible=not require_login, elem_id="annotator", max_length=64)
        if require_login:
            gr.Markdown("Flags are saved under your login name.")
        label = gr.Radio([("acceptable", "acceptable"), ("not acceptable", "not_acceptable")],
                         value="acceptable", label="Label", elem_id="flag-label")
        with gr.Row():
            flag_btn = gr.Button("Flag selected sticker", variant="secondary", elem_id="flag-btn",
                                 interactive=service.can_flag)
            unflag_btn = gr.Button("Remove my flag", elem_id="unflag-btn", interactive=service.can_flag)
        status = gr.Markdown("" if service.can_flag else "Flagging is off (start with --annotations DB).",
                             elem_id="flag-status")
        ui.flags_table = gr.Dataframe(headers=FLAG_HEADERS, label="Flags for this dialogue", interactive=False,
                                      elem_id="flags-table")

    @_handle_errors(STATUS, KEEP)
    def on_flag(text, sticker_id, label_value, typed, alt, rows, example_key, request: gr.Request):
        who = service.annotator_for(typed, _username(request))
        row = rank_in(rows, sticker_id)
        record = service.flag(text, sticker_id, annotator=who, label=label_value, alternate=bool(alt),
                              model_rank=row["rank"] if row else None, example_key=example_key)
        flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
        return _notes_md([f"Saved: sticker {record.sticker_id} marked {record.label} by {record.annotator}."]), flags

    @_handle_errors(STATUS, KEEP)
    def on_unflag(text, sticker_id, typed, alt, request: gr.Request):
        who = service.annotator_for(typed, _username(request))
        removed = service.unflag(text, sticker_id, annotator=who, alternate=bool(alt))
        flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
        note = f"Removed {who}'s flag on {sticker_id}." if removed else f"{who} had no flag on {sticker_id}."
        return _notes_md([note]), flags

    flag_btn.click(on_flag, [ui.dialogue, ui.selected, label, annotator, ui.alternate, ui.ranking_state,
                             ui.example_state], [status, ui.flags_table], **PRIVATE)
    unflag_btn.click(on_unflag, [ui.dialogue, ui.selected, annotator, ui.alternate], [status, ui.flags_table],
                     **PRIVATE)


# --------------------------------------------------------------------------- other tabs


def _add_sticker_tab(service: DemoService, ui: SimpleNamespace, *, ocr_engine: str | None) -> None:
    """Upload an image, read its text (OCR), add it as a sticker; it is a candidate at once."""
    with gr.Tab("Add stickers / 添加表情", id="add"):
        if not service.can_add:
            gr.Markdown("Adding stickers is off (start with --user-stickers DIR).")
        with gr.Row():
            with gr.Column():
                upload = gr.File(label="Sticker image (png, jpg, gif, webp; ≤ 20 MiB)",
                                 file_types=[".png", ".jpg", ".jpeg", ".gif", ".webp"], type="filepath",
                                 elem_id="upload", interactive=service.can_add)
                engine = gr.Radio(OCR_ENGINES, value="auto" if ocr_engine else "off",
                                  label="OCR engine (auto: rapidocr for Chinese+English, else easyocr)",
                                  elem_id="ocr-engine")
                ocr_btn = gr.Button("Read text again", elem_id="ocr-btn")
                ocr_text = gr.Textbox(label="Text on the sticker (OCR; edit it)", max_length=200, elem_id="ocr-text")
                name = gr.Textbox(label="Name (optional, e.g. 晚安 / good night)", max_length=200,
                                  elem_id="sticker-name")
                add_btn = gr.Button("Add sticker", variant="primary", elem_id="add-btn", interactive=service.can_add)
                status = gr.Markdown("", elem_id="add-status")
            with gr.Column():
                preview = gr.Image(label="Preview (first frame)", type="pil", interactive=False, height=220,
                                   elem_id="upload-preview")
                user_gallery = gr.Gallery(label="Your stickers", columns=6, height=260, object_fit="contain",
                                          fit_columns=False, allow_preview=False, elem_id="user-gallery",
                                          value=service.user_sticker_tiles())

    @_handle_errors(None, "", STATUS)
    def on_upload(file_path, engine_value, progress=gr.Progress()):
        if not file_path:
            return None, gr.update(), ""
        reading = service.read_upload(file_path, engine_value, progress=_progress_fn(progress))
        if reading.problem:
            gr.Warning(reading.problem)
        return reading.image, reading.text, _error_md(reading.note) if reading.problem else _notes_md([reading.note])

    def on_ocr_again(file_path, engine_value, progress=gr.Progress()):
        _, text, note = on_upload(file_path, engine_value, progress)
        return text, note

    @_handle_errors(STATUS, KEEP, KEEP, KEEP)
    def on_add(file_path, text, sticker_name, progress=gr.Progress()):
        progress(0.3, desc="storing and encoding the sticker")
        sticker = service.add_sticker(file_path, text or "", sticker_name or "")
        choices = service.sticker_choices()
        note = (f"Added {sticker.sticker_id} ({sticker.name_label or sticker.ocr or 'no text'}); it is a "
                "candidate now — rank again to see it.")
        return (_notes_md([note]), service.user_sticker_tiles(), gr.update(choices=choices),
                gr.update(choices=choices, value=sticker.sticker_id))

    upload.upload(on_upload, [upload, engine], [preview, ocr_text, status], **PRIVATE)
    ocr_btn.click(on_ocr_again, [upload, engine], [ocr_text, status], **PRIVATE)
    add_btn.click(on_add, [upload, ocr_text, name], [status, user_gallery, ui.chosen, ui.selected],
                  concurrency_id="model", **PRIVATE)


def _annotations_tab(service: DemoService) -> None:
    """Inter-annotator agreement over the stored flags."""
    with gr.Tab("Annotations / 标注", id="annotations"):
        gr.Markdown("Inter-annotator agreement over items flagged by two or more annotators.")
        button = gr.Button("Refresh agreement", elem_id="agreement-btn")
        agreement = gr.JSON(label="Agreement", elem_id="agreement")
        status = gr.Markdown("" if service.can_flag else "No annotation database.")

    @_handle_errors(KEEP, STATUS)
    def on_agreement():
        return service.agreement(), ""

    button.click(on_agreement, None, [agreement, status], **PRIVATE)


def _api(service: DemoService) -> None:
    """The named API endpoints ``/rank``, ``/saliency`` and ``/flag`` (errors raise ``gr.Error``)."""
    @_handle_errors()
    def rank(dialogue: str, candidates: str = "all", sticker_ids: list[str] | None = None,
             seed: int = 0) -> list[dict]:
        """Rank stickers for a dialogue (one turn per line; optional A:/B: prefixes; the last
        line is the sticker sender's turn). candidates: "all", "random10" or "choice" (then
        sticker_ids lists them). Returns [{sticker_id, rank, score, probability, emotions:
        [{emotion, probability}] (top 3), semantic_label, ocr, name}], best first."""
        return ranked_to_json(service.rank(dialogue, mode=candidates, chosen=sticker_ids, seed=seed).ranked)

    @_handle_errors()
    def saliency(dialogue: str, sticker_id: str, method: str = "gradient", n_steps: int = 32) -> list[dict]:
        """Word saliency of the dialogue tokens for one sticker's matching score.
        method: "gradient" (per-token gradient norm, paper Fig. 3) or "integrated_gradients".
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


# --------------------------------------------------------------------------- build


def build_demo(selector: Any, *, sticker_info: dict[str, StickerInfo] | None = None,
               examples: list[Example] | None = None, annotations: Any = None, user_stickers: Any = None,
               ocr_engine: str | None = "auto", data_note: str = "", require_login: bool = False,
               static_dirs: list[str | Path] | None = None, title: str = "Sticker selection demo") -> gr.Blocks:
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
    """
    service = DemoService(selector, sticker_info=sticker_info, examples=examples or (), annotations=annotations,
                          user_stickers=user_stickers, ocr_engine=ocr_engine, data_note=data_note,
                          require_login=require_login)
    dirs = service.static_dirs(static_dirs or ())
    if dirs:
        gr.set_static_paths(dirs)
    with gr.Blocks(title=title, analytics_enabled=False) as blocks:
        gr.Markdown(f"# {title}\nSelecting stickers in open-domain dialogue (MMBERT-style multitask "
                    f"cross-encoder). Model: `{_md_escape(service.model_version or 'unknown')}` · "
                    f"{len(service.sticker_ids())} stickers.")
        if data_note:
            gr.Markdown(_notes_md([data_note]), elem_id="data-note")
        with gr.Tabs():
            ui = _rank_tab(service, require_login=require_login)
            _add_sticker_tab(service, ui, ocr_engine=ocr_engine)
            _annotations_tab(service)
        _api(service)
    blocks.demo_service = service  # for tests and scripts
    return blocks


CANDIDATE_MODES, SALIENCY_METHODS  # re-exported names used by the docs  # noqa: B018
