"""The multitask training objective: L = sum over the configured tasks of weight * L_task.

`SelectorConfig.task_weights` names the tasks (core.tasks: "match", "ctx", "emotion", "sem" and
any registered later) and their weights; the paper's L = L_main + 0.05 L_ctx + 0.2 L_emo +
0.1 L_sem is the default. A task absent or at weight 0 is neither computed nor trained.

Per batch of B samples (each a dialogue + its gold sticker) the objective draws one negative
sticker per sample (`popularity_share` of them in proportion to how often a sticker is gold,
the rest uniformly), then runs the tasks in registration order, each with the same `Step`:
- match:   B positive pairs + B pairs with the drawn negatives, CE on [CLS] (core.tasks.matching;
           match_loss="in_batch": the gold among the batch's stickers, late-interaction models);
- emotion: the emotion head on the sticker slot of the gold pairs of the match pass;
- ctx:     gold pair with 15% of dialogue tokens masked (80/10/10), CE on those tokens;
- sem:     gold pair with the OCR run all [MASK]; reconstruct the OCR ids (stickers with text).
With `ocr_in_inputs=False` (Appendix C ablation) the OCR run is all [MASK] in every pass.
The returned dict has each task's loss by name and the weighted sum as "loss".
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from core.model.features import PairEncoder
from core.model.mmbert import StickerSelectorModel
from core.model.sticker_bank import StickerBank
from core.tasks import TASKS, Step, active_tasks


class ContextCache:
    """Tokenised dialogue contexts, keyed by sample id (each sample is tokenised once)."""

    def __init__(self, encoder: PairEncoder):
        self.encoder = encoder
        self._ids: dict[str, list[int]] = {}

    def __call__(self, sample: dict) -> list[int]:
        key = sample["sample_id"]
        if key not in self._ids:
            self._ids[key] = self.encoder.context_ids(sample["speakers"], sample["texts"])
        return self._ids[key]


class MultitaskObjective(nn.Module):
    def __init__(self, model: StickerSelectorModel, encoder: PairEncoder, bank: StickerBank,
                 negative_pool: Sequence[str] | None = None, gold_counts: dict[str, int] | None = None,
                 popularity_share: float = 0.0, match_loss: str = "binary", in_batch_negatives: int = 32):
        """popularity_share: the share of negatives drawn in proportion to how often a sticker is
        gold in training (the rest uniformly, as in the paper). Then being a frequent sticker is
        no evidence of a match by itself, and the model has to match content."""
        super().__init__()
        self.model = model
        self.encoder = encoder
        self.bank = bank
        pool = negative_pool if negative_pool is not None else bank.ids
        if not 0.0 <= popularity_share <= 1.0:
            raise ValueError(f"popularity_share={popularity_share}; expected a share in [0, 1]")
        self.negative_rows = torch.tensor([bank.position(s) for s in pool], dtype=torch.long)
        counts = torch.tensor([float((gold_counts or {}).get(s, 0)) for s in pool])
        uniform = torch.full((len(pool),), 1.0 / len(pool))
        by_use = counts / counts.sum() if counts.sum() > 0 else uniform
        self.negative_weights = (1 - popularity_share) * uniform + popularity_share * by_use
        self.match_loss, self.in_batch_negatives = match_loss, in_batch_negatives  # (read by the match task)
        self.contexts = ContextCache(encoder)
        weights = model.config.task_weights
        self.task_weights = {name: float(weights[name]) for name in active_tasks(weights)}
        self.tasks = [TASKS[name](self) for name in self.task_weights]  # run in this order
        self.wanted = frozenset(extra for task in self.tasks for extra in task.reads)

    def negatives(self, gold_rows: list[int], generator: torch.Generator) -> list[int]:
        rows = []
        for gold in gold_rows:
            while True:
                pick = torch.multinomial(self.negative_weights, 1, generator=generator)
                row = int(self.negative_rows[pick])
                if row != gold or len(self.negative_rows) == 1:
                    break
            rows.append(row)
        return rows

    def forward(self, samples: Sequence[dict], generator: torch.Generator) -> dict[str, torch.Tensor]:
        contexts = [self.contexts(s) for s in samples]
        gold = [self.bank.position(s["sticker_id"]) for s in samples]
        negative = self.negatives(gold, generator)  # drawn first, whatever the tasks: a fixed draw order
        step = Step(samples, contexts, gold, negative, generator, self.model.sticker_projection.weight.device,
                    mask_ocr_inputs=not self.model.config.ocr_in_inputs, wanted=self.wanted)
        losses: dict[str, torch.Tensor] = {}
        total = None
        for task in self.tasks:
            out = dict(task(step))
            loss = out.pop(task.name, None)
            step.shared.update(out)  # extras for the tasks after it
            if loss is None:         # nothing to learn for this task here (e.g. no emotion head)
                continue
            losses[task.name] = loss
            weighted = self.task_weights[task.name] * loss
            total = weighted if total is None else total + weighted
        if total is None:
            raise RuntimeError(f"no task gave a loss (tasks {list(self.task_weights)})")
        losses["loss"] = total
        return losses
