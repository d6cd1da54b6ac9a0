"""StickerSelector on a tiny random model: ranking, emotions, semantic labels, saliency, new stickers."""
import math

import pytest
from PIL import Image

from core.data.mod import Sticker, UnknownStickerError


@pytest.fixture(scope="module")
def selector(make_tiny_selector, mini_stickers):
    return make_tiny_selector(mini_stickers)


def test_rank_all_and_subset(selector):
    ranked = selector.rank(["你好呀", "今天天气真好", "哈哈哈"])
    assert [r.rank for r in ranked] == list(range(1, len(selector.sticker_ids()) + 1))
    assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:]))
    top = ranked[0]
    assert len(top.emotions) == 3 and abs(sum(p for _, p in top.emotions)) <= 1.0 + 1e-6
    assert isinstance(top.semantic_label, str) and 0.0 <= top.probability <= 1.0
    subset = selector.rank(["你好"], candidate_ids=["001", "3"])
    assert sorted(r.sticker_id for r in subset) == ["001", "003"]


def test_bad_input_is_refused_clearly(selector):
    with pytest.raises(ValueError, match="empty"):
        selector.rank(["", "   "])
    with pytest.raises(UnknownStickerError, match="999"):
        selector.rank(["你好"], candidate_ids=["999"])
    ranked = selector.rank(["好" * 100_000])  # huge input: the most recent tokens are kept
    assert len(ranked) == len(selector.sticker_ids())


def test_saliency_both_methods(selector):
    steps = []
    for method in ("gradient", "integrated_gradients"):
        tokens = selector.saliency(["你好呀", "再见"], "001", method=method, n_steps=8,
                                   progress=lambda f, msg: steps.append(f))
        assert [t for t, _ in tokens] == ["你", "好", "[UNK]", "再", "见"]
        assert all(score >= 0 for _, score in tokens) and any(score > 0 for _, score in tokens)
    assert steps and steps[-1] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="method"):
        selector.saliency(["你好"], "001", method="magic")


def test_added_sticker_is_ranked_at_once(selector):
    image = Image.new("RGB", (64, 64), (10, 200, 30))
    selector.add_sticker(Sticker("user-0001", None, None, "加油", "加油"), image=image)
    ranked = selector.rank(["我们去玩吧"])
    assert "user-0001" in [r.sticker_id for r in ranked]
    with pytest.raises(ValueError, match="already exists"):
        selector.add_sticker(Sticker("user-0001", None, None, "", ""), image=image)


def test_rank_reports_the_prior_share_of_each_score(selector):
    from core.serving.prior import StickerPrior

    dialogue = ["你好呀", "今天天气真好"]
    plain = {r.sticker_id: r.score for r in selector.rank(dialogue, semantic_top_k=0)}
    assert all(r.prior == 0.0 for r in selector.rank(dialogue, semantic_top_k=0))
    ids = selector.sticker_ids()
    selector.prior = StickerPrior({ids[0]: 5, ids[1]: 1}, weight=2.0, known=ids)
    try:
        ranked = selector.rank(dialogue, semantic_top_k=0)
    finally:
        selector.prior = None
    shares = {r.sticker_id: r.prior for r in ranked}
    assert shares[ids[0]] == pytest.approx(2.0 * math.log(6)) and shares[ids[2]] == 0.0
    for r in ranked:
        assert r.score - r.prior == pytest.approx(plain[r.sticker_id], abs=1e-5)


def test_semantic_labels_are_read_from_the_sticker_texts_tokens(selector):
    vocabulary = set(selector.bank.text_vocabulary())
    assert vocabulary == {t for ids in selector.bank.ocr_ids for t in ids}
    context = selector.context_ids(["我今天考试没考好", "别难过"])
    rows = list(range(len(selector.bank.ids)))
    labels = selector.semantic_labels(context, rows)
    assert labels == selector.semantic_labels(context, rows, exhaustive=True)
    readable = {selector.tokenizer.decode([t], skip_special_tokens=True).strip() for t in vocabulary}
    for label in labels:  # a label is made of the stickers' text tokens only
        assert set(label.replace(" ", "")) <= set("".join(readable)), label
    # a sticker added later brings its text's tokens
    selector.add_sticker(Sticker("user-vocab", None, None, "鸭", "鸭"), image=Image.new("RGB", (32, 32), (9, 9, 9)))
    new = set(selector.encoder.ocr_ids("鸭"))
    assert new <= set(selector._label_vocabulary().tolist())


def test_prepare_encodes_the_dialogue_and_changes_no_score(make_tiny_selector, mini_stickers):
    selector = make_tiny_selector(mini_stickers, late_interaction=True)
    dialogue = ["明天就要考试了", "我还没复习呢"]
    cold = [(r.sticker_id, r.score) for r in selector.rank(dialogue, semantic_top_k=0)]
    other = make_tiny_selector(mini_stickers, late_interaction=True)
    other.prepare(dialogue)
    assert other.fast._dialogue_cache[0] == tuple(other.context_ids(dialogue))
    prepared = [(r.sticker_id, r.score) for r in other.rank(dialogue, semantic_top_k=0)]
    assert [s for s, _ in prepared] == [s for s, _ in cold]
    assert [v for _, v in prepared] == pytest.approx([v for _, v in cold], abs=1e-6)
