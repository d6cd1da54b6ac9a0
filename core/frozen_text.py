"""A frozen-sentence-embedding baseline: does the dialogue carry sticker signal a small model can read?

The dialogue's last turns and each sticker's text (name, or OCR) are embedded once by a frozen
sentence encoder (multilingual e5, all 12 layers, mean pooling); a low-rank bilinear map on top
is the only thing trained:

    score(dialogue, sticker) = (d . s + (d U) . (s V)) / temperature        d, s: (H,) unit vectors

with the in-batch loss over the batch's distinct gold stickers (each sticker is a negative about
as often as it is a positive, so base rates are not rewarded). It has ~25k parameters and trains
in seconds on a CPU. It exists to measure, beside the MMBERT, how much of the ranking comes from
reading the dialogue (train.frozen_text; README, issue 2).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def dialogue_text(texts: list[str], turns: int, max_chars: int = 200) -> str:
    """The last `turns` turns, one per line, at most `max_chars` characters (the most recent kept)."""
    return "\n".join(texts[-turns:])[-max_chars:]


class FrozenTextBilinear(nn.Module):
    def __init__(self, hidden: int, rank: int = 32, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature
        self.dialogue_map = nn.Parameter(torch.zeros(hidden, rank))        # U: starts at the plain cosine
        self.sticker_map = nn.Parameter(torch.randn(hidden, rank) * 0.01)  # V

    def forward(self, dialogues: torch.Tensor, stickers: torch.Tensor) -> torch.Tensor:
        """dialogues (B, H), stickers (C, H) -> scores (B, C)."""
        bilinear = (dialogues @ self.dialogue_map) @ (stickers @ self.sticker_map).t()
        return (dialogues @ stickers.t() + bilinear) / self.temperature

    def in_batch_loss(self, dialogues: torch.Tensor, stickers: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """gold (B,) rows of `stickers`: each dialogue against the batch's distinct gold stickers."""
        distinct, target = torch.unique(gold, return_inverse=True)
        return F.cross_entropy(self(dialogues, stickers[distinct]), target)
