"""The tokenizer of a saved selector, on the `tokenizers` library alone.

A checkpoint folder holds transformers' fast-tokenizer files (tokenizer.json, tokenizer_config.json).
Loading them through transformers costs ~1 s of imports on 2 cores, a third of the demo's start-up
budget, so saved models are read with this class instead. It offers the part of the
PreTrainedTokenizerFast interface that the selector uses (special-token ids, encoding without
special tokens, decoding, piece lookup, save_pretrained) and gives the same ids and strings
(tests/test_tokenizer.py compares the two). Training still builds tokenizers with transformers.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

from tokenizers import Tokenizer

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_ROLES = ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token")


def _content(value) -> str | None:
    """A special token entry as saved by transformers: a string or {"content": ...}."""
    if isinstance(value, dict):
        return value.get("content")
    return value if isinstance(value, str) else None


class SelectorTokenizer:
    def __init__(self, backend: Tokenizer, config: dict):
        self.backend = backend
        self.config = config
        backend.no_truncation()
        backend.no_padding()
        self.special_tokens = {role: _content(config.get(role)) for role in SPECIAL_ROLES}
        extra = config.get("extra_special_tokens", config.get("additional_special_tokens", []))
        if isinstance(extra, dict):  # named extra tokens
            extra = list(extra.values())
        self.extra_special_tokens = [t for t in (_content(e) for e in extra or []) if t]
        self.clean_up_tokenization_spaces = bool(config.get("clean_up_tokenization_spaces", False))

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> "SelectorTokenizer":
        directory = Path(directory)
        config_path = directory / TOKENIZER_CONFIG_FILE
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        if not isinstance(config, dict):
            raise ValueError(f"{config_path} does not hold a JSON object")
        return cls(Tokenizer.from_file(str(directory / TOKENIZER_FILE)), config)

    # special tokens ----------------------------------------------------------------------
    def _special_id(self, role: str) -> int | None:
        token = self.special_tokens.get(role)
        return None if token is None else self.backend.token_to_id(token)

    cls_token_id = property(lambda self: self._special_id("cls_token"))
    sep_token_id = property(lambda self: self._special_id("sep_token"))
    pad_token_id = property(lambda self: self._special_id("pad_token"))
    mask_token_id = property(lambda self: self._special_id("mask_token"))
    unk_token_id = property(lambda self: self._special_id("unk_token"))

    @property
    def all_special_tokens(self) -> list[str]:
        tokens = [t for t in self.special_tokens.values() if t] + self.extra_special_tokens
        return list(dict.fromkeys(tokens))

    @property
    def all_special_ids(self) -> list[int]:
        return [self.convert_tokens_to_ids(t) for t in self.all_special_tokens]

    # vocabulary ----------------------------------------------------------------------------
    def get_vocab(self) -> dict[str, int]:
        return self.backend.get_vocab(with_added_tokens=True)

    def __len__(self) -> int:
        return self.backend.get_vocab_size(with_added_tokens=True)

    def convert_tokens_to_ids(self, tokens: str | Iterable[str]):
        if isinstance(tokens, str):
            found = self.backend.token_to_id(tokens)
            return self.unk_token_id if found is None else found
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def convert_ids_to_tokens(self, ids: int | Iterable[int]):
        if isinstance(ids, int):
            return self.backend.id_to_token(ids)
        return [self.backend.id_to_token(int(i)) for i in ids]

    # text ----------------------------------------------------------------------------------
    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return {"input_ids": self.backend.encode(text, add_special_tokens=add_special_tokens).ids}

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        text = self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        if self.clean_up_tokenization_spaces:
            for before, after in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"),
                                  (" n't", "n't"), (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
                text = text.replace(before, after)
        return text

    def save_pretrained(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.backend.save(str(directory / TOKENIZER_FILE))
        (directory / TOKENIZER_CONFIG_FILE).write_text(json.dumps(self.config, ensure_ascii=False, indent=2),
                                                      encoding="utf-8")
