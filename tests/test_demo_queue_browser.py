"""The annotation queue in a real browser (Debian chromium driven by Playwright): keyboard
shortcuts (1, Enter, s, u; none of them while typing in the search box), the sticker grid,
uploads, the agreement table refreshed when its tab opens, and the download.

Marked ``browser``; skipped without /usr/bin/chromium or the playwright package.
"""
from __future__ import annotations

import json
import os
import re
import zipfile
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
from tests.support.demo_server import running_demo, starter_kwargs  # noqa: E402

TIMEOUT_MS = 60_000
expect = sync_api.expect
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def app(tmp_path_factory, make_tiny_selector):
    tmp = tmp_path_factory.mktemp("queue_browser")
    store = AnnotationStore(tmp / "annotations.sqlite")
    with running_demo(make_tiny_selector(), annotations=store, **starter_kwargs()) as running:
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
    context = browser.new_context(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app.url)
    page.wait_for_selector("#dialogue textarea, #dialogue input")
    yield page
    context.close()


def _open_queue(page, annotator: str) -> None:
    page.get_by_role("tab", name=re.compile("Annotation queue")).click()
    page.fill("#queue-annotator input, #queue-annotator textarea", annotator)
    page.click("#queue-start")
    expect(page.locator("#queue-progress")).to_contain_text(f"annotator {annotator}")
    expect(page.locator("#queue-tiles .qtile")).to_have_count(8)
    page.locator("#queue-dialogue").click()  # focus leaves the text box: the keys are shortcuts now


def _boxes(page):
    return page.locator("#queue-accept input[type=checkbox]")


def test_keyboard_toggle_submit_skip_undo(page, app):
    _open_queue(page, "kb-tester")
    progress = page.locator("#queue-progress")
    expect(progress).to_contain_text("0 / 6 done")
    first_item = app.blocks.queue_service.state("kb-tester", "examples")
    top = [c["sticker_id"] for c in first_item["candidates"]]
    page.keyboard.press("1")
    expect(_boxes(page).nth(0)).to_be_checked()
    expect(page.locator("#queue-tiles .qtile").nth(0)).to_have_class(re.compile(r"\bon\b"))
    page.keyboard.press("3")
    page.keyboard.press("3")  # toggled twice: off again
    expect(_boxes(page).nth(2)).not_to_be_checked()
    page.keyboard.press("Enter")
    expect(progress).to_contain_text("1 / 6 done")
    stored = {a.sticker_id: a.label for a in app.service.annotations.for_dialogue(first_item["dialogue"])
              if a.annotator == "kb-tester"}
    assert stored == {sid: "acceptable" if sid == top[0] else "not_acceptable" for sid in top}
    expect(_boxes(page).nth(0)).not_to_be_checked()  # the next item starts unticked
    page.keyboard.press("s")
    expect(progress).to_contain_text("2 / 6 done")
    expect(progress).to_contain_text("1 skipped")
    page.keyboard.press("u")
    expect(progress).to_contain_text("1 / 6 done")
    page.keyboard.press("u")
    expect(progress).to_contain_text("0 / 6 done")
    expect(page.locator("#queue-dialogue")).to_contain_text(first_item["item_id"])
    expect(_boxes(page).nth(0)).to_be_checked()  # the undone submission's ticks come back
    assert not [a for a in app.service.annotations.all() if a.annotator == "kb-tester"]


def test_typing_in_the_search_box_is_not_a_shortcut(page, app):
    _open_queue(page, "typist")
    page.get_by_text(re.compile("Any other sticker")).click()
    search = page.locator("#queue-search input, #queue-search textarea").first
    search.click()
    search.press_sequentially("sleep u s 1")
    page.keyboard.press("Enter")
    expect(search).to_have_value("sleep u s 1")
    search.fill("sleep")
    expect(page.locator("#queue-grid")).to_contain_text(re.compile(r"\d+ stickers? match"))
    page.locator("#queue-grid button.thumbnail-item").first.click()
    expect(page.locator("#queue-extra")).to_contain_text("emoji-")
    expect(page.locator("#queue-progress")).to_contain_text("0 / 6 done")
    expect(_boxes(page).nth(0)).not_to_be_checked()
    assert app.blocks.queue_service.state("typist", "examples")["done"] == 0


def test_upload_a_jsonl_queue(page, tmp_path):
    page.get_by_role("tab", name=re.compile("Annotation queue")).click()
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "A: hi"}\n{"dialogue": "not a list"}\n', encoding="utf-8")
    page.locator("#queue-upload input[type=file]").set_input_files(str(bad))
    expect(page.locator("#queue-status")).to_contain_text("line 2")
    good = tmp_path / "mine.jsonl"
    good.write_text("\n".join(json.dumps({"dialogue": ["你好", f"晚安 {k}"], "id": f"g{k}"}) for k in range(2)),
                    encoding="utf-8")
    page.locator("#queue-upload input[type=file]").set_input_files(str(good))
    expect(page.locator("#queue-status")).to_contain_text("Added queue upload:mine-")
    expect(page.locator("#queue-progress")).to_contain_text("0 / 2 done")
    expect(page.locator("#queue-dialogue")).to_contain_text("晚安 0")


def test_agreement_on_tab_open_review_and_download(page, app):
    queues = app.blocks.queue_service
    state = queues.state("alice", "examples")
    top = [c["sticker_id"] for c in state["candidates"]]
    queues.submit("alice", "examples", state["item_id"], [top[0]])
    queues.submit("bob", "examples", state["item_id"], [top[0], top[1]])
    page.get_by_role("tab", name=re.compile("Annotations: review")).click()  # no button pressed
    expect(page.locator("#agreement")).to_contain_text("alice / bob")
    expect(page.locator("#agreement")).to_contain_text("Fleiss")
    expect(page.locator("#agreement-summary")).to_contain_text("labelled by two or more")
    expect(page.locator("#review-table")).to_contain_text(top[1])
    page.click("#export-btn")
    link = page.locator("#export-file a").first
    expect(link).to_be_visible()
    with page.expect_download() as info:
        link.click()
    path = info.value.path()
    with zipfile.ZipFile(path) as archive:
        assert {"dialogues.jsonl", "records.jsonl", "summary.json"} <= set(archive.namelist())
        records = [json.loads(line) for line in archive.read("records.jsonl").decode().splitlines()]
    assert {"alice", "bob"} <= {r["annotator"] for r in records}
