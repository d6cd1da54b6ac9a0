"""Turning (dialogue, sticker) pairs into model inputs.

Layout: [CLS] [spk] u1 [spk] u2 ... uN [SEP] | OCR run | sticker | [SEP]
- the dialogue keeps its most recent tokens when it does not fit;
- the OCR run is the sticker's text ids right-aligned in `ocr_slots` slots, left-padded with
  [MASK] (a sticker without text: all [MASK]);
- token type 0 for [CLS]..first [SEP], 1 for the OCR run, the sticker slot and the last [SEP].
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from core.model.config import SelectorConfig
from core.model.mmbert import IGNORE_INDEX

MAX_TURN_CHARS_FACTOR = 4  # a turn longer than 4 chars per remaining token slot is cut first


@dataclass
class EncodedPair:
    input_ids: list[int]
    token_type_ids: list[int]
    sticker_position: int
    ocr_positions: list[int]
    context_positions: list[int]   # the dialogue's word tokens (not speaker/special tokens)
    ocr_labels: list[int]          # right-aligned OCR ids, -100 on padding slots


class PairEncoder:
    """Builds input sequences with a tokenizer whose special tokens include the speaker tokens."""

    def __init__(self, tokenizer, config: SelectorConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.cls_id = tokenizer.cls_token_id
        self.sep_id = tokenizer.sep_token_id
        self.mask_id = tokenizer.mask_token_id
        self.pad_id = tokenizer.pad_token_id
        missing = [t for t in config.speaker_tokens if t not in tokenizer.get_vocab()]
        if missing:
            raise ValueError(f"tokenizer lacks speaker tokens {missing}; use core.model.backbone.add_speaker_tokens")
        self.speaker_ids = [tokenizer.convert_tokens_to_ids(t) for t in config.speaker_tokens]
        self.special_ids = set(tokenizer.all_special_ids) | set(self.speaker_ids)
        self.structural_ids = self.special_ids - {tokenizer.unk_token_id}  # unknown words are still words
        self.context_budget = config.max_length - 3 - config.ocr_slots - 1

    def speaker_id(self, speaker: str | int) -> int:
        if isinstance(speaker, int):
            return self.speaker_ids[speaker % len(self.speaker_ids)]
        if speaker in self.config.speaker_tokens:
            return self.speaker_ids[self.config.speaker_tokens.index(speaker)]
        raise ValueError(f"unknown speaker {speaker!r}; expected one of {self.config.speaker_tokens}")

    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def context_ids(self, speakers: Sequence[str | int], texts: Sequence[str]) -> list[int]:
        """[spk] u1 [spk] u2 ... uN, keeping the most recent tokens within the budget."""
        if len(speakers) != len(texts):
            raise ValueError(f"{len(speakers)} speakers for {len(texts)} turns")
        pieces: list[list[int]] = []
        used = 0
        for speaker, text in zip(reversed(speakers), reversed(texts)):
            room = self.context_budget - used
            if room <= 0:
                break
            ids = [self.speaker_id(speaker)] + self.text_ids(text[-room * MAX_TURN_CHARS_FACTOR:])
            pieces.append(ids)
            used += len(ids)
        flat = [i for ids in reversed(pieces) for i in ids]
        return flat[-self.context_budget:]

    def ocr_ids(self, text: str) -> list[int]:
        return self.text_ids(text)[: self.config.ocr_slots] if text else []

    def build(self, context: list[int], ocr: list[int], mask_ocr: bool = False) -> EncodedPair:
        slots = self.config.ocr_slots
        pad = slots - len(ocr)
        ocr_run = [self.mask_id] * slots if mask_ocr else [self.mask_id] * pad + ocr
        ocr_labels = [IGNORE_INDEX] * pad + ocr
        input_ids = [self.cls_id] + context + [self.sep_id] + ocr_run + [self.mask_id, self.sep_id]
        n_first = len(context) + 2
        token_types = [0] * n_first + [1] * (slots + 2)
        ocr_start = n_first
        context_positions = [1 + i for i, t in enumerate(context) if t not in self.structural_ids]
        return EncodedPair(input_ids, token_types, ocr_start + slots,
                           list(range(ocr_start, ocr_start + slots)), context_positions, ocr_labels)


def sticker_part_ids(encoder: PairEncoder, ocr: list[int], mask_ocr: bool = False) -> list[int]:
    """The sticker part alone: OCR run, sticker slot, [SEP] (late-interaction models)."""
    return encoder.build([], ocr, mask_ocr=mask_ocr).input_ids[-encoder.config.sticker_part_length:]


def dialogue_part_batch(encoder: PairEncoder, contexts: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """[CLS] dialogue [SEP] per context, right-padded: (ids (B, n), attention mask (B, n))."""
    width = max(len(c) for c in contexts) + 2
    ids = torch.full((len(contexts), width), encoder.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, context in enumerate(contexts):
        ids[row, :len(context) + 2] = torch.tensor([encoder.cls_id, *context, encoder.sep_id])
        mask[row, :len(context) + 2] = 1
    return ids, mask


def collate_pairs(pairs: Sequence[EncodedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pads a list of pairs into a batch (features are added by the caller)."""
    width = max(len(p.input_ids) for p in pairs)
    batch = len(pairs)
    input_ids = torch.full((batch, width), pad_id, dtype=torch.long)
    token_types = torch.zeros((batch, width), dtype=torch.long)
    attention = torch.zeros((batch, width), dtype=torch.long)
    for row, pair in enumerate(pairs):
        n = len(pair.input_ids)
        input_ids[row, :n] = torch.tensor(pair.input_ids)
        token_types[row, :n] = torch.tensor(pair.token_type_ids)
        attention[row, :n] = 1
    return {
        "input_ids": input_ids,
        "token_type_ids": token_types,
        "attention_mask": attention,
        "sticker_positions": torch.tensor([p.sticker_position for p in pairs]),
    }


def pair_batch(encoder: PairEncoder, bank, contexts: Sequence[list[int]], rows: Sequence[int], *,
               mask_ocr: bool, device: torch.device | str = "cpu", pairs: Sequence[EncodedPair] | None = None
               ) -> tuple[list[EncodedPair], dict[str, torch.Tensor]]:
    """The one builder of cross-encoder inputs: pair i is (contexts[i], sticker bank row rows[i]).
    Returns the pairs (their positions, for the heads that read them) and the batch on `device`.
    `pairs`: already built pairs of those rows (e.g. with some tokens changed), batched as they are."""
    if len(contexts) != len(rows):
        raise ValueError(f"pair_batch got {len(contexts)} contexts for {len(rows)} sticker rows")
    if pairs is None:
        pairs = [encoder.build(context, bank.ocr_ids[row], mask_ocr=mask_ocr) for context, row in zip(contexts, rows)]
    pairs = list(pairs)
    batch = collate_pairs(pairs, encoder.pad_id)
    batch["sticker_features"] = bank.features[torch.as_tensor(list(rows), dtype=torch.long)]
    return pairs, {k: v.to(device) for k, v in batch.items()}


def mask_context(input_ids: torch.Tensor, pairs: Sequence[EncodedPair], probability: float,
                 mask_id: int, vocab_size: int, generator: torch.Generator,
                 protected_ids: Sequence[int] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking (80% [MASK], 10% random, 10% kept) of the dialogue tokens only."""
    masked = input_ids.clone()
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    protected = torch.tensor(sorted(set(protected_ids)), dtype=torch.long)
    for row, pair in enumerate(pairs):
        positions = torch.tensor(pair.context_positions, dtype=torch.long)
        if positions.numel() == 0:
            continue
        chosen = positions[torch.rand(len(positions), generator=generator) < probability]
        if chosen.numel() == 0:  # every dialogue contributes at least one prediction
            chosen = positions[torch.randint(len(positions), (1,), generator=generator)]
        labels[row, chosen] = input_ids[row, chosen]
        action = torch.rand(len(chosen), generator=generator)
        masked[row, chosen[action < 0.8]] = mask_id
        random_rows = chosen[(action >= 0.8) & (action < 0.9)]
        if random_rows.numel():
            replacement = torch.randint(vocab_size, (len(random_rows),), generator=generator)
            if protected.numel():  # never inject special or speaker tokens
                bad = torch.isin(replacement, protected)
                replacement[bad] = input_ids[row, random_rows[bad]]
            masked[row, random_rows] = replacement
    return masked, labels


def ocr_labels_batch(pairs: Sequence[EncodedPair], width: int) -> torch.Tensor:
    """Labels for the OCR-reconstruction task: OCR ids at the OCR positions, -100 elsewhere."""
    labels = torch.full((len(pairs), width), IGNORE_INDEX, dtype=torch.long)
    for row, pair in enumerate(pairs):
        labels[row, pair.ocr_positions] = torch.tensor(pair.ocr_labels, dtype=torch.long)
    return labels
