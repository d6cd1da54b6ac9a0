"""The late-interaction fast path gives the same scores as one full sequence per sticker."""
import pytest
import torch
from PIL import Image

from core.data.mod import Sticker
from core.evaluation.protocol import score_candidates
from core.serving.fast_ranking import LateInteractionRanker, StickerPartCache, model_fingerprint
from core.model.features import dialogue_part_batch, sticker_part_ids
from core.serving.inference import StickerSelector
from core.model.mmbert import late_interaction_masks

DIALOGUE = ["你好呀", "今天天气真好", "哈哈哈谢谢"]


@pytest.fixture(scope="module")
def stickers(mini_stickers):
    return mini_stickers


def exhaustive_logits(selector, context):
    rows = list(range(len(selector.bank.ids)))
    return score_candidates(selector.model, selector.encoder, selector.bank, context, rows, batch_size=7)


@pytest.mark.parametrize("overrides", [
    dict(match_pooling="cls+sticker"),
    dict(match_pooling="cls"),
    dict(match_pooling="cls+sticker", ocr_in_inputs=False),
])
def test_fast_path_equals_full_sequences(stickers, overrides):
    selector = StickerSelector.tiny_random(stickers, seed=3, late_interaction=True, **overrides)
    context = selector.context_ids(DIALOGUE)
    fast, emotions = selector.fast.logits(context, with_emotions=True)
    full = exhaustive_logits(selector, context)
    torch.testing.assert_close(fast[:, 1], full, atol=1e-5, rtol=1e-4)
    _, _, full_emotions = selector._score(context, list(range(len(selector.bank.ids))), exhaustive=True)
    torch.testing.assert_close(emotions.softmax(-1), full_emotions, atol=1e-5, rtol=1e-4)
    subset = [2, 0]
    torch.testing.assert_close(selector.fast.logits(context, subset)[0][:, 1], full[subset], atol=1e-5, rtol=1e-4)


def test_rank_uses_fast_path_and_matches_exhaustive(stickers, monkeypatch):
    selector = StickerSelector.tiny_random(stickers, seed=1, late_interaction=True)
    ranked = selector.rank(DIALOGUE, semantic_top_k=2)
    context = selector.context_ids(DIALOGUE)
    full = exhaustive_logits(selector, context)
    expected = [selector.bank.ids[i] for i in full.argsort(descending=True).tolist()]
    assert [r.sticker_id for r in ranked] == expected
    calls = []
    monkeypatch.setattr(selector.fast, "logits", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(RuntimeError))
    with pytest.raises(RuntimeError):
        selector.rank(DIALOGUE)
    assert calls  # rank() went through the fast path


def test_added_sticker_is_scored_exactly(stickers, tmp_path):
    selector = StickerSelector.tiny_random(stickers, seed=2, late_interaction=True)
    image = tmp_path / "new.png"
    Image.new("RGB", (32, 32), (200, 40, 90)).save(image)
    selector.add_sticker(Sticker("new1", "new.png", image, "新的贴纸", "新的"))
    context = selector.context_ids(DIALOGUE)
    fast = selector.fast.logits(context)[0][:, 1]
    assert fast.shape[0] == len(selector.bank.ids)
    torch.testing.assert_close(fast, exhaustive_logits(selector, context), atol=1e-5, rtol=1e-4)


def test_dialogue_part_ignores_the_sticker_below_the_last_layer():
    types = torch.tensor([[0, 0, 0, 1, 1, 0]])      # last position is padding
    real = torch.tensor([[1, 1, 1, 1, 1, 0]])
    within, across = late_interaction_masks(types, real, torch.float32)
    allowed = within[0, 0] == 0
    assert allowed[:3, :3].all() and not allowed[:3, 3:].any()
    assert allowed[3:5, 3:5].all() and not allowed[3:5, :3].any()
    assert not (across[0, 0][:, 5] == 0).any() and (across[0, 0][:, :5] == 0).all()


def test_paper_model_is_refused(mini_selector):
    selector = mini_selector
    assert selector.fast is None
    with pytest.raises(ValueError, match="late_interaction"):
        LateInteractionRanker(selector.model, selector.encoder, selector.bank)


def test_fast_semantic_labels_equal_full_sequences(stickers):
    selector = StickerSelector.tiny_random(stickers, seed=4, late_interaction=True)
    context = selector.context_ids(DIALOGUE)
    rows = list(range(len(selector.bank.ids)))
    fast = selector.fast.masked_ocr_logits(context, rows)
    pairs = [selector.encoder.build(context, selector.bank.ocr_ids[r], mask_ocr=True) for r in rows]
    batch = selector._batch(pairs, rows)
    with torch.inference_mode():
        hidden = selector.model.encode(**batch)
        positions = torch.tensor([p.ocr_positions for p in pairs])
        full = selector.model.predict_masked(hidden, positions)
    torch.testing.assert_close(fast, full, atol=1e-4, rtol=1e-4)
    assert selector.semantic_labels(context, rows) == selector.semantic_labels(context, rows, exhaustive=True)


def test_cross_logits_of_every_pair_equal_full_sequences(stickers):
    """The training path (B dialogues x C stickers in one layer) equals one sequence per pair."""
    selector = StickerSelector.tiny_random(stickers, seed=5, late_interaction=True)
    model, encoder, bank = selector.model, selector.encoder, selector.bank
    contexts = [selector.context_ids(d) for d in (DIALOGUE, ["好的"], ["我错了对不起", "没关系", "哈哈"])]
    ids, mask = dialogue_part_batch(encoder, contexts)
    rows = [0, 3, 1, 5]
    sticker_ids = torch.tensor([sticker_part_ids(encoder, bank.ocr_ids[r]) for r in rows])
    with torch.inference_mode():
        logits, emotions = model.cross_logits(model.encode_dialogue_part(ids, mask), mask,
                                              model.encode_sticker_part(sticker_ids, bank.features[rows]),
                                              compute_emotions=True)
    assert logits.shape == (3, 4, 2) and emotions.shape[:2] == (3, 4)
    for i, c in enumerate(contexts):
        full = score_candidates(model, encoder, bank, c, rows)
        torch.testing.assert_close(logits[i, :, 1], full, atol=1e-5, rtol=1e-4)


def test_sticker_part_cache_is_exact_and_reused(stickers, tmp_path):
    selector = StickerSelector.tiny_random(stickers, seed=6, late_interaction=True)
    context = selector.context_ids(DIALOGUE)
    path = tmp_path / "parts.safetensors"
    expected = selector.fast.logits(context)[0]
    expected_ocr = selector.fast.masked_ocr_logits(context, [0, 2])

    def cached_ranker():
        return LateInteractionRanker(selector.model, selector.encoder, selector.bank,
                                     cache=StickerPartCache(path, model_fingerprint(selector.model)))

    first = cached_ranker()                  # fills the file
    first.masked_ocr_logits(context, [0])     # and the masked variant
    assert path.is_file()
    second = cached_ranker()
    calls = []
    original = selector.model.encode_sticker_part
    selector.model.encode_sticker_part = lambda *a, **k: calls.append(1) or original(*a, **k)
    try:
        torch.testing.assert_close(second.logits(context)[0], expected, atol=0, rtol=0)
        torch.testing.assert_close(second.masked_ocr_logits(context, [0, 2]), expected_ocr, atol=0, rtol=0)
    finally:
        del selector.model.encode_sticker_part
    assert not calls  # everything came from the file


def test_sticker_part_cache_of_another_model_or_corrupt_is_not_used(stickers, tmp_path):
    path = tmp_path / "parts.safetensors"
    one = StickerSelector.tiny_random(stickers, seed=7, late_interaction=True)
    other = StickerSelector.tiny_random(stickers, seed=8, late_interaction=True)
    assert model_fingerprint(one.model) != model_fingerprint(other.model)
    LateInteractionRanker(one.model, one.encoder, one.bank, cache=StickerPartCache(path, model_fingerprint(one.model)))
    context = other.context_ids(DIALOGUE)
    ranker = LateInteractionRanker(other.model, other.encoder, other.bank,
                                   cache=StickerPartCache(path, model_fingerprint(other.model)))
    torch.testing.assert_close(ranker.logits(context)[0], other.fast.logits(context)[0], atol=1e-6, rtol=0)
    path.write_bytes(b"not a safetensors file")
    ranker = LateInteractionRanker(other.model, other.encoder, other.bank,
                                   cache=StickerPartCache(path, model_fingerprint(other.model)))
    torch.testing.assert_close(ranker.logits(context)[0], other.fast.logits(context)[0], atol=1e-6, rtol=0)
    assert StickerPartCache(path, model_fingerprint(other.model)).get(
        StickerPartCache.key(sticker_part_ids(other.encoder, other.bank.ocr_ids[0]), other.bank.features[0])) is not None


def test_unwritable_sticker_part_cache_only_warns(stickers, tmp_path, caplog):
    selector = StickerSelector.tiny_random(stickers, seed=9, late_interaction=True)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    cache = StickerPartCache(blocker / "parts.safetensors", model_fingerprint(selector.model))
    ranker = LateInteractionRanker(selector.model, selector.encoder, selector.bank, cache=cache)
    context = selector.context_ids(DIALOGUE)
    torch.testing.assert_close(ranker.logits(context)[0], selector.fast.logits(context)[0], atol=1e-6, rtol=0)
    assert "cannot write the sticker part cache" in caplog.text
