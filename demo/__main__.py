"""``python -m demo``: start the sticker selection demo (default http://127.0.0.1:7860).

Options: ``--host``, ``--port``, ``--checkpoint``, ``--data DIR``, ``--annotations DB``,
``--user-stickers DIR``, ``--auth FILE``, ``--ocr``, ``--starter`` (``--help`` for all).
"""
from __future__ import annotations

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# A server draws off-screen. Naming the backend also spares gradio's first request from importing
# pyplot just to ask matplotlib which backend is the default (~0.8 s of the first /rank on 2 cores).
os.environ.setdefault("MPLBACKEND", "agg")

import logging  # noqa: E402
import sys  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    from demo.launcher import MAX_UPLOAD, AuthFileError, build_parser, load_parts, parse_auth_file

    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        auth = parse_auth_file(args.auth) if args.auth else None
        parts = load_parts(args)
    except (AuthFileError, ValueError, OSError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from core.serving.fast_ranking import part_cache_beside
    from core.serving.inference import StickerSelector

    print(f"loading the model ({args.checkpoint or 'default model in assets/'}) "
          f"and {len(parts.stickers)} stickers ...", file=sys.stderr)
    try:
        cache = None if args.feature_cache == "off" else args.feature_cache
        selector = StickerSelector.load(args.checkpoint, stickers=parts.stickers, device=args.device,
                                        feature_cache_path=cache, part_cache_path=cache and part_cache_beside(cache))
    except (ValueError, OSError, RuntimeError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 2
    from demo.app import CSS, build_demo
    from demo.launcher import thumbnail_cache

    blocks = build_demo(selector, sticker_info=parts.sticker_info, examples=parts.examples,
                        annotations=parts.annotations, user_stickers=parts.user_stickers,
                        ocr_engine=None if args.ocr == "off" else args.ocr, data_note=parts.data_note,
                        require_login=auth is not None, static_dirs=parts.static_dirs, splits=parts.splits,
                        thumbnails=thumbnail_cache(args))
    blocks.queue(default_concurrency_limit=1)
    blocks.launch(server_name=args.host, server_port=args.port, auth=auth, max_file_size=MAX_UPLOAD,
                  css=CSS, show_error=True, footer_links=["api"],
                  auth_message="Log in to annotate (user names come from the --auth file).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
