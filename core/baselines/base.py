"""What the trained baselines share: text inputs, the checkpoint format and the scoring of a bank.

A baseline checkpoint is a folder with `baseline.json` (`{"model": kind, "config": {...}}`, the
model's config dataclass), `model.safetensors` and the tokenizer; the dual encoder's older
folders (`dual_encoder.json`) still load. Every baseline model has a `kind`, a `config` dataclass,
and a ranker class (`ranker_class`) that scores one dialogue against rows of a sticker bank:
`ranker.scores(speakers, texts, rows) -> (C,)`. core.serving.scoring.BaselineScorer wraps a
ranker in the one scoring path.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Sequence

import torch

from core.model.checkpoint import CheckpointError, atomic_directory_write

BASELINE_FILE = "baseline.json"
DUAL_ENCODER_FILE = "dual_encoder.json"
KINDS = ("dual-encoder", "srs", "mod-gpt")


class NoTokens:
    """Stand-in PairEncoder for a StickerBank: baselines tokenise sticker texts themselves."""

    def ocr_ids(self, text: str) -> list[int]:
        return []


class TextInputs:
    """Tokenises dialogues for the baselines: flat (most recent tokens kept) or one row per utterance."""

    def __init__(self, tokenizer, speaker_tokens: Sequence[str]):
        self.tokenizer = tokenizer
        self.speaker_tokens = list(speaker_tokens)
        self.speaker_ids = [tokenizer.convert_tokens_to_ids(t) for t in self.speaker_tokens]
        self.pad_id, self.cls_id, self.sep_id = tokenizer.pad_token_id, tokenizer.cls_token_id, tokenizer.sep_token_id

    def speaker_id(self, speaker) -> int:
        if isinstance(speaker, str) and speaker in self.speaker_tokens:
            return self.speaker_ids[self.speaker_tokens.index(speaker)]
        digits = "".join(ch for ch in str(speaker) if ch.isdigit())  # "[speaker2]", "2", 1 ...
        index = int(speaker) if not isinstance(speaker, str) else int(digits or 1) - 1
        return self.speaker_ids[index % len(self.speaker_ids)]

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def flat(self, speakers, texts, budget: int) -> list[int]:
        """[spk] u1 [spk] u2 ... with only the most recent `budget` tokens kept (no [CLS]/[SEP])."""
        ids: list[int] = []
        for speaker, text in zip(reversed(list(speakers)), reversed(list(texts))):
            if len(ids) >= budget:
                break
            ids = [self.speaker_id(speaker)] + self.ids(text[-budget * 4:]) + ids
        return ids[-budget:]

    def utterances(self, speakers, texts, max_utterances: int, length: int) -> list[list[int]]:
        """The last `max_utterances` turns, each `[CLS] [spk] first tokens [SEP]` in at most `length` ids."""
        rows = []
        for speaker, text in list(zip(speakers, texts))[-max_utterances:]:
            body = self.ids(text[: length * 4])[: length - 3]
            rows.append([self.cls_id, self.speaker_id(speaker)] + body + [self.sep_id])
        return rows

    def text(self, text: str, length: int) -> list[int]:
        return [self.cls_id] + self.ids(text)[: length - 2] + [self.sep_id]

    def pad(self, sequences: Sequence[list[int]], width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, T) ids and 1/0 mask, right-padded."""
        width = width or max(1, max((len(s) for s in sequences), default=1))
        ids = torch.full((len(sequences), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(sequences), width), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, :len(seq)] = torch.tensor(seq[:width], dtype=torch.long)
            mask[row, :len(seq)] = 1
        return ids, mask


# checkpoints -----------------------------------------------------------------------------------
def registry() -> dict[str, tuple[type, type]]:
    """kind -> (config class, model class)."""
    from core.baselines.dual_encoder import DualEncoder, DualEncoderConfig
    from core.baselines.mod_gpt import ModGpt, ModGptConfig
    from core.baselines.srs import Srs, SrsConfig

    return {"dual-encoder": (DualEncoderConfig, DualEncoder), "srs": (SrsConfig, Srs), "mod-gpt": (ModGptConfig, ModGpt)}


def baseline_kind(directory: str | Path) -> str | None:
    """The baseline a checkpoint folder holds, or None (a selector checkpoint, or no checkpoint)."""
    directory = Path(directory)
    if (directory / BASELINE_FILE).is_file():
        try:
            return json.loads((directory / BASELINE_FILE).read_text(encoding="utf-8"))["model"]
        except (ValueError, KeyError, OSError) as error:
            raise CheckpointError(f"{directory / BASELINE_FILE} is not a readable baseline record: {error}") from error
    if (directory / DUAL_ENCODER_FILE).is_file():
        return "dual-encoder"
    return None


def save_baseline(directory: str | Path, model: torch.nn.Module, tokenizer) -> Path:
    """Writes baseline.json (kind + config; the dual encoder: dual_encoder.json, its config),
    model.safetensors and the tokenizer, atomically."""
    from safetensors.torch import save_file

    def write(tmp: Path) -> None:
        config = dataclasses.asdict(model.config)
        if model.kind == "dual-encoder":  # its own record file, as before (older folders load unchanged)
            (tmp / DUAL_ENCODER_FILE).write_text(json.dumps(config, ensure_ascii=False), encoding="utf-8")
        else:
            record = {"model": model.kind, "config": config}
            (tmp / BASELINE_FILE).write_text(json.dumps(record, ensure_ascii=False, indent=1), encoding="utf-8")
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))
        tokenizer.save_pretrained(str(tmp))

    return atomic_directory_write(directory, write)


def load_baseline(directory: str | Path, device: str | torch.device = "cpu"):
    """(model in eval mode, tokenizer) of any baseline checkpoint; CheckpointError names what is wrong."""
    from safetensors.torch import load_file
    from transformers import PreTrainedTokenizerFast

    directory = Path(directory)
    kind = baseline_kind(directory)
    if kind is None:
        raise CheckpointError(f"{directory} holds no baseline ({BASELINE_FILE} or {DUAL_ENCODER_FILE} missing)")
    if kind not in KINDS:
        raise CheckpointError(f"{directory}: unknown baseline {kind!r}; expected one of {KINDS}")
    config_class, model_class = registry()[kind]
    try:
        if kind == "dual-encoder" and not (directory / BASELINE_FILE).is_file():
            values = json.loads((directory / DUAL_ENCODER_FILE).read_text(encoding="utf-8"))
        else:
            values = json.loads((directory / BASELINE_FILE).read_text(encoding="utf-8"))["config"]
        model = model_class(config_class(**values))
        model.load_state_dict(load_file(str(directory / "model.safetensors")))
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(directory))
    except Exception as error:  # safetensors raises its own error type for a corrupt file
        raise CheckpointError(f"{directory} is not a readable {kind} checkpoint: {error}") from error
    return model.to(device).eval(), tokenizer


# a bank's features -----------------------------------------------------------------------------
def grid_features(stickers, image_encoder, feature_cache) -> torch.Tensor:
    """(N, R, D) regional image features of `stickers` (those with an image), cached by FeatureCache
    under the grid's own name. feature_cache: a file, a function of the encoder name giving one, or None."""
    from core.model.image_encoder import FeatureCache, GridFeatures

    grid = GridFeatures(image_encoder)
    path = feature_cache(grid.name) if callable(feature_cache) else feature_cache
    if path is not None and not callable(feature_cache):
        path = Path(path).with_name(Path(path).stem + ".grid" + Path(path).suffix)
    return FeatureCache(grid, path).encode_files([s.image_path for s in stickers if s.image_path is not None])


def build_ranker(model, tokenizer, stickers, feature_cache=None, image_encoder=None, semantic_source: str | None = None):
    """(ranker, bank) of a baseline model over `stickers`: the bank of pooled features (every
    baseline's candidate list) and, for SRS, the grid features beside it."""
    from core.model.image_encoder import FeatureCache, create_image_encoder
    from core.model.sticker_bank import build_sticker_bank

    image_encoder = image_encoder or create_image_encoder(model.config.image_encoder)
    path = feature_cache(image_encoder.name) if callable(feature_cache) else feature_cache
    usable = [s for s in stickers if s.image_path is not None]
    bank = build_sticker_bank(usable, FeatureCache(image_encoder, path), NoTokens(),
                              semantic_source or model.config.semantic_source)
    grid = grid_features(usable, image_encoder, feature_cache) if model.needs_grid else None
    return model.ranker_class(model, tokenizer, bank, grid), bank
