"""The demo's one error type for bad input (re-exported by :mod:`demo.service`)."""
from __future__ import annotations

__all__ = ["DemoError"]


class DemoError(ValueError):
    """Bad input or a failed action; the message is meant for the user."""
