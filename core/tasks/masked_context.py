"""L_ctx: the gold pair with `mask_probability` of the dialogue tokens masked (BERT's 80/10/10),
predicted by the masked-token head (tied to the word embeddings)."""
from __future__ import annotations

import torch

from core.model.features import mask_context, pair_batch
from . import Step, Task, register_task


@register_task
class MaskedContextTask(Task):
    name = "ctx"

    def __init__(self, objective):
        super().__init__(objective)
        self.protected_ids = sorted(self.encoder.special_ids)  # never injected as random tokens

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        pairs, batch = pair_batch(self.encoder, self.bank, step.contexts, step.gold,
                                  mask_ocr=step.mask_ocr_inputs, device=step.device)
        masked, labels = mask_context(batch["input_ids"].cpu(), pairs, self.model.config.mask_probability,
                                      self.encoder.mask_id, self.model.bert.config.vocab_size, step.generator,
                                      self.protected_ids)                     # (B, T), (B, T)
        batch["input_ids"] = masked.to(step.device)
        out = self.model(**batch, mlm_labels=labels.to(step.device), compute_emotions=False)
        return {self.name: out.losses["mlm"]}
