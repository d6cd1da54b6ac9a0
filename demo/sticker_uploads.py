"""Adding stickers in the demo: upload checks, OCR of the upload, storing and encoding the sticker.

:class:`StickerUploads` is a part of :class:`demo.service.DemoService` (its methods use the
service's selector, user sticker store, OCR engine, lock and sticker facts); kept apart so each
module stays small.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.data.mod import Sticker
from demo.errors import DemoError

__all__ = ["StickerUploads", "UploadReading"]

logger = logging.getLogger("demo.service")
ProgressFn = Callable[..., Any]


@dataclass
class UploadReading:
    """An uploaded image checked and read: its first frame and the text OCR found on it."""

    image: Any  # PIL image (first frame)
    text: str
    engine: str  # the OCR engine used, "off" or "none installed"
    problem: str | None = None  # why OCR failed (the user types the text instead)

    @property
    def note(self) -> str:
        if self.problem:
            return self.problem
        if self.engine in ("off", "none installed"):
            return f"Text reading is {self.engine}: type the text on the sticker (if any)."
        return f"Text read by {self.engine}: “{self.text or 'no text found'}”. Edit it if needed, then add the sticker."


class StickerUploads:
    """The "Add stickers" actions of :class:`demo.service.DemoService`."""

    user_stickers: Any
    ocr_engine: str | None
    selector: Any


    @property
    def can_add(self) -> bool:
        return self.user_stickers is not None

    def user_sticker_tiles(self) -> list[tuple[str, str]]:
        """(image path, caption) of every user sticker; empty when adding is off or the store is unreadable."""
        if self.user_stickers is None:
            return []
        try:
            stickers = self.user_stickers.stickers()
        except Exception as exc:  # noqa: BLE001 - a broken store must not break the page
            logger.warning("cannot list user stickers: %s", exc)
            return []
        return [(str(s.image_path), f"{s.sticker_id} · {s.name_label or s.ocr or ''}") for s in stickers]

    def preview_upload(self, file_path: str | Path) -> Any:
        """The first frame of an uploaded image (PIL), checked like a sticker to add."""
        from core.data.images import StickerImageError, load_sticker_image

        try:
            path = self._checked_upload(file_path)
            return load_sticker_image(path, name=path.name)
        except DemoError as exc:  # the upload is gone or too big (already bilingual)
            raise DemoError(f"Not a usable image: {exc.en}", zh=f"图片不可用：{exc.zh or exc.en}") from None
        except StickerImageError as exc:
            raise DemoError(f"Not a usable image: {exc}", zh=f"图片不可用：{exc}") from None

    def read_upload(self, file_path: str | Path, engine: str | None = None,
                    progress: ProgressFn | None = None) -> UploadReading:
        """Check an upload (:class:`DemoError` when it is not a usable image) and read its text;
        an OCR failure is reported in ``problem`` (the preview is still good)."""
        image = self.preview_upload(file_path)
        if progress is not None:
            progress(0.2, desc="reading the text (OCR)")
        try:
            text, used = self.read_text(file_path, engine=engine)
        except DemoError as exc:
            logger.info("upload %s: %s", Path(file_path).name, exc)
            return UploadReading(image, "", "failed", str(exc))
        return UploadReading(image, text, used)

    def read_text(self, file_path: str | Path | None, engine: str | None = None) -> tuple[str, str]:
        """(OCR text, engine used) for an uploaded file; ("", reason) when OCR is off."""
        if not file_path:
            raise DemoError("Upload an image first.", zh="请先上传图片。")
        from demo import ocr
        from core.data.images import StickerImageError

        wanted = engine or self.ocr_engine
        if wanted is None or wanted == "off":
            return "", "off"
        name = ocr.default_engine() if wanted == "auto" else wanted
        if name is None:
            return "", "none installed"
        try:
            return ocr.read_text(self._checked_upload(file_path), engine=name), name
        except StickerImageError as exc:
            raise DemoError(f"Not a usable image: {exc}", zh=f"图片不可用：{exc}") from None
        except ocr.OCRError as exc:
            raise DemoError(f"OCR failed ({exc}); type the text yourself.",
                            zh=f"文字识别失败（{exc}），请自行输入文字。") from None

    def _checked_upload(self, file_path: str | Path) -> Path:
        from demo.user_stickers import MAX_UPLOAD_BYTES

        path = Path(file_path)
        try:
            size = path.stat().st_size
        except OSError:
            raise DemoError("The uploaded file is gone; upload it again.", zh="上传的文件已不存在，请重新上传。") from None
        if size > MAX_UPLOAD_BYTES:
            raise DemoError(f"The file is {size / 2**20:.1f} MiB; the limit is {MAX_UPLOAD_BYTES / 2**20:.0f} MiB.",
                            zh=f"文件大小为 {size / 2**20:.1f} MiB，上限为 {MAX_UPLOAD_BYTES / 2**20:.0f} MiB。")
        return path

    def add_sticker(self, file_path: str | Path | None, ocr_text: str = "", name: str = "",
                    *, original_name: str | None = None) -> Sticker:
        """Store an uploaded image as a user sticker and make it rankable at once."""
        if self.user_stickers is None:
            raise DemoError("Adding stickers is turned off (no user sticker directory).",
                            zh="添加表情已关闭（没有用户表情目录）。")
        if not file_path:
            raise DemoError("Upload an image first.", zh="请先上传图片。")
        from core.data.images import StickerImageError, load_sticker_image
        from demo.service import StickerInfo
        from demo.user_stickers import UserStickerError

        path = self._checked_upload(file_path)
        label = Path(original_name or path.name).name
        with self._lock:
            try:
                sticker = self.user_stickers.add(path, ocr=ocr_text or "", name=name or "", source_name=label)
                image = load_sticker_image(sticker.image_path)
            except StickerImageError as exc:
                raise DemoError(f"Not a usable image: {exc}", zh=f"图片不可用：{exc}") from None
            except UserStickerError as exc:  # the store is full, or the upload cannot be read
                raise DemoError(str(exc), zh=f"无法添加表情：{exc}") from None
            if sticker.sticker_id not in set(self.selector.sticker_ids()):
                self.selector.add_sticker(sticker, image=image)
            self._info[sticker.sticker_id] = StickerInfo(sticker.sticker_id, sticker.name_label, sticker.ocr,
                                                         str(sticker.image_path), "user")
        self.thumbnail(sticker.sticker_id)
        return sticker
