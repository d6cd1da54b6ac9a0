"""The selector's configuration, saved as JSON beside the weights."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

SEMANTIC_SOURCES = ("ocr", "ocr_or_name")
MATCH_POOLINGS = ("cls", "cls+sticker")
SCORING_PARTS = ("prior", "text_scorer")


def dataclass_from_dict(cls, values: dict):
    """cls(**values), refusing keys that are not fields of the dataclass (naming them)."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}")
    return cls(**values)


@dataclass
class SelectorConfig:
    """Everything needed to rebuild a `StickerSelectorModel` (the BERT config included).

    Loss weights follow the paper (L = L_main + a L_ctx + b L_emo + c L_sem, a=0.05, b=0.2,
    c=0.1). A task whose `use_*` flag is off is neither computed nor trained.
    """

    backbone: dict = field(default_factory=dict)      # transformers BertConfig.to_dict()
    backbone_name: str = ""                          # where the text encoder came from
    image_encoder: str = "efficientnet_lite0"
    image_feature_dim: int = 1280
    ocr_slots: int = 11
    max_length: int = 96
    speaker_tokens: list[str] = field(default_factory=lambda: ["[speaker1]", "[speaker2]"])
    emotion_names: list[str] = field(default_factory=list)
    use_ctx: bool = True
    use_emo: bool = True
    use_sem: bool = True
    ocr_in_inputs: bool = True       # Appendix C: the OCR run is filled in the other tasks' inputs
    semantic_source: str = "ocr"     # "ocr_or_name": stickers without OCR text use their name
    ctx_weight: float = 0.05
    emo_weight: float = 0.2
    sem_weight: float = 0.1
    mask_probability: float = 0.15
    classifier_dropout: float = 0.1
    match_pooling: str = "cls"       # "cls" (paper) | "cls+sticker": [CLS] and the sticker slot
    # Late interaction (not in the paper): below the last layer the dialogue and the sticker part
    # attend only within themselves; the last layer attends across. The sticker part gets fixed
    # positions (the last ocr_slots + 2 of max_length). Lets core.fast_ranking encode a dialogue
    # once and score every sticker with one cheap layer, exactly (see README "Speed").
    late_interaction: bool = False
    # The checkpoint's other scoring parts, by role -> file name in the checkpoint folder:
    # "prior" (core.prior.StickerPrior), "text_scorer" (core.frozen_text.TextScorer). Written by
    # train.fit_prior / train.text_scorer. None: a checkpoint older than this record (its parts
    # are looked up by file name, once, when it is loaded).
    scoring_files: dict[str, str] | None = None

    def __post_init__(self) -> None:
        if self.match_pooling not in MATCH_POOLINGS:
            raise ValueError(f"match_pooling={self.match_pooling!r}; expected one of {MATCH_POOLINGS}")
        if self.semantic_source not in SEMANTIC_SOURCES:
            raise ValueError(f"semantic_source={self.semantic_source!r}; expected one of {SEMANTIC_SOURCES}")
        unknown_parts = sorted(set(self.scoring_files or {}) - set(SCORING_PARTS))
        if unknown_parts:
            raise ValueError(f"scoring_files has unknown parts {unknown_parts}; expected some of {SCORING_PARTS}")
        fixed = 3 + self.ocr_slots + 1
        if self.max_length <= fixed + 2:
            raise ValueError(f"max_length={self.max_length} leaves no room for dialogue tokens "
                             f"(the sticker part takes {fixed})")

    @property
    def sticker_part_length(self) -> int:  # OCR run + sticker slot + [SEP]
        return self.ocr_slots + 2

    @property
    def num_emotions(self) -> int:
        return len(self.emotion_names)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SelectorConfig":
        return dataclass_from_dict(cls, values)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "SelectorConfig":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


# The paper's ablations (Table 1) and the Appendix C variant, as overrides of SelectorConfig.
PRESETS: dict[str, dict] = {
    "mmbert": dict(use_ctx=False, use_emo=False, use_sem=False),
    "mmbert+ctx": dict(use_ctx=True, use_emo=False, use_sem=False),
    "mmbert+ctx+emo": dict(use_ctx=True, use_emo=True, use_sem=False),
    "full": dict(use_ctx=True, use_emo=True, use_sem=True),
    "full-no-ocr-inputs": dict(use_ctx=True, use_emo=True, use_sem=True, ocr_in_inputs=False),
}


def preset_overrides(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return dict(PRESETS[name])
