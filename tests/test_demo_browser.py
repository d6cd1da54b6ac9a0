"""Real-browser tests of the demo (Debian chromium driven by Playwright).

Marked ``browser``; skipped when /usr/bin/chromium or the playwright package is missing
(``apt-get install -y chromium`` and ``pip install playwright``; never ``playwright install``).
"""
from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.support.demo_server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (apt-get install -y chromium)"),
]

sync_api = pytest.importorskip("playwright.sync_api")
inference = pytest.importorskip("core.serving.inference")

from core.annotations import AnnotationStore  # noqa: E402
from core.serving.prior import StickerPrior  # noqa: E402
from demo.user_stickers import UserStickerStore  # noqa: E402
from demo.rank_tab import TOP_K  # noqa: E402
from tests.support.demo_server import CJK_FONT, running_demo, starter_kwargs, write_text_sticker  # noqa: E402

TIMEOUT_MS = 60_000
PRIOR_FAVOURITE = "emoji-1f634"  # the one sticker the test prior knows: first whenever the prior counts
sync_api.expect.set_options(timeout=TIMEOUT_MS)  # the default 5 s is too short on a busy 2-core machine


@pytest.fixture(scope="module")
def app(tmp_path_factory, make_tiny_selector):
    tmp = tmp_path_factory.mktemp("demo_browser")
    selector = make_tiny_selector()
    selector.prior = StickerPrior({PRIOR_FAVOURITE: 1000}, weight=5.0)  # ranks it first unless left out
    store = AnnotationStore(tmp / "annotations.sqlite")
    with running_demo(selector, annotations=store, user_stickers=UserStickerStore(tmp / "user"),
                      **starter_kwargs()) as running:
        yield running
    store.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(app, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#dialogue textarea")
    yield page
    context.close()


def _rank(page, text: str) -> None:
    page.fill("#dialogue textarea", text)
    page.click("#rank-btn")
    sync_api.expect(page.locator("#rank-status")).to_contain_text("Ranked", timeout=TIMEOUT_MS)


def test_type_dialogue_and_rank(page, app):
    page.fill("#dialogue textarea", "你还没睡吗\n还在加班呢\n好困啊，我去睡了")
    sync_api.expect(page.locator("#dialogue-preview")).to_contain_text("sends the sticker")
    page.click("#rank-btn")
    sync_api.expect(page.locator("#rank-status")).to_contain_text("Ranked 62 stickers for speaker A")
    sync_api.expect(page.locator("#ranking-gallery img")).to_have_count(TOP_K)  # the top of the ranking
    sync_api.expect(page.locator("#ranking-table")).to_contain_text("emoji-1f")
    sync_api.expect(page.locator("#selected-info")).to_contain_text("rank / 排名 1")
    # pick "Random 10": ten tiles
    page.get_by_label(re.compile("Random 10")).check()
    page.click("#rank-btn")
    sync_api.expect(page.locator("#rank-status")).to_contain_text("Ranked 10 stickers")
    sync_api.expect(page.locator("#ranking-gallery img")).to_have_count(10)


def test_empty_dialogue_shows_error_and_app_keeps_working(page):
    page.fill("#dialogue textarea", "  \n ")
    page.click("#rank-btn")
    sync_api.expect(page.locator("#rank-status")).to_contain_text("empty")
    _rank(page, "B: hello\nA: bye!")


def test_saliency_for_a_clicked_sticker(page):
    _rank(page, "A: 今天好开心\nB: 怎么啦\nA: 考试通过了 haha")
    page.locator("#ranking-gallery button.thumbnail-item").nth(2).click()
    sync_api.expect(page.locator("#selected-info")).to_contain_text("rank / 排名 3")
    page.click("#saliency-btn")
    sync_api.expect(page.locator("#saliency-status")).to_contain_text("tokens")
    sync_api.expect(page.locator("#saliency-text")).to_contain_text("开")
    sync_api.expect(page.locator("#saliency-heatmap img")).to_have_count(1)
    page.locator("#method").get_by_role("radio", name=re.compile("Integrated Gradients")).check()
    page.click("#saliency-btn")
    sync_api.expect(page.locator("#saliency-status")).to_contain_text("tokens")


def test_add_sticker_with_ocr_then_rank_it(page, app, tmp_path):
    image = write_text_sticker(tmp_path / "goodnight.png", ["晚安", "Good night"])
    page.get_by_role("tab", name=re.compile("Add stickers")).click()
    page.locator("#upload input[type=file]").set_input_files(str(image))
    ocr_box = page.locator("#ocr-text textarea")
    sync_api.expect(page.locator("#add-status")).to_contain_text(re.compile("Text read by|Text reading is"))
    if "rapidocr" in page.locator("#add-status").inner_text() and CJK_FONT.is_file():
        sync_api.expect(ocr_box).to_have_value(re.compile("晚安"))
    ocr_box.fill("晚安 Good night")
    page.fill("#sticker-name textarea", "晚安")
    page.click("#add-btn")
    sync_api.expect(page.locator("#add-status")).to_contain_text("Added user-0001")
    sync_api.expect(page.locator("#user-gallery img")).to_have_count(1)
    assert "user-0001" in app.service.sticker_ids()
    sync_api.expect(page.locator("#header")).to_contain_text("63 stickers")  # the header counts it
    page.get_by_role("tab", name=re.compile("Rank & explain")).click()
    _rank(page, "我去睡啦\n晚安")
    sync_api.expect(page.locator("#rank-status")).to_contain_text("Ranked 63 stickers")
    for shown in (40, 60, 63):  # one click at a time (a click while one is pending is ignored)
        page.click("#more-btn")
        sync_api.expect(page.locator("#ranking-gallery img")).to_have_count(shown)
    sync_api.expect(page.locator("#ranking-gallery img[src*='user-0001']")).to_have_count(1)


def test_bad_upload_shows_error(page, tmp_path):
    bad = tmp_path / "fake.png"
    bad.write_bytes(b"GIF89a but not really an image")
    page.get_by_role("tab", name=re.compile("Add stickers")).click()
    page.locator("#upload input[type=file]").set_input_files(str(bad))
    sync_api.expect(page.locator("#add-status")).to_contain_text("Not a usable image")


def test_flag_a_sticker(page, app):
    _rank(page, "A: 周末一起去爬山吗\nB: 好呀好呀")
    page.locator("#ranking-gallery button.thumbnail-item").nth(1).click()
    sync_api.expect(page.locator("#selected-info")).to_contain_text("rank / 排名 2")
    page.fill("#annotator input, #annotator textarea", "browser-tester")
    page.click("#flag-btn")
    sync_api.expect(page.locator("#flag-status")).to_contain_text("Saved")
    sync_api.expect(page.locator("#flags-table")).to_contain_text("browser-tester")
    stored = app.service.flags_for("A: 周末一起去爬山吗\nB: 好呀好呀")
    assert [(a.annotator, a.model_rank) for a in stored] == [("browser-tester", 2)]
    page.get_by_role("tab", name=re.compile("Annotations")).click()
    page.click("#agreement-btn")
    sync_api.expect(page.locator("#agreement")).not_to_be_empty()


def _first_row(page) -> str:
    return page.locator("#ranking-table tbody tr").first.get_attribute("data-sticker")


def test_ranking_a_new_dialogue_clears_the_last_ones_results(page):
    page.fill("#dialogue textarea", "  ")
    page.click("#rank-btn")  # an error: its warning toast and error line
    sync_api.expect(page.locator(".toast-body")).not_to_have_count(0)
    _rank(page, "A: 今天好开心\nB: 怎么啦\nA: 考试通过了")
    sync_api.expect(page.locator(".toast-body")).to_have_count(0)  # the warning went with the new ranking
    page.locator("#ranking-gallery button.thumbnail-item").nth(2).click()
    sync_api.expect(page.locator("#selected-info")).to_contain_text("rank / 排名 3")
    page.click("#saliency-btn")
    sync_api.expect(page.locator("#saliency-heatmap img")).to_have_count(1)
    page.fill("#annotator input, #annotator textarea", "stale-tester")
    page.click("#flag-btn")
    sync_api.expect(page.locator("#flag-status")).to_contain_text("Saved")
    sync_api.expect(page.locator("#ranking-gallery button.thumbnail-item.selected")).to_have_count(1)

    page.fill("#dialogue textarea", "A: 下雨了\nB: 带伞了吗\nA: 没带，好惨")
    page.click("#rank-btn")
    sync_api.expect(page.locator("#rank-status")).to_contain_text("Ranked 6")
    sync_api.expect(page.locator("#ranking-table tbody tr")).to_have_count(TOP_K)
    sync_api.expect(page.locator("#saliency-heatmap img")).to_have_count(0)
    sync_api.expect(page.locator("#saliency-status")).to_have_text("")
    sync_api.expect(page.locator("#saliency-text")).not_to_contain_text("开")
    sync_api.expect(page.locator("#flag-status")).not_to_contain_text("Saved")
    sync_api.expect(page.locator("#flags-table")).not_to_contain_text("stale-tester")
    sync_api.expect(page.locator("#ranking-gallery button.thumbnail-item.selected")).to_have_count(0)
    sync_api.expect(page.locator("#selected-info")).to_contain_text("rank / 排名 1")


def test_top_k_then_show_more(page, app):
    _rank(page, "A: 周末干嘛\nB: 在家躺着")
    n = len(app.service.sticker_ids())  # 62, or 63 after the add test
    table_rows = page.locator("#ranking-table tbody tr")
    sync_api.expect(table_rows).to_have_count(TOP_K)
    sync_api.expect(page.locator("#ranking-table")).to_contain_text(f"top {TOP_K} of {n}")
    sync_api.expect(page.locator("#ranking-table [data-labels='done']")).to_have_count(1)  # the labels followed
    assert page.locator("#ranking-table td.label").count() == TOP_K
    for shown in (2 * TOP_K, 3 * TOP_K, n):
        page.click("#more-btn")
        sync_api.expect(table_rows).to_have_count(shown)
        sync_api.expect(page.locator("#ranking-gallery img")).to_have_count(shown)
    sync_api.expect(page.locator("#more-btn")).to_be_hidden()
    ranks = [int(t.split()[0]) for t in page.locator("#ranking-table td:first-child").all_inner_texts()]
    assert ranks == list(range(1, n + 1))
    # a click on a row selects its sticker
    table_rows.nth(4).click()
    sync_api.expect(page.locator("#selected-info")).to_contain_text("rank / 排名 5")


def test_rank_without_the_prior(page):
    _rank(page, "A: 你还没睡吗\nB: 还在加班呢")
    assert _first_row(page) == PRIOR_FAVOURITE
    sync_api.expect(page.locator("#ranking-table .sbar").first).to_be_visible()  # the score breakdown bar
    page.click("#no-prior input")
    sync_api.expect(page.locator("#ranking-table")).to_contain_text("without the prior")
    sync_api.expect(page.locator("#ranking-table tbody tr").first).not_to_have_attribute("data-sticker",
                                                                                        PRIOR_FAVOURITE)
    _rank(page, "A: 你还没睡吗\nB: 还在加班呢\nA: 好困")  # "Rank" keeps the switch
    sync_api.expect(page.locator("#rank-status")).to_contain_text("without the prior")
    assert _first_row(page) != PRIOR_FAVOURITE
    page.click("#no-prior input")
    sync_api.expect(page.locator("#ranking-table tbody tr").first).to_have_attribute("data-sticker",
                                                                                    PRIOR_FAVOURITE)


class _SlowOCR:
    """A stand-in for ``demo.ocr.read_text``: blocks until ``release`` is set, then reads ``text``.

    ``entered`` is set once a call is inside (the demo is "reading the text"); ``calls`` records
    (file name, engine) of every call.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.entered = threading.Event()
        self.release = threading.Event()
        self.calls: list[tuple[str, str | None]] = []

    def __call__(self, image, engine=None, **kwargs):
        self.calls.append((Path(image).name, engine))
        self.entered.set()
        if not self.release.wait(timeout=TIMEOUT_MS / 1000 * 3):  # never hang the server on a failed test
            raise RuntimeError("the test never released the fake OCR")
        return self.text


def test_add_button_is_disabled_while_ocr_reads_the_upload(browser, make_tiny_selector, tmp_path, monkeypatch):
    """While OCR reads an upload, "Add sticker" is disabled (a sticker cannot be saved without its
    text); once the text is in, it is enabled, and adding the sticker raises the header's count by one."""
    from PIL import Image, ImageDraw

    from demo import ocr

    fake = _SlowOCR("加油")
    monkeypatch.setattr(ocr, "default_engine", lambda: "fake-ocr")  # the panel's engine is "auto"
    monkeypatch.setattr(ocr, "read_text", fake)
    image = Image.new("RGB", (96, 96), "white")
    ImageDraw.Draw(image).ellipse((16, 16, 80, 80), fill="orange")
    image.save(tmp_path / "cheer.png")

    user_stickers = UserStickerStore(tmp_path / "user")
    with running_demo(make_tiny_selector(), user_stickers=user_stickers, ocr_engine="auto",
                      **starter_kwargs()) as app:
        context = browser.new_context(viewport={"width": 1280, "height": 1000})
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(app.url)
            header = page.locator("#header")
            n = len(app.service.sticker_ids())
            sync_api.expect(header).to_contain_text(f"{n} stickers")
            page.get_by_role("tab", name=re.compile("Add stickers")).click()
            add_btn, ocr_btn = page.locator("#add-btn"), page.locator("#ocr-btn")
            ocr_box = page.locator("#ocr-text textarea")
            sync_api.expect(add_btn).to_be_enabled()

            page.locator("#upload input[type=file]").set_input_files(str(tmp_path / "cheer.png"))
            # clicks in the page from the upload until OCR starts: the button is disabled in the page at
            # once (not only when the server's busy step comes back), so none of them saves the sticker
            clicks = 0
            while not fake.entered.is_set() and clicks < 2000:
                page.evaluate("() => document.querySelector('#add-btn').click()")
                clicks += 1
            assert fake.entered.wait(TIMEOUT_MS / 1000), "the upload never reached OCR"
            # OCR is blocked: the Add button (and "Read text again") wait for it
            sync_api.expect(add_btn).to_be_disabled()
            sync_api.expect(add_btn).to_contain_text("Reading the text")
            sync_api.expect(ocr_btn).to_be_disabled()
            sync_api.expect(ocr_box).to_have_value("")
            add_btn.click(force=True)  # a click on the disabled button does nothing (checked below)
            assert fake.calls == [("cheer.png", "fake-ocr")]

            fake.release.set()
            sync_api.expect(ocr_box).to_have_value("加油")
            sync_api.expect(page.locator("#add-status")).to_contain_text("Text read by fake-ocr")
            sync_api.expect(add_btn).to_be_enabled()
            sync_api.expect(add_btn).to_contain_text("Add sticker")
            sync_api.expect(ocr_btn).to_be_enabled()

            add_btn.click()
            sync_api.expect(page.locator("#add-status")).to_contain_text("Added user-0001")
            sync_api.expect(header).to_contain_text(f"{n + 1} stickers")
            sync_api.expect(page.locator("#user-gallery img")).to_have_count(1)
            # one sticker, with the text OCR read: the forced click while reading saved nothing
            assert [(s.sticker_id, s.ocr) for s in user_stickers.stickers()] == [("user-0001", "加油")]
            assert len(app.service.sticker_ids()) == n + 1 and "user-0001" in app.service.sticker_ids()
            assert app.service.info("user-0001").ocr == "加油"
            assert len(fake.calls) == 1
        finally:
            fake.release.set()
            context.close()
