"""The start every entry point shares: logging, arguments, CPU threads."""
from __future__ import annotations

import argparse
import logging

import torch

LOG_FORMAT = "%(asctime)s %(name)s %(message)s"


def parse_entry_args(parser: argparse.ArgumentParser, argv=None, level: int = logging.INFO) -> argparse.Namespace:
    """Sets up logging, parses `argv` and applies --threads (when the parser has it and it is given)."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    args = parser.parse_args(argv)
    if getattr(args, "threads", None):
        torch.set_num_threads(args.threads)
    return args
