"""A CLIP-style dual encoder: the paper's CLIP baseline, trained on the same data.

Dialogue tower: BERT over "[spk] u1 [spk] u2 ...", mean-pooled, projected.
Sticker tower: frozen image feature through an MLP, plus the sticker's text (OCR) through the
same BERT, mean-pooled; the sum is projected. Both L2-normalised; symmetric InfoNCE with
in-batch negatives and a learned temperature. Sticker embeddings do not depend on the dialogue,
so ranking every sticker is one matrix product.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedTokenizerFast

from core.model.bert import Bert, BertSettings
from core.model.checkpoint import CheckpointError, atomic_directory_write


@dataclass
class DualEncoderConfig:
    backbone: dict = field(default_factory=dict)
    backbone_name: str = ""
    image_encoder: str = "efficientnet_lite0"
    image_feature_dim: int = 1280
    embed_dim: int = 256
    max_length: int = 64
    ocr_max_length: int = 16
    semantic_source: str = "ocr"
    speaker_tokens: list[str] = field(default_factory=lambda: ["[speaker1]", "[speaker2]"])


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # (B, T, H), (B, T) -> (B, H)
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class DualEncoder(nn.Module):
    kind = "dual-encoder"
    needs_grid = False

    def __init__(self, config: DualEncoderConfig):
        super().__init__()
        self.config = config
        self.bert = Bert(BertSettings.from_dict(config.backbone))
        hidden = self.bert.config.hidden_size
        self.dialogue_projection = nn.Linear(hidden, config.embed_dim)
        self.image_mlp = nn.Sequential(nn.Linear(config.image_feature_dim, hidden), nn.GELU(),
                                       nn.Linear(hidden, hidden))
        self.sticker_projection = nn.Linear(hidden, config.embed_dim)
        self.log_scale = nn.Parameter(torch.tensor(2.659))  # exp = 1/0.07, as CLIP

    def text_vectors(self, input_ids, attention_mask) -> torch.Tensor:  # (B, H)
        return mean_pool(self.bert(input_ids=input_ids, attention_mask=attention_mask),
                         attention_mask)

    def embed_dialogues(self, input_ids, attention_mask) -> torch.Tensor:  # (B, E)
        return F.normalize(self.dialogue_projection(self.text_vectors(input_ids, attention_mask)), dim=-1)

    def embed_stickers(self, features, text_ids, text_mask, has_text) -> torch.Tensor:  # (S, E)
        text = self.text_vectors(text_ids, text_mask) * has_text.unsqueeze(-1).to(features.dtype)
        return F.normalize(self.sticker_projection(self.image_mlp(features) + text), dim=-1)

    def forward(self, dialogue_ids, dialogue_mask, features, text_ids, text_mask, has_text,
                sticker_keys: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        dialogues = self.embed_dialogues(dialogue_ids, dialogue_mask)              # (B, E)
        stickers = self.embed_stickers(features, text_ids, text_mask, has_text)    # (B, E)
        logits = dialogues @ stickers.t() * self.log_scale.exp().clamp(max=100)    # (B, B)
        out = {"logits": logits}
        if sticker_keys is not None:  # the same gold sticker twice in a batch is not a negative
            same = sticker_keys[:, None] == sticker_keys[None, :]
            eye = torch.eye(len(sticker_keys), dtype=torch.bool, device=logits.device)
            logits = logits.masked_fill(same & ~eye, float("-inf"))
            target = torch.arange(len(sticker_keys), device=logits.device)
            out["loss"] = (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target)) / 2
        return out


class DualEncoderInputs:
    """Tokenises dialogues (most recent tokens kept) and sticker texts for the dual encoder."""

    def __init__(self, tokenizer, config: DualEncoderConfig):
        self.tokenizer = tokenizer
        self.config = config
        self.speaker_ids = [tokenizer.convert_tokens_to_ids(t) for t in config.speaker_tokens]

    def dialogue_ids(self, speakers, texts) -> list[int]:
        budget = self.config.max_length - 2
        ids: list[int] = []
        for i, (speaker, text) in enumerate(zip(reversed(speakers), reversed(texts))):
            if len(ids) >= budget:
                break
            spk = self.speaker_ids[self.config.speaker_tokens.index(speaker)] if isinstance(speaker, str) \
                else self.speaker_ids[speaker % 2]
            ids = [spk] + self.tokenizer(text[-budget * 4:], add_special_tokens=False)["input_ids"] + ids
        return [self.tokenizer.cls_token_id] + ids[-budget:] + [self.tokenizer.sep_token_id]

    def text_ids(self, text: str) -> list[int]:
        body = self.tokenizer(text, add_special_tokens=False)["input_ids"][: self.config.ocr_max_length - 2]
        return [self.tokenizer.cls_token_id] + body + [self.tokenizer.sep_token_id]

    def pad(self, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in sequences)
        ids = torch.full((len(sequences), width), self.tokenizer.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)] = torch.tensor(seq)
            mask[row, :len(seq)] = 1
        return ids, mask


@torch.no_grad()  # (not inference_mode: saliency differentiates through them)
def embed_bank(model: DualEncoder, inputs: DualEncoderInputs, bank, batch_size: int = 128) -> torch.Tensor:
    """(N, E) embeddings of every sticker in a core.model.sticker_bank.StickerBank."""
    chunks = []
    for start in range(0, len(bank.ids), batch_size):
        texts = bank.semantic_texts[start:start + batch_size]
        ids, mask = inputs.pad([inputs.text_ids(t) for t in texts])
        has_text = torch.tensor([bool(t) for t in texts])
        chunks.append(model.embed_stickers(bank.features[start:start + batch_size], ids, mask, has_text))
    return torch.cat(chunks)


def save_dual_encoder(directory, model: DualEncoder, tokenizer) -> Path:
    def write(tmp: Path) -> None:
        (tmp / "dual_encoder.json").write_text(json.dumps(dataclasses.asdict(model.config), ensure_ascii=False))
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(str(tmp))

    return atomic_directory_write(directory, write)


def load_dual_encoder(directory) -> tuple[DualEncoder, PreTrainedTokenizerFast]:
    directory = Path(directory)
    try:
        config = DualEncoderConfig(**json.loads((directory / "dual_encoder.json").read_text()))
        model = DualEncoder(config)
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    except (OSError, ValueError, RuntimeError, TypeError) as error:
        raise CheckpointError(f"{directory} is not a readable dual-encoder checkpoint: {error}") from error
    return model.eval(), tokenizer


class DualEncoderRanker:
    """Scores one dialogue against bank rows: a dot product with the stickers' embeddings, computed once."""

    def __init__(self, model: DualEncoder, tokenizer, bank, grid=None):
        self.model, self.bank = model, bank
        self.inputs = DualEncoderInputs(tokenizer, model.config)
        self.sticker_vectors = embed_bank(model, self.inputs, bank)  # (N, E)

    def dialogue_inputs(self, speakers, texts) -> tuple[torch.Tensor, torch.Tensor]:  # (1, T) ids, mask
        return self.inputs.pad([self.inputs.dialogue_ids(list(speakers), list(texts))])

    @torch.inference_mode()
    def scores(self, speakers, texts, rows: list[int]) -> torch.Tensor:  # (C,)
        return self.scores_from(*self.dialogue_inputs(speakers, texts), rows)

    def scores_from(self, ids: torch.Tensor, mask: torch.Tensor, rows: list[int]) -> torch.Tensor:
        """(C,) scores of one tokenised dialogue (differentiable w.r.t. its token embeddings: saliency)."""
        dialogue = self.model.embed_dialogues(ids, mask)[0]                        # (E,)
        return self.sticker_vectors[torch.as_tensor(rows, dtype=torch.long)] @ dialogue

    def sticker_added(self, grid_row=None) -> None:
        """Call after bank.add(...): embeds the new rows."""
        self.sticker_vectors = embed_bank(self.model, self.inputs, self.bank)


class DualEncoderObjective:
    """Symmetric InfoNCE with in-batch negatives (a sticker twice in a batch is not its own negative)."""

    def __init__(self, model: DualEncoder, tokenizer, bank, grid=None, allowed_rows=None, **_):
        self.model, self.bank = model, bank
        self.inputs = DualEncoderInputs(tokenizer, model.config)

    def __call__(self, samples: list[dict], generator=None) -> dict[str, torch.Tensor]:
        inputs, bank = self.inputs, self.bank
        ids, mask = inputs.pad([inputs.dialogue_ids(s["speakers"], s["texts"]) for s in samples])
        rows = [bank.position(s["sticker_id"]) for s in samples]
        texts = [bank.semantic_texts[r] for r in rows]
        text_ids, text_mask = inputs.pad([inputs.text_ids(t) for t in texts])
        out = self.model(dialogue_ids=ids, dialogue_mask=mask, features=bank.features[rows], text_ids=text_ids,
                         text_mask=text_mask, has_text=torch.tensor([bool(t) for t in texts]),
                         sticker_keys=torch.tensor(rows))
        return {"loss": out["loss"]}


DualEncoder.ranker_class = DualEncoderRanker
DualEncoder.objective_class = DualEncoderObjective
