"""Safe loading of sticker images as RGB PIL images.

Stickers in MOD are GIF (often animated, often with a transparent colour),
JPEG and PNG files. The model only ever sees one still picture per sticker, so
this module:

* checks the byte size of the input against :data:`MAX_IMAGE_BYTES`;
* reads the header only and checks ``width * height`` against
  :data:`MAX_IMAGE_PIXELS` *before* any pixel data is decoded;
* decodes the first frame only (GIF / WebP / APNG), so a 500-frame GIF costs
  the same as a still image;
* flattens transparency (RGBA, LA, PA, and palette / RGB / L images with a
  ``transparency`` entry) onto a white background;
* turns every failure (missing, truncated, corrupt or non-image data, too
  large) into a :class:`StickerImageError` whose message names the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

__all__ = [
    "MAX_IMAGE_BYTES",
    "MAX_IMAGE_PIXELS",
    "StickerImageError",
    "load_sticker_image",
]

MAX_IMAGE_BYTES: int = 20 * 1024 * 1024
"""Largest accepted encoded image, in bytes (20 MiB)."""

MAX_IMAGE_PIXELS: int = 40_000_000
"""Largest accepted ``width * height`` as declared by the image header."""

_WHITE = (255, 255, 255)


class StickerImageError(ValueError):
    """A sticker image could not be loaded (missing, corrupt, not an image, too large)."""


def _read_source(source: str | Path | bytes, name: str | None) -> tuple[bytes, str]:
    """Return the encoded bytes of ``source`` and a display name for error messages."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        label = name or "<bytes>"
        _check_byte_size(len(data), label)
        return data, label
    path = Path(source)
    label = name or str(path)
    if not path.is_file():
        raise StickerImageError(f"{label}: sticker image file not found")
    _check_byte_size(path.stat().st_size, label)
    try:
        return path.read_bytes(), label
    except OSError as exc:
        raise StickerImageError(f"{label}: cannot read sticker image ({exc})") from exc


def _check_byte_size(n_bytes: int, label: str) -> None:
    """Raise if ``n_bytes`` is empty or above :data:`MAX_IMAGE_BYTES`."""
    if n_bytes == 0:
        raise StickerImageError(f"{label}: sticker image is empty (0 bytes)")
    if n_bytes > MAX_IMAGE_BYTES:
        raise StickerImageError(
            f"{label}: sticker image is {n_bytes} bytes, above the limit of {MAX_IMAGE_BYTES}"
        )


def _open_header(data: bytes, label: str) -> Image.Image:
    """Open ``data`` lazily (header only) and check the declared pixel count."""
    try:
        with warnings.catch_warnings():
            # Our own, lower pixel cap is checked below; Pillow's warning is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise StickerImageError(f"{label}: not a recognised image format") from exc
    except (Image.DecompressionBombError, OSError, SyntaxError, ValueError) as exc:
        raise StickerImageError(f"{label}: corrupt image header ({exc})") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise StickerImageError(f"{label}: image header declares an empty size {width}x{height}")
    if width * height > MAX_IMAGE_PIXELS:
        image.close()
        raise StickerImageError(
            f"{label}: image header declares {width}x{height} = {width * height} pixels, "
            f"above the limit of {MAX_IMAGE_PIXELS}"
        )
    return image


def _has_transparency(image: Image.Image) -> bool:
    """True when ``image`` carries an alpha channel or a transparent colour."""
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert a decoded frame to RGB, flattening any transparency onto white."""
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, _WHITE + (255,))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if image.mode == "RGB":
        return image.copy()
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # High bit-depth greyscale: scale into 8 bits before the RGB conversion.
        return image.convert("L").convert("RGB")
    return image.convert("RGB")


def load_sticker_image(source: str | Path | bytes, *, name: str | None = None) -> Image.Image:
    """Load the first frame of a sticker image as an RGB image.

    Args:
        source: a file path, or the encoded image bytes.
        name: optional display name used in error messages (defaults to the
            path, or ``"<bytes>"`` for raw bytes).

    Returns:
        A new, fully decoded ``PIL.Image.Image`` in mode ``"RGB"``, independent
        of the source file.

    Raises:
        StickerImageError: the file is missing, empty, larger than
            :data:`MAX_IMAGE_BYTES`, declares more than
            :data:`MAX_IMAGE_PIXELS` pixels, or is truncated, corrupt or not an
            image. The message names the file.
    """
    data, label = _read_source(source, name)
    image = _open_header(data, label)
    try:
        # Image.open leaves a multi-frame image on frame 0; never touch n_frames
        # or is_animated, which would scan every frame of an animated GIF.
        image.load()  # decodes frame 0 only
        return _to_rgb(image)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError) as exc:
        raise StickerImageError(f"{label}: truncated or corrupt image data ({exc})") from exc
    finally:
        image.close()


def image_of(sticker) -> Image.Image:
    """A sticker's image, read safely from its image_path (ValueError naming it when it has none)."""
    if sticker.image_path is None:
        raise ValueError(f"sticker {sticker.sticker_id!r} has no image")
    return load_sticker_image(sticker.image_path)
