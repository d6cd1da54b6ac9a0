"""The rank view without a browser: top-k labels, ranking without the prior, thumbnails, the HTML table."""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
from PIL import Image  # noqa: E402

inference = pytest.importorskip("core.serving.inference")

from core.serving.prior import StickerPrior  # noqa: E402
from demo.rank_format import ranking_html, shares, view_token  # noqa: E402
from demo.service import DemoService, ranked_to_json, rerank_rows, without_prior  # noqa: E402
from demo.thumbnails import ThumbnailCache  # noqa: E402

DIALOGUE = "A: 你还没睡吗\nB: 还在加班呢\nA: 好困啊"


@pytest.fixture
def service(tiny_selector, tmp_path):
    tiny_selector.prior = StickerPrior({"emoji-1f600": 50, "emoji-1f603": 5}, weight=1.0)
    return DemoService(tiny_selector, thumbnails=ThumbnailCache(tmp_path / "thumbs"))


def test_labels_only_for_the_top_rows_and_cleaned(service, monkeypatch):
    asked = []

    def fake_labels(context, rows, exhaustive=False):
        if rows:
            asked.append(list(rows))
        return ["无辜辜委屈!"] * len(rows)

    monkeypatch.setattr(service.selector, "semantic_labels", fake_labels)
    outcome = service.rank(DIALOGUE, labels=5)
    assert len(asked) == 1 and len(asked[0]) == 5  # one call, for the rows shown only
    assert [r.semantic_label for r in outcome.ranked[:5]] == ["无辜委屈"] * 5
    assert all(r.semantic_label == "" for r in outcome.ranked[5:])
    top = [r.sticker_id for r in outcome.ranked[5:7]]
    assert service.semantic_labels(DIALOGUE, top) == ["无辜委屈"] * 2
    assert len(asked[-1]) == 2


def test_rank_without_the_prior(service):
    with_prior = service.rank(DIALOGUE, labels=0)
    assert with_prior.ranked[0].sticker_id == "emoji-1f600"  # log(51) ≈ 3.9 outweighs a tiny model's logits
    alone = service.rank(DIALOGUE, labels=0, with_prior=False)
    assert not alone.with_prior and "without the prior" in alone.summary()
    expected = sorted(with_prior.ranked, key=lambda r: -(r.score - r.prior))
    assert [r.sticker_id for r in alone.ranked] == [r.sticker_id for r in expected]
    assert [r.rank for r in alone.ranked] == list(range(1, len(alone.ranked) + 1))
    by_id = {r.sticker_id: r for r in with_prior.ranked}
    for r in alone.ranked:  # the prior is still reported; the score no longer counts it
        assert r.prior == pytest.approx(by_id[r.sticker_id].prior)
        assert r.score == pytest.approx(by_id[r.sticker_id].score - r.prior)
    assert [r.sticker_id for r in without_prior(with_prior.ranked)] == [r.sticker_id for r in alone.ranked]
    # the page re-ranks its JSON rows the same way, both ways
    rows = ranked_to_json(with_prior.ranked)
    off = rerank_rows(rows, counted=True, with_prior=False)
    assert [r["sticker_id"] for r in off] == [r.sticker_id for r in alone.ranked]
    back = rerank_rows(off, counted=False, with_prior=True)
    assert [(r["sticker_id"], r["rank"]) for r in back] == [(r["sticker_id"], r["rank"]) for r in rows]
    assert [r["score"] for r in back] == pytest.approx([r["score"] for r in rows])


def test_thumbnails_made_once_small_and_renewed_when_the_image_changes(tmp_path):
    cache = ThumbnailCache(tmp_path / "thumbs", size=64)
    source = tmp_path / "big.png"
    Image.new("RGB", (640, 320), (10, 200, 10)).save(source)
    first = cache.path("s-1", source)
    with Image.open(first) as image:
        assert max(image.size) == 64 and image.size == (64, 32)
    assert ThumbnailCache(tmp_path / "thumbs", size=64).path("s-1", source) == first  # cached across starts
    Image.new("RGB", (100, 100), (200, 10, 10)).save(source)
    os.utime(source, ns=(1, 1))
    assert ThumbnailCache(tmp_path / "thumbs", size=64).path("s-1", source) != first
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    assert os.path.isfile(cache.path("s-2", broken)) and os.path.isfile(cache.path("s-3", None))


def test_service_prepares_every_thumbnail(service):
    assert service.prepare_thumbnails() == len(service.sticker_ids())
    assert all(os.path.isfile(service.thumbnail(s)) for s in service.sticker_ids())
    assert str(service.thumbnails.directory.resolve()) in service.static_dirs()


def _rows():
    return [
        {"sticker_id": "a", "rank": 1, "score": 3.0, "prior": 2.0, "text": 0.5, "probability": 0.7,
         "emotions": [{"emotion": "乐", "probability": 0.6}, {"emotion": "好", "probability": 0.3}],
         "semantic_label": "开心", "ocr": "<b>hi</b>", "name": "笑"},
        {"sticker_id": "b", "rank": 2, "score": -1.0, "prior": 0.0, "text": -0.5, "probability": 0.2,
         "emotions": [], "semantic_label": "", "ocr": "", "name": ""},
    ]


def test_ranking_html():
    html = ranking_html(_rows(), 20, token="t-1", gold_id="b", with_text=True, emotion_names=["乐", "好"])
    assert "data-view='t-1'" in html and html.count("<tr class=") == 2
    assert "&lt;b&gt;hi&lt;/b&gt;" in html and "<b>hi</b>" not in html      # data is escaped
    assert "乐 joy 60%" in html and "好 fondness/like" in html              # emotions spelled out, legend
    assert "<tr class='gold' data-sticker='b'>" in html
    assert "text<br>文本" in html and "seg-text" in html
    no_text = ranking_html(_rows(), 1, token="t", with_text=False)
    assert "text<br>文本" not in no_text and "seg-text" not in no_text      # no always-0 column
    assert no_text.count("<tr class=") == 1 and "top 1 of 2" in no_text
    faded = ranking_html(_rows(), 2, token="t", with_prior=False)
    assert "seg-prior faded" in faded and "without the prior" in faded
    assert shares(_rows()[0]) == {"cross": 0.5, "text": 0.5, "prior": 2.0}
    assert shares({**_rows()[0], "score": 1.0}, with_prior=False)["cross"] == 0.5
    assert view_token("A: x", True, 20) != view_token("A: y", True, 20) != view_token("A: y", False, 20)


def test_header_names_the_model_without_escapes(tiny_selector):
    from demo.app import _header_md

    service = DemoService(tiny_selector)
    service.selector.model_version = "default_model-5bd59e9ce6"
    header = _header_md(service)
    assert "`default_model-5bd59e9ce6`" in header and "\\" not in header
    assert f"{len(service.sticker_ids())} stickers" in header


def test_api_rank_keeps_its_contract(make_tiny_selector):
    gradio_client = pytest.importorskip("gradio_client")
    from tests.support.demo_server import running_demo, starter_kwargs

    with running_demo(make_tiny_selector(), ocr_engine=None, **starter_kwargs()) as app:
        client = gradio_client.Client(app.url, analytics_enabled=False, verbose=False)
        ranked = client.predict(DIALOGUE, api_name="/rank")
    keys = {"sticker_id", "rank", "score", "prior", "text", "probability", "emotions", "semantic_label", "ocr", "name"}
    assert all(set(r) == keys for r in ranked) and len(ranked) == 62
    assert all(r["semantic_label"] == "" for r in ranked[30:])  # labels for the top 30 only
    from core.serving.labels import clean_semantic_label

    assert all(r["semantic_label"] == clean_semantic_label(r["semantic_label"]) for r in ranked[:30])
