"""demo.app._handle_errors: the one error wrapper of the demo's handlers."""
from __future__ import annotations

import logging

import pytest

gr = pytest.importorskip("gradio")

from demo.app import KEEP, STATUS, _handle_errors  # noqa: E402
from demo.service import DemoError  # noqa: E402


def test_bad_input_is_one_log_line_and_a_status_message(caplog):
    @_handle_errors(KEEP, STATUS, "fallback")
    def handler(text):
        raise DemoError(f"the dialogue {text!r} is empty")

    with caplog.at_level(logging.INFO, logger="demo.app"):
        kept, status, value = handler("")
    assert value == "fallback" and "is empty" in status
    assert isinstance(kept, dict)  # gr.update(): the output stays as it was
    records = [r for r in caplog.records if "is empty" in r.getMessage()]
    assert len(records) == 1 and records[0].exc_info is None  # one line, no traceback


def test_unexpected_errors_keep_their_traceback_in_the_log(caplog):
    @_handle_errors(STATUS)
    def handler():
        return 1 / 0

    with caplog.at_level(logging.INFO, logger="demo.app"):
        status = handler()
    assert "ZeroDivisionError" in status and "server log" in status
    assert any(r.exc_info is not None for r in caplog.records)


def test_api_endpoints_raise_gradio_errors():
    @_handle_errors()
    def endpoint():
        raise DemoError("Unknown sticker id 'x'")

    with pytest.raises(gr.Error, match="Unknown sticker id"):
        endpoint()
