"""L_sem: the gold pair with its OCR run all [MASK]; the masked-token head reconstructs the
sticker's OCR ids. Only stickers with text take part; a batch without any gives an exact 0."""
from __future__ import annotations

import torch

from core.model.features import ocr_labels_batch, pair_batch
from . import Step, Task, register_task


@register_task
class SemanticTask(Task):
    name = "sem"

    def __call__(self, step: Step) -> dict[str, torch.Tensor]:
        with_text = [i for i, row in enumerate(step.gold) if self.bank.ocr_ids[row]]
        if not with_text:
            return {self.name: self.model.mlm_head.bias.sum() * 0.0}  # (in the graph, no gradient)
        rows = [step.gold[i] for i in with_text]
        pairs, batch = pair_batch(self.encoder, self.bank, [step.contexts[i] for i in with_text], rows,
                                  mask_ocr=True, device=step.device)
        labels = ocr_labels_batch(pairs, batch["input_ids"].shape[1]).to(step.device)  # (B', T)
        out = self.model(**batch, mlm_labels=labels, compute_emotions=False)
        return {self.name: out.losses["mlm"]}
