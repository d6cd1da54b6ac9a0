"""Command line → a ready ``gr.Blocks`` plus ``launch()`` arguments (used by ``python -m demo``).

Kept apart from ``demo/__main__.py`` so tests and ``demo/screenshots.py`` can build the very
same app (with a small model) without parsing ``sys.argv`` or launching anything. ``free_port`` and
``wait_until_serving`` wait for a ``python -m demo`` subprocess to serve (tests, ``train.bench``).
"""
from __future__ import annotations

import argparse
import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from demo.service import Example, StickerInfo
from train.cli import add_sticker_ids_argument

__all__ = [
    "AppParts",
    "AuthFileError",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "REPO_ROOT",
    "build_parser",
    "default_data_dir",
    "free_port",
    "load_parts",
    "parse_auth_file",
    "thumbnail_cache",
    "wait_until_serving",
]

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_STATE_DIR = REPO_ROOT / "runs" / "demo"
MAX_UPLOAD = "20mb"


class AuthFileError(ValueError):
    """The --auth file is missing or malformed (the message names the line)."""


def default_data_dir() -> Path | None:
    """``$MOD_DATA_DIR``, else ``../shared/data/mod`` next to the repository, when it exists."""
    candidates = [os.environ.get("MOD_DATA_DIR"), REPO_ROOT.parent / "shared" / "data" / "mod"]
    for candidate in candidates:
        if candidate and (Path(candidate) / "img2id.json").is_file():
            return Path(candidate)
    return None


def parse_auth_file(path: str | Path) -> list[tuple[str, str]]:
    """``user:password`` lines (blank lines and ``#`` comments skipped) → gradio ``auth`` list."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise AuthFileError(f"{path}: cannot read the auth file ({exc})") from exc
    users: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, password = line.partition(":")
        user = user.strip()
        if not sep or not user or not password:
            raise AuthFileError(f"{path}:{number}: expected 'user:password'")
        if len(user) > 64 or not user.isprintable():
            raise AuthFileError(f"{path}:{number}: user name must be printable and at most 64 characters")
        users[user] = password
    if not users:
        raise AuthFileError(f"{path}: no 'user:password' lines")
    return list(users.items())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m demo",
        description="Sticker selection demo: rank stickers for a dialogue, explain, add stickers, annotate.")
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (default 7860)")
    parser.add_argument("--checkpoint", default=None,
                        help="model directory (default: the model shipped in assets/)")
    parser.add_argument("--data", type=Path, default=None,
                        help="MOD data directory (stickers/, img2id.json, ocr.json, dialogues.json); default "
                             "$MOD_DATA_DIR or ../shared/data/mod when present, else the starter pack")
    add_sticker_ids_argument(parser, applies_to="DATA/dialogues.json (the test examples)")
    parser.add_argument("--starter", action="store_true", help="use the bundled starter pack even if MOD data exists")
    parser.add_argument("--annotations", default=os.environ.get("ANNOTATIONS_DB")
                        or str(DEFAULT_STATE_DIR / "annotations.sqlite"),
                        help="annotation database: SQLite file or postgresql:// URL (default $ANNOTATIONS_DB, "
                             "else runs/demo/annotations.sqlite); 'off' disables flagging")
    parser.add_argument("--user-stickers", default=str(DEFAULT_STATE_DIR / "user_stickers"),
                        help="directory for stickers added in the UI (default runs/demo/user_stickers); "
                             "'off' disables adding")
    parser.add_argument("--auth", type=Path, default=None,
                        help="file of 'user:password' lines; only those users can log in and flag")
    parser.add_argument("--ocr", choices=["auto", "rapidocr", "easyocr", "off"], default="auto",
                        help="OCR engine for added stickers (default auto: rapidocr, else easyocr)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the easy/hard test split (default 0)")
    parser.add_argument("--examples", type=int, default=100, help="examples per test split in the list")
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--feature-cache", default=str(DEFAULT_STATE_DIR / "image_features.safetensors"),
                        help="file caching sticker image features between starts "
                             "(default runs/demo/image_features.safetensors); 'off' disables it")
    parser.add_argument("--thumbnails", default=str(DEFAULT_STATE_DIR / "thumbnails"),
                        help="directory of the ranking's sticker thumbnails, made once at start and served as "
                             "static files (default runs/demo/thumbnails)")
    return parser


@dataclass
class AppParts:
    """Everything ``build_demo`` needs, loaded from the command line options."""

    stickers: list[Any]
    sticker_info: dict[str, StickerInfo]
    examples: list[Example] = field(default_factory=list)
    annotations: Any = None
    user_stickers: Any = None
    data_note: str = ""
    static_dirs: list[Path] = field(default_factory=list)
    splits: dict[str, list[dict]] = field(default_factory=dict)  # the MOD data's split rows (annotation queues)


def _starter_parts() -> tuple[list[Any], dict[str, StickerInfo], list[Path]]:
    from demo.user_stickers import STARTER_DIR, load_starter_index, load_starter_stickers

    stickers = load_starter_stickers()
    names = {e["id"]: e for e in load_starter_index()}
    info = {s.sticker_id: StickerInfo(s.sticker_id, s.name_label, s.ocr, str(s.image_path) if s.image_path else None,
                                      "starter", names.get(s.sticker_id, {}).get("name_en", ""))
            for s in stickers}
    return stickers, info, [STARTER_DIR]


def load_parts(args: argparse.Namespace) -> AppParts:
    """Load stickers, examples and stores as the options say (errors name the file)."""
    data_dir = None if args.starter else (args.data or default_data_dir())
    examples: list[Example] = []
    splits: dict[str, list[dict]] = {}
    if data_dir is not None:
        from core.data.mod import load_mod
        from demo.service import load_examples

        numbering = getattr(args, "sticker_ids", "official")
        mod = load_mod(data_dir, seed=args.split_seed, sticker_ids=numbering)
        stickers = [s for s in mod.stickers if s.has_image]
        left_out = [s.sticker_id for s in mod.stickers if not s.has_image]
        info = {s.sticker_id: StickerInfo(s.sticker_id, s.name_label, s.ocr, str(s.image_path), "data")
                for s in stickers}
        examples = load_examples(mod, per_split=args.examples)
        splits = {name: rows for name, rows in mod.split_rows.items() if name in ("valid", "easy_test", "hard_test")}
        note = (f"Stickers and examples from {data_dir} ({len(stickers)} stickers"
                + (f"; left out for lack of an image: {', '.join(left_out)}" if left_out else "")
                + f"; easy/hard test split seed {args.split_seed}"
                + ("; dialogue sticker ids converted from the early release's numbering" if numbering != "official"
                   else "") + ").")
        static_dirs = [Path(data_dir) / "stickers"]
    else:
        stickers, info, static_dirs = _starter_parts()
        where = args.data or (REPO_ROOT.parent / "shared" / "data" / "mod")
        note = ("Using the bundled starter pack: 62 Fluent Emoji faces (MIT, see assets/starter_stickers/"
                f"ATTRIBUTION.md) — no MOD data at {where}. Start with --data DIR to rank the MOD stickers "
                "and load test examples.")
        if args.starter:
            note = "Using the bundled starter pack (62 Fluent Emoji faces, MIT; --starter)."
    user_store = None
    if str(args.user_stickers).lower() != "off":
        from demo.user_stickers import UserStickerStore

        user_store = UserStickerStore(args.user_stickers)
        known = {s.sticker_id for s in stickers}
        users = [s for s in user_store.stickers() if s.sticker_id not in known]
        stickers = [*stickers, *users]
        for s in users:
            info[s.sticker_id] = StickerInfo(s.sticker_id, s.name_label, s.ocr, str(s.image_path), "user")
    annotations = None
    if str(args.annotations).lower() != "off":
        from core.annotations import AnnotationStore

        annotations = AnnotationStore(args.annotations)
    return AppParts(stickers, info, examples, annotations, user_store, note, static_dirs, splits)


def thumbnail_cache(args: argparse.Namespace) -> Any:
    """The ``demo.thumbnails.ThumbnailCache`` of ``--thumbnails`` (``build_demo`` fills it at start)."""
    from demo.thumbnails import ThumbnailCache

    return ThumbnailCache(getattr(args, "thumbnails", None) or DEFAULT_STATE_DIR / "thumbnails")


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(process: Any, url: str, timeout: float, describe=lambda: "",
                       interval: float = 0.5) -> float:
    """Polls ``url`` until it answers 200; returns the seconds waited. Raises AssertionError
    (with ``describe()``, e.g. the log tail) when ``process`` exits or ``timeout`` passes."""
    import time
    import urllib.request

    t0 = time.monotonic()
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the demo exited with {process.returncode}:\n{describe()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return time.monotonic() - t0
        except OSError:
            pass
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"the demo did not come up in {timeout:.0f}s:\n{describe()}")
        time.sleep(interval)
