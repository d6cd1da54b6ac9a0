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
