"""Tests for core.data.images.load_sticker_image (all inputs synthesised; real stickers if present)."""

from __future__ import annotations

import io
import random
import struct
import time
import zlib
from pathlib import Path

import pytest
import torch
from PIL import Image, features

from core.data import images
from core.data.images import StickerImageError, load_sticker_image
from tests.support.mini_mod import real_mod_dir

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def _palette_frame(fill: int, colours: list[tuple[int, int, int]]) -> Image.Image:
    """16x16 palette image: index 0 in the top-left 4x4 corner, ``fill`` elsewhere."""
    frame = Image.new("P", (16, 16), fill)
    frame.putpalette([c for rgb in colours for c in rgb] + [0] * (3 * (256 - len(colours))))
    frame.paste(0, (0, 0, 4, 4))
    return frame


def _gif_with_transparency(n_frames: int = 3) -> bytes:
    """Animated GIF, index 0 transparent; frame k is filled with colour index k+1."""
    colours = [(0, 0, 0), RED, GREEN, BLUE]
    frames = [_palette_frame(1 + k % 3, colours) for k in range(n_frames)]
    return _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], transparency=0,
                   duration=50, loop=0, disposal=2)


def _noise(size: int = 64) -> Image.Image:
    return Image.frombytes("RGB", (size, size), random.Random(size).randbytes(size * size * 3))


def test_gif_transparency_flattened_on_white_first_frame() -> None:
    image = load_sticker_image(_gif_with_transparency())
    assert image.mode == "RGB" and image.size == (16, 16)
    assert image.getpixel((0, 0)) == WHITE  # transparent corner
    assert image.getpixel((10, 10)) == RED  # frame 0 colour, not a later frame's


def test_rgba_png_flattened_on_white(tmp_path: Path) -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 255, 255))
    rgba.paste((0, 0, 0, 0), (0, 0, 5, 5))
    rgba.paste((255, 0, 0, 128), (5, 5, 10, 10))  # half-transparent red over white
    path = tmp_path / "贴纸.png"
    rgba.save(path)
    image = load_sticker_image(path)
    assert image.getpixel((0, 0)) == WHITE
    assert image.getpixel((9, 0)) == BLUE
    r, g, b = image.getpixel((9, 9))
    assert r == 255 and 120 <= g <= 135 and g == b


@pytest.mark.parametrize("mode", ["LA", "P"])
def test_other_transparency_modes(mode: str) -> None:
    if mode == "LA":
        source = Image.new("LA", (8, 8), (0, 0))
        data = _encode(source, "PNG")
    else:
        source = _palette_frame(1, [(0, 0, 0), GREEN])
        data = _encode(source, "PNG", transparency=0)
    image = load_sticker_image(data, name="mode.png")
    assert image.mode == "RGB"
    assert image.getpixel((0, 0)) == WHITE


def test_apng_first_frame() -> None:
    frames = [Image.new("RGBA", (8, 8), c + (255,)) for c in (RED, GREEN, BLUE)]
    data = _encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=50)
    assert load_sticker_image(data).getpixel((4, 4)) == RED


@pytest.mark.skipif(not features.check("webp"), reason="Pillow built without WebP")
def test_animated_webp_first_frame() -> None:
    frames = [Image.new("RGBA", (8, 8), c + (255,)) for c in (RED, BLUE)]
    frames[0].paste((0, 0, 0, 0), (0, 0, 4, 4))
    data = _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True, duration=50)
    image = load_sticker_image(data)
    assert image.getpixel((0, 0)) == WHITE and image.getpixel((6, 6)) == RED


def test_cmyk_jpeg_and_grey_become_rgb() -> None:
    cmyk = load_sticker_image(_encode(Image.new("CMYK", (8, 8), (0, 0, 0, 0)), "JPEG"))
    grey = load_sticker_image(_encode(Image.new("L", (8, 8), 200), "PNG"))
    assert cmyk.mode == grey.mode == "RGB"
    assert grey.getpixel((0, 0)) == (200, 200, 200)


def test_500_frame_gif_decodes_only_first_frame() -> None:
    colours = [(0, 0, 0), RED, GREEN, BLUE]
    frames = [_palette_frame(1 + k % 3, colours) for k in range(500)]
    data = _encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=20)
    start = time.perf_counter()
    image = load_sticker_image(data)
    assert time.perf_counter() - start < 1.0
    assert image.getpixel((10, 10)) == RED


def test_bytes_input_and_result_is_independent(tmp_path: Path) -> None:
    path = tmp_path / "好的1.jpeg"
    Image.new("RGB", (12, 10), GREEN).save(path)
    from_bytes = load_sticker_image(path.read_bytes(), name="好的1.jpeg")
    from_path = load_sticker_image(str(path))
    path.unlink()  # the returned image must not depend on the file
    assert from_bytes.size == from_path.size == (12, 10)
    assert from_path.load()[0, 0][1] > 240


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "GIF"])
def test_truncated_file_names_the_file(tmp_path: Path, fmt: str) -> None:
    data = _encode(_noise(), fmt)
    path = tmp_path / f"坏图.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(StickerImageError, match="坏图"):
        load_sticker_image(path)


def test_non_image_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "不是图片.gif"
    path.write_text("这不是一张图片", encoding="utf-8")
    with pytest.raises(StickerImageError, match="不是图片.gif.*not a recognised image"):
        load_sticker_image(path)
    with pytest.raises(StickerImageError, match="<bytes>"):
        load_sticker_image(b"plain text, no image")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(StickerImageError, match="nope.gif.*not found"):
        load_sticker_image(tmp_path / "nope.gif")
    (tmp_path / "empty.png").write_bytes(b"")
    with pytest.raises(StickerImageError, match="empty.png.*empty"):
        load_sticker_image(tmp_path / "empty.png")


def _png_with_declared_size(width: int, height: int) -> bytes:
    """A tiny valid PNG whose IHDR (CRC fixed) declares ``width`` x ``height``."""
    data = bytearray(_encode(Image.new("RGB", (4, 4), RED), "PNG"))
    ihdr = bytearray(data[16:29])
    ihdr[0:8] = struct.pack(">II", width, height)
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def test_oversized_header_rejected_before_decoding() -> None:
    with pytest.raises(StickerImageError, match=r"huge.png.*10000x10000.*pixels"):
        load_sticker_image(_png_with_declared_size(10_000, 10_000), name="huge.png")


def test_byte_size_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "大.png"
    Image.new("RGB", (32, 32), BLUE).save(path)
    monkeypatch.setattr(images, "MAX_IMAGE_BYTES", 10)
    with pytest.raises(StickerImageError, match="大.png.*bytes"):
        load_sticker_image(path)
    with pytest.raises(StickerImageError, match="bytes"):
        load_sticker_image(path.read_bytes())


def test_limits_are_as_specified() -> None:
    assert images.MAX_IMAGE_BYTES == 20 * 1024 * 1024
    assert images.MAX_IMAGE_PIXELS == 40_000_000
    assert issubclass(StickerImageError, ValueError)


def test_real_stickers_sample() -> None:
    folder = real_mod_dir() / "stickers"
    if not folder.is_dir():
        pytest.skip(f"real MOD stickers not found at {folder}")
    paths = sorted(folder.iterdir())[::15]  # ~20 files, gif and jpeg
    for path in paths:
        image = load_sticker_image(path)
        assert image.mode == "RGB" and min(image.size) > 0


def test_feature_cache_finds_known_files_without_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.model.image_encoder import FeatureCache, RandomProjectionEncoder

    paths = []
    for i, colour in enumerate([(255, 0, 0), (0, 200, 0)]):
        paths.append(tmp_path / f"s{i}.png")
        Image.new("RGB", (16, 16), colour).save(paths[-1])
    cache_file = tmp_path / "features.safetensors"
    first = FeatureCache(RandomProjectionEncoder(8), cache_file).encode_files(paths)
    assert first.shape == (2, 8) and not torch.equal(first[0], first[1])

    def no_decoding(*args, **kwargs):
        raise AssertionError("a cached file was decoded")

    monkeypatch.setattr(images, "load_sticker_image", no_decoding)
    again = FeatureCache(RandomProjectionEncoder(8), cache_file).encode_files(paths)  # a new process
    assert torch.equal(first, again)
    monkeypatch.undo()
    with pytest.raises(images.StickerImageError, match="missing.png"):
        FeatureCache(RandomProjectionEncoder(8), cache_file).encode_files([tmp_path / "missing.png"])
