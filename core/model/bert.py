"""A BERT encoder (modules and their settings only), state-dict compatible with transformers' BertModel.

The selector and the dual encoder run on this module; transformers is needed only to *load* a
pretrained backbone (hub name, local path, MiniLM) and is never imported to build or run a
saved model, which keeps the demo's start-up short (transformers' BERT stack costs ~3 s to import
on 2 cores). Parameter names follow BertModel without its pooler (``embeddings.word_embeddings``,
``encoder.layer.N.attention.self.query`` ...), so ``bert_model.state_dict()`` loads as is and old
checkpoints keep working. tests/test_bert.py checks the outputs against BertModel.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


@dataclass
class BertSettings:
    """The hyper-parameters the encoder reads from a transformers BertConfig dict (others are ignored)."""

    vocab_size: int
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    hidden_act: str = "gelu"
    pad_token_id: int | None = 0

    def __post_init__(self):
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size={self.hidden_size} is not a multiple of "
                             f"num_attention_heads={self.num_attention_heads}")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"hidden_act={self.hidden_act!r} is not supported; expected one of {sorted(ACTIVATIONS)}")
        if self.pad_token_id is not None and not 0 <= self.pad_token_id < self.vocab_size:
            self.pad_token_id = None

    @classmethod
    def from_dict(cls, values: dict) -> "BertSettings":
        names = {f.name for f in dataclasses.fields(cls)}
        if values.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError(f"position_embedding_type={values['position_embedding_type']!r}: only absolute "
                             "position embeddings are supported")
        return cls(**{k: v for k, v in values.items() if k in names})


def padding_mask(attention_mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(B, n) 1/0 -> additive (B, 1, 1, n): 0 for real keys, the dtype's minimum for padding."""
    blocked = torch.finfo(dtype).min
    return torch.where(attention_mask.bool(), 0.0, blocked).to(dtype)[:, None, None, :]


class Embeddings(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size, padding_idx=s.pad_token_id)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.token_type_embeddings = nn.Embedding(s.type_vocab_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, input_ids=None, token_type_ids=None, position_ids=None, inputs_embeds=None):
        if inputs_embeds is None:
            inputs_embeds = self.word_embeddings(input_ids)                     # (B, T, H)
        batch, length = inputs_embeds.shape[:2]
        device = inputs_embeds.device
        if position_ids is None:
            position_ids = torch.arange(length, device=device).expand(batch, -1)
        if token_type_ids is None:
            token_type_ids = torch.zeros((batch, length), dtype=torch.long, device=device)
        hidden = inputs_embeds + self.token_type_embeddings(token_type_ids) + self.position_embeddings(position_ids)
        return self.dropout(self.LayerNorm(hidden))


class SelfAttention(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.num_attention_heads = s.num_attention_heads
        self.attention_head_size = s.hidden_size // s.num_attention_heads
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(s.hidden_size, s.hidden_size)
        self.value = nn.Linear(s.hidden_size, s.hidden_size)
        self.dropout_p = s.attention_probs_dropout_prob

    def split_heads(self, x: torch.Tensor) -> torch.Tensor:  # (..., L, H) -> (..., heads, L, d)
        return x.view(*x.shape[:-1], self.num_attention_heads, self.attention_head_size).transpose(-3, -2)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        q, k, v = (self.split_heads(proj(hidden)) for proj in (self.query, self.key, self.value))  # (B, h, T, d)
        mixed = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask,
                                               dropout_p=self.dropout_p if self.training else 0.0)
        return mixed.transpose(1, 2).reshape(hidden.shape)                     # (B, T, H)


class ResidualOutput(nn.Module):
    """dense -> dropout -> LayerNorm(x + residual) (BERT's SelfOutput and Output)."""

    def __init__(self, in_size: int, s: BertSettings):
        super().__init__()
        self.dense = nn.Linear(in_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)
        self.dropout = nn.Dropout(s.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dropout(self.dense(hidden)) + residual)


class Attention(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.self = SelfAttention(s)
        self.output = ResidualOutput(s.hidden_size, s)

    def forward(self, hidden, attention_mask=None):
        return self.output(self.self(hidden, attention_mask), hidden)


class Intermediate(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)
        self.activation = ACTIVATIONS[s.hidden_act]

    def forward(self, hidden):
        return self.activation(self.dense(hidden))


class Layer(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.attention = Attention(s)
        self.intermediate = Intermediate(s)
        self.output = ResidualOutput(s.intermediate_size, s)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """hidden (B, T, H); attention_mask additive, broadcastable to (B, heads, T, T), or None."""
        attended = self.attention(hidden, attention_mask)
        return self.output(self.intermediate(attended), attended)


class Encoder(nn.Module):
    def __init__(self, s: BertSettings):
        super().__init__()
        self.layer = nn.ModuleList(Layer(s) for _ in range(s.num_hidden_layers))


class Bert(nn.Module):
    """BERT without a pooler: (input ids or embeddings, 1/0 attention mask) -> last hidden state (B, T, H)."""

    def __init__(self, settings: BertSettings):
        super().__init__()
        self.config = settings
        self.embeddings = Embeddings(settings)
        self.encoder = Encoder(settings)

    def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, position_ids=None,
                inputs_embeds=None) -> torch.Tensor:
        hidden = self.embeddings(input_ids, token_type_ids, position_ids, inputs_embeds)  # (B, T, H)
        mask = None if attention_mask is None else padding_mask(attention_mask, hidden.dtype)
        for layer in self.encoder.layer:
            hidden = layer(hidden, mask)
        return hidden


def load_backbone_weights(bert: Bert, state: dict[str, torch.Tensor]) -> None:
    """Copies a transformers BertModel state dict into `bert` (pooler and index buffers are skipped);
    raises naming the keys when anything else does not fit."""
    skipped = ("embeddings.position_ids", "embeddings.token_type_ids")
    weights = {k: v for k, v in state.items() if not k.startswith("pooler.") and k not in skipped}
    expected = bert.state_dict()
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    bad_shapes = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or bad_shapes:
        raise RuntimeError(f"backbone weights do not fit the encoder: missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]}, wrong shapes {bad_shapes[:5]}")
    bert.load_state_dict(weights)
