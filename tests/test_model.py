"""Tiny-config tests of the selector: every head, loss masking, the objective, checkpoints."""
import pytest
import torch

from core.model.checkpoint import CheckpointError, load_selector, save_selector
from core.model.config import PRESETS, SelectorConfig
from core.model.factory import create_model
from core.model.features import PairEncoder, collate_pairs, mask_context, ocr_labels_batch
from core.model.mmbert import IGNORE_INDEX
from core.training.objective import MultitaskObjective
from core.model.sticker_bank import StickerBank

TEXTS = ["你好呀今天天气真好", "一二三", "再见啦", "好的好的", "哈哈哈太好笑了", "hello world"]
EMOTIONS = ["乐", "好", "怒"]


def tiny(preset="full", **overrides):
    torch.manual_seed(0)
    return create_model("tiny", preset=preset, tiny_texts=TEXTS, image_feature_dim=8,
                        emotion_names=EMOTIONS, max_length=40, image_encoder="random_projection:8",
                        **overrides)


def bank(encoder, n=4):
    texts = ["再见啦", "好的好的", "", "哈哈"][:n]
    return StickerBank(ids=[f"{i:03d}" for i in range(n)], features=torch.randn(n, 8),
                       semantic_texts=texts, emotion_labels=[0, 1, -100, 2][:n]).tokenize(encoder)


def samples(n=3):
    return [{"sample_id": f"d#{i}", "speakers": ["[speaker1]", "[speaker2]"],
             "texts": ["你好呀", "今天天气真好" * (i + 1)], "sticker_id": f"{i % 4:03d}",
             "emotion_id": -1} for i in range(n)]


def test_layout_and_truncation_keep_recent_tokens():
    model, tok = tiny()
    enc = PairEncoder(tok, model.config)
    long_texts = ["一" * 50, "二" * 50, "三三三"]
    ctx = enc.context_ids(["[speaker1]", "[speaker2]", "[speaker1]"], long_texts)
    assert len(ctx) == enc.context_budget
    assert tok.convert_ids_to_tokens(ctx[-3:]) == ["三", "三", "三"]  # the newest turn survives
    pair = enc.build(ctx, enc.ocr_ids("好的"))
    assert len(pair.input_ids) == model.config.max_length
    slots = model.config.ocr_slots
    run = pair.input_ids[pair.ocr_positions[0]:pair.ocr_positions[-1] + 1]
    assert run[:slots - 2] == [tok.mask_token_id] * (slots - 2)  # right-aligned, [MASK]-padded
    assert tok.convert_ids_to_tokens(run[-2:]) == ["好", "的"]
    assert pair.input_ids[-1] == tok.sep_token_id and pair.sticker_position == len(pair.input_ids) - 2
    assert pair.token_type_ids[pair.ocr_positions[0]] == 1 and pair.token_type_ids[0] == 0
    assert pair.ocr_labels[-2:] == run[-2:] and pair.ocr_labels[0] == IGNORE_INDEX


def test_every_head_shapes_and_losses():
    model, tok = tiny()
    enc = PairEncoder(tok, model.config)
    b = bank(enc)
    pairs = [enc.build(enc.context_ids(s["speakers"], s["texts"]), b.ocr_ids[i]) for i, s in enumerate(samples())]
    batch = collate_pairs(pairs, enc.pad_id)
    batch["sticker_features"] = b.features[:3]
    out = model(**batch)
    B, T = batch["input_ids"].shape
    assert out.match_logits.shape == (B, 2) and out.hidden_states.shape[:2] == (B, T)
    assert out.emotion_logits.shape == (B, len(EMOTIONS))
    assert out.losses is None and out.mlm_logits is None  # no labels, no loss
    labels = ocr_labels_batch(pairs, T)
    out = model(**batch, match_labels=torch.tensor([1, 0, 1]), mlm_labels=labels,
                emotion_labels=torch.tensor([0, IGNORE_INDEX, 2]))
    assert set(out.losses) == {"match", "mlm", "emotion"}
    assert out.mlm_logits.shape == (int((labels != IGNORE_INDEX).sum()), model.config.backbone["vocab_size"])
    assert all(torch.isfinite(v) for v in out.losses.values())


def test_emotion_loss_is_zero_not_nan_without_labels():
    model, tok = tiny()
    enc = PairEncoder(tok, model.config)
    pairs = [enc.build(enc.context_ids(["[speaker1]"], ["你好"]), [])] * 2
    batch = collate_pairs(pairs, enc.pad_id)
    batch["sticker_features"] = torch.randn(2, 8)
    out = model(**batch, emotion_labels=torch.tensor([IGNORE_INDEX, IGNORE_INDEX]))
    assert out.losses["emotion"].item() == 0.0
    out.losses["emotion"].backward()  # still differentiable


def test_mask_context_touches_only_dialogue_tokens():
    model, tok = tiny()
    enc = PairEncoder(tok, model.config)
    pair = enc.build(enc.context_ids(["[speaker1]", "[speaker2]"], ["你好呀今天", "天气真好"]), enc.ocr_ids("再见"))
    batch = collate_pairs([pair], enc.pad_id)
    masked, labels = mask_context(batch["input_ids"], [pair], 0.5, enc.mask_id, len(tok),
                                  torch.Generator().manual_seed(0), sorted(enc.special_ids))
    changed = (labels != IGNORE_INDEX).nonzero()[:, 1].tolist()
    assert changed and set(changed) <= set(pair.context_positions)
    untouched = [i for i in range(len(pair.input_ids)) if i not in changed]
    assert masked[0, untouched].tolist() == batch["input_ids"][0, untouched].tolist()


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_objective_runs_each_preset(preset):
    model, tok = tiny(preset)
    enc = PairEncoder(tok, model.config)
    objective = MultitaskObjective(model, enc, bank(enc))
    losses = objective(samples(), torch.Generator().manual_seed(0))
    assert set(losses) == {"loss"} | set(PRESETS[preset]["task_weights"])
    losses["loss"].backward()
    grad = model.sticker_projection.weight.grad
    assert grad is not None and torch.isfinite(grad).all()


@pytest.mark.parametrize("preset", ["mmbert", "full"])
def test_in_batch_objective_on_a_late_interaction_model(preset):
    model, tok = tiny(preset, late_interaction=True)
    enc = PairEncoder(tok, model.config)
    objective = MultitaskObjective(model, enc, bank(enc), match_loss="in_batch", in_batch_negatives=3)
    losses = objective(samples(5), torch.Generator().manual_seed(0))
    assert torch.isfinite(losses["loss"]) and losses["match"] > 0
    assert ("emotion" in losses) == (model.config.task_weight("emotion") > 0)
    losses["loss"].backward()
    assert torch.isfinite(model.sticker_projection.weight.grad).all()
    assert model.bert.encoder.layer[0].attention.self.query.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="late-interaction"):
        MultitaskObjective(tiny()[0], enc, bank(enc), match_loss="in_batch")
    with pytest.raises(ValueError, match="match_loss"):
        MultitaskObjective(model, enc, bank(enc), match_loss="listwise")


def test_in_batch_loss_is_the_gold_cross_entropy_among_the_batch_stickers():
    model, tok = tiny("mmbert", late_interaction=True)
    model.eval()
    enc = PairEncoder(tok, model.config)
    b = bank(enc)
    objective = MultitaskObjective(model, enc, b, match_loss="in_batch", in_batch_negatives=0)
    batch = samples(3)  # golds 000, 001, 002
    loss = objective(batch, torch.Generator().manual_seed(0))["match"]
    from core.evaluation.protocol import score_candidates
    scores = torch.stack([score_candidates(model, enc, b, objective.contexts(s), [0, 1, 2]) for s in batch])
    assert torch.allclose(loss, torch.nn.functional.cross_entropy(scores, torch.tensor([0, 1, 2])), atol=1e-5)


def test_loss_weights_combine_as_configured():
    model, tok = tiny(task_weights={"match": 1.0, "ctx": 0.5, "emotion": 0.25, "sem": 2.0})
    model.eval()  # no dropout: the same batch gives the same parts
    enc = PairEncoder(tok, model.config)
    losses = MultitaskObjective(model, enc, bank(enc))(samples(), torch.Generator().manual_seed(1))
    expected = losses["match"] + 0.5 * losses["ctx"] + 0.25 * losses["emotion"] + 2.0 * losses["sem"]
    assert torch.allclose(losses["loss"], expected)


def test_checkpoint_round_trip_and_corruption(tmp_path):
    model, tok = tiny()
    save_selector(tmp_path / "ckpt", model, tok, dtype=torch.float16)
    loaded, tok2 = load_selector(tmp_path / "ckpt")
    assert loaded.config == model.config and len(tok2) == len(tok)
    assert loaded.mlm_head.word_embeddings.weight is loaded.bert.embeddings.word_embeddings.weight  # re-tied
    for name, value in model.state_dict().items():
        assert torch.allclose(loaded.state_dict()[name], value.half().float(), atol=1e-3), name
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_selector(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="missing"):
        load_selector(tmp_path / "nowhere")


def test_config_rejects_bad_values():
    with pytest.raises(ValueError, match="semantic_source"):
        SelectorConfig(semantic_source="pixels")
    with pytest.raises(ValueError, match="max_length=10"):
        SelectorConfig(max_length=10)
    with pytest.raises(ValueError, match="unknown SelectorConfig fields"):
        SelectorConfig.from_dict({"colour": 1})
