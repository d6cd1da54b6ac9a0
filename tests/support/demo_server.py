"""Helpers to run the demo in-process on a free local port (tests, ``demo/screenshots.py``).

Nothing here runs on import. ``running_demo`` launches with ``prevent_thread_lock=True`` on
127.0.0.1 and always closes the server. ``CHROMIUM_ARGS`` are the Chromium flags that work
offline on these machines (Debian ``chromium``; never ``playwright install``). ``free_port``
and ``wait_until_serving`` live in :mod:`demo.launcher` (``train.bench`` uses them too) and
are re-exported here.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from demo.launcher import free_port, wait_until_serving  # noqa: E402

__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "RunningDemo", "free_port", "running_demo", "starter_kwargs",
           "wait_until_serving"]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost",
]


@dataclass
class RunningDemo:
    url: str
    blocks: Any
    service: Any


def starter_kwargs() -> dict[str, Any]:
    """``build_demo`` keyword arguments for the bundled starter pack (names, static dir, note)."""
    from argparse import Namespace

    from demo.launcher import load_parts

    parts = load_parts(Namespace(starter=True, data=None, split_seed=0, examples=0,
                                 user_stickers="off", annotations="off"))
    return {"sticker_info": parts.sticker_info, "static_dirs": parts.static_dirs, "data_note": parts.data_note}


@contextlib.contextmanager
def running_demo(selector: Any, *, auth: list[tuple[str, str]] | None = None,
                 **build_kwargs: Any) -> Iterator[RunningDemo]:
    """Build the demo around ``selector``, serve it on a free local port, close it afterwards."""
    from demo.app import CSS, build_demo
    from demo.launcher import MAX_UPLOAD

    build_kwargs.setdefault("require_login", auth is not None)
    blocks = build_demo(selector, **build_kwargs)
    blocks.queue(default_concurrency_limit=1)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, auth=auth,
                  css=CSS, max_file_size=MAX_UPLOAD, show_error=True)
    try:
        yield RunningDemo(f"http://127.0.0.1:{port}/", blocks, blocks.demo_service)
    finally:
        blocks.close()


CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc")  # Debian's fonts-wqy-microhei


def write_text_sticker(path: Path, lines: list[str], size: tuple[int, int] = (320, 200)) -> Path:
    """A white PNG with ``lines`` in large black type (Chinese is legible only when CJK_FONT is installed)."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype(str(CJK_FONT), 44) if CJK_FONT.is_file() else ImageFont.load_default(size=44)
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((20, 20 + 80 * i), line, font=font, fill="black")
    image.save(path)
    return path


__all__ += ["CJK_FONT", "write_text_sticker"]
