"""core.training.text_encoder: contrastive fine-tuning of a sentence encoder and its tuned-layer files."""
import pytest
import torch

from core.model.backbone import tiny_backbone
from core.training.text_encoder import (FinetuneSettings, SentenceModel, _hf_tokenize, finetune, load_tuned_layers,
                               save_tuned_layers)

DIALOGUES = ["今天好开心呀", "哈哈太好笑了", "我好难过想哭", "呜呜伤心", "气死我了", "真让人生气", "晚安睡觉了", "好困去睡了"]
STICKERS = ["开心", "好笑", "难过", "哭", "生气", "愤怒", "晚安", "睡觉"]
GOLD = [0, 1, 2, 3, 4, 5, 6, 7]


def tiny_model(seed: int = 0) -> SentenceModel:
    bert, tokenizer = tiny_backbone(DIALOGUES + STICKERS, seed=seed)
    return SentenceModel(bert, _hf_tokenize(tokenizer), prefix="", max_length=16)


def contrastive_loss(model: SentenceModel) -> float:
    d, s = model.embed(DIALOGUES), model.embed(STICKERS)
    return float(torch.nn.functional.cross_entropy(d @ s.t() / 0.05, torch.tensor(GOLD)))


def test_finetune_lowers_the_loss_and_trains_only_the_top_layers():
    model = tiny_model()
    before = contrastive_loss(model)
    frozen = {k: v.clone() for k, v in model.bert.state_dict().items()}
    first = finetune(model, DIALOGUES, GOLD, STICKERS, known=range(8),
                     settings=FinetuneSettings(epochs=40, layers=1, lr=5e-3, batch_size=4, negatives=4, warmup_steps=1))
    assert first == 1 and contrastive_loss(model) < 0.5 * before
    changed = {k for k, v in model.bert.state_dict().items() if not torch.equal(v, frozen[k])}
    assert changed and all(k.startswith("encoder.layer.1.") for k in changed)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_tuned_layers_round_trip_and_errors(tmp_path):
    model = tiny_model()
    finetune(model, DIALOGUES, GOLD, STICKERS, known=range(8),
             settings=FinetuneSettings(epochs=2, layers=1, lr=1e-3, batch_size=4, negatives=2, warmup_steps=1))
    save_tuned_layers(model, tmp_path / "tuned.safetensors", first_layer=1)
    other = tiny_model()
    assert not torch.allclose(other.embed(DIALOGUES), model.embed(DIALOGUES), atol=1e-3)
    load_tuned_layers(other, tmp_path / "tuned.safetensors")
    assert torch.allclose(other.embed(DIALOGUES), model.embed(DIALOGUES), atol=1e-2)  # fp16 on disk

    with pytest.raises(ValueError, match="missing"):
        load_tuned_layers(other, tmp_path / "nothing.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="corrupt"):
        load_tuned_layers(other, tmp_path / "bad.safetensors")
    bigger, tokenizer = tiny_backbone(DIALOGUES, hidden=48, seed=0)
    with pytest.raises(ValueError, match="does not fit"):
        load_tuned_layers(SentenceModel(bigger, _hf_tokenize(tokenizer)), tmp_path / "tuned.safetensors")


def test_finetune_refuses_bad_settings():
    model = tiny_model()
    with pytest.raises(ValueError, match="layers=5"):
        finetune(model, DIALOGUES, GOLD, STICKERS, range(8), FinetuneSettings(layers=5))
    with pytest.raises(ValueError, match="3 dialogue texts"):
        finetune(model, DIALOGUES[:3], GOLD, STICKERS, range(8), FinetuneSettings())
