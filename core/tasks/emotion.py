"""L_emo: the emotion head on the sticker slot of the gold pairs (from the matching pass).

The label is the sample's emotion when it has one (emotion_id >= 0), else the gold sticker's
(StickerBank.emotion_labels); -100 rows are ignored. A model without emotion names has no
emotion head, and the task adds no loss.
"""
from __future__ import annotations

import torch

from core.model.mmbert import masked_cross_entropy
from . import Step, Task, register_task
from .matching import GOLD_EMOTION_LOGITS


@register_task
class EmotionTask(Task):
    name = "emotion"
    reads = (GOLD_EMOTION_LOGITS,)

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        logits = step.shared.get(GOLD_EMOTION_LOGITS)                  # (B, E)
        if logits is None:
            return {}
        labels = torch.tensor([self.label(s, row) for s, row in zip(step.samples, step.gold)], device=step.device)
        return {self.name: masked_cross_entropy(logits, labels)}

    def label(self, sample: dict, gold_row: int) -> int:
        label = sample.get("emotion_id", -1)
        if label is not None and label >= 0:
            return int(label)
        return int(self.bank.emotion_labels[gold_row])
