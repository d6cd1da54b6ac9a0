"""What the model needs of each candidate sticker, computed once: image feature, OCR ids, labels."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from core.model.features import PairEncoder


@dataclass
class StickerBank:
    ids: list[str]                      # sticker ids, row order of `features`
    features: torch.Tensor              # (N, D) frozen image features
    semantic_texts: list[str]           # OCR text (or name, by config.semantic_source) per sticker
    ocr_ids: list[list[int]] = field(default_factory=list)
    emotion_labels: list[int] = field(default_factory=list)  # -100 where none
    index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.features.shape[0] != len(self.ids):
            raise ValueError(f"{len(self.ids)} sticker ids for {self.features.shape[0]} feature rows")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError("sticker ids in a bank must be unique")
        self.index = {sid: i for i, sid in enumerate(self.ids)}
        if not self.emotion_labels:
            self.emotion_labels = [-100] * len(self.ids)

    def tokenize(self, encoder: PairEncoder) -> "StickerBank":
        self.ocr_ids = [encoder.ocr_ids(text) for text in self.semantic_texts]
        return self

    def position(self, sticker_id: str) -> int:
        """Row of a sticker; numeric ids may be given without leading zeros ("37" -> "037")."""
        from core.data.mod import UnknownStickerError, normalize_sticker_id

        key = str(sticker_id).strip()
        if key not in self.index and key.isascii() and key.isdigit():
            key = normalize_sticker_id(key)
        if key not in self.index:
            raise UnknownStickerError(sticker_id, f"a bank of {len(self.ids)} stickers")
        return self.index[key]

    def text_vocabulary(self) -> list[int]:
        """The token ids that occur in the stickers' semantic texts (sorted): what a semantic label
        (the reconstructed OCR text) is decoded over."""
        return sorted({token for ids in self.ocr_ids for token in ids})

    def add(self, sticker_id: str, feature: torch.Tensor, semantic_text: str, encoder: PairEncoder,
            emotion_label: int = -100) -> None:
        if sticker_id in self.index:
            raise ValueError(f"sticker id {sticker_id!r} is already in the bank")
        self.ids.append(sticker_id)
        self.features = torch.cat([self.features, feature.reshape(1, -1).to(self.features.dtype)])
        self.semantic_texts.append(semantic_text)
        self.ocr_ids.append(encoder.ocr_ids(semantic_text))
        self.emotion_labels.append(emotion_label)
        self.index[sticker_id] = len(self.ids) - 1


def semantic_text(sticker, source: str) -> str:
    """The sticker's text as the model sees it: its OCR, or (ocr_or_name) its name when no OCR."""
    if sticker.ocr or source == "ocr":
        return sticker.ocr or ""
    return sticker.name_label or ""


def build_sticker_bank(stickers, feature_cache, encoder: PairEncoder, semantic_source: str = "ocr",
                       emotion_labels: dict[str, int] | None = None) -> StickerBank:
    """A bank over the stickers that have an image (others cannot be candidates).

    feature_cache: a core.model.image_encoder.FeatureCache (or anything with .encode(images)).
    """
    usable = [s for s in stickers if s.image_path is not None]
    if hasattr(feature_cache, "encode_files"):
        features = feature_cache.encode_files([s.image_path for s in usable])
    else:
        from core.data.images import load_sticker_image

        features = feature_cache.encode([load_sticker_image(s.image_path) for s in usable])
    labels = emotion_labels or {}
    bank = StickerBank(ids=[s.sticker_id for s in usable], features=features,
                       semantic_texts=[semantic_text(s, semantic_source) for s in usable],
                       emotion_labels=[labels.get(s.sticker_id, -100) for s in usable])
    return bank.tokenize(encoder)
