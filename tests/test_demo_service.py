"""demo.service / demo.launcher without a server: uploads, examples, auth file, hostile input."""
from __future__ import annotations

import io
import time
from argparse import Namespace

import pytest
from PIL import Image

inference = pytest.importorskip("core.serving.inference")

from core.annotations import AnnotationStore  # noqa: E402
from demo.user_stickers import UserStickerStore  # noqa: E402
from demo.launcher import AuthFileError, build_parser, load_parts, parse_auth_file  # noqa: E402
from demo.service import DemoError, DemoService  # noqa: E402
from tests.support.mini_mod import make_mini_mod  # noqa: E402


@pytest.fixture
def selector(tiny_selector):
    return tiny_selector


@pytest.fixture
def service(selector, tmp_path):
    return DemoService(selector, user_stickers=UserStickerStore(tmp_path / "user"), ocr_engine=None,
                       annotations=AnnotationStore(tmp_path / "a.sqlite"))


def _image_file(path, *, size=(64, 48), fmt="PNG", frames=1):
    if frames > 1:
        images = [Image.new("P", size, i % 256) for i in range(frames)]
        images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=20)
    else:
        Image.new("RGB", size, (200, 40, 40)).save(path, format=fmt)
    return path


def test_added_sticker_is_ranked_at_once(service, tmp_path):
    sticker = service.add_sticker(_image_file(tmp_path / "mine.png"), "晚安", "good night")
    assert sticker.sticker_id.startswith("user-")
    assert sticker.sticker_id in service.sticker_ids()
    outcome = service.rank("A: 我去睡了\nB: 晚安", mode="choice", chosen=[sticker.sticker_id, "emoji-1f600"])
    assert {r.sticker_id for r in outcome.ranked} == {sticker.sticker_id, "emoji-1f600"}
    assert service.info(sticker.sticker_id).source == "user"
    # the same upload again is the same sticker, not a duplicate
    assert service.add_sticker(tmp_path / "mine.png", "晚安", "good night").sticker_id == sticker.sticker_id


def test_animated_gif_with_500_frames_uses_the_first_frame(service, tmp_path):
    path = _image_file(tmp_path / "anim.gif", size=(32, 32), frames=500)
    start = time.perf_counter()
    sticker = service.add_sticker(path, "", "")
    assert time.perf_counter() - start < 10
    with Image.open(sticker.image_path) as image:
        assert image.format == "PNG" and getattr(image, "n_frames", 1) == 1


@pytest.mark.parametrize("kind", ["text", "truncated", "huge", "empty", "oversize", "missing"])
def test_bad_uploads_give_clear_errors(service, tmp_path, kind):
    path = tmp_path / f"bad-{kind}.png"
    if kind == "text":
        path.write_text("<html>not an image</html>")
    elif kind == "truncated":
        buffer = io.BytesIO()
        Image.new("RGB", (300, 300), (1, 2, 3)).save(buffer, format="JPEG")
        path.write_bytes(buffer.getvalue()[:400])
    elif kind == "huge":
        Image.new("1", (20000, 20000)).save(path, format="PNG")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "oversize":
        with open(path, "wb") as handle:
            handle.write(b"\x89PNG")
            handle.truncate(21 * 1024 * 1024)
    before = list(service.sticker_ids())
    with pytest.raises(DemoError) as info:
        service.add_sticker(None if kind == "missing" else path, "x", "")
    assert str(info.value)
    assert service.sticker_ids() == before
    assert service.rank("还好吗").ranked  # still serving


def test_adding_is_off_without_a_store(selector):
    with pytest.raises(DemoError, match="turned off"):
        DemoService(selector).add_sticker("whatever.png")
    with pytest.raises(DemoError, match="turned off"):
        DemoService(selector).flag("hi", "emoji-1f600", annotator="a")


def test_annotator_rules(selector):
    open_service = DemoService(selector)
    assert open_service.annotator_for("  Ann  Lee ", None) == "Ann Lee"
    assert open_service.annotator_for("", None) == "anonymous"
    locked = DemoService(selector, require_login=True)
    assert locked.annotator_for("someone", "ann") == "ann"
    with pytest.raises(DemoError, match="Log in"):
        locked.annotator_for("someone", None)


def test_flag_records_rank_version_and_example(service):
    record = service.flag("你好\n晚安", "emoji-1f600", annotator="ann", model_rank=3)
    assert (record.model_rank, record.model_version, record.dialogue_text) == (3, "tiny-random-0", "A: 你好\nB: 晚安")
    assert service.unflag("A: 你好\nB: 晚安", "emoji-1f600", annotator="ann") is True
    assert service.flags_for("你好\n晚安") == []


def test_random10_includes_gold_of_loaded_example(selector):
    service = DemoService(selector)
    example = service.example("demo-zh-sleep")
    ids = service.candidates("random10", seed=3, gold_id="emoji-1f60a")
    assert len(ids) == 10 and "emoji-1f60a" in ids
    assert service.gold_for(service.parse(example.text), example.key) == (None, example)  # built-ins: no gold


def test_load_parts_with_mod_layout_data(tmp_path, make_tiny_selector):
    data = make_mini_mod(tmp_path / "mod", n_dialogues=30)
    args = build_parser().parse_args(["--data", str(data), "--annotations", str(tmp_path / "a.sqlite"),
                                      "--user-stickers", str(tmp_path / "user")])
    parts = load_parts(args)
    ids = [s.sticker_id for s in parts.stickers]
    assert "012" not in ids and "000" in ids  # the sticker without an image is left out (and said so)
    assert "012" in parts.data_note
    assert parts.examples and all(e.gold_id in ids for e in parts.examples)
    assert {e.split for e in parts.examples} <= {"easy_test", "hard_test"}
    selector = make_tiny_selector(parts.stickers)
    service = DemoService(selector, examples=parts.examples)
    example = parts.examples[0]
    outcome = service.rank(example.text, mode="random10", example_key=example.key)
    assert outcome.gold_id == example.gold_id and outcome.rank_of(example.gold_id) is not None
    edited = service.rank(example.text + "\n再说一句", mode="all", example_key=example.key)
    assert edited.gold_id is None  # the dialogue changed: no gold any more
    parts.annotations.close()


def test_load_parts_falls_back_to_starter_pack_and_keeps_user_stickers(tmp_path, monkeypatch):
    monkeypatch.setenv("MOD_DATA_DIR", str(tmp_path / "nowhere"))
    store = UserStickerStore(tmp_path / "user")
    store.add(_image_file(tmp_path / "u.png").read_bytes(), ocr="hi")
    args = Namespace(starter=True, data=None, split_seed=0, examples=0, user_stickers=str(tmp_path / "user"),
                     annotations="off")
    parts = load_parts(args)
    assert "starter pack" in parts.data_note
    assert parts.sticker_info["emoji-1f600"].name_en == "grinning face"
    assert parts.stickers[-1].sticker_id == "user-0001"
    assert parts.annotations is None


def test_parse_auth_file(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text("# annotators\nann:pw1\n\nbob: secret:with:colons\n", encoding="utf-8")
    assert parse_auth_file(path) == [("ann", "pw1"), ("bob", " secret:with:colons")]
    path.write_text("no-colon-here\n", encoding="utf-8")
    with pytest.raises(AuthFileError, match=":1:"):
        parse_auth_file(path)
    with pytest.raises(AuthFileError):
        parse_auth_file(tmp_path / "missing.txt")


def test_main_reports_bad_auth_file_without_starting(tmp_path, capsys):
    from demo.__main__ import main

    (tmp_path / "auth.txt").write_text("\n", encoding="utf-8")
    assert main(["--auth", str(tmp_path / "auth.txt"), "--starter", "--annotations", "off",
                 "--user-stickers", "off"]) == 2
    assert "no 'user:password' lines" in capsys.readouterr().err


def test_prepare_encodes_a_typed_dialogue_ahead_of_the_ranking(service, monkeypatch):
    seen = []
    monkeypatch.setattr(service.selector, "prepare", lambda turns: seen.append(list(turns)))
    assert service.prepare("   \n  ") is False          # nothing to rank yet: rank() says why
    assert seen == []
    text = "A: 明天考试\nB: 我还没复习"
    assert service.prepare(text) is True
    assert seen == [list(service.parse(text).turns())]    # the turns the ranking will score
