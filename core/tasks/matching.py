"""L_main, matching: does the sticker fit the dialogue? Two variants (MultitaskObjective's match_loss):

- "binary" (the paper): B gold pairs + B pairs with one drawn negative sticker each (1:1),
  cross-entropy of the match head on [CLS] (or [CLS] + sticker slot);
- "in_batch" (late-interaction models only; not the paper): each dialogue is scored against
  every gold sticker of the batch plus `in_batch_negatives` drawn stickers, in one cross layer
  (StickerSelectorModel.cross_logits), and the loss is the cross-entropy of its gold among them.
  Many negatives per step; with popularity-drawn negatives a sticker's base rate is no evidence
  by itself (core.serving.prior adds it back at ranking time).

Both can also return the emotion logits of the gold pairs (read by the emotion task).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from core.model.features import dialogue_part_batch, pair_batch, sticker_part_ids
from . import Step, Task, register_task

MATCH_LOSSES = ("binary", "in_batch")
GOLD_EMOTION_LOGITS = "gold_emotion_logits"  # (B, E) the emotion head on the gold pairs


@register_task
class MatchingTask(Task):
    name = "match"
    provides = (GOLD_EMOTION_LOGITS,)

    def __init__(self, objective):
        super().__init__(objective)
        self.kind = objective.match_loss
        if self.kind not in MATCH_LOSSES:
            raise ValueError(f"match_loss={self.kind!r}; expected one of {MATCH_LOSSES}")
        if self.kind == "in_batch" and not self.model.config.late_interaction:
            raise ValueError("match_loss='in_batch' needs a late-interaction model (late_interaction=True)")

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        with_emotions = GOLD_EMOTION_LOGITS in step.wanted
        match = self.in_batch if self.kind == "in_batch" else self.binary
        loss, gold_emotions = match(step, with_emotions)
        out = {self.name: loss}
        if gold_emotions is not None:
            out[GOLD_EMOTION_LOGITS] = gold_emotions
        return out

    def binary(self, step: Step, with_emotions: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        rows = step.gold + step.negative
        _, batch = pair_batch(self.encoder, self.bank, step.contexts + step.contexts, rows,
                              mask_ocr=step.mask_ocr_inputs, device=step.device)
        labels = torch.tensor([1] * len(step.gold) + [0] * len(step.negative), device=step.device)
        out = self.model(**batch, match_labels=labels, compute_emotions=with_emotions)
        gold_emotions = None if out.emotion_logits is None else out.emotion_logits[: len(step.gold)]  # (B, E)
        return out.losses["match"], gold_emotions

    def in_batch(self, step: Step, with_emotions: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        objective, model, device = self.objective, self.model, step.device
        count = objective.in_batch_negatives
        drawn = (torch.multinomial(objective.negative_weights, count, replacement=True, generator=step.generator)
                 if count else torch.zeros(0, dtype=torch.long))
        rows = list(dict.fromkeys(step.gold + [int(objective.negative_rows[i]) for i in drawn]))  # golds first
        column = {r: i for i, r in enumerate(rows)}
        ids, mask = dialogue_part_batch(self.encoder, step.contexts)
        sticker_ids = torch.tensor([sticker_part_ids(self.encoder, self.bank.ocr_ids[r], step.mask_ocr_inputs)
                                    for r in rows])
        ids, mask, sticker_ids = ids.to(device), mask.to(device), sticker_ids.to(device)
        dialogue = model.encode_dialogue_part(ids, mask)                                    # (B, n, H)
        sticker = model.encode_sticker_part(sticker_ids, self.bank.features[rows].to(device))  # (C, S, H)
        logits, emotions = model.cross_logits(dialogue, mask, sticker, compute_emotions=with_emotions)
        targets = torch.tensor([column[g] for g in step.gold], device=device)
        loss = F.cross_entropy(logits[..., 1], targets)                                     # over the C stickers
        gold_emotions = None if emotions is None else emotions[torch.arange(len(step.gold), device=device), targets]
        return loss, gold_emotions
