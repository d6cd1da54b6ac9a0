"""Gradio demo and annotation app for the sticker selector.

``python -m demo`` starts it (see ``demo/__main__.py``); ``demo.build_demo(selector, ...)``
returns the ``gr.Blocks`` without launching anything. Importing this package imports nothing
heavy: ``build_demo`` is loaded on first use.
"""
from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

__all__ = ["build_demo"]


def __getattr__(name: str) -> Any:
    if name == "build_demo":
        from demo.app import build_demo

        return build_demo
    raise AttributeError(f"module 'demo' has no attribute {name!r}")
