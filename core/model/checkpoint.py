"""Model checkpoints: a folder with config.json, model.safetensors and the tokenizer files.

No pickle: weights are safetensors, the config is JSON. Saving is atomic (write a sibling
temporary folder, then rename), so a kill during a save never leaves a half-written model.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from core.model.config import SelectorConfig
from core.model.mmbert import StickerSelectorModel
from core.model.tokenizer import SelectorTokenizer

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TIED_KEYS = ("mlm_head.word_embeddings.weight",)  # same tensor as the BERT word embeddings


class CheckpointError(RuntimeError):
    pass


def atomic_directory_write(target: str | Path, write) -> Path:
    """Calls write(tmp_dir), then swaps tmp_dir into place of `target`."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        write(tmp)
        tmp.chmod(0o755)  # mkdtemp makes 0700; a model folder is meant to be shared
        for path in tmp.rglob("*"):
            if path.is_file():
                path.chmod(0o644)
                with open(path, "rb") as handle:
                    os.fsync(handle.fileno())
            elif path.is_dir():
                path.chmod(0o755)
        old = target.with_name(f".{target.name}.old")
        if old.exists():
            shutil.rmtree(old)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
        if old.exists():
            shutil.rmtree(old)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_state_for_saving(model: StickerSelectorModel, dtype: torch.dtype | None = None) -> dict:
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in TIED_KEYS}
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    return state


def save_selector(directory: str | Path, model: StickerSelectorModel, tokenizer,
                  extra: dict | None = None, dtype: torch.dtype | None = None) -> Path:
    """Writes the model folder atomically; `dtype=torch.float16` halves the file size."""
    def write(tmp: Path) -> None:
        model.config.save(tmp / CONFIG_FILE)
        save_file(model_state_for_saving(model, dtype), str(tmp / WEIGHTS_FILE),
                  metadata={"format": "pt"})
        tokenizer.save_pretrained(str(tmp))
        if extra is not None:
            (tmp / "training_info.json").write_text(json.dumps(extra, ensure_ascii=False, indent=2))

    return atomic_directory_write(directory, write)


def load_selector(directory: str | Path, device: str | torch.device = "cpu"
                  ) -> tuple[StickerSelectorModel, SelectorTokenizer]:
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory / name} is missing: not a selector checkpoint folder")
    try:
        config = SelectorConfig.load(directory / CONFIG_FILE)
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{directory / CONFIG_FILE} is not a valid selector config: {error}") from error
    try:
        state = load_file(str(directory / WEIGHTS_FILE))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{directory / WEIGHTS_FILE} is corrupt or unreadable: {error}") from error
    model = StickerSelectorModel(config)  # (not on the meta device: that imports torch._dynamo, +2 s)
    expected = {k: v for k, v in model.state_dict().items() if k not in TIED_KEYS}
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    bad_shapes = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or bad_shapes:
        raise CheckpointError(f"{directory / WEIGHTS_FILE} does not match its config: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}, wrong shapes {bad_shapes[:5]}")
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state, strict=False)
    try:
        tokenizer = SelectorTokenizer.from_pretrained(directory)
    except Exception as error:  # tokenizers raises its own exception types
        raise CheckpointError(f"tokenizer files in {directory} are unreadable: {error}") from error
    return model.to(device).eval(), tokenizer
