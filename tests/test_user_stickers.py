"""demo.user_stickers: persistence, atomic index, hostile uploads, the starter pack."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from core.data.mod import Sticker, UnknownStickerError
from core.data.images import StickerImageError
from demo.user_stickers import (
    STARTER_DIR,
    UserStickerError,
    UserStickerStore,
    load_starter_index,
    load_starter_stickers,
)


def _png(color=(255, 0, 0), size=(40, 30), fmt="PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def test_add_persists_across_instances(tmp_path):
    store = UserStickerStore(tmp_path / "us")
    first = store.add(_png(), ocr="好的\x00好的", name=" ok ", source_name="ok.png")
    second = store.add(_png((0, 255, 0)), ocr="bye")
    assert isinstance(first, Sticker)
    assert (first.sticker_id, second.sticker_id) == ("user-0001", "user-0002")
    assert first.ocr == "好的 好的" and first.name_label == "ok"
    assert first.image_path.is_file() and first.image_path.suffix == ".png"
    with Image.open(first.image_path) as im:
        assert im.format == "PNG"
    reopened = UserStickerStore(tmp_path / "us")
    assert [s.sticker_id for s in reopened.stickers()] == ["user-0001", "user-0002"]
    assert reopened.get("user-0002").ocr == "bye"
    assert "user-0001" in reopened and len(reopened) == 2
    index = json.loads((tmp_path / "us" / "index.json").read_text("utf-8"))
    assert index["version"] == 1 and index["stickers"][0]["source_name"] == "ok.png"
    assert not list((tmp_path / "us").glob("*.tmp")) and not list((tmp_path / "us").glob(".*.tmp"))


def test_same_image_and_text_is_not_duplicated(tmp_path):
    store = UserStickerStore(tmp_path)
    a = store.add(_png(), ocr="x")
    b = store.add(_png(), ocr="x")
    c = store.add(_png(), ocr="y")
    assert a.sticker_id == b.sticker_id != c.sticker_id


def test_removed_ids_are_not_reused(tmp_path):
    store = UserStickerStore(tmp_path)
    store.add(_png((1, 1, 1)))
    store.add(_png((2, 2, 2)))
    store.remove("user-0002")
    assert store.add(_png((3, 3, 3))).sticker_id == "user-0003"
    with pytest.raises(UnknownStickerError):
        store.get("user-0002")
    with pytest.raises(UnknownStickerError):
        store.remove("nope")


def test_gif_webp_jpeg_are_reencoded_and_downscaled(tmp_path):
    store = UserStickerStore(tmp_path, max_side=64)
    for fmt in ("GIF", "WEBP", "JPEG"):
        sticker = store.add(_png((10, 20, 30), size=(300, 150), fmt=fmt), source_name=f"a.{fmt.lower()}")
        with Image.open(sticker.image_path) as im:
            assert im.format == "PNG" and max(im.size) == 64


@pytest.mark.parametrize("payload", [b"not an image at all", _png()[:60], b""])
def test_bad_uploads_are_rejected(tmp_path, payload):
    store = UserStickerStore(tmp_path)
    with pytest.raises((StickerImageError, UserStickerError)):
        store.add(payload, source_name="bad.png")
    assert len(store) == 0


def test_huge_dimensions_rejected_before_decoding(tmp_path):
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")  # small file, 400 MPixel header
    with pytest.raises(StickerImageError, match="pixels"):
        UserStickerStore(tmp_path).add(buffer.getvalue())


def test_oversized_file_rejected(tmp_path):
    big = tmp_path / "big.png"
    with open(big, "wb") as handle:
        handle.write(_png())
        handle.truncate(21 * 1024 * 1024)
    with pytest.raises(UserStickerError, match="limit"):
        UserStickerStore(tmp_path / "s").add(big)


def test_store_cap(tmp_path):
    store = UserStickerStore(tmp_path, max_stickers=1)
    store.add(_png((1, 2, 3)))
    with pytest.raises(UserStickerError, match="full"):
        store.add(_png((4, 5, 6)))


def test_corrupt_index_is_reported_not_overwritten(tmp_path):
    (tmp_path / "index.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(UserStickerError, match="index.json"):
        UserStickerStore(tmp_path)
    assert (tmp_path / "index.json").read_text(encoding="utf-8") == "{not json"


def test_starter_pack():
    entries = load_starter_index()
    stickers = load_starter_stickers()
    assert 50 <= len(stickers) == len(entries) <= 80
    assert len({s.sticker_id for s in stickers}) == len(stickers)
    assert all(s.image_path is not None and s.image_path.is_file() for s in stickers)
    assert all(e["name_en"] and e["name_zh"] and e["ocr"] == "" for e in entries)
    assert any(s.name_label == "哭" for s in stickers)
    total = sum(p.stat().st_size for p in STARTER_DIR.iterdir())
    assert total < 2 * 1024 * 1024
    assert (STARTER_DIR / "ATTRIBUTION.md").is_file()
    with Image.open(stickers[0].image_path) as im:
        assert max(im.size) <= 128
