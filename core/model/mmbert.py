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
from core.model.bert import Bert, BertSettings, padding_mask
from core.model.config import SelectorConfig
from core.model.late_interaction import (last_layer_inputs, late_interaction_masks, late_position_ids,
                               match_and_emotion_logits)

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

    def __init__(self, config: BertSettings, word_embeddings: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.word_embeddings = word_embeddings  # shared module: the decoder weight is tied
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, vocab: torch.Tensor | None = None) -> torch.Tensor:
        """(N, H) -> (N, V) token logits; with ``vocab`` (K,) token ids, only their logits (N, K)."""
        hidden = self.norm(F.gelu(self.dense(hidden)))
        if vocab is None:
            return hidden @ self.word_embeddings.weight.t() + self.bias
        return hidden @ self.word_embeddings.weight[vocab].t() + self.bias[vocab]


class StickerSelectorModel(nn.Module):
    def __init__(self, config: SelectorConfig):
        super().__init__()
        self.config = config
        bert_config = BertSettings.from_dict(config.backbone)
        self.bert = Bert(bert_config)
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
        if self.config.late_interaction:
            return self._encode_late(inputs_embeds, token_type_ids, attention_mask)
        return self.bert(inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
                         attention_mask=attention_mask)  # (B, T, H)

    def late_position_ids(self, token_type_ids: torch.Tensor) -> torch.Tensor:
        """Dialogue part 0, 1, ...; sticker part (token type 1) at the fixed last positions."""
        return late_position_ids(token_type_ids, self.config.max_length, self.config.sticker_part_length,
                                 self.bert.config.max_position_embeddings)  # (B, T)

    def _encode_late(self, inputs_embeds, token_type_ids, attention_mask):
        hidden = self.bert.embeddings(inputs_embeds=inputs_embeds, token_type_ids=token_type_ids,
                                      position_ids=self.late_position_ids(token_type_ids))  # (B, T, H)
        within, across = late_interaction_masks(token_type_ids, attention_mask, hidden.dtype)
        layers = self.bert.encoder.layer
        for i, layer in enumerate(layers):
            hidden = layer(hidden, attention_mask=across if i == len(layers) - 1 else within)
        return hidden  # (B, T, H)

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
            losses["mlm"] = masked_cross_entropy(mlm_logits, mlm_labels[mlm_labels != IGNORE_INDEX])
        if emotion_labels is not None and emotion_logits is not None:
            losses["emotion"] = masked_cross_entropy(emotion_logits, emotion_labels)
        return SelectorOutput(match_logits, hidden, emotion_logits, mlm_logits, losses or None)

    # late interaction: the two parts apart, then every (dialogue, sticker) pair in one layer ----
    def encode_dialogue_part(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """[CLS] dialogue [SEP] (B, n), right-padded -> input of the last layer (B, n, H)."""
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids),
                                      position_ids=positions)
        keys = padding_mask(attention_mask, hidden.dtype)                    # (B, 1, 1, n)
        for layer in self.bert.encoder.layer[:-1]:
            hidden = layer(hidden, attention_mask=keys)
        return hidden

    def encode_sticker_part(self, input_ids: torch.Tensor, sticker_features: torch.Tensor) -> torch.Tensor:
        """OCR run + sticker slot + [SEP] (C, S) -> input of the last layer (C, S, H)."""
        slot = self.config.ocr_slots
        embeds = self.bert.embeddings.word_embeddings(input_ids).clone()      # (C, S, H)
        embeds[:, slot] = self.sticker_projection(sticker_features).to(embeds.dtype)
        first = self.config.max_length - self.config.sticker_part_length
        positions = torch.arange(first, first + input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
        hidden = self.bert.embeddings(inputs_embeds=embeds, token_type_ids=torch.ones_like(input_ids),
                                      position_ids=positions)
        for layer in self.bert.encoder.layer[:-1]:
            hidden = layer(hidden, attention_mask=None)
        return hidden

    def cross_logits(self, dialogue: torch.Tensor, dialogue_mask: torch.Tensor, sticker: torch.Tensor,
                     compute_emotions: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The last layer for every pair of B dialogues x C stickers, only where the heads read it.

        dialogue (B, n, H), dialogue_mask (B, n), sticker (C, S, H) from the encode_*_part
        methods -> match logits (B, C, 2) and emotion logits (B, C, E) or None. Equals the full
        sequence of each pair (tests/test_fast_ranking.py), without attention-prob dropout
        (core.model.late_interaction holds the layer, shared with core.serving.fast_ranking)."""
        layer = self.bert.encoder.layer[-1]
        return match_and_emotion_logits(self, last_layer_inputs(layer, dialogue), last_layer_inputs(layer, sticker),
                                        dialogue_mask, with_emotions=compute_emotions)

    def predict_masked(self, hidden: torch.Tensor, positions: torch.Tensor,
                       vocab: torch.Tensor | None = None) -> torch.Tensor:
        """Token logits at given positions: hidden (B, T, H), positions (B, P) -> (B, P, V)
        (or (B, P, K) over the token ids ``vocab`` (K,))."""
        rows = torch.arange(hidden.shape[0], device=hidden.device)[:, None]
        return self.mlm_head(hidden[rows, positions], vocab)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the rows whose label is not IGNORE_INDEX: logits (N, K), labels (N,).
    An exact 0 (still in the graph) when no row has a label. The one loss of the token and
    emotion heads (core.tasks use it too)."""
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits, labels, ignore_index=IGNORE_INDEX)
