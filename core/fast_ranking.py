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
up to float rounding; tests/test_fast_ranking.py checks it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .features import PairEncoder, dialogue_part_batch, sticker_part_ids
from .model import StickerSelectorModel
from .sticker_bank import StickerBank


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


@dataclass
class _LastLayerInputs:
    keys: torch.Tensor      # (..., heads, S, d)
    values: torch.Tensor    # (..., heads, S, d)
    hidden: torch.Tensor    # (..., S, H) input of the last layer


class LateInteractionRanker:
    """Scores (and emotion logits, and OCR reconstructions) of bank stickers for one dialogue.

    Sticker parts are encoded lazily and only once; rows added to the bank later are encoded on
    the next call (`StickerSelector.add_sticker` needs nothing else)."""

    def __init__(self, model: StickerSelectorModel, encoder: PairEncoder, bank: StickerBank,
                 batch_size: int = 128, cache: StickerPartCache | None = None):
        if not model.config.late_interaction:
            raise ValueError("LateInteractionRanker needs a model trained with late_interaction=True; "
                             "score other models with core.evaluation.score_candidates")
        self.model, self.encoder, self.bank, self.batch_size = model, encoder, bank, batch_size
        self.cache = cache
        self.layers = model.bert.encoder.layer
        self._split_heads = self.layers[-1].attention.self.split_heads  # (..., S, H) -> (..., heads, S, d)
        self.device = model.sticker_projection.weight.device
        self._parts: dict[bool, _LastLayerInputs] = {}   # by mask_ocr
        self._dialogue_cache: tuple[tuple[int, ...], _LastLayerInputs] | None = None
        self.refresh()

    def _last_inputs(self, hidden: torch.Tensor) -> _LastLayerInputs:
        attention = self.layers[-1].attention.self
        return _LastLayerInputs(self._split_heads(attention.key(hidden)),
                                self._split_heads(attention.value(hidden)), hidden)

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
    def _sticker_parts(self, mask_ocr: bool) -> _LastLayerInputs:
        cached = self._parts.get(mask_ocr)
        done = 0 if cached is None else cached.hidden.shape[0]
        if done == len(self.bank.ids) and cached is not None:
            return cached
        rows = list(range(done, len(self.bank.ids)))
        new = [self._encode_parts(rows[i:i + self.batch_size], mask_ocr)
               for i in range(0, len(rows), self.batch_size)]
        if self.cache:
            self.cache.save()
        inputs = self._last_inputs(torch.cat(new))
        if cached is not None:
            inputs = _LastLayerInputs(torch.cat([cached.keys, inputs.keys]), torch.cat([cached.values, inputs.values]),
                                      torch.cat([cached.hidden, inputs.hidden]))
        self._parts[mask_ocr] = inputs
        return inputs

    def refresh(self) -> None:
        """Encodes the sticker parts the matching pass uses (done lazily otherwise)."""
        self._sticker_parts(not self.model.config.ocr_in_inputs)

    # dialogue ---------------------------------------------------------------------------
    def _dialogue(self, context_ids: list[int]) -> _LastLayerInputs:
        key = tuple(context_ids)
        if self._dialogue_cache is not None and self._dialogue_cache[0] == key:
            return self._dialogue_cache[1]
        ids, mask = dialogue_part_batch(self.encoder, [list(key)])
        hidden = self.model.encode_dialogue_part(ids.to(self.device), mask.to(self.device))  # (1, n, H)
        inputs = self._last_inputs(hidden[0])                                   # keys (h, n, d)
        self._dialogue_cache = (key, inputs)
        return inputs

    def _last_layer(self, positions: torch.Tensor, parts: _LastLayerInputs, dialogue: _LastLayerInputs,
                    rows: torch.Tensor) -> torch.Tensor:
        """Last-layer outputs (R, Q, H) at Q query positions of each row's sequence.

        positions: (Q,) indices into the sticker part; -1 is the dialogue's [CLS]."""
        layer = self.layers[-1]
        attention = layer.attention.self
        sticker_hidden = parts.hidden[rows]                                      # (R, S, H)
        cls = dialogue.hidden[0].expand(len(rows), 1, -1)                         # (R, 1, H)
        residual = torch.cat([cls, sticker_hidden], 1)[:, positions + 1]          # (R, Q, H)
        query = self._split_heads(attention.query(residual)) * attention.attention_head_size ** -0.5  # (R, h, Q, d)
        r, h, q, d = query.shape
        shared = query.transpose(0, 1).reshape(h, r * q, d)                     # (h, R*Q, d)
        to_dialogue = (shared @ dialogue.keys.transpose(-1, -2)).view(h, r, q, -1).transpose(0, 1)  # (R, h, Q, n)
        to_sticker = query @ parts.keys[rows].transpose(-1, -2)                  # (R, h, Q, S)
        n = to_dialogue.shape[-1]
        weights = torch.cat([to_dialogue, to_sticker], -1).softmax(-1)           # (R, h, Q, n+S)
        from_dialogue = (weights[..., :n].transpose(0, 1).reshape(h, r * q, n) @ dialogue.values
                         ).view(h, r, q, d).transpose(0, 1)                      # (R, h, Q, d)
        context = from_dialogue + weights[..., n:] @ parts.values[rows]         # (R, h, Q, d)
        context = context.transpose(1, 2).reshape(*residual.shape)              # (R, Q, H)
        attended = layer.attention.output(context, residual)
        return layer.output(layer.intermediate(attended), attended)              # (R, Q, H)

    def _rows(self, rows) -> torch.Tensor:
        if rows is None:
            return torch.arange(len(self.bank.ids), device=self.device)
        return torch.as_tensor(list(rows), dtype=torch.long, device=self.device)

    @torch.inference_mode()
    def logits(self, context_ids: list[int], rows=None, with_emotions: bool = False):
        """(match logits (R, 2), emotion logits (R, E) or None) for bank rows (default: all)."""
        config = self.model.config
        parts = self._sticker_parts(not config.ocr_in_inputs)
        rows = self._rows(rows)
        dialogue = self._dialogue(context_ids)
        use_sticker = config.match_pooling == "cls+sticker" or (with_emotions and self.model.emotion_head is not None)
        positions = torch.tensor([-1, config.ocr_slots] if use_sticker else [-1], device=self.device)
        out = self._last_layer(positions, parts, dialogue, rows)                 # (R, 1|2, H)
        pooled = out[:, 0]
        if config.match_pooling == "cls+sticker":
            pooled = torch.cat([pooled, out[:, 1]], -1)                           # (R, 2H)
        logits = self.model.match_head(pooled)                                   # (R, 2)
        emotions = None
        if with_emotions and self.model.emotion_head is not None:
            emotions = self.model.emotion_head(out[:, 1])                        # (R, E)
        return logits, emotions

    @torch.inference_mode()
    def masked_ocr_hidden(self, context_ids: list[int], rows) -> torch.Tensor:
        """Last-layer states (R, ocr_slots, H) at the OCR run, all [MASK] (the L_sem task)."""
        parts = self._sticker_parts(True)
        rows = self._rows(rows)
        hidden = self.model.bert.config.hidden_size
        if len(rows) == 0:
            return torch.zeros(0, self.model.config.ocr_slots, hidden, device=self.device)
        positions = torch.arange(self.model.config.ocr_slots, device=self.device)
        return self._last_layer(positions, parts, self._dialogue(context_ids), rows)

    @torch.inference_mode()
    def masked_ocr_logits(self, context_ids: list[int], rows) -> torch.Tensor:
        """Token logits (R, ocr_slots, V) at the OCR run, all [MASK]."""
        return self.model.mlm_head(self.masked_ocr_hidden(context_ids, rows))
