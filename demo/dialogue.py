"""Turning what a user typed into dialogue turns: moved to :mod:`core.data.dialogue` (evaluation
and training need the same canonical dialogue text as the demo's flags); re-exported here."""
from __future__ import annotations

from core.data.dialogue import (  # noqa: F401
    MAX_INPUT_CHARS,
    MAX_TURN_CHARS,
    MAX_TURNS,
    SPEAKER_TOKENS,
    ParsedDialogue,
    parse_dialogue,
    sample_dialogue_text,
    sample_text,
    sanitize_text,
    turns_to_text,
)
from core.data.dialogue import __all__  # noqa: F401
