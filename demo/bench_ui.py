"""``python -m demo.bench_ui``: how quickly the demo's page answers, measured in a real browser.

    python -m demo.bench_ui [--data DIR | --starter] [--checkpoint DIR] [--n 20] [--output FILE.json]

Starts the demo in-process (as ``python -m demo`` would: the default model and the MOD data when
``../shared/data/mod`` exists, else the starter pack; flagging and adding stickers off), drives
Debian Chromium with Playwright (``/usr/bin/chromium``; never ``playwright install``) over ``--n``
dialogues (the data's test examples, else built-in ones) and prints JSON:

- ``page_ready_s``: page requested → the Rank button is on screen;
- ``rank_p50_ms`` / ``rank_p95_ms``: click on Rank → the new ranking is visible (its table is in
  the DOM and every gallery thumbnail has loaded); ``labels_p50_ms``: click → the semantic labels
  of the rows shown have followed; ``first_rank_ms`` is a first (warm-up) dialogue, not counted;
- ``saliency_p50_ms``: click on Explain (gradient) → the highlighted text and heat map are shown;
- ``api_rank_p50_ms`` / ``api_rank_p95_ms``: ``/rank`` over Gradio's HTTP API, as the README's curl
  example calls it (POST ``/gradio_api/call/rank``, then GET the result; one ``session_hash``), all
  stickers, JSON with semantic labels for the top 30;
- ``client_rank_p50_ms`` / ``client_rank_p95_ms``: the same call through ``gradio_client``, which
  polls for its messages every 50 ms (its own latency, on top of the server's);
- ``startup_s`` (loading the model and stickers, building and launching the app), ``n``,
  ``stickers``, ``model``, ``data``, ``torch_threads``.
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MPLBACKEND", "agg")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from core.evaluation.metrics import percentile  # noqa: E402

__all__ = ["build_parser", "main", "measure"]

TIMEOUT_MS = 120_000
# Times are taken in the page (performance.now()): from the click event on the button to the first
# animation frame at which the result is in the DOM, so Playwright's own overhead is left out.
CLICKS = """() => {
  window.__bench = {};
  document.addEventListener('click', (e) => {
    const button = e.target.closest('#rank-btn, #saliency-btn');
    if (button) window.__bench[button.id] = performance.now();
  }, true);
}"""
VISIBLE = """([token, tiles]) => {
  const view = document.querySelector('#ranking-table [data-view]');
  if (!view || view.getAttribute('data-view') !== token) return false;
  const imgs = Array.from(document.querySelectorAll('#ranking-gallery img'));
  if (imgs.length !== tiles || !imgs.every((img) => img.complete && img.naturalWidth > 0)) return false;
  return performance.now() - window.__bench['rank-btn'];
}"""
LABELLED = """(token) => {
  const view = document.querySelector('#ranking-table [data-view]');
  if (!view || view.getAttribute('data-view') !== token || view.getAttribute('data-labels') !== 'done') return false;
  return performance.now() - window.__bench['rank-btn'];
}"""
EXPLAINED = """() => {
  const status = document.querySelector('#saliency-status');
  if (!status || !status.innerText.includes('tokens') || !document.querySelector('#saliency-heatmap img')) return false;
  return performance.now() - window.__bench['saliency-btn'];
}"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m demo.bench_ui", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=None,
                        help="MOD data directory (default $MOD_DATA_DIR or ../shared/data/mod when present, "
                             "else the starter pack)")
    parser.add_argument("--starter", action="store_true", help="the bundled starter pack even if MOD data exists")
    parser.add_argument("--checkpoint", default=None, help="model directory (default: the shipped model)")
    parser.add_argument("--n", type=int, default=20, help="dialogues to time (default 20)")
    parser.add_argument("--output", type=Path, default=None, help="write the JSON here too")
    parser.add_argument("--thumbnails", default=None, help="thumbnail directory (default runs/demo/thumbnails)")
    parser.add_argument("--feature-cache", default=None,
                        help="image feature cache file, or 'off' (default: the demo's, runs/demo/)")
    return parser


def _dialogues(service: Any, n: int) -> list[str]:
    """``n`` distinct dialogues: the data's test examples first, then the built-in ones, then
    variants of them (a last line added) when more are needed."""
    texts = list(dict.fromkeys(e.text for e in service.examples.values() if e.gold_id))
    texts += [e.text for e in service.examples.values() if not e.gold_id and e.text not in texts]
    out, round_ = [], 0
    while len(out) < n and texts:
        for text in texts:
            candidate = text if round_ == 0 else f"{text}\n还有 {round_} 件事"
            if candidate not in out:
                out.append(candidate)
            if len(out) == n:
                break
        round_ += 1
    return out


def _app(args: argparse.Namespace) -> tuple[Any, float]:
    """The demo built and launched on a free local port, and the seconds that took."""
    from core.serving.fast_ranking import part_cache_beside
    from core.serving.inference import StickerSelector
    from demo.app import CSS, build_demo
    from demo.launcher import MAX_UPLOAD, build_parser as demo_parser, default_data_dir, free_port, load_parts
    from demo.launcher import thumbnail_cache

    argv = ["--annotations", "off", "--user-stickers", "off", "--examples", str(max(args.n, 20))]
    argv += ["--starter"] if args.starter else []
    argv += ["--data", str(args.data)] if args.data else []
    argv += ["--thumbnails", args.thumbnails] if args.thumbnails else []
    argv += ["--feature-cache", args.feature_cache] if args.feature_cache else []
    demo_args = demo_parser().parse_args(argv)
    t0 = time.perf_counter()
    parts = load_parts(demo_args)
    cache = None if demo_args.feature_cache == "off" else demo_args.feature_cache
    selector = StickerSelector.load(args.checkpoint, stickers=parts.stickers, feature_cache_path=cache,
                                    part_cache_path=cache and part_cache_beside(cache))
    blocks = build_demo(selector, sticker_info=parts.sticker_info, examples=parts.examples, ocr_engine=None,
                        data_note=parts.data_note, static_dirs=parts.static_dirs,
                        thumbnails=thumbnail_cache(demo_args))
    blocks.queue(default_concurrency_limit=1)
    port = free_port()
    blocks.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True, css=CSS,
                  max_file_size=MAX_UPLOAD)
    blocks.bench_url = f"http://127.0.0.1:{port}/"
    data_dir = None if args.starter else (args.data or default_data_dir())
    blocks.bench_data = str(data_dir) if data_dir else "starter pack"
    return blocks, time.perf_counter() - t0


def _browser_times(url: str, dialogues: list[str], tiles: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    from core.data.dialogue import parse_dialogue
    from demo.rank_format import view_token
    from demo.rank_tab import TOP_K
    from tests.support.demo_server import CHROMIUM, CHROMIUM_ARGS

    ranks, labels, explains = [], [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(TIMEOUT_MS)
        t0 = time.perf_counter()
        page.goto(url)
        page.wait_for_selector("#rank-btn", state="visible")
        page_ready = time.perf_counter() - t0
        page.evaluate(CLICKS)
        first = None
        for i, text in enumerate(dialogues):  # the first one (not in the results) warms up
            page.fill("#dialogue textarea", text)
            page.wait_for_timeout(400)  # the dialogue preview (an event of its own) settles first
            token = view_token(parse_dialogue(text).canonical_text(), True, TOP_K)
            page.click("#rank-btn")
            elapsed = page.wait_for_function(VISIBLE, arg=[token, min(tiles, TOP_K)], polling="raf").json_value()
            labelled = page.wait_for_function(LABELLED, arg=token, polling="raf").json_value()
            if i == 0:
                first = elapsed
                continue
            ranks.append(elapsed)
            labels.append(labelled)
            page.click("#saliency-btn")
            explains.append(page.wait_for_function(EXPLAINED, polling="raf").json_value())
        browser.close()
    return {"page_ready_s": round(page_ready, 3), "first_rank_ms": round(float(first or 0.0), 1), "ranks": ranks,
            "labels": labels, "explains": explains}


def _http_rank(client: Any, url: str, text: str, session: str) -> str:
    """``/rank`` through Gradio's HTTP API as the README's curl example calls it: POST the dialogue,
    then read the result from the event stream (one session, as a caller that keeps its
    ``session_hash`` does)."""
    posted = client.post(f"{url}gradio_api/call/rank", json={"data": [text, "all", None, 0], "session_hash": session})
    posted.raise_for_status()
    answer = client.get(f"{url}gradio_api/call/rank/{posted.json()['event_id']}")
    if "event: complete" not in answer.text:
        raise RuntimeError(f"/rank over HTTP did not complete: {answer.text[:300]}")
    return answer.text


def _api_times(url: str, dialogues: list[str]) -> dict[str, list[float]]:
    """Milliseconds per ``/rank`` call over HTTP (``http``) and through ``gradio_client`` (``client``)."""
    import httpx
    from gradio_client import Client

    times: dict[str, list[float]] = {"http": [], "client": []}
    client = Client(url, analytics_enabled=False, verbose=False)
    with httpx.Client(timeout=60) as http:
        calls = {"http": lambda text: _http_rank(http, url, text, "bench-ui"),
                 "client": lambda text: client.predict(text, api_name="/rank")}
        for name, call in calls.items():
            call(dialogues[0])  # warm-up
            for text in dialogues[1:]:
                t = time.perf_counter()
                call(text)
                times[name].append(1000 * (time.perf_counter() - t))
    return times


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs the benchmark; returns the JSON-ready result."""
    import torch

    with contextlib.redirect_stdout(sys.stderr):  # gradio's own messages: not in the JSON
        blocks, startup = _app(args)
    try:
        service = blocks.demo_service
        dialogues = _dialogues(service, args.n + 1)  # one more to warm up with
        n_stickers = len(service.sticker_ids())
        browser = _browser_times(blocks.bench_url, dialogues, n_stickers)
        api = _api_times(blocks.bench_url, dialogues)
    finally:
        with contextlib.redirect_stdout(sys.stderr):
            blocks.close()
    ms = lambda values, q: round(float(percentile(values, q)), 1)  # noqa: E731
    return {
        "rank_p50_ms": ms(browser["ranks"], 0.5), "rank_p95_ms": ms(browser["ranks"], 0.95),
        "saliency_p50_ms": ms(browser["explains"], 0.5), "page_ready_s": browser["page_ready_s"],
        "labels_p50_ms": ms(browser["labels"], 0.5),
        "api_rank_p50_ms": ms(api["http"], 0.5), "api_rank_p95_ms": ms(api["http"], 0.95),
        "client_rank_p50_ms": ms(api["client"], 0.5), "client_rank_p95_ms": ms(api["client"], 0.95),
        "first_rank_ms": browser["first_rank_ms"], "startup_s": round(startup, 2), "n": len(dialogues) - 1,
        "stickers": n_stickers, "model": service.model_version, "data": blocks.bench_data,
        "torch_threads": torch.get_num_threads(),
        "rank_ms": [round(float(v), 1) for v in browser["ranks"]], "api_rank_ms": [round(v, 1) for v in api["http"]],
    }


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.n < 1:
        print("error: --n must be at least 1", file=sys.stderr)
        return 2
    result = measure(args)
    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if args.output:
        args.output.write_text(text + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
