"""The start every entry point shares: logging, arguments, CPU threads, the --sticker-ids flag."""
from __future__ import annotations

import argparse
import logging

from core.data.mod import STICKER_NUMBERINGS

LOG_FORMAT = "%(asctime)s %(name)s %(message)s"
STICKER_IDS_HELP = ("numbering of the sticker ids in the dialogue file: official (img2id.json's, the paper's; "
                    "default) or early-release = github.com/feizc/Dialogue-System data/data.json's own numbering, "
                    "converted to the official one (see ../shared/data/mod/README.md, 'Sticker ids')")


def add_sticker_ids_argument(parser: argparse.ArgumentParser, applies_to: str = "") -> None:
    """--sticker-ids {official,early-release} (dest sticker_ids), for every entry point that reads MOD dialogues;
    `applies_to` says which file it converts when that is not obvious."""
    parser.add_argument("--sticker-ids", choices=STICKER_NUMBERINGS, default="official",
                        help=STICKER_IDS_HELP + (f". Applies to {applies_to}" if applies_to else ""))


def dialogue_numberings(args) -> tuple[str, str]:
    """(numbering of DIR/dialogues.json, numbering of the --dialogues file) for entry points that read DIR's
    dialogues for the split and score another file: --sticker-ids is that other file's when it is given."""
    numbering = getattr(args, "sticker_ids", "official")
    return ("official", numbering) if getattr(args, "dialogues", None) else (numbering, numbering)


def parse_entry_args(parser: argparse.ArgumentParser, argv=None, level: int = logging.INFO) -> argparse.Namespace:
    """Sets up logging, parses `argv` and applies --threads (when the parser has it and it is given)."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(args.threads)
    return args
