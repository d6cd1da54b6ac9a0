"""Default locations used by the entry points (core never hard-codes paths)."""
from __future__ import annotations

import os
from pathlib import Path

from assets import DEFAULT_MODEL_DIR  # noqa: F401  (re-exported for the entry points)
from core.serving.text_scorer import safe_name  # noqa: F401  (re-exported for the entry points)

REPO = Path(__file__).resolve().parents[1]


def shared_data_dir() -> Path:
    return Path(os.environ.get("SHARED_DATA_DIR", REPO.parent / "shared" / "data"))


def default_data_dir() -> Path:
    return Path(os.environ.get("MOD_DATA_DIR", shared_data_dir() / "mod"))


def default_lexicon() -> Path | None:
    path = shared_data_dir() / "lexicon" / "dutir_emotion_ontology.xlsx"
    return path if path.exists() else None


def cache_dir() -> Path:
    return Path(os.environ.get("STICKER_CACHE_DIR", Path.home() / ".cache" / "sticker-selector"))


def alignment_cache_dir() -> Path:
    """Where the sticker-id alignment check keeps its sentence embeddings."""
    return REPO / "runs" / "alignment"


def default_feature_cache(encoder_name: str) -> Path:
    return cache_dir() / f"features-{safe_name(encoder_name)}.safetensors"


def print_and_write_json(result: dict, output: str | None) -> str:
    """Prints `result` as JSON and, when `output` is given, writes the same text there."""
    import json

    text = json.dumps(result, ensure_ascii=False, indent=2)
    print(text)
    if output:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
    return text
