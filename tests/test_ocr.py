"""demo.ocr: offline engines read rendered sticker text (skipped when an engine is missing)."""
from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from demo import ocr
from core.data.images import StickerImageError

CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")


def _render(lines: list[str], font: ImageFont.FreeTypeFont) -> Image.Image:
    image = Image.new("RGB", (360, 90 * len(lines) + 20), "white")
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(lines):
        draw.text((20, 20 + 90 * i), text, font=font, fill="black")
    return image


def _font(size: int = 44) -> ImageFont.FreeTypeFont:
    if CJK_FONT.is_file():
        return ImageFont.truetype(str(CJK_FONT), size)
    return ImageFont.load_default(size=size)


def test_clean_text_and_join_order():
    assert ocr.clean_text("a\x00b\u200b  c\n\td", max_chars=5) == "a b c"
    lines = [ocr.OCRLine("拜拜", 0.9, (100, 0, 150, 20)), ocr.OCRLine("走了", 0.9, (0, 2, 50, 22)),
             ocr.OCRLine("下一行", 0.9, (0, 60, 90, 80))]
    assert ocr.join_lines(lines) == "走了 拜拜 下一行"


def test_default_engine_and_unknown_engine():
    assert ocr.default_engine() in (None, *ocr.ENGINES)
    with pytest.raises(ocr.OCRUnavailableError, match="unknown OCR engine"):
        ocr.read_text(Image.new("RGB", (10, 10)), engine="tesseract9")


@pytest.mark.skipif("rapidocr" not in ocr.available_engines(), reason="rapidocr not installed")
def test_rapidocr_reads_chinese_and_english():
    if not CJK_FONT.is_file():
        pytest.skip("no CJK font to render Chinese (apt-get install fonts-wqy-microhei)")
    text = ocr.read_text(_render(["好的好的", "See you"], _font()), engine="rapidocr")
    assert text.replace(" ", "").lower() == "好的好的seeyou"
    assert ocr.read_text(Image.new("RGB", (80, 80), "white"), engine="rapidocr") == ""


@pytest.mark.slow  # ~10 s to load the CRAFT detector on 2 cores
@pytest.mark.skipif("easyocr" not in ocr.available_engines(), reason="easyocr not installed")
def test_easyocr_reads_english():
    text = ocr.read_text(_render(["SEE YOU"], _font(48)), engine="easyocr")
    assert text.replace(" ", "").upper() == "SEEYOU"


def test_bad_bytes_raise_sticker_image_error():
    if ocr.default_engine() is None:
        pytest.skip("no OCR engine installed")
    with pytest.raises(StickerImageError):
        ocr.read_text(b"definitely not an image")
