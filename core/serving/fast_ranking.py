"""Exact fast ranking of every sticker with a late-interaction model (config.late_interaction).

In such a model the dialogue part and the sticker part attend only within themselves below the
last layer, and the sticker part sits at fixed positions. So:
- each sticker's part is run through the lower layers once, when the bank is built, and its
  last-layer keys, values and sticker-slot query are kept;
- a dialogue is run through the lower layers once (one short sequence);
- the last layer is computed only where the match and emotion heads read it: the [CLS] query
  (the same for every sticker) and each sticker's slot query, over the dialogue's keys plus
  that sticker's own keys.
The result equals running the full sequence per candidate (`StickerSelectorModel.forward`)
up to float rounding; tests/test_fast_ranking.py checks it. The last layer itself is
core.model.late_interaction's, the same code the training path (`cross_logits`) runs.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from core.model.features import PairEncoder, dialogue_part_batch, sticker_part_ids
from core.model.late_interaction import LastLayerInputs, last_layer_at, last_layer_inputs, match_and_emotion_logits
from core.model.mmbert import StickerSelectorModel
from core.model.sticker_bank import StickerBank


logger = logging.getLogger(__name__)


def model_fingerprint(model: StickerSelectorModel) -> str:
    """Digest of the config and every weight: cached sticker parts are only reused by the same model."""
    digest = hashlib.sha256(json.dumps(model.config.to_dict(), sort_keys=True).encode())
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tensor.dtype).encode())
        digest.update(memoryview(tensor.detach().cpu().contiguous().view(torch.uint8).numpy()))
    return digest.hexdigest()[:32]


def part_cache_beside(feature_cache_path: str | Path) -> Path:
    """The sticker-part cache file kept next to an image feature cache (the demo's convention)."""
    path = Path(feature_cache_path)
    return path.with_name(path.stem + ".sticker_parts.safetensors")


class StickerPartCache:
    """Lower-layer states of sticker parts kept on disk between starts (one safetensors file).

    Entries are keyed by the part's token ids and image feature, and the file by the model's
    fingerprint: another model's file is ignored and replaced, a corrupt one is rebuilt. Loading
    306 cached stickers takes milliseconds instead of ~0.3 s of encoding per variant."""

    def __init__(self, path: str | Path, fingerprint: str):
        self.path, self.fingerprint = Path(path), fingerprint
        self._parts: dict[str, torch.Tensor] = {}
        self.dirty = False
        if self.path.exists():
            try:
                from safetensors import safe_open

                with safe_open(str(self.path), "pt") as handle:
                    same_model = (handle.metadata() or {}).get("model") == fingerprint
                if same_model:
                    self._parts = dict(load_file(str(self.path)))
            except Exception as error:  # a corrupt cache is rebuilt, never trusted
                logger.warning("ignoring unreadable sticker part cache %s: %s", self.path, error)

    @staticmethod
    def key(part_ids: list[int], feature: torch.Tensor) -> str:
        digest = hashlib.sha256(json.dumps(part_ids).encode())
        digest.update(feature.detach().cpu().float().contiguous().numpy().tobytes())
        return digest.hexdigest()[:32]

    def get(self, key: str) -> torch.Tensor | None:
        return self._parts.get(key)

    def put(self, keys: list[str], hidden: torch.Tensor) -> None:
        for key, row in zip(keys, hidden):
            self._parts[key] = row.detach().cpu().clone().contiguous()
        self.dirty = True

    def save(self) -> None:
        if not self.dirty:
            return
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")  # two processes may share the file
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            save_file(self._parts, str(tmp), metadata={"model": self.fingerprint})
            tmp.replace(self.path)
        except OSError as error:  # a cache that cannot be written only makes the next start slower
            logger.warning("cannot write the sticker part cache %s: %s", self.path, error)
            if tmp.is_file():
                tmp.unlink()
        self.dirty = False


class LateInteractionRanker:
    """Scores (and emotion logits, and OCR reconstructions) of bank stickers for one dialogue.

    Sticker parts are encoded lazily and only once; rows added to the bank later are encoded on
    the next call (`StickerSelector.add_sticker` needs nothing else)."""

    def __init__(self, model: StickerSelectorModel, encoder: PairEncoder, bank: StickerBank,
                 batch_size: int = 128, cache: StickerPartCache | None = None):
        if not model.config.late_interaction:
            raise ValueError("LateInteractionRanker needs a model trained with late_interaction=True; "
                             "score other models with core.evaluation.protocol.score_candidates")
        self.model, self.encoder, self.bank, self.batch_size = model, encoder, bank, batch_size
        self.cache = cache
        self.layers = model.bert.encoder.layer
        self.device = model.sticker_projection.weight.device
        self._parts: dict[bool, LastLayerInputs] = {}   # by mask_ocr: keys (N, h, S, d)
        self._dialogue_cache: tuple[tuple[int, ...], LastLayerInputs] | None = None
        self.refresh()

    # stickers ---------------------------------------------------------------------------
    def _encode_parts(self, rows: list[int], mask_ocr: bool) -> torch.Tensor:
        """Lower-layer states of sticker parts (n, S, H): OCR run, sticker slot, [SEP]."""
        ids = [sticker_part_ids(self.encoder, self.bank.ocr_ids[r], mask_ocr) for r in rows]
        features = self.bank.features[rows]
        keys = [StickerPartCache.key(i, f) for i, f in zip(ids, features)] if self.cache else []
        found = [self.cache.get(k) for k in keys] if self.cache else [None] * len(rows)
        todo = [i for i, hit in enumerate(found) if hit is None]
        if todo:
            hidden = self.model.encode_sticker_part(torch.tensor([ids[i] for i in todo], device=self.device),
                                                    features[todo].to(self.device))  # (t, S, H)
            for i, row in zip(todo, hidden):
                found[i] = row
            if self.cache:
                self.cache.put([keys[i] for i in todo], hidden)
        return torch.stack([row.to(self.device) for row in found])                 # (n, S, H)

    @torch.inference_mode()
    def _sticker_parts(self, mask_ocr: bool) -> LastLayerInputs:
        cached = self._parts.get(mask_ocr)
        done = 0 if cached is None else cached.hidden.shape[0]
        if done == len(self.bank.ids) and cached is not None:
            return cached
        rows = list(range(done, len(self.bank.ids)))
        new = [self._encode_parts(rows[i:i + self.batch_size], mask_ocr)
               for i in range(0, len(rows), self.batch_size)]
        if self.cache:
            self.cache.save()
        inputs = last_layer_inputs(self.layers[-1], torch.cat(new))
        if cached is not None:
            inputs = LastLayerInputs.cat(cached, inputs)
        self._parts[mask_ocr] = inputs
        return inputs

    def refresh(self) -> None:
        """Encodes the sticker parts the matching pass uses (done lazily otherwise)."""
        self._sticker_parts(not self.model.config.ocr_in_inputs)

    # dialogue ---------------------------------------------------------------------------
    def _dialogue(self, context_ids: list[int]) -> LastLayerInputs:
        key = tuple(context_ids)
        if self._dialogue_cache is not None and self._dialogue_cache[0] == key:
            return self._dialogue_cache[1]
        ids, mask = dialogue_part_batch(self.encoder, [list(key)])
        hidden = self.model.encode_dialogue_part(ids.to(self.device), mask.to(self.device))  # (1, n, H)
        inputs = last_layer_inputs(self.layers[-1], hidden)                       # keys (1, h, n, d)
        self._dialogue_cache = (key, inputs)
        return inputs

    @torch.inference_mode()
    def prepare(self, context_ids: list[int]) -> None:
        """Encodes the dialogue part now (kept for the next ranking of the same dialogue)."""
        self._dialogue(context_ids)

    def _rows(self, rows) -> torch.Tensor | None:  # None: every row, in order (no gather)
        if rows is None:
            return None
        return torch.as_tensor(list(rows), dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def logits(self, context_ids: list[int], rows=None, with_emotions: bool = False):
        """(match logits (R, 2), emotion logits (R, E) or None) for bank rows (default: all)."""
        parts = self._sticker_parts(not self.model.config.ocr_in_inputs).select(self._rows(rows))
        logits, emotions = match_and_emotion_logits(self.model, self._dialogue(context_ids), parts,
                                                    with_emotions=with_emotions)  # (1, R, 2), (1, R, E)
        return logits[0], None if emotions is None else emotions[0]

    @torch.inference_mode()
    def masked_ocr_hidden(self, context_ids: list[int], rows) -> torch.Tensor:
        """Last-layer states (R, ocr_slots, H) at the OCR run, all [MASK] (the L_sem task)."""
        parts = self._sticker_parts(True).select(self._rows(rows))
        if parts.hidden.shape[0] == 0:
            return torch.zeros(0, self.model.config.ocr_slots, self.model.bert.config.hidden_size, device=self.device)
        positions = torch.arange(self.model.config.ocr_slots, device=self.device)
        return last_layer_at(self.layers[-1], self._dialogue(context_ids), parts, positions)[0]  # (R, Q, H)

    @torch.inference_mode()
    def masked_ocr_logits(self, context_ids: list[int], rows) -> torch.Tensor:
        """Token logits (R, ocr_slots, V) at the OCR run, all [MASK]."""
        return self.model.mlm_head(self.masked_ocr_hidden(context_ids, rows))
