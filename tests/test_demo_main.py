"""``python -m demo`` end to end: a subprocess serving a saved tiny checkpoint on a free port."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

inference = pytest.importorskip("core.serving.inference")
gradio_client = pytest.importorskip("gradio_client")

from tests.support.demo_server import free_port, wait_until_serving  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def test_import_starts_nothing():
    code = ("import threading, demo, demo.app, demo.launcher, demo.service; "
            "assert threading.active_count() == 1, threading.enumerate()")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=120)


@pytest.mark.slow  # a second Python process imports torch + gradio (~20 s on 2 cores)
def test_python_m_demo_serves_the_api(tmp_path, tiny_checkpoint):
    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "demo", "--port", str(port), "--checkpoint", str(tiny_checkpoint), "--starter",
         "--annotations", str(tmp_path / "a.sqlite"), "--user-stickers", str(tmp_path / "user"), "--ocr", "off"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_serving(process, url, 240, describe=lambda: process.stdout.read(), interval=1)
        client = gradio_client.Client(url, analytics_enabled=False, verbose=False)
        ranked = client.predict("你好\n再见", api_name="/rank")
        assert len(ranked) == 62 and ranked[0]["rank"] == 1
        record = client.predict("你好\n再见", ranked[1]["sticker_id"], "main-test", "acceptable", api_name="/flag")
        assert record["annotator"] == "main-test"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        process.stdout.close()
