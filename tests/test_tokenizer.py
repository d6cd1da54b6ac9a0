"""core.model.tokenizer reads a saved tokenizer exactly as transformers' PreTrainedTokenizerFast does."""
import pytest
from transformers import PreTrainedTokenizerFast

from assets import DEFAULT_MODEL_DIR
from core.model.backbone import add_speaker_tokens, tiny_backbone
from core.model.tokenizer import SelectorTokenizer

TEXTS = ["今天好累啊", "Hello world, I'm fine!", "[speaker1] 哈哈😀 ok", "  ", "<mask> x", "中英 mixed 文本 123",
         "ＦＵＬＬ　ｗｉｄｔｈ", "\u200b零宽"]


def compare(ours, reference):
    for name in ("cls_token_id", "sep_token_id", "pad_token_id", "mask_token_id", "unk_token_id"):
        assert getattr(ours, name) == getattr(reference, name), name
    assert sorted(ours.all_special_ids) == sorted(reference.all_special_ids)
    assert len(ours) == len(reference)
    assert ours.get_vocab() == reference.get_vocab()
    for text in TEXTS:
        for special in (True, False):
            ids = ours(text, add_special_tokens=special)["input_ids"]
            assert ids == reference(text, add_special_tokens=special)["input_ids"], text
            assert ours.convert_ids_to_tokens(ids) == reference.convert_ids_to_tokens(ids)
            for skip in (True, False):
                assert ours.decode(ids, skip_special_tokens=skip) == reference.decode(ids, skip_special_tokens=skip)
    assert ours.convert_tokens_to_ids(["[speaker2]", "no-such-piece"]) == \
        reference.convert_tokens_to_ids(["[speaker2]", "no-such-piece"])


def test_default_model_tokenizer_matches_transformers():
    compare(SelectorTokenizer.from_pretrained(DEFAULT_MODEL_DIR),
            PreTrainedTokenizerFast.from_pretrained(str(DEFAULT_MODEL_DIR)))


def test_tiny_tokenizer_round_trip(tmp_path):
    model, tokenizer = tiny_backbone(TEXTS)
    add_speaker_tokens(model, tokenizer, ["[speaker1]", "[speaker2]"])
    tokenizer.save_pretrained(str(tmp_path / "saved"))
    ours = SelectorTokenizer.from_pretrained(tmp_path / "saved")
    compare(ours, PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "saved")))
    ours.save_pretrained(tmp_path / "again")  # what train.ship does with a loaded checkpoint
    compare(SelectorTokenizer.from_pretrained(tmp_path / "again"),
            PreTrainedTokenizerFast.from_pretrained(str(tmp_path / "again")))


def test_non_text_is_refused():
    with pytest.raises(TypeError, match="int"):
        SelectorTokenizer.from_pretrained(DEFAULT_MODEL_DIR)(5)
