"""Take screenshots of the demo's main views into ``docs/screenshots/`` (real Chromium).

Always uses the bundled starter pack (the MOD images are research-only and must not end up in
the repository, screenshots included) and throw-away annotation / user-sticker stores::

    python -m demo.screenshots                        # default model in assets/ (tiny random if absent)
    python -m demo.screenshots --tiny                 # tiny random-weight model (fast, meaningless ranks)
    python -m demo.screenshots --checkpoint DIR --out docs/screenshots

Writes ``rank.png``, ``saliency.png``, ``add_sticker.png`` and ``annotate.png``, each a
256-colour PNG under 300 KB. Needs Debian ``chromium`` and the ``playwright`` package
(never ``playwright install``).
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import io  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from demo.launcher import REPO_ROOT  # noqa: E402

DEFAULT_OUT = REPO_ROOT / "docs" / "screenshots"
MAX_BYTES = 300 * 1024
DIALOGUE = "A: 你还没睡吗？\nB: 还在加班呢，好累\nA: 早点休息吧\nB: 好困啊，我去睡了 good night"
TIMEOUT_MS = 120_000


def save_small_png(png: bytes, path: Path, max_bytes: int = MAX_BYTES) -> int:
    """Quantise a screenshot to 256 colours (and shrink it if needed) so it stays under ``max_bytes``."""
    from PIL import Image

    image = Image.open(io.BytesIO(png)).convert("RGB")
    scale = 1.0
    while True:
        frame = image if scale == 1.0 else image.resize((int(image.width * scale), int(image.height * scale)),
                                                        Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        frame.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(buffer, format="PNG", optimize=True)
        if buffer.tell() <= max_bytes or scale < 0.3:
            path.write_bytes(buffer.getvalue())
            return buffer.tell()
        scale *= 0.85


def _selector(args: argparse.Namespace, stickers: list) -> object:
    from core.serving.inference import StickerSelector

    default_model = REPO_ROOT / "assets" / "default_model"
    if args.tiny or (args.checkpoint is None and not default_model.is_dir()):
        print("using a tiny random-weight model", file=sys.stderr)
        return StickerSelector.tiny_random(stickers)
    return StickerSelector.load(args.checkpoint, stickers=stickers, device="cpu")


def take(args: argparse.Namespace) -> list[Path]:
    from playwright.sync_api import expect, sync_playwright

    from core.annotations import AnnotationStore
    from demo.user_stickers import UserStickerStore, load_starter_stickers
    from tests.support.demo_server import (CHROMIUM, CHROMIUM_ARGS, running_demo, starter_kwargs,
                                           write_text_sticker)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory(prefix="demo-shots-") as tmp:
        tmp_path = Path(tmp)
        store = AnnotationStore(tmp_path / "annotations.sqlite")
        selector = _selector(args, load_starter_stickers())
        with running_demo(selector, annotations=store, user_stickers=UserStickerStore(tmp_path / "user"),
                          **starter_kwargs()) as app, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)  # the default 5 s is too short on a busy CPU
            page.goto(app.url)
            page.wait_for_selector("#dialogue textarea")

            def shot(name: str, **kwargs: object) -> None:
                page.wait_for_timeout(400)  # let images and transitions settle
                path = out / f"{name}.png"
                size = save_small_png(page.screenshot(**kwargs), path)
                written.append(path)
                print(f"{path} ({size / 1024:.0f} KiB)", file=sys.stderr)

            def element_shot(name: str, selector: str) -> None:
                page.wait_for_timeout(400)
                path = out / f"{name}.png"
                size = save_small_png(page.locator(selector).screenshot(), path)
                written.append(path)
                print(f"{path} ({size / 1024:.0f} KiB)", file=sys.stderr)

            # 1. ranking
            page.fill("#dialogue textarea", DIALOGUE)
            page.click("#rank-btn")
            expect(page.locator("#rank-status")).to_contain_text("Ranked")
            shot("rank")

            # 2. saliency of the top sticker (Integrated Gradients)
            page.locator("#method").get_by_role("radio", name=re.compile("Integrated Gradients")).check()
            page.click("#saliency-btn")
            expect(page.locator("#saliency-status")).to_contain_text("tokens")
            element_shot("saliency", "#saliency-panel")

            # 3. flag the second-ranked sticker as also acceptable
            page.locator("#ranking-gallery button.thumbnail-item").nth(1).click()
            expect(page.locator("#selected-info")).to_contain_text("rank / 排名 2")
            page.fill("#annotator input, #annotator textarea", "annotator-1")
            page.click("#flag-btn")
            expect(page.locator("#flags-table")).to_contain_text("annotator-1")
            element_shot("annotate", "#flag-panel")

            # 4. add a sticker (OCR fills the text box)
            image = write_text_sticker(tmp_path / "goodnight.png", ["晚安", "Good night"])
            page.get_by_role("tab", name=re.compile("Add stickers")).click()
            page.locator("#upload input[type=file]").set_input_files(str(image))
            expect(page.locator("#add-status")).to_contain_text(re.compile("Text read by|Text reading is"))
            page.fill("#sticker-name textarea", "晚安")
            page.click("#add-btn")
            expect(page.locator("#add-status")).to_contain_text("Added user-0001")
            shot("add_sticker")
            browser.close()
        store.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Screenshots of the demo's main views (starter pack only).")
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default docs/screenshots)")
    parser.add_argument("--checkpoint", default=None, help="model directory (default: assets/default_model)")
    parser.add_argument("--tiny", action="store_true", help="use a tiny random-weight model")
    args = parser.parse_args(argv)
    take(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
