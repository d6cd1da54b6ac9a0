"""The error-analysis tab in a real browser (Debian chromium + Playwright): analyse a tiny split, see the
plots, click a miss and land in the rank view with that dialogue ranked and its gold sticker marked;
then ask why the model's pick beats the gold."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from tests.support.demo_server import CHROMIUM, CHROMIUM_ARGS  # noqa: E402

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (apt-get install -y chromium)"),
]

sync_api = pytest.importorskip("playwright.sync_api")

from tests.support.demo_server import running_demo  # noqa: E402

TIMEOUT_MS = 60_000
sync_api.expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def app(tmp_path_factory, make_tiny_selector):
    from core.data.mod import load_mod
    from demo.service import load_examples
    from tests.support.mini_mod import make_mini_mod

    mod = load_mod(make_mini_mod(tmp_path_factory.mktemp("analysis_browser") / "mod", n_dialogues=40))
    selector = make_tiny_selector([s for s in mod.stickers if s.has_image], seed=2)
    with running_demo(selector, examples=load_examples(mod, per_split=2), splits=mod.split_rows,
                      annotations=None, user_stickers=None, ocr_engine=None) as running:
        yield running


@pytest.fixture
def page(app):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app.url)
        page.wait_for_selector("#dialogue textarea")
        yield page
        browser.close()


def test_analyse_a_split_then_open_a_miss_in_the_rank_view(page, app):
    page.get_by_role("tab", name="Error analysis / 错误分析").click()
    page.get_by_label("easy test", exact=False).first.check()
    page.click("#analysis-run")
    sync_api.expect(page.locator("#analysis-status")).to_contain_text("samples ranked against every sticker")
    sync_api.expect(page.locator("#analysis-recall img")).to_have_count(1)
    sync_api.expect(page.locator("#analysis-confusions img")).to_have_count(1)
    row = page.locator("#analysis-misses tr[data-sample]").first
    sample_id = row.get_attribute("data-sample")
    row.click()  # the miss becomes an example: loaded, ranked, and the rank tab shown
    sync_api.expect(page.locator("#rank-status")).to_contain_text("gold sticker")
    sync_api.expect(page.locator("#dialogue textarea")).to_be_visible()
    key = next(k for k in app.service.examples if k.endswith(":" + sample_id))
    example = app.service.examples[key]
    assert page.locator("#dialogue textarea").input_value() == example.text
    sync_api.expect(page.locator("#rank-status")).to_contain_text(f"gold sticker {example.gold_id} is at rank")
    # why the model's pick over the gold sticker
    page.click("#contrast-btn")
    sync_api.expect(page.locator("#contrast-status")).to_contain_text("the pick")
    sync_api.expect(page.locator("#contrast-table")).to_contain_text("total")
    # a new ranking: the last one's explanation goes
    page.click("#rank-btn")
    sync_api.expect(page.locator("#contrast-status")).not_to_contain_text("the pick")
