"""The demo's named API endpoints through gradio_client (/rank, /saliency, /flag).

One app per module, served on a free 127.0.0.1 port with a tiny random-weight selector over
the starter pack, so the tests check the plumbing, not the model's quality.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")
inference = pytest.importorskip("core.serving.inference")

from core.annotations import AnnotationStore  # noqa: E402
from demo.user_stickers import UserStickerStore  # noqa: E402
from tests.support.demo_server import running_demo, starter_kwargs  # noqa: E402

DIALOGUE = "A: 你还没睡吗\nB: 还在加班呢\nA: 好困啊，我去睡了 good night"


def _client(url: str, **kwargs):
    return gradio_client.Client(url, analytics_enabled=False, verbose=False, **kwargs)


@pytest.fixture(scope="module")
def app(tmp_path_factory, make_tiny_selector):
    tmp = tmp_path_factory.mktemp("demo_api")
    selector = make_tiny_selector()
    store = AnnotationStore(tmp / "annotations.sqlite")
    with running_demo(selector, annotations=store, user_stickers=UserStickerStore(tmp / "user"),
                      ocr_engine=None, **starter_kwargs()) as running:
        yield running
    store.close()


@pytest.fixture(scope="module")
def client(app):
    return _client(app.url)


def test_named_endpoints_are_documented(client):
    named = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/rank", "/saliency", "/flag"} <= set(named)


def test_rank_all(client, app):
    ranked = client.predict(DIALOGUE, api_name="/rank")
    ids = app.service.sticker_ids()
    assert sorted(r["sticker_id"] for r in ranked) == sorted(ids)
    assert [r["rank"] for r in ranked] == list(range(1, len(ids) + 1))
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    first = ranked[0]
    assert set(first) >= {"sticker_id", "rank", "score", "text", "prior", "emotions", "semantic_label", "ocr"}
    assert 1 <= len(first["emotions"]) <= 3
    assert all(0.0 <= e["probability"] <= 1.0 for e in first["emotions"])
    assert isinstance(first["semantic_label"], str)


def test_rank_random10_and_choice(client):
    assert len(client.predict(DIALOGUE, "random10", None, 7, api_name="/rank")) == 10
    chosen = ["emoji-1f62a", "emoji-1f634", "emoji-1f600"]
    ranked = client.predict("hello\nbye", "choice", chosen, api_name="/rank")
    assert sorted(r["sticker_id"] for r in ranked) == sorted(chosen)


@pytest.mark.parametrize("text", ["", "   \n\t", "\x00\x01\x02\u200b"])
def test_rank_empty_dialogue_is_a_clear_error(client, text):
    with pytest.raises(gradio_client.exceptions.AppError, match="empty"):
        client.predict(text, api_name="/rank")


def test_bad_candidates_are_clear_errors(client):
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown sticker id"):
        client.predict(DIALOGUE, "choice", ["emoji-1f600", "no-such-sticker"], api_name="/rank")
    with pytest.raises(gradio_client.exceptions.AppError, match="needs at least one"):
        client.predict(DIALOGUE, "choice", [], api_name="/rank")
    with pytest.raises(gradio_client.exceptions.AppError, match="candidate mode"):
        client.predict(DIALOGUE, "bogus", api_name="/rank")


def test_huge_and_hostile_text_still_ranks(client):
    ranked = client.predict(("很长的对话\n" * 20000)[:100_000] + "\x07\x1b[31m最后一句", api_name="/rank")
    assert len(ranked) > 10
    assert len(client.predict("x" * 100_000, "random10", api_name="/rank")) == 10


def test_saliency_both_methods(client):
    for method in ("gradient", "integrated_gradients"):
        pairs = client.predict(DIALOGUE, "emoji-1f62a", method, 8, api_name="/saliency")
        assert pairs and all(set(p) == {"token", "score"} for p in pairs)
        assert all(p["score"] >= 0 for p in pairs)
        assert "困" in "".join(p["token"] for p in pairs)


def test_saliency_errors(client):
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown sticker id"):
        client.predict(DIALOGUE, "nope", "gradient", api_name="/saliency")
    with pytest.raises(gradio_client.exceptions.AppError, match="method"):
        client.predict(DIALOGUE, "emoji-1f62a", "lime", api_name="/saliency")
    with pytest.raises(gradio_client.exceptions.AppError, match="empty"):
        client.predict("", "emoji-1f62a", "gradient", api_name="/saliency")


def test_flag_stores_a_record(client, app):
    record = client.predict("你好\n晚安", "emoji-1f634", "alice", "acceptable", api_name="/flag")
    assert record["sticker_id"] == "emoji-1f634" and record["annotator"] == "alice"
    assert record["label"] == "acceptable" and record["dialogue_text"] == "A: 你好\nB: 晚安"
    assert record["model_version"] == "tiny-random-0"
    client.predict("A: 你好\nB: 晚安", "emoji-1f62a", "bob", "not_acceptable", api_name="/flag")
    stored = app.service.annotations.for_dialogue("A: 你好\nB: 晚安")
    assert {(a.sticker_id, a.annotator, a.label) for a in stored} == {
        ("emoji-1f634", "alice", "acceptable"), ("emoji-1f62a", "bob", "not_acceptable")}


def test_flag_errors_keep_the_server_up(client):
    with pytest.raises(gradio_client.exceptions.AppError, match="label"):
        client.predict("hi", "emoji-1f634", "alice", "great", api_name="/flag")
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown sticker id"):
        client.predict("hi", "emoji-0000", "alice", "acceptable", api_name="/flag")
    with pytest.raises(gradio_client.exceptions.AppError, match="control"):
        client.predict("hi", "emoji-1f634", "al\x00ice", "acceptable", api_name="/flag")
    assert client.predict("hi", "random10", api_name="/rank")


def test_login_required_flags_as_the_logged_in_user(tmp_path, make_tiny_selector):
    selector = make_tiny_selector(n=12, seed=1)
    store = AnnotationStore(tmp_path / "a.sqlite")
    with running_demo(selector, annotations=store, auth=[("ann", "pw1")], ocr_engine=None) as running:
        with pytest.raises(Exception):  # noqa: B017 - no credentials: the client cannot even connect
            _client(running.url)
        record = _client(running.url, auth=("ann", "pw1")).predict(
            "hello", "emoji-1f600", "someone-else", "acceptable", api_name="/flag")
        assert record["annotator"] == "ann"
    store.close()


# --------------------------------------------------------------------------- the annotation queue


def test_annotate_next_submit_skip_undo(client, app):
    state = client.predict("api-annotator", "examples", api_name="/annotate_next")
    assert {"item_id", "dialogue", "candidates", "done", "total", "finished"} <= set(state)
    assert (state["queue"], state["done"], state["total"]) == ("examples", 0, len(app.service.examples))
    top = state["candidates"]
    assert len(top) == 8 and {"sticker_id", "name", "image_url", "rank"} <= set(top[0])
    assert top[0]["image_url"].startswith(app.url.rstrip("/") + "/gradio_api/file=")
    import urllib.request

    with urllib.request.urlopen(top[0]["image_url"], timeout=30) as response:  # the URL serves the image
        assert response.status == 200 and response.read(4) == b"\x89PNG"
    after = client.predict("api-annotator", "examples", state["item_id"], [top[2]["sticker_id"]],
                           api_name="/annotate_submit")
    assert (after["done"], after["submitted"]) == (1, 1) and after["item_id"] != state["item_id"]
    labels = {a.sticker_id: a.label for a in app.service.annotations.for_dialogue(state["dialogue"])
              if a.annotator == "api-annotator"}
    assert labels[top[2]["sticker_id"]] == "acceptable"
    assert sorted(s for s, lab in labels.items() if lab == "not_acceptable") == sorted(
        c["sticker_id"] for c in top if c is not top[2])
    skipped = client.predict("api-annotator", "examples", after["item_id"], api_name="/annotate_skip")
    assert (skipped["done"], skipped["skipped"]) == (2, 1)
    undone = client.predict("api-annotator", "examples", api_name="/annotate_undo")
    assert undone["item_id"] == after["item_id"] and undone["done"] == 1
    undone = client.predict("api-annotator", "examples", api_name="/annotate_undo")
    assert undone["item_id"] == state["item_id"] and undone["accepted"] == [top[2]["sticker_id"]]
    assert not [a for a in app.service.annotations.for_dialogue(state["dialogue"]) if a.annotator == "api-annotator"]


def test_annotate_errors_are_clear(client):
    state = client.predict("api-errors", "examples", api_name="/annotate_next")
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown queue 'nope'; the queues are: examples"):
        client.predict("api-errors", "nope", api_name="/annotate_next")
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown item 'no-item' in queue 'examples'"):
        client.predict("api-errors", "examples", "no-item", [], api_name="/annotate_submit")
    with pytest.raises(gradio_client.exceptions.AppError, match="Unknown sticker id 'no-such-sticker'"):
        client.predict("api-errors", "examples", state["item_id"], ["no-such-sticker"], api_name="/annotate_submit")
    assert client.predict("api-errors", "examples", api_name="/annotate_next")["done"] == 0


def test_annotate_split_queues_and_login(tmp_path, make_tiny_selector):
    from core.data.mod import load_mod
    from tests.support.mini_mod import make_mini_mod

    mod = load_mod(make_mini_mod(tmp_path / "mod"))
    selector = make_tiny_selector([s for s in mod.stickers if s.has_image])
    store = AnnotationStore(tmp_path / "a.sqlite")
    with running_demo(selector, annotations=store, auth=[("ann", "pw1")], ocr_engine=None,
                      splits=mod.split_rows) as running:
        client = _client(running.url, auth=("ann", "pw1"))
        state = client.predict("someone-else", "hard_test", api_name="/annotate_next")
        assert (state["annotator"], state["total"], state["item_id"]) == (
            "ann", len(mod.split_rows["hard_test"]), mod.split_rows["hard_test"][0]["sample_id"])
        client.predict("someone-else", "hard_test", state["item_id"], [], api_name="/annotate_submit")
        assert {a.annotator for a in store.all()} == {"ann"}
        assert {a.source_sample_id for a in store.all()} == {state["item_id"]}
        with pytest.raises(gradio_client.exceptions.AppError, match="the queues are: valid, easy_test, hard_test"):
            client.predict("ann", "examples", api_name="/annotate_next")
    store.close()
