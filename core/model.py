"""MMBERT: the multitask sticker selector (modules and their outputs only).

One input sequence per (dialogue, candidate sticker):
    [CLS] [spk] u1 [spk] u2 ... uN [SEP] | OCR run (ocr_slots) | sticker | [SEP]
The sticker slot's input embedding is the frozen image feature through a trainable Linear.
Heads: matching (from [CLS], or [CLS] + the sticker slot), masked-token prediction (shared by the masked-context and the
OCR-reconstruction tasks, decoder tied to the word embeddings), emotion (from the sticker slot).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import BertConfig, BertModel

from .config import SelectorConfig

IGNORE_INDEX = -100


@dataclass
class SelectorOutput:
    match_logits: torch.Tensor                 # (B, 2)
    hidden_states: torch.Tensor                # (B, T, H)
    emotion_logits: torch.Tensor | None = None  # (B, E)
    mlm_logits: torch.Tensor | None = None     # (N_masked, V), rows where mlm_labels != -100
    losses: dict[str, torch.Tensor] | None = None

    @property
    def scores(self) -> torch.Tensor:  # (B,) the positive-class logit, used for ranking
        return self.match_logits[:, 1]


class MaskedTokenHead(nn.Module):
    """BERT's MLM head: transform, then a decoder tied to the input word embeddings."""

    def __init__(self, config: BertConfig, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.word_embeddings = word_embeddings  # shared module: the decoder weight is tied
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:  # (N, H) -> (N, V)
        hidden = self.norm(F.gelu(self.dense(hidden)))
        return hidden @ self.word_embeddings.weight.t() + self.bias


class StickerSelectorModel(nn.Module):
    def __init__(self, config: SelectorConfig):
        super().__init__()
        self.config = config
        bert_config = BertConfig(**config.backbone)
        self.bert = BertModel(bert_config, add_pooling_layer=False)
        hidden = bert_config.hidden_size
        self.sticker_projection = nn.Linear(config.image_feature_dim, hidden)
        pooled = 2 * hidden if config.match_pooling == "cls+sticker" else hidden
        self.match_head = nn.Sequential(nn.Dropout(config.classifier_dropout), nn.Linear(pooled, 2))
        self.mlm_head = MaskedTokenHead(bert_config, self.bert.embeddings.word_embeddings)
        self.emotion_head = nn.Linear(hidden, config.num_emotions) if config.num_emotions else None

    def input_embeddings(self, input_ids, sticker_features, sticker_positions):
        embeds = self.bert.embeddings.word_embeddings(input_ids)          # (B, T, H)
        sticker = self.sticker_projection(sticker_features).to(embeds.dtype)  # (B, H)
        rows = torch.arange(input_ids.shape[0], device=input_ids.device)
        embeds = embeds.clone()
        embeds[rows, sticker_positions] = sticker
        return embeds

    def encode(self, input_ids, token_type_ids, attention_mask, sticker_features, sticker_positions,
               inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.input_embeddings(input_ids, sticker_features, sticker_positions)
        out = self.bert(inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
                        attention_mask=attention_mask)
        return out.last_hidden_state  # (B, T, H)

    def forward(self, input_ids, token_type_ids, attention_mask, sticker_features, sticker_positions,
                match_labels=None, mlm_labels=None, emotion_labels=None, inputs_embeds=None,
                compute_emotions: bool = True) -> SelectorOutput:
        hidden = self.encode(input_ids, token_type_ids, attention_mask, sticker_features,
                             sticker_positions, inputs_embeds)                # (B, T, H)
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        pooled = hidden[:, 0]                                                # (B, H)
        if self.config.match_pooling == "cls+sticker":
            pooled = torch.cat([pooled, hidden[rows, sticker_positions]], dim=-1)  # (B, 2H)
        match_logits = self.match_head(pooled)                              # (B, 2)
        emotion_logits = None
        if self.emotion_head is not None and compute_emotions:
            emotion_logits = self.emotion_head(hidden[rows, sticker_positions])  # (B, E)
        mlm_logits = None
        if mlm_labels is not None:
            mlm_logits = self.mlm_head(hidden[mlm_labels != IGNORE_INDEX])   # (N, V)
        losses = {}
        if match_labels is not None:
            losses["match"] = F.cross_entropy(match_logits, match_labels)
        if mlm_labels is not None:
            losses["mlm"] = _mean_or_zero(mlm_logits, mlm_labels[mlm_labels != IGNORE_INDEX], hidden)
        if emotion_labels is not None and emotion_logits is not None:
            keep = emotion_labels != IGNORE_INDEX
            losses["emotion"] = _mean_or_zero(emotion_logits[keep], emotion_labels[keep], hidden)
        return SelectorOutput(match_logits, hidden, emotion_logits, mlm_logits, losses or None)

    def predict_masked(self, hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Token logits at given positions: hidden (B, T, H), positions (B, P) -> (B, P, V)."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
        return self.mlm_head(hidden[rows, positions])


def _mean_or_zero(logits: torch.Tensor, labels: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """Cross-entropy that is an exact 0 (still in the graph) when a batch has nothing to learn."""
    if labels.numel() == 0:
        return anchor.sum() * 0.0
    return F.cross_entropy(logits, labels)
