"""The multitask training objective: L = L_main + a L_ctx + b L_emo + c L_sem.

Passes per batch of B samples (each a dialogue + its gold sticker):
- match:   B positive pairs + B pairs with one random other sticker (1:1), CE on [CLS];
           the emotion head reads the sticker slot of the positive pairs.
- ctx:     gold pair with 15% of dialogue tokens masked (80/10/10), CE on those tokens.
- sem:     gold pair with the OCR run all [MASK]; reconstruct the OCR ids (stickers with text).
With `ocr_in_inputs=False` (Appendix C ablation) the OCR run is all [MASK] in every pass.

match_loss="in_batch" (late-interaction models only; not the paper): each dialogue is scored
against every gold sticker of the batch plus `in_batch_negatives` stickers drawn like the
negatives above (`popularity_share`), in one cross layer (StickerSelectorModel.cross_logits),
and L_main is the cross-entropy of its gold among them. Many negatives per step, and with
popularity-drawn negatives a sticker's base rate is no evidence by itself (the
`core.prior` adds it back at ranking time).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .features import (EncodedPair, PairEncoder, collate_pairs, dialogue_part_batch, mask_context,
                       ocr_labels_batch, sticker_part_ids)
from .model import IGNORE_INDEX, StickerSelectorModel
from .sticker_bank import StickerBank


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
        if match_loss not in ("binary", "in_batch"):
            raise ValueError(f"match_loss={match_loss!r}; expected 'binary' or 'in_batch'")
        if match_loss == "in_batch" and not model.config.late_interaction:
            raise ValueError("match_loss='in_batch' needs a late-interaction model (late_interaction=True)")
        self.match_loss, self.in_batch_negatives = match_loss, in_batch_negatives
        self.contexts = ContextCache(encoder)
        self.protected_ids = sorted(encoder.special_ids)

    def _pairs(self, contexts, rows, mask_ocr: bool) -> list[EncodedPair]:
        return [self.encoder.build(ctx, self.bank.ocr_ids[r], mask_ocr=mask_ocr) for ctx, r in zip(contexts, rows)]

    def _batch(self, pairs, rows) -> dict[str, torch.Tensor]:
        batch = collate_pairs(pairs, self.encoder.pad_id)
        batch["sticker_features"] = self.bank.features[torch.as_tensor(rows)]
        device = self.model.sticker_projection.weight.device
        return {k: v.to(device) for k, v in batch.items()}

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
        config = self.model.config
        contexts = [self.contexts(s) for s in samples]
        gold = [self.bank.position(s["sticker_id"]) for s in samples]
        negative = self.negatives(gold, generator)
        mask_ocr_inputs = not config.ocr_in_inputs
        device = self.model.sticker_projection.weight.device

        # match (+ emotion of the gold pairs)
        if self.match_loss == "in_batch":
            match_loss, gold_emotion_logits = self._in_batch_match(contexts, gold, generator)
        else:
            pairs = self._pairs(contexts + contexts, gold + negative, mask_ocr_inputs)
            batch = self._batch(pairs, gold + negative)
            labels = torch.tensor([1] * len(gold) + [0] * len(negative), device=device)
            out = self.model(**batch, match_labels=labels, compute_emotions=config.use_emo)
            match_loss = out.losses["match"]
            gold_emotion_logits = None if out.emotion_logits is None else out.emotion_logits[: len(gold)]
        losses = {"match": match_loss}
        total = losses["match"]
        if config.use_emo and gold_emotion_logits is not None:
            emotion = torch.tensor([self._emotion_label(s, r) for s, r in zip(samples, gold)], device=device)
            logits = gold_emotion_logits
            keep = emotion != IGNORE_INDEX
            losses["emotion"] = (nn.functional.cross_entropy(logits[keep], emotion[keep]) if keep.any()
                                 else logits.sum() * 0.0)
            total = total + config.emo_weight * losses["emotion"]

        if config.use_ctx:
            pairs = self._pairs(contexts, gold, mask_ocr_inputs)
            batch = self._batch(pairs, gold)
            batch["input_ids"], mlm_labels = mask_context(
                batch["input_ids"].cpu(), pairs, config.mask_probability, self.encoder.mask_id,
                self.model.bert.config.vocab_size, generator, self.protected_ids)
            batch["input_ids"] = batch["input_ids"].to(device)
            out = self.model(**batch, mlm_labels=mlm_labels.to(device), compute_emotions=False)
            losses["ctx"] = out.losses["mlm"]
            total = total + config.ctx_weight * losses["ctx"]

        if config.use_sem:
            with_text = [i for i, r in enumerate(gold) if self.bank.ocr_ids[r]]
            if with_text:
                rows = [gold[i] for i in with_text]
                pairs = self._pairs([contexts[i] for i in with_text], rows, mask_ocr=True)
                batch = self._batch(pairs, rows)
                sem_labels = ocr_labels_batch(pairs, batch["input_ids"].shape[1]).to(device)
                out = self.model(**batch, mlm_labels=sem_labels, compute_emotions=False)
                losses["sem"] = out.losses["mlm"]
            else:
                losses["sem"] = total * 0.0
            total = total + config.sem_weight * losses["sem"]
        losses["loss"] = total
        return losses

    def _in_batch_match(self, contexts: list[list[int]], gold: list[int], generator: torch.Generator):
        """CE of each dialogue's gold among the batch's gold stickers + drawn negatives."""
        model, device = self.model, self.model.sticker_projection.weight.device
        drawn = torch.multinomial(self.negative_weights, self.in_batch_negatives, replacement=True,
                                  generator=generator) if self.in_batch_negatives else torch.zeros(0, dtype=torch.long)
        rows = list(dict.fromkeys(gold + [int(self.negative_rows[i]) for i in drawn]))  # unique, golds first
        column = {r: i for i, r in enumerate(rows)}
        ids, mask = dialogue_part_batch(self.encoder, contexts)
        mask_ocr = not model.config.ocr_in_inputs
        sticker_ids = torch.tensor([sticker_part_ids(self.encoder, self.bank.ocr_ids[r], mask_ocr) for r in rows])
        ids, mask, sticker_ids = ids.to(device), mask.to(device), sticker_ids.to(device)
        dialogue = model.encode_dialogue_part(ids, mask)                           # (B, n, H)
        sticker = model.encode_sticker_part(sticker_ids, self.bank.features[rows].to(device))  # (C, S, H)
        logits, emotions = model.cross_logits(dialogue, mask, sticker, compute_emotions=model.config.use_emo)
        targets = torch.tensor([column[g] for g in gold], device=device)
        loss = nn.functional.cross_entropy(logits[..., 1], targets)               # over the C stickers
        gold_emotions = None if emotions is None else emotions[torch.arange(len(gold), device=device), targets]
        return loss, gold_emotions

    def _emotion_label(self, sample: dict, gold_row: int) -> int:
        label = sample.get("emotion_id", -1)
        if label is not None and label >= 0:
            return int(label)
        return int(self.bank.emotion_labels[gold_row])
