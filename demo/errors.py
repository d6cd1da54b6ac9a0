"""The demo's one error type for bad input (re-exported by :mod:`demo.service`)."""
from __future__ import annotations

__all__ = ["DemoError"]


class DemoError(ValueError):
    """Bad input or a failed action; the message is meant for the user.

    Like the rest of the UI, the message is bilingual: ``DemoError(english, zh=chinese)``
    reads ``"<English> / <中文>"`` (the English first: API users and tests match English
    substrings). ``DemoError(message)`` alone is the message as given.
    """

    def __init__(self, message: str = "", *, zh: str | None = None) -> None:
        self.en = str(message)
        self.zh = zh or None
        super().__init__(f"{self.en} / {self.zh}" if self.zh else self.en)
