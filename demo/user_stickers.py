"""Stickers added by users at run time, and the bundled starter sticker pack.

:class:`UserStickerStore` keeps user stickers in one directory::

    <dir>/index.json           {"version": 1, "stickers": [{"id": "user-0001", "file": ..., ...}]}
    <dir>/images/user-0001.png the uploaded image, first frame, re-encoded as PNG

Every upload goes through :func:`core.data.images.load_sticker_image` (byte and pixel caps,
first frame only, truncated / non-image data rejected), is downscaled to
``max_side`` pixels and re-encoded as PNG, so nothing the user sent is stored as is.
``index.json`` is written atomically (temporary file + ``os.replace``) under a lock
(a thread lock plus an ``fcntl`` lock file where available), and re-read before each
change, so ids (``user-0001``, ``user-0002``, ...) are never reused.

:func:`load_starter_stickers` reads ``assets/starter_stickers/index.json`` (62 Fluent
Emoji faces, MIT; see ``ATTRIBUTION.md`` there) into :class:`core.data.mod.Sticker` objects.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image

from core.data.mod import Sticker, UnknownStickerError
from core.data.images import MAX_IMAGE_BYTES, StickerImageError, load_sticker_image
from demo.ocr import clean_text

try:  # POSIX only; on other systems the thread lock alone protects one process
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "MAX_TEXT_CHARS",
    "MAX_UPLOAD_BYTES",
    "STARTER_DIR",
    "USER_ID_PREFIX",
    "UserStickerError",
    "UserStickerStore",
    "load_starter_index",
    "load_starter_stickers",
]

logger = logging.getLogger(__name__)

STARTER_DIR = Path(__file__).resolve().parents[1] / "assets" / "starter_stickers"
"""The bundled starter pack."""

USER_ID_PREFIX = "user-"
MAX_UPLOAD_BYTES = MAX_IMAGE_BYTES
"""Largest accepted upload (the same 20 MiB cap as every sticker image)."""
MAX_TEXT_CHARS = 200
"""OCR text and name are cut to this many characters."""
DEFAULT_MAX_STICKERS = 1000
DEFAULT_MAX_SIDE = 512
INDEX_VERSION = 1
_ID_RE = re.compile(rf"^{USER_ID_PREFIX}(\d{{4,}})$")


class UserStickerError(ValueError):
    """A user sticker could not be added or read; the message says why."""


# --------------------------------------------------------------------------- starter pack


def load_starter_index(directory: str | Path = STARTER_DIR) -> list[dict[str, Any]]:
    """Entries of the starter pack's ``index.json`` (id, file, name_en, name_zh, emoji, ocr)."""
    path = Path(directory) / "index.json"
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserStickerError(f"{path}: starter sticker index not found") from exc
    except (OSError, ValueError) as exc:
        raise UserStickerError(f"{path}: cannot read starter sticker index ({exc})") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
        raise UserStickerError(f"{path}: expected a JSON list of objects with an 'id'")
    return entries


def load_starter_stickers(directory: str | Path = STARTER_DIR) -> list[Sticker]:
    """The starter pack as :class:`core.data.mod.Sticker` objects.

    ``name_label`` is the Chinese CLDR name (the model was trained on Chinese names
    such as ``再见`` or ``好困``); the English name is in :func:`load_starter_index`.
    ``ocr`` is ``""``: the emoji carry no text.
    """
    directory = Path(directory)
    stickers = []
    for entry in load_starter_index(directory):
        path = directory / entry["file"]
        stickers.append(Sticker(
            sticker_id=str(entry["id"]),
            file_name=entry["file"],
            image_path=path if path.is_file() else None,
            ocr=clean_text(entry.get("ocr", "")),
            name_label=str(entry.get("name_zh") or entry.get("name_en") or ""),
        ))
    return stickers


# --------------------------------------------------------------------------- user stickers


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class UserStickerStore:
    """A directory of user-added stickers that survives restarts.

    Args:
        directory: created when missing.
        max_stickers: adding beyond this many raises :class:`UserStickerError`.
        max_side: stored images are downscaled to at most this many pixels per side.

    Raises:
        UserStickerError: ``index.json`` exists but is unreadable or malformed (the
            message names the file; nothing is overwritten).
    """

    def __init__(self, directory: str | Path, *, max_stickers: int = DEFAULT_MAX_STICKERS,
                 max_side: int = DEFAULT_MAX_SIDE) -> None:
        self.directory = Path(directory)
        self.image_dir = self.directory / "images"
        self.index_path = self.directory / "index.json"
        self.max_stickers = int(max_stickers)
        self.max_side = int(max_side)
        self._lock = threading.RLock()
        try:
            self.image_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserStickerError(f"{self.directory}: cannot create the user sticker directory ({exc})") from exc
        self._read_index()  # fail early on a corrupt index

    # ------------------------------------------------------------------ index

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with self._lock:
            if fcntl is None:
                yield
                return
            with open(self.directory / ".lock", "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def _read_index(self) -> list[dict[str, Any]]:
        return self._read_index_full()[0]

    def _read_index_full(self) -> tuple[list[dict[str, Any]], int]:
        """(records, next id number) from ``index.json`` (empty store when it does not exist)."""
        if not self.index_path.exists():
            return [], 1
        try:
            data = json.loads(self.index_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserStickerError(f"{self.index_path}: cannot read the user sticker index ({exc}); "
                                   "fix or move the file away") from exc
        records = data.get("stickers") if isinstance(data, dict) else None
        if not isinstance(records, list) or not all(
                isinstance(r, dict) and isinstance(r.get("id"), str) and _ID_RE.match(r["id"])
                and isinstance(r.get("file"), str) for r in records):
            raise UserStickerError(f"{self.index_path}: malformed user sticker index "
                                   "(expected {'stickers': [{'id': 'user-0001', 'file': ...}, ...]})")
        used = [int(m.group(1)) for r in records if (m := _ID_RE.match(r["id"]))]
        next_id = data.get("next_id")
        if not isinstance(next_id, int) or isinstance(next_id, bool):
            next_id = 1
        return records, max([next_id, *(u + 1 for u in used)])

    def _write_index(self, records: list[dict[str, Any]], next_id: int) -> None:
        payload = json.dumps({"version": INDEX_VERSION, "next_id": next_id, "stickers": records},
                             ensure_ascii=False, indent=1)
        self._atomic_write(self.index_path, (payload + "\n").encode("utf-8"))

    def _atomic_write(self, path: Path, data: bytes) -> None:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    # ------------------------------------------------------------------ reading

    def records(self) -> list[dict[str, Any]]:
        """The index entries (id, file, ocr, name, source_name, sha256, created_at)."""
        with self._lock:
            return [dict(r) for r in self._read_index()]

    def _sticker(self, record: dict[str, Any]) -> Sticker:
        path = self.image_dir / Path(record["file"]).name
        return Sticker(
            sticker_id=record["id"],
            file_name=Path(record["file"]).name,
            image_path=path if path.is_file() else None,
            ocr=str(record.get("ocr", "")),
            name_label=str(record.get("name") or record.get("ocr") or ""),
        )

    def stickers(self) -> list[Sticker]:
        """All user stickers, oldest first (an entry whose image vanished is logged and skipped)."""
        out = []
        for record in self.records():
            sticker = self._sticker(record)
            if sticker.image_path is None:
                logger.warning("%s: image %s of user sticker %s is missing; skipped",
                               self.index_path, record["file"], record["id"])
                continue
            out.append(sticker)
        return out

    def get(self, sticker_id: str) -> Sticker:
        """The user sticker ``sticker_id``; raises :class:`core.data.mod.UnknownStickerError`."""
        for record in self.records():
            if record["id"] == sticker_id:
                return self._sticker(record)
        raise UnknownStickerError(sticker_id, where="user stickers")

    def __len__(self) -> int:
        return len(self.records())

    def __contains__(self, sticker_id: object) -> bool:
        return any(r["id"] == sticker_id for r in self.records())

    # ------------------------------------------------------------------ writing

    def _encode(self, source: str | Path | bytes, source_name: str | None) -> tuple[Image.Image, bytes]:
        if isinstance(source, (str, Path)):
            path = Path(source)
            try:
                size = path.stat().st_size
            except OSError as exc:
                raise UserStickerError(f"{source_name or path.name}: cannot read the upload ({exc})") from exc
            if size > MAX_UPLOAD_BYTES:
                raise UserStickerError(f"{source_name or path.name}: file is {size} bytes, "
                                       f"above the upload limit of {MAX_UPLOAD_BYTES} bytes")
        image = load_sticker_image(source, name=source_name)  # StickerImageError on bad input
        if max(image.size) > self.max_side:
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=True)
        return image, buffer.getvalue()

    def add(self, source: str | Path | bytes, *, ocr: str = "", name: str = "",
            source_name: str | None = None) -> Sticker:
        """Validate, re-encode and store an image; return its new :class:`Sticker`.

        The same image with the same text again returns the existing sticker.

        Raises:
            core.data.images.StickerImageError: not an image, truncated, too many bytes or pixels.
            UserStickerError: the store is full, or the upload cannot be read.
        """
        ocr = clean_text(ocr, MAX_TEXT_CHARS)
        name = clean_text(name, MAX_TEXT_CHARS)
        _, png = self._encode(source, source_name)
        digest = hashlib.sha256(png).hexdigest()
        with self._locked():
            records, number = self._read_index_full()
            for record in records:
                if record.get("sha256") == digest and record.get("ocr") == ocr and record.get("name") == name:
                    return self._sticker(record)
            if len(records) >= self.max_stickers:
                raise UserStickerError(f"the user sticker store is full ({self.max_stickers} stickers)")
            sticker_id = f"{USER_ID_PREFIX}{number:04d}"
            file_name = f"{sticker_id}.png"
            self._atomic_write(self.image_dir / file_name, png)
            records.append({
                "id": sticker_id, "file": file_name, "ocr": ocr, "name": name,
                "source_name": clean_text(Path(source_name).name, 120) if source_name else None,
                "sha256": digest, "created_at": _now(),
            })
            self._write_index(records, number + 1)
            logger.info("added user sticker %s (%s)", sticker_id, source_name or "upload")
            return self._sticker(records[-1])

    def remove(self, sticker_id: str) -> None:
        """Delete a user sticker (its id is not reused); raises UnknownStickerError."""
        with self._locked():
            records, next_id = self._read_index_full()
            kept = [r for r in records if r["id"] != sticker_id]
            if len(kept) == len(records):
                raise UnknownStickerError(sticker_id, where="user stickers")
            self._write_index(kept, next_id)
            removed = next(r for r in records if r["id"] == sticker_id)
            with contextlib.suppress(OSError):
                (self.image_dir / Path(removed["file"]).name).unlink()


__all__ += ["StickerImageError"]  # re-exported for callers catching upload errors
