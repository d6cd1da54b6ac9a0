"""The Gradio UI: ``build_demo(selector, ...)`` returns a ``gr.Blocks`` (nothing is launched here).

Handlers are thin: they call :class:`demo.service.DemoService` (which calls ``core``) and
format the result. Bad input never raises out of a UI handler: it shows a ``gr.Warning``
and an error line, and the server keeps serving. The named API endpoints ``/rank``,
``/saliency`` and ``/flag`` (for ``gradio_client``) raise ``gr.Error`` with the same
messages instead. See ``demo/README_API.md``.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import json  # noqa: E402
import logging  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
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
_PLACEHOLDER_IMAGE: list[str] = []


def ranked_to_json(ranked: list[Any]) -> list[dict[str, Any]]:
    """JSON-friendly ranking: one dict per candidate, best first."""
    return [{
        "sticker_id": r.sticker_id,
        "rank": int(r.rank),
        "score": round(float(r.score), 6),
        "prior": round(float(r.prior), 6),
        "text": round(float(r.text), 6),
        "probability": round(float(r.probability), 6),
        "emotions": [{"emotion": str(name), "probability": round(float(p), 6)} for name, p in r.emotions],
        "semantic_label": str(r.semantic_label),
        "ocr": str(r.ocr),
        "name": str(r.name_label),
    } for r in ranked]


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


def _table(outcome: Any, service: DemoService) -> list[list[Any]]:
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
    if not sticker_id:
        return "Pick a sticker in the ranking (click a tile) or in the list."
    try:
        info = service.info(sticker_id)
    except DemoError as exc:
        return _error_md(str(exc))
    row = next((r for r in (ranking or []) if r["sticker_id"] == sticker_id), None)
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


# --------------------------------------------------------------------------- build


def build_demo(selector: Any, *, sticker_info: dict[str, StickerInfo] | None = None,
               examples: list[Example] | None = None, annotations: Any = None, user_stickers: Any = None,
               ocr_engine: str | None = "auto", data_note: str = "", require_login: bool = False,
               static_dirs: list[str | Path] | None = None, title: str = "Sticker selection demo") -> gr.Blocks:
    """Build (not launch) the demo.

    Args:
        selector: a ``core.inference.StickerSelector`` (its stickers are the candidates).
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
    dirs = {Path(d).resolve() for d in (static_dirs or [])}
    for sid in service.sticker_ids():
        path = service.info(sid).image_path
        if path:
            dirs.add(Path(path).resolve().parent)
    if user_stickers is not None:
        dirs.add(Path(user_stickers.image_dir).resolve())
    if dirs:
        gr.set_static_paths(sorted(str(d) for d in dirs))

    example_choices = [(e.title, e.key) for e in service.examples.values()]
    mode_choices = [("All stickers", "all"), ("Random 10 (gold + 9 when an example is loaded)", "random10"),
                    ("My choice", "choice")]
    method_choices = [("Gradient norm (paper Fig. 3)", "gradient"), ("Integrated Gradients", "integrated_gradients")]

    with gr.Blocks(title=title, analytics_enabled=False) as blocks:
        ranking_state = gr.State([])      # last ranking as JSON rows
        example_state = gr.State(None)    # key of the loaded example

        gr.Markdown(f"# {title}\nSelecting stickers in open-domain dialogue (MMBERT-style multitask "
                    f"cross-encoder). Model: `{_md_escape(service.model_version or 'unknown')}` · "
                    f"{len(service.sticker_ids())} stickers.")
        if data_note:
            gr.Markdown(_notes_md([data_note]), elem_id="data-note")

        with gr.Tabs():
            # ------------------------------------------------------------ rank
            with gr.Tab("Rank & explain / 排序与解释", id="rank"):
                with gr.Row():
                    with gr.Column(scale=2):
                        example = gr.Dropdown(example_choices, value=None, label="Load an example / 示例",
                                              elem_id="example")
                        dialogue = gr.Textbox(lines=7, max_lines=20, label="Dialogue / 对话 (one turn per line)",
                                              placeholder=DIALOGUE_PLACEHOLDER, elem_id="dialogue")
                        alternate = gr.Radio([("alternate speakers", True), ("same speaker as line above", False)],
                                             value=True, label="Lines without A:/B:", elem_id="alternate")
                        preview = gr.Markdown("", elem_id="dialogue-preview")
                        mode = gr.Radio(mode_choices, value="all", label="Candidates", elem_id="mode")
                        chosen = gr.Dropdown(service.sticker_choices(), multiselect=True, label="My choice",
                                             visible=False, elem_id="chosen")
                        seed = gr.Number(0, precision=0, label="Random seed", visible=False, elem_id="seed")
                        rank_btn = gr.Button("Rank stickers / 排序", variant="primary", elem_id="rank-btn")
                        rank_status = gr.Markdown("", elem_id="rank-status")
                    with gr.Column(scale=3):
                        gallery = gr.Gallery(label="Ranked stickers (best first)", columns=5, height=430,
                                             object_fit="contain", fit_columns=False, allow_preview=False,
                                             elem_id="ranking-gallery")
                        table = gr.Dataframe(headers=TABLE_HEADERS, label="Ranking", interactive=False,
                                             wrap=True, max_height=300, elem_id="ranking-table",
                                             column_widths=["5%", "18%", "10%", "10%", "8%", "20%", "14%",
                                                            "9%", "6%"])
                with gr.Row(elem_id="selected-row"):
                    selected = gr.Dropdown(service.sticker_choices(), value=None, label="Selected sticker",
                                           elem_id="selected-sticker", scale=1)
                    selected_info = gr.Markdown(_selected_md(service, None, None), elem_id="selected-info")
                with gr.Row(elem_id="explain-row"):
                    with gr.Column(elem_id="saliency-panel"):
                        gr.Markdown("### Word saliency\nHow strongly each dialogue token moves the matching "
                                    "score of the selected sticker.")
                        method = gr.Radio(method_choices, value="gradient", label="Method", elem_id="method")
                        steps = gr.Slider(4, 128, value=32, step=4, label="Integrated Gradients steps",
                                          elem_id="ig-steps")
                        saliency_btn = gr.Button("Explain / 解释", elem_id="saliency-btn")
                        saliency_status = gr.Markdown("", elem_id="saliency-status")
                        highlighted = gr.HighlightedText(label="Saliency (red = more important)",
                                                         show_legend=False, combine_adjacent=False,
                                                         elem_id="saliency-text")
                        heatmap = gr.Image(label="Heat map", type="pil", interactive=False, elem_id="saliency-heatmap")
                    with gr.Column(elem_id="flag-panel"):
                        gr.Markdown("### Flag as also acceptable\nThe model ranks one sticker first; mark "
                                    "other stickers that would also fit this dialogue.")
                        annotator = gr.Textbox(value="", label="Annotator name", placeholder="anonymous",
                                               visible=not require_login, elem_id="annotator", max_length=64)
                        if require_login:
                            gr.Markdown("Flags are saved under your login name.")
                        flag_label = gr.Radio([("acceptable", "acceptable"), ("not acceptable", "not_acceptable")],
                                              value="acceptable", label="Label", elem_id="flag-label")
                        with gr.Row():
                            flag_btn = gr.Button("Flag selected sticker", variant="secondary",
                                                 elem_id="flag-btn", interactive=service.can_flag)
                            unflag_btn = gr.Button("Remove my flag", elem_id="unflag-btn",
                                                   interactive=service.can_flag)
                        flag_status = gr.Markdown("" if service.can_flag else
                                                  "Flagging is off (start with --annotations DB).",
                                                  elem_id="flag-status")
                        flags_table = gr.Dataframe(headers=FLAG_HEADERS, label="Flags for this dialogue",
                                                   interactive=False, elem_id="flags-table")

            # ------------------------------------------------------------ add
            with gr.Tab("Add stickers / 添加表情", id="add"):
                if not service.can_add:
                    gr.Markdown("Adding stickers is off (start with --user-stickers DIR).")
                with gr.Row():
                    with gr.Column():
                        upload = gr.File(label="Sticker image (png, jpg, gif, webp; ≤ 20 MiB)",
                                         file_types=[".png", ".jpg", ".jpeg", ".gif", ".webp"], type="filepath",
                                         elem_id="upload", interactive=service.can_add)
                        engines = ["auto", "rapidocr", "easyocr", "off"]
                        engine = gr.Radio(engines, value="auto" if ocr_engine else "off",
                                          label="OCR engine (auto: rapidocr for Chinese+English, else easyocr)",
                                          elem_id="ocr-engine")
                        ocr_btn = gr.Button("Read text again", elem_id="ocr-btn")
                        ocr_text = gr.Textbox(label="Text on the sticker (OCR; edit it)", max_length=200,
                                              elem_id="ocr-text")
                        sticker_name = gr.Textbox(label="Name (optional, e.g. 晚安 / good night)", max_length=200,
                                                  elem_id="sticker-name")
                        add_btn = gr.Button("Add sticker", variant="primary", elem_id="add-btn",
                                            interactive=service.can_add)
                        add_status = gr.Markdown("", elem_id="add-status")
                    with gr.Column():
                        upload_preview = gr.Image(label="Preview (first frame)", type="pil", interactive=False,
                                                  height=220, elem_id="upload-preview")
                        user_gallery = gr.Gallery(label="Your stickers", columns=6, height=260,
                                                  object_fit="contain", fit_columns=False,
                                                  allow_preview=False, elem_id="user-gallery",
                                                  value=_user_gallery(service))

            # ------------------------------------------------------------ annotations
            with gr.Tab("Annotations / 标注", id="annotations"):
                gr.Markdown("Inter-annotator agreement over items flagged by two or more annotators.")
                agreement_btn = gr.Button("Refresh agreement", elem_id="agreement-btn")
                agreement = gr.JSON(label="Agreement", elem_id="agreement")
                agreement_status = gr.Markdown("" if service.can_flag else "No annotation database.")

        # ---------------------------------------------------------------- handlers

        def on_dialogue(text, alt):
            parsed = parse_dialogue(text, alternate=bool(alt))
            return parsed.preview_markdown() + ("\n\n" + _notes_md(parsed.notices) if parsed.notices else "")

        def on_mode(choice):
            return gr.update(visible=choice == "choice"), gr.update(visible=choice == "random10")

        def on_example(key):
            if not key:
                return gr.update(), None, ""
            try:
                ex = service.example(key)
            except DemoError as exc:
                gr.Warning(str(exc))
                return gr.update(), None, _error_md(str(exc))
            note = f"Loaded {ex.split.replace('_', ' ')} example" + (f"; gold sticker {ex.gold_id} is marked ★."
                                                                     if ex.gold_id else ".")
            return ex.text, key, _notes_md([note])

        def on_rank(text, alt, mode_value, chosen_ids, seed_value, example_key, progress=gr.Progress()):
            keep = (gr.update(),) * 6
            try:
                outcome = service.rank(text, mode=mode_value, chosen=chosen_ids, seed=seed_value, alternate=bool(alt),
                                       example_key=example_key, progress=_progress_fn(progress))
                flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
            except DemoError as exc:
                gr.Warning(str(exc))
                return (*keep, _error_md(str(exc)))
            rows = ranked_to_json(outcome.ranked)
            notes = list(outcome.notices)
            n = len(outcome.ranked)
            notes.append(f"Ranked {n} sticker{'s' if n != 1 else ''} for speaker {outcome.parsed.sender}'s last turn"
                         + (f"; gold sticker {outcome.gold_id} is at rank {outcome.rank_of(outcome.gold_id)}."
                            if outcome.gold_id else "."))
            top = outcome.ranked[0].sticker_id if outcome.ranked else None
            choices = [(f"#{r['rank']} · {service.info(r['sticker_id']).label}", r["sticker_id"]) for r in rows]
            return (_gallery(outcome, service), _table(outcome, service), rows,
                    gr.update(choices=choices, value=top), _selected_md(service, top, rows), flags, _notes_md(notes))

        def on_gallery_select(rows, evt: gr.SelectData):
            index = evt.index if isinstance(evt.index, int) else (evt.index or [0])[0]
            if not rows or index is None or index >= len(rows):
                return gr.update()
            return rows[index]["sticker_id"]

        def on_selected(sticker_id, rows):
            return _selected_md(service, sticker_id, rows)

        def on_saliency(text, sticker_id, method_value, n_steps, alt, progress=gr.Progress()):
            try:
                pairs = service.saliency(text, sticker_id, method_value, n_steps=n_steps, alternate=bool(alt),
                                         progress=_progress_fn(progress))
                image = heatmap_image(pairs, title=f"{method_value.replace('_', ' ')} saliency for sticker "
                                                   f"{sticker_id}")
            except DemoError as exc:
                gr.Warning(str(exc))
                return gr.update(), gr.update(), _error_md(str(exc))
            return highlighted_value(pairs), image, _notes_md([f"{len(pairs)} tokens; scores scaled to the largest."])

        def on_flag(text, sticker_id, label_value, typed, alt, rows, example_key, request: gr.Request):
            try:
                who = service.annotator_for(typed, _username(request))
                row = next((r for r in rows or [] if r["sticker_id"] == sticker_id), None)
                record = service.flag(text, sticker_id, annotator=who, label=label_value, alternate=bool(alt),
                                      model_rank=row["rank"] if row else None, example_key=example_key)
                flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
            except DemoError as exc:
                gr.Warning(str(exc))
                return _error_md(str(exc)), gr.update()
            saved = f"Saved: sticker {record.sticker_id} marked {record.label} by {record.annotator}."
            return _notes_md([saved]), flags

        def on_unflag(text, sticker_id, typed, alt, request: gr.Request):
            try:
                who = service.annotator_for(typed, _username(request))
                removed = service.unflag(text, sticker_id, annotator=who, alternate=bool(alt))
                flags = _flag_rows(service.flags_for(text, alternate=bool(alt)))
            except DemoError as exc:
                gr.Warning(str(exc))
                return _error_md(str(exc)), gr.update()
            note = f"Removed {who}'s flag on {sticker_id}." if removed else f"{who} had no flag on {sticker_id}."
            return _notes_md([note]), flags

        def on_upload(file_path, engine_value, progress=gr.Progress()):
            if not file_path:
                return None, gr.update(), ""
            from core.images import StickerImageError, load_sticker_image

            try:
                service._checked_upload(file_path)
                image = load_sticker_image(file_path, name=Path(file_path).name)
            except (DemoError, StickerImageError) as exc:
                gr.Warning(f"Not a usable image: {exc}")
                return None, "", _error_md(f"Not a usable image: {exc}")
            progress(0.2, desc="reading the text (OCR)")
            try:
                text, used = service.read_text(file_path, engine=engine_value)
            except DemoError as exc:
                gr.Warning(str(exc))
                return image, "", _error_md(str(exc))
            if used in ("off", "none installed"):
                note = f"Text reading is {used}: type the text on the sticker (if any)."
            else:
                note = f"Text read by {used}: “{text or 'no text found'}”. Edit it if needed, then add the sticker."
            return image, text, _notes_md([note])

        def on_ocr_again(file_path, engine_value, progress=gr.Progress()):
            _, text, status = on_upload(file_path, engine_value, progress)
            return text, status

        def on_add(file_path, text, name, progress=gr.Progress()):
            try:
                progress(0.3, desc="storing and encoding the sticker")
                sticker = service.add_sticker(file_path, text or "", name or "")
            except DemoError as exc:
                gr.Warning(str(exc))
                return _error_md(str(exc)), gr.update(), gr.update(), gr.update()
            choices = service.sticker_choices()
            note = (f"Added {sticker.sticker_id} ({sticker.name_label or sticker.ocr or 'no text'}); it is a "
                    "candidate now — rank again to see it.")
            return (_notes_md([note]), _user_gallery(service), gr.update(choices=choices),
                    gr.update(choices=choices, value=sticker.sticker_id))

        def on_agreement():
            try:
                return service.agreement(), ""
            except DemoError as exc:
                gr.Warning(str(exc))
                return gr.update(), _error_md(str(exc))

        private = {"api_visibility": "private"}
        dialogue.change(on_dialogue, [dialogue, alternate], preview, trigger_mode="always_last",
                        show_progress="hidden", **private)
        alternate.change(on_dialogue, [dialogue, alternate], preview, show_progress="hidden", **private)
        mode.change(on_mode, mode, [chosen, seed], show_progress="hidden", **private)
        example.change(on_example, example, [dialogue, example_state, rank_status], **private)
        rank_outputs = [gallery, table, ranking_state, selected, selected_info, flags_table, rank_status]
        rank_inputs = [dialogue, alternate, mode, chosen, seed, example_state]
        rank_btn.click(on_rank, rank_inputs, rank_outputs, concurrency_id="model", **private)
        dialogue.submit(on_rank, rank_inputs, rank_outputs, concurrency_id="model", **private)
        gallery.select(on_gallery_select, ranking_state, selected, show_progress="hidden", **private)
        selected.change(on_selected, [selected, ranking_state], selected_info, show_progress="hidden", **private)
        saliency_btn.click(on_saliency, [dialogue, selected, method, steps, alternate],
                           [highlighted, heatmap, saliency_status], concurrency_id="model", **private)
        flag_btn.click(on_flag, [dialogue, selected, flag_label, annotator, alternate, ranking_state, example_state],
                       [flag_status, flags_table], **private)
        unflag_btn.click(on_unflag, [dialogue, selected, annotator, alternate], [flag_status, flags_table], **private)
        upload.upload(on_upload, [upload, engine], [upload_preview, ocr_text, add_status], **private)
        ocr_btn.click(on_ocr_again, [upload, engine], [ocr_text, add_status], **private)
        add_btn.click(on_add, [upload, ocr_text, sticker_name], [add_status, user_gallery, chosen, selected],
                      concurrency_id="model", **private)
        agreement_btn.click(on_agreement, None, [agreement, agreement_status], **private)

        # ---------------------------------------------------------------- API

        def rank(dialogue: str, candidates: str = "all", sticker_ids: list[str] | None = None,
                 seed: int = 0) -> list[dict]:
            """Rank stickers for a dialogue (one turn per line; optional A:/B: prefixes; the last
            line is the sticker sender's turn). candidates: "all", "random10" or "choice" (then
            sticker_ids lists them). Returns [{sticker_id, rank, score, probability, emotions:
            [{emotion, probability}] (top 3), semantic_label, ocr, name}], best first."""
            try:
                outcome = service.rank(dialogue, mode=candidates, chosen=sticker_ids, seed=seed)
            except DemoError as exc:
                raise gr.Error(str(exc)) from None
            return ranked_to_json(outcome.ranked)

        def saliency(dialogue: str, sticker_id: str, method: str = "gradient", n_steps: int = 32) -> list[dict]:
            """Word saliency of the dialogue tokens for one sticker's matching score.
            method: "gradient" (per-token gradient norm, paper Fig. 3) or "integrated_gradients".
            Returns [{token, score}] in dialogue order (raw scores, not normalised)."""
            try:
                pairs = service.saliency(dialogue, sticker_id, method, n_steps=n_steps)
            except DemoError as exc:
                raise gr.Error(str(exc)) from None
            return [{"token": token, "score": score} for token, score in pairs]

        def flag(dialogue: str, sticker_id: str, annotator: str = "anonymous", label: str = "acceptable",
                 request: gr.Request = None) -> dict:
            """Record that a sticker is also acceptable ("acceptable") or not ("not_acceptable") for
            the dialogue. With --auth the annotator is the logged-in user. Returns the stored record."""
            try:
                who = service.annotator_for(annotator, _username(request))
                record = service.flag(dialogue, sticker_id, annotator=who, label=label)
            except DemoError as exc:
                raise gr.Error(str(exc)) from None
            return json.loads(json.dumps(record.to_dict(), default=str))

        gr.api(rank, api_name="rank", concurrency_id="model")
        gr.api(saliency, api_name="saliency", concurrency_id="model")
        gr.api(flag, api_name="flag")

    blocks.demo_service = service  # for tests and scripts
    return blocks


def _user_gallery(service: DemoService) -> list[tuple[str, str]]:
    if service.user_stickers is None:
        return []
    try:
        stickers = service.user_stickers.stickers()
    except Exception as exc:  # noqa: BLE001 - a broken store must not break the page
        logger.warning("cannot list user stickers: %s", exc)
        return []
    return [(str(s.image_path), f"{s.sticker_id} · {s.name_label or s.ocr or ''}") for s in stickers]


CANDIDATE_MODES, SALIENCY_METHODS  # re-exported names used by the docs  # noqa: B018
