"""A tiny text scorer for tests (tests/test_scoring.py, tests/test_saliency.py)."""
from __future__ import annotations

import torch

from core.serving.text_scorer import FrozenTextBilinear, TextScorer, TextScorerConfig, reference_statistics


def tiny_text_scorer(directory, stickers, texts=(), *, encode=None, encoder_name=None) -> TextScorer:
    """A text scorer (random bilinear map, cross_weight 0.5) over a tiny sentence encoder saved at `directory`,
    whose vocabulary covers the stickers' texts and `texts`; loadable from a checkpoint (its encoder is that path)."""
    from core.model.backbone import tiny_backbone

    encoder, tokenizer = tiny_backbone([s.ocr + s.name_label for s in stickers] + list(texts), seed=0)
    encoder.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    torch.manual_seed(0)
    hidden = encoder.config.hidden_size
    bilinear = FrozenTextBilinear(hidden, rank=4, temperature=0.1)
    with torch.no_grad():
        bilinear.dialogue_map.normal_(0, 0.3)
    mean, covariance = reference_statistics(torch.nn.functional.normalize(torch.randn(40, hidden), dim=-1))
    config = TextScorerConfig(encoder=encoder_name or str(directory), hidden=hidden, rank=4, temperature=0.1,
                              weight=1.3, raw_weight=2.0, cross_weight=0.5, reference_dialogues=40,
                              sticker_text="name+ocr")
    return TextScorer(config, bilinear, mean, covariance, encode=encode)
