"""The selector's configuration, saved as JSON beside the weights."""
from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

SEMANTIC_SOURCES = ("ocr", "ocr_or_name")
MATCH_POOLINGS = ("cls", "cls+sticker")
SCORING_PARTS = ("prior", "text_scorer")
# The paper's loss weights: L = L_main + 0.05 L_ctx + 0.2 L_emo + 0.1 L_sem (core.tasks names them).
PAPER_TASK_WEIGHTS = {"match": 1.0, "ctx": 0.05, "emotion": 0.2, "sem": 0.1}
# Configs written before task_weights: task -> (its on/off flag, its weight key).
OLD_TASK_KEYS = {"ctx": ("use_ctx", "ctx_weight"), "emotion": ("use_emo", "emo_weight"), "sem": ("use_sem", "sem_weight")}


def dataclass_from_dict(cls, values: dict):
    """cls(**values), refusing keys that are not fields of the dataclass (naming them)."""
    unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}")
    return cls(**values)


@dataclass
class SelectorConfig:
    """Everything needed to rebuild a `StickerSelectorModel` (the BERT config included).

    `task_weights`: training task name (core.tasks) -> its loss weight; the paper's by default
    (L = L_main + 0.05 L_ctx + 0.2 L_emo + 0.1 L_sem). A task absent or at weight 0 is neither
    computed nor trained. Older configs' use_ctx/use_emo/use_sem and *_weight keys still load.
    """

    backbone: dict = field(default_factory=dict)      # transformers BertConfig.to_dict()
    backbone_name: str = ""                          # where the text encoder came from
    image_encoder: str = "efficientnet_lite0"
    image_feature_dim: int = 1280
    ocr_slots: int = 11
    max_length: int = 96
    speaker_tokens: list[str] = field(default_factory=lambda: ["[speaker1]", "[speaker2]"])
    emotion_names: list[str] = field(default_factory=list)
    task_weights: dict[str, float] = field(default_factory=lambda: dict(PAPER_TASK_WEIGHTS))
    ocr_in_inputs: bool = True       # Appendix C: the OCR run is filled in the other tasks' inputs
    semantic_source: str = "ocr"     # "ocr_or_name": stickers without OCR text use their name
    mask_probability: float = 0.15
    classifier_dropout: float = 0.1
    match_pooling: str = "cls"       # "cls" (paper) | "cls+sticker": [CLS] and the sticker slot
    # Late interaction (not in the paper): below the last layer the dialogue and the sticker part
    # attend only within themselves; the last layer attends across. The sticker part gets fixed
    # positions (the last ocr_slots + 2 of max_length). Lets core.serving.fast_ranking encode a dialogue
    # once and score every sticker with one cheap layer, exactly (see README "Speed").
    late_interaction: bool = False
    # The checkpoint's other scoring parts, by role -> file name in the checkpoint folder:
    # "prior" (core.serving.prior.StickerPrior), "text_scorer" (core.serving.text_scorer.TextScorer). Written by
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
        from core.tasks import active_tasks  # (here: core.tasks imports the model, which imports this module)

        if not active_tasks(self.task_weights):
            raise ValueError(f"task_weights={self.task_weights} turns every task off")
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

    def task_weight(self, name: str) -> float:
        """The loss weight of a task (0: not trained)."""
        return float(self.task_weights.get(name, 0.0))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> "SelectorConfig":
        return dataclass_from_dict(cls, task_weights_from_old_keys(values))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "SelectorConfig":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def task_weights_from_old_keys(values: dict) -> dict:
    """A config dict written before task_weights (use_ctx/use_emo/use_sem, ctx_weight/emo_weight/
    sem_weight; absent ones at their old defaults: on, the paper's weight) with task_weights instead."""
    old = [key for keys in OLD_TASK_KEYS.values() for key in keys if key in values]
    if not old:
        return values
    if "task_weights" in values:
        raise ValueError(f"config has both task_weights and the older keys {old}; keep task_weights only")
    values = dict(values)
    weights = {"match": PAPER_TASK_WEIGHTS["match"]}
    for task, (flag, weight_key) in OLD_TASK_KEYS.items():
        on, weight = values.pop(flag, True), values.pop(weight_key, PAPER_TASK_WEIGHTS[task])
        if on and weight > 0:
            weights[task] = float(weight)
    values["task_weights"] = weights
    return values


def _paper_tasks(*names: str) -> dict:
    return {"task_weights": {name: PAPER_TASK_WEIGHTS[name] for name in ("match", *names)}}


# The paper's ablations (Table 1) and the Appendix C variant, as overrides of SelectorConfig.
PRESETS: dict[str, dict] = {
    "mmbert": _paper_tasks(),
    "mmbert+ctx": _paper_tasks("ctx"),
    "mmbert+ctx+emo": _paper_tasks("ctx", "emotion"),
    "full": _paper_tasks("ctx", "emotion", "sem"),
    "full-no-ocr-inputs": {**_paper_tasks("ctx", "emotion", "sem"), "ocr_in_inputs": False},
}


def preset_overrides(name: str) -> dict:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return copy.deepcopy(PRESETS[name])
