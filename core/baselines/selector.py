"""`BaselineSelector`: a trained baseline behind the StickerSelector methods the demo calls (rank,
saliency, stickers, adding a sticker), so `python -m demo --checkpoint CKPT` takes a baseline's
checkpoint and a user can compare its picks with the selector's on the same dialogue.

A baseline has no emotion head on stickers and no OCR reconstruction: `emotions` are empty and
semantic labels "". Saliency is the gradient norm of the model's score w.r.t. each dialogue token's
embedding (every baseline reads tokens); Integrated Gradients is refused with a clear message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from core.baselines.base import NoTokens, baseline_kind, build_ranker, load_baseline
from core.data.mod import UnknownStickerError
from core.model.sticker_bank import semantic_text
from core.serving.scoring import BaselineScorer


class BaselineSelector:
    def __init__(self, model, tokenizer, stickers, *, feature_cache_path: str | Path | None = None,
                 model_version: str = "baseline", kind: str = "baseline"):
        from core.model.image_encoder import FeatureCache, create_image_encoder

        self.model, self.tokenizer, self.kind, self.model_version = model.eval(), tokenizer, kind, model_version
        self.image_encoder = create_image_encoder(model.config.image_encoder)
        self.features = FeatureCache(self.image_encoder, feature_cache_path)
        self._stickers = {s.sticker_id: s for s in stickers if s.image_path is not None}
        ranker, bank = build_ranker(model, tokenizer, list(self._stickers.values()), feature_cache_path,
                                    image_encoder=self.image_encoder)
        self.ranker, self.bank = ranker, bank
        self.scorer = BaselineScorer(ranker, bank, kind=kind)
        self.prior = self.text_scorer = self.fast = None

    @classmethod
    def load(cls, checkpoint: str | Path, *, stickers=None, feature_cache_path: str | Path | None = None):
        from core.serving.inference import checkpoint_version

        model, tokenizer = load_baseline(checkpoint)
        return cls(model, tokenizer, stickers or [], feature_cache_path=feature_cache_path,
                   model_version=checkpoint_version(checkpoint), kind=baseline_kind(checkpoint))

    # stickers ------------------------------------------------------------------------------
    def sticker_ids(self) -> list[str]:
        return list(self.bank.ids)

    def sticker(self, sticker_id: str):
        if sticker_id not in self._stickers:
            raise UnknownStickerError(sticker_id)
        return self._stickers[sticker_id]

    def add_sticker(self, sticker, image=None) -> None:
        """Adds a sticker (image from `image` or its image_path); ranked at once, no retraining."""
        from core.data.images import image_of
        from core.model.image_encoder import GridFeatures

        if sticker.sticker_id in self._stickers:
            raise ValueError(f"sticker id {sticker.sticker_id!r} already exists")
        image = image if image is not None else image_of(sticker)
        feature = self.features.encode([image])[0]
        grid = GridFeatures(self.image_encoder).encode([image])[0] if self.model.needs_grid else None
        self.bank.add(sticker.sticker_id, feature, semantic_text(sticker, self.model.config.semantic_source), NoTokens())
        self.scorer.sticker_added(grid_row=grid)
        self._stickers[sticker.sticker_id] = sticker

    # ranking -------------------------------------------------------------------------------
    def context_ids(self, turns) -> tuple[list[str], list[str]]:
        from core.serving.inference import _turns

        return _turns(turns)

    def semantic_labels(self, context, rows: list[int], exhaustive: bool = False) -> list[str]:
        return [""] * len(rows)  # a baseline does not reconstruct sticker text

    def rank(self, turns, candidate_ids: Sequence[str] | None = None, progress=None, semantic_top_k: int | None = 30,
             exhaustive: bool = False):
        from core.serving.inference import RankedSticker, _turns

        speakers, texts = _turns(turns)
        rows = list(range(len(self.bank.ids))) if candidate_ids is None else \
            [self.bank.position(str(c)) for c in candidate_ids]
        if not rows:
            raise ValueError("no candidate stickers to rank")
        parts = self.scorer.score(speakers, texts, rows, progress=progress)
        ranked = []
        for rank, i in enumerate(parts.total.argsort(descending=True).tolist(), start=1):
            sticker = self._stickers[self.bank.ids[rows[i]]]
            ranked.append(RankedSticker(
                sticker_id=sticker.sticker_id, rank=rank, score=float(parts.total[i]),
                probability=float(parts.probability[i]), emotions=[], semantic_label="", ocr=sticker.ocr,
                name_label=sticker.name_label, image_path=str(sticker.image_path) if sticker.image_path else None))
        return ranked

    # saliency ------------------------------------------------------------------------------
    def saliency(self, turns, sticker_id: str, method: str = "gradient", n_steps: int = 32,
                 progress=None) -> list[tuple[str, float]]:
        """Per dialogue token: L2 norm of d score / d token embedding (the paper's Fig. 3 saliency)."""
        if method != "gradient":
            raise ValueError(f"the {self.kind} baseline explains its picks with method 'gradient' only "
                             f"(Integrated Gradients is for the selector)")
        speakers, texts = self.context_ids(turns)
        row = self.bank.position(str(sticker_id))
        ids, mask = self.ranker.dialogue_inputs(speakers, texts)
        captured = []

        def keep(module, inputs, output):  # the dialogue's token embeddings, with their gradient
            output.retain_grad()
            captured.append(output)

        hook = self.model.bert.embeddings.word_embeddings.register_forward_hook(keep)
        try:
            with torch.enable_grad():
                self.ranker.scores_from(ids, mask, [row])[0].backward()
        finally:
            hook.remove()
            self.model.zero_grad(set_to_none=True)
        norms = captured[0].grad.norm(dim=-1).reshape(-1)                           # (all token slots,)
        flat_ids = ids.reshape(-1).tolist()
        special = {self.tokenizer.pad_token_id, self.tokenizer.cls_token_id, self.tokenizer.sep_token_id}
        special.add(self.tokenizer.convert_tokens_to_ids(getattr(self.model.config, "slot_token", "[PAD]")))
        pieces = self.tokenizer.convert_ids_to_tokens(flat_ids)
        return [(piece.replace("▁", " ").replace("##", ""), float(norms[i]))
                for i, (piece, real) in enumerate(zip(pieces, mask.reshape(-1).tolist()))
                if real and flat_ids[i] not in special]
