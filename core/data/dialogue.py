"""Turning what a user typed into dialogue turns (no gradio, no model: easy to test).

Shared by the demo (``demo.dialogue`` re-exports it) and by evaluation / training: a
flag stored by the demo is keyed by :meth:`ParsedDialogue.canonical_text`, and
:func:`sample_dialogue_text` gives that same text for a MOD sample (speakers + texts),
so ``core.annotations.dialogue_hash(sample_dialogue_text(...))`` finds the flags that
annotators made on that sample in the demo.

One turn per line. A line may start with a speaker prefix: ``A:`` / ``B:`` (any case),
``甲：`` / ``乙：`` or ``[speaker1]`` / ``[speaker2]`` (ASCII or full-width colon). Lines
without a prefix either alternate speakers (default) or continue the previous speaker.
The last line is the turn of the speaker who sends the sticker.

Hostile input is made harmless rather than refused where possible: control and format
characters are stripped, and text beyond :data:`MAX_INPUT_CHARS` is cut from the *start*
(the model keeps the most recent turns anyway) with a notice.
"""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

from core.data.mod import Turn

__all__ = [
    "MAX_INPUT_CHARS",
    "MAX_TURN_CHARS",
    "MAX_TURNS",
    "ParsedDialogue",
    "parse_dialogue",
    "sample_dialogue_text",
    "sample_text",
    "sanitize_text",
    "turns_to_text",
]

MAX_INPUT_CHARS = 5000
"""Longest dialogue text kept (the most recent characters); the model sees far fewer tokens."""
MAX_TURNS = 64
"""Most recent turns kept."""
MAX_TURN_CHARS = 500
"""A longer single turn keeps its last characters."""

SPEAKER_TOKENS = {"A": "[speaker1]", "B": "[speaker2]"}
_PREFIX = re.compile(r"^\s*(\[speaker[12]\]|[AaBb]|甲|乙)\s*[:：]\s*")
_TO_LABEL = {"a": "A", "甲": "A", "[speaker1]": "A", "b": "B", "乙": "B", "[speaker2]": "B"}
_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Zl", "Zp"}


@dataclass
class ParsedDialogue:
    """The turns of a dialogue as the model will see them, plus what was changed.

    ``labels[i]`` is ``"A"`` or ``"B"``; ``texts[i]`` the cleaned turn text;
    ``notices`` human-readable remarks (truncation, stripped characters).
    """

    labels: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    notices: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.texts)

    @property
    def sender(self) -> str | None:
        """Label of the speaker who sends the sticker (the last turn's)."""
        return self.labels[-1] if self.labels else None

    def turns(self) -> list[Turn]:
        """:class:`core.data.mod.Turn` objects (``[speaker1]`` for A, ``[speaker2]`` for B)."""
        return [Turn(speaker=SPEAKER_TOKENS[label], text=text) for label, text in zip(self.labels, self.texts)]

    def canonical_text(self) -> str:
        """``"A: ...\\nB: ..."``: the key under which annotations for this dialogue are stored."""
        return turns_to_text(self.labels, self.texts)

    def preview_markdown(self) -> str:
        """Markdown list of the turns with the sticker sender marked."""
        rows = []
        for i, (label, text) in enumerate(zip(self.labels, self.texts)):
            mark = "  ← sends the sticker" if i == len(self.texts) - 1 else ""
            shown = text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("<", "&lt;")
            rows.append(f"{i + 1}. **{label}**: {shown}{mark}")
        return "\n".join(rows)


def sanitize_text(text: object) -> tuple[str, list[str]]:
    """NFC text with control/format characters removed (newlines kept) and a notice list."""
    if text is None:
        return "", []
    if not isinstance(text, str):
        text = str(text)
    notices = []
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    cleaned = []
    removed = 0
    for char in text:
        if char == "\n":
            cleaned.append(char)
        elif char == "\t":
            cleaned.append(" ")
        elif unicodedata.category(char) in _BAD_CATEGORIES:
            removed += 1
        else:
            cleaned.append(char)
    if removed:
        notices.append(f"Removed {removed} control/format character(s).")
    return "".join(cleaned), notices


def parse_dialogue(text: object, *, alternate: bool = True, max_chars: int = MAX_INPUT_CHARS,
                   max_turns: int = MAX_TURNS) -> ParsedDialogue:
    """Parse one-turn-per-line text into a :class:`ParsedDialogue` (possibly empty).

    Args:
        alternate: unprefixed lines alternate speakers (True) or continue the
            previous line's speaker (False). Before the first prefixed line they
            are counted back from it; with no prefix at all, the first line is A.
    """
    cleaned, notices = sanitize_text(text)
    if len(cleaned) > max_chars:
        cut = cleaned[-max_chars:]
        if "\n" in cut:
            cut = cut[cut.index("\n") + 1:] or cut
        notices.append(f"The dialogue had {len(cleaned):,} characters; only the last {len(cut):,} "
                       "(the most recent turns) are used.")
        cleaned = cut
    explicit: list[str | None] = []
    texts: list[str] = []
    for line in cleaned.split("\n"):
        match = _PREFIX.match(line)
        label = _TO_LABEL[match.group(1).lower()] if match else None
        body = " ".join((line[match.end():] if match else line).split())
        if not body:
            continue
        if len(body) > MAX_TURN_CHARS:
            body = body[-MAX_TURN_CHARS:]
            notices.append(f"A turn longer than {MAX_TURN_CHARS} characters was cut to its end.")
        explicit.append(label)
        texts.append(body)
    if len(texts) > max_turns:
        notices.append(f"Only the last {max_turns} of {len(texts)} turns are used.")
        explicit, texts = explicit[-max_turns:], texts[-max_turns:]
    return ParsedDialogue(_resolve(explicit, alternate), texts, notices)


def _other(label: str) -> str:
    return "B" if label == "A" else "A"


def _resolve(explicit: list[str | None], alternate: bool) -> list[str]:
    """Fill in the speakers of unprefixed lines."""
    labels: list[str | None] = list(explicit)
    first = next((i for i, label in enumerate(labels) if label is not None), None)
    if first is None:
        labels[0:1] = ["A"] if labels else []
        first = 0
    for i in range(first - 1, -1, -1):  # lines before the first prefix, counted back from it
        labels[i] = _other(labels[i + 1]) if alternate else labels[i + 1]
    for i in range(first + 1, len(labels)):
        if labels[i] is None:
            labels[i] = _other(labels[i - 1]) if alternate else labels[i - 1]
    return [label or "A" for label in labels]


def turns_to_text(labels: list[str], texts: list[str]) -> str:
    """``"A: text"`` lines (the input format, with explicit prefixes)."""
    return "\n".join(f"{label}: {text}" for label, text in zip(labels, texts))


def sample_text(speakers: list[str], texts: list[str]) -> str:
    """The text the demo shows for a MOD sample (``speakers``/``texts`` as in
    ``core.data.mod`` samples): one ``"A: ..."`` / ``"B: ..."`` line per turn, A being the
    first turn's speaker, inner whitespace collapsed, an empty turn shown as ``"…"``."""
    first = speakers[0] if speakers else "[speaker1]"
    labels = ["A" if s == first else "B" for s in speakers]
    return turns_to_text(labels, [" ".join(str(t).split()) or "…" for t in texts])


def sample_dialogue_text(speakers: list[str], texts: list[str]) -> str:
    """Canonical text of a MOD sample exactly as the demo stores a flag for it:
    :func:`sample_text` parsed the way the demo parses what it is sent
    (:func:`parse_dialogue`, then :meth:`ParsedDialogue.canonical_text`)."""
    return parse_dialogue(sample_text(speakers, texts)).canonical_text()
