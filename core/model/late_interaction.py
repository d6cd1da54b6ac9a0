"""The late-interaction last layer, written once for training and serving.

In a late-interaction model (SelectorConfig.late_interaction) the dialogue part
([CLS] dialogue [SEP]) and the sticker part (OCR run, sticker slot, [SEP]) attend only within
themselves below the last layer; the last layer attends across. So the last layer of any
(dialogue, sticker) pair can be computed from the two parts' lower-layer states alone, and only
at the positions a head reads. `StickerSelectorModel.cross_logits` (B dialogues x C stickers, in
training) and `core.serving.fast_ranking.LateInteractionRanker` (1 dialogue x every sticker, in serving)
both call `last_layer_at` / `match_and_emotion_logits`; both equal the full sequence of each
pair (tests/test_fast_ranking.py), except that attention-prob dropout is not applied.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from core.model.bert import Layer, padding_mask

if TYPE_CHECKING:  # (core.model.mmbert imports this module)
    from core.model.mmbert import StickerSelectorModel

CLS = -1  # query position of the dialogue's [CLS]; 0.. index the sticker part


@dataclass
class LastLayerInputs:
    """One part's input to the last layer, with that layer's keys and values of it."""

    keys: torch.Tensor      # (N, heads, L, d)
    values: torch.Tensor    # (N, heads, L, d)
    hidden: torch.Tensor    # (N, L, H) input of the last layer

    def select(self, rows: torch.Tensor | None) -> "LastLayerInputs":
        if rows is None:
            return self
        return LastLayerInputs(self.keys[rows], self.values[rows], self.hidden[rows])

    @staticmethod
    def cat(first: "LastLayerInputs", second: "LastLayerInputs") -> "LastLayerInputs":
        return LastLayerInputs(torch.cat([first.keys, second.keys]), torch.cat([first.values, second.values]),
                               torch.cat([first.hidden, second.hidden]))


def last_layer_inputs(layer: Layer, hidden: torch.Tensor) -> LastLayerInputs:
    """hidden (N, L, H) -> its keys and values in `layer` (N, heads, L, d)."""
    attention = layer.attention.self
    return LastLayerInputs(attention.split_heads(attention.key(hidden)),
                           attention.split_heads(attention.value(hidden)), hidden)


def last_layer_at(layer: Layer, dialogue: LastLayerInputs, sticker: LastLayerInputs, positions: torch.Tensor,
                  dialogue_mask: torch.Tensor | None = None) -> torch.Tensor:
    """`layer`'s outputs (B, C, Q, H) for every pair of B dialogues x C stickers, at Q positions.

    dialogue: (B, n) right-padded parts, with dialogue_mask (B, n) 1/0 (None: no padding);
    sticker: (C, S) parts; positions (Q,): CLS (-1) for the dialogue's [CLS], 0..S-1 for the
    sticker part. Each pair's queries see the dialogue's real keys and that sticker's keys."""
    attention = layer.attention.self
    split, scale = attention.split_heads, attention.attention_head_size ** -0.5
    is_cls = (positions == CLS)[:, None]                                          # (Q, 1)
    cls = dialogue.hidden[:, None, :1]                                            # (B, 1, 1, H)
    at = sticker.hidden[:, positions.clamp(min=0)][None]                          # (1, C, Q, H)
    residual = torch.where(is_cls, cls, at)                                       # (B, C, Q, H)
    # each distinct query row is projected once: the [CLS] per dialogue, the positions per sticker
    query = torch.where(is_cls, attention.query(cls), attention.query(at))       # (B, C, Q, H)
    query = split(query) * scale                                                  # (B, C, h, Q, d)
    to_dialogue = torch.einsum("bchqd,bhnd->bchqn", query, dialogue.keys)        # (B, C, h, Q, n)
    if dialogue_mask is not None:
        to_dialogue = to_dialogue + padding_mask(dialogue_mask, to_dialogue.dtype)[:, None]  # (B, 1, 1, 1, n)
    to_sticker = torch.einsum("bchqd,chsd->bchqs", query, sticker.keys)          # (B, C, h, Q, S)
    n = to_dialogue.shape[-1]
    weights = torch.cat([to_dialogue, to_sticker], -1).softmax(-1)              # (B, C, h, Q, n+S)
    mixed = torch.einsum("bchqn,bhnd->bchqd", weights[..., :n], dialogue.values) + \
        torch.einsum("bchqs,chsd->bchqd", weights[..., n:], sticker.values)      # (B, C, h, Q, d)
    mixed = mixed.transpose(2, 3).reshape(residual.shape)                       # (B, C, Q, H)
    attended = layer.attention.output(mixed, residual)
    return layer.output(layer.intermediate(attended), attended)                 # (B, C, Q, H)


def match_and_emotion_logits(model: "StickerSelectorModel", dialogue: LastLayerInputs, sticker: LastLayerInputs,
                             dialogue_mask: torch.Tensor | None = None, with_emotions: bool = False
                             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The match head (B, C, 2) and the emotion head (B, C, E) or None, from the last layer at
    exactly the positions they read: the [CLS], and the sticker slot when a head reads it."""
    config = model.config
    emotions_wanted = with_emotions and model.emotion_head is not None
    use_slot = config.match_pooling == "cls+sticker" or emotions_wanted
    positions = [CLS, config.ocr_slots] if use_slot else [CLS]
    out = last_layer_at(model.bert.encoder.layer[-1], dialogue, sticker,
                        torch.tensor(positions, device=dialogue.hidden.device), dialogue_mask)  # (B, C, 1|2, H)
    pooled = out[:, :, 0]                                                       # (B, C, H)
    if config.match_pooling == "cls+sticker":
        pooled = torch.cat([pooled, out[:, :, 1]], -1)                           # (B, C, 2H)
    emotions = model.emotion_head(out[:, :, 1]) if emotions_wanted else None    # (B, C, E)
    return model.match_head(pooled), emotions


def late_position_ids(token_type_ids: torch.Tensor, max_length: int, sticker_part_length: int,
                      max_positions: int) -> torch.Tensor:
    """Dialogue part 0, 1, ...; sticker part (token type 1) at the fixed last positions (B, T)."""
    dialogue = token_type_ids == 0
    first_sticker = max_length - sticker_part_length
    positions = torch.where(dialogue, dialogue.long().cumsum(1) - 1,
                            first_sticker + (~dialogue).long().cumsum(1) - 1)
    return positions.clamp(max=max_positions - 1)


def late_interaction_masks(token_type_ids: torch.Tensor, attention_mask: torch.Tensor,
                           dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Additive masks (B, 1, T, T): `within` keeps attention inside the dialogue part (token
    type 0) and inside the sticker part (type 1); `across` allows every real token."""
    real = attention_mask.bool()                                           # (B, T)
    part = token_type_ids
    same_part = part[:, :, None] == part[:, None, :]                       # (B, T, T)
    keys = real[:, None, :]                                                # (B, 1, T)
    blocked = torch.finfo(dtype).min
    zero = torch.zeros((), dtype=dtype, device=part.device)
    within = torch.where(same_part & keys, zero, blocked)[:, None]
    across = torch.where(keys.expand_as(same_part), zero, blocked)[:, None]
    return within, across
