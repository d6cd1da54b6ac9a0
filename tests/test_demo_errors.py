"""The demo's errors: :class:`demo.errors.DemoError` messages are bilingual ("English / 中文",
like the rest of the UI), and demo.app._handle_errors is the one error wrapper of the handlers."""
from __future__ import annotations

import ast
import logging
import pickle
import re
from pathlib import Path

import pytest

from demo.errors import DemoError

DEMO_DIR = Path(__file__).resolve().parents[1] / "demo"
CJK = re.compile(r"[\u3400-\u9fff\uff00-\uffef\u3000-\u303f]")

# DemoError(...) calls allowed without Chinese: ones that only pass on another error's text,
# as (file name, source of the call's first argument). None today: the three re-raises
# (queue_service: the QueueError of an upload and of an unknown item; sticker_uploads: a
# UserStickerError) add a Chinese version through zh=.
ENGLISH_ONLY: frozenset[tuple[str, str]] = frozenset()


# --------------------------------------------------------------------------- DemoError


def test_a_chinese_version_follows_the_english():
    assert str(DemoError("x", zh="中")) == "x / 中"
    assert str(DemoError("x")) == "x"
    assert str(DemoError("x", zh=None)) == "x" and str(DemoError("x", zh="")) == "x"
    error = DemoError("Unknown sticker id 'a'.", zh="未知的表情 ID 'a'。")
    assert isinstance(error, ValueError) and (error.en, error.zh) == ("Unknown sticker id 'a'.", "未知的表情 ID 'a'。")
    assert error.args == ("Unknown sticker id 'a'. / 未知的表情 ID 'a'。",)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error) and (copy.en, copy.zh) == (error.en, error.zh)


def test_a_wrapped_demo_error_is_not_doubled(tmp_path):
    pytest.importorskip("PIL")
    from demo.sticker_uploads import StickerUploads

    with pytest.raises(DemoError) as info:
        StickerUploads().preview_upload(tmp_path / "gone.png")
    assert str(info.value) == ("Not a usable image: The uploaded file is gone; upload it again. / "
                               "图片不可用：上传的文件已不存在，请重新上传。")


def _text_parts(node: ast.expr) -> str:
    """The literal text of a str constant or an f-string (its constant parts); "" otherwise."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_text_parts(v) for v in node.values)
    return ""


def _demo_error_calls() -> list[tuple[str, ast.Call]]:
    calls = []
    for path in sorted(DEMO_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name == "DemoError":
                    calls.append((path.name, node))
    return calls


def test_every_demo_error_has_a_chinese_version():
    calls = _demo_error_calls()
    assert len(calls) > 50  # the scan sees the demo's errors
    missing, allowed_seen = [], set()
    for file_name, call in calls:
        zh = next((k.value for k in call.keywords if k.arg == "zh"), None)
        message = _text_parts(call.args[0]) if call.args else ""
        if zh is not None:
            if not CJK.search(_text_parts(zh)):
                missing.append(f"{file_name}:{call.lineno}: zh= without Chinese text: {ast.unparse(zh)}")
            continue
        if CJK.search(message):
            continue
        key = (file_name, ast.unparse(call.args[0]) if call.args else "")
        if key in ENGLISH_ONLY:
            allowed_seen.add(key)
            continue
        missing.append(f"{file_name}:{call.lineno}: {ast.unparse(call)}")
    assert not missing, "DemoError without a Chinese version (add zh=...):\n" + "\n".join(missing)
    assert allowed_seen == set(ENGLISH_ONLY), f"stale ENGLISH_ONLY entries: {set(ENGLISH_ONLY) - allowed_seen}"


# --------------------------------------------------------------------------- demo.app._handle_errors


@pytest.fixture
def app():
    pytest.importorskip("gradio")
    import demo.app

    return demo.app


def test_bad_input_is_one_log_line_and_a_status_message(app, caplog):
    @app._handle_errors(app.KEEP, app.STATUS, "fallback")
    def handler(text):
        raise DemoError(f"the dialogue {text!r} is empty", zh=f"对话 {text!r} 为空")

    with caplog.at_level(logging.INFO, logger="demo.app"):
        kept, status, value = handler("")
    assert value == "fallback" and "is empty" in status and "为空" in status
    assert isinstance(kept, dict)  # gr.update(): the output stays as it was
    records = [r for r in caplog.records if "is empty" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None  # one line, no traceback


def test_unexpected_errors_keep_their_traceback_in_the_log(app, caplog):
    @app._handle_errors(app.STATUS)
    def handler():
        return 1 / 0

    with caplog.at_level(logging.INFO, logger="demo.app"):
        status = handler()
    assert "ZeroDivisionError" in status and "server log" in status and "服务器日志" in status
    assert any(r.exc_info is not None for r in caplog.records)


def test_api_endpoints_raise_gradio_errors(app):
    import gradio as gr

    @app._handle_errors()
    def endpoint():
        raise DemoError("Unknown sticker id 'x'.", zh="未知的表情 ID 'x'。")

    with pytest.raises(gr.Error, match=re.escape("Unknown sticker id 'x'. / 未知的表情 ID 'x'。")):
        endpoint()
