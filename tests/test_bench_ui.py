"""``python -m demo.bench_ui`` on a tiny model: it runs in Chromium and prints every key."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.demo_server import CHROMIUM

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} missing (apt-get install -y chromium)"),
]
pytest.importorskip("playwright.sync_api")


def test_bench_ui_prints_its_numbers(tiny_checkpoint, tmp_path, capsys):
    from demo.bench_ui import main

    output = tmp_path / "bench.json"
    assert main(["--starter", "--checkpoint", str(tiny_checkpoint), "--n", "2", "--feature-cache", "off",
                 "--thumbnails", str(tmp_path / "thumbs"), "--output", str(output)]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == json.loads(output.read_text(encoding="utf-8"))
    for key in ("rank_p50_ms", "rank_p95_ms", "saliency_p50_ms", "page_ready_s", "api_rank_p50_ms",
                "client_rank_p50_ms"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["n"] == 2 and len(result["rank_ms"]) == 2 and result["stickers"] == 62
    assert result["rank_p50_ms"] <= result["rank_p95_ms"]
