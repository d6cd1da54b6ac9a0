"""Small sticker thumbnails, made once and served as static files (the ranking shows these).

A thumbnail is the image's first frame on white, at most ``size`` pixels a side, saved as
WebP (PNG when Pillow lacks WebP) under a cache directory as ``<sticker id>-<key>.webp``;
the key hashes the source path, its size and modification time, so a changed image gets a new
thumbnail and an unchanged one is never re-encoded. A sticker whose image cannot be read gets
a grey "no image" tile.
"""
from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterable
from pathlib import Path

__all__ = ["ThumbnailCache", "THUMBNAIL_SIZE"]

logger = logging.getLogger(__name__)

THUMBNAIL_SIZE = 128
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def _format() -> tuple[str, str]:
    from PIL import features

    return ("WEBP", ".webp") if features.check("webp") else ("PNG", ".png")


class ThumbnailCache:
    """Thumbnails of sticker images under ``directory`` (created when missing)."""

    def __init__(self, directory: str | Path, size: int = THUMBNAIL_SIZE) -> None:
        self.directory = Path(directory)
        self.size = int(size)
        self._paths: dict[str, str] = {}
        self._lock = threading.Lock()
        self._format, self._suffix = _format()

    def _target(self, sticker_id: str, source: Path | None) -> Path:
        digest = hashlib.sha1(f"{self.size}|{sticker_id}".encode())
        if source is not None:
            try:
                stat = source.stat()
                digest.update(f"|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
            except OSError:
                digest.update(b"|missing")
        else:
            digest.update(b"|none")
        name = _SAFE.sub("_", sticker_id)[:48] or "sticker"
        return self.directory / f"{name}-{digest.hexdigest()[:10]}{self._suffix}"

    def path(self, sticker_id: str, image_path: str | Path | None) -> str:
        """The thumbnail file of a sticker, made now when it is not cached yet."""
        key = f"{sticker_id}|{image_path}"
        cached = self._paths.get(key)
        if cached is not None:
            return cached
        source = Path(image_path) if image_path else None
        target = self._target(sticker_id, source)
        with self._lock:
            if not target.is_file():
                self.directory.mkdir(parents=True, exist_ok=True)
                self._write(source, target)
            self._paths[key] = str(target)
        return str(target)

    def prepare(self, stickers: Iterable[tuple[str, str | Path | None]]) -> int:
        """Makes the missing thumbnails of (sticker id, image path) pairs; returns how many there are."""
        return sum(1 for sticker_id, image_path in stickers if self.path(sticker_id, image_path))

    def _write(self, source: Path | None, target: Path) -> None:
        from PIL import Image, ImageDraw

        image = None
        if source is not None:
            try:
                from core.data.images import load_sticker_image

                image = load_sticker_image(source)
            except Exception as exc:  # noqa: BLE001 - an unreadable image gets the "no image" tile
                logger.warning("thumbnail of %s: %s", source, exc)
        if image is None:
            image = Image.new("RGB", (self.size, self.size), (230, 230, 230))
            ImageDraw.Draw(image).text((self.size // 2 - 26, self.size // 2 - 6), "no image", fill=(90, 90, 90))
        image = image.convert("RGB")
        image.thumbnail((self.size, self.size), Image.Resampling.LANCZOS)
        tmp = target.with_name(target.name + ".tmp")
        image.save(tmp, format=self._format, quality=82)
        tmp.replace(target)
