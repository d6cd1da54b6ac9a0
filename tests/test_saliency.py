"""Saliency of the whole dialogue-dependent score (core.serving.saliency): the cross-encoder's share and
the text scorer's, on one character-aligned unit, adding up as the score does."""
from __future__ import annotations

import pytest
import torch

from core.serving.inference import StickerSelector
from core.serving.saliency import context_spans, place_characters
from core.serving.text_scorer import TextScorer
from tests.support.text_scorer import tiny_text_scorer

TURNS = ["你好呀", "今天天气真好"]  # the text scorer (turns=1) reads only the last turn


@pytest.fixture(scope="module")
def selectors(tmp_path_factory, mini_stickers):
    """(the tiny selector alone, the same cross-encoder with a tiny text scorer)."""
    plain = StickerSelector.tiny_random(mini_stickers, seed=1)
    text_scorer = tiny_text_scorer(tmp_path_factory.mktemp("text-encoder"), mini_stickers, TURNS + ["吃饭了吗"])
    full = StickerSelector(plain.model, plain.tokenizer, mini_stickers, image_encoder=plain.image_encoder,
                           text_scorer=text_scorer)
    return plain, full


def by_sticker(selector, turns=TURNS):
    return {r.sticker_id: r for r in selector.rank(turns, semantic_top_k=0)}


def test_a_word_that_changes_the_text_share_gets_attribution(selectors):
    _, full = selectors
    ranked = by_sticker(full)
    sticker = max(ranked, key=lambda s: abs(ranked[s].text))
    changed = by_sticker(full, [TURNS[0], "今天真好"])  # without 天气: the text share moves
    assert changed[sticker].text != pytest.approx(ranked[sticker].text, abs=1e-4)
    explanation = full.explain(TURNS, {sticker: 1.0}, "integrated_gradients", n_steps=64)
    last_turn = len(TURNS[0]) + 1  # the characters of the last turn start here
    weather = [t for t in explanation.tokens if t.start >= last_turn and explanation.dialogue[t.start:t.end] in "天气"]
    assert weather and all(abs(t.text) > 1e-6 for t in weather)
    # the text scorer reads only the last turn: the first turn's tokens get no text attribution
    first = [t for t in explanation.tokens if 0 <= t.start < last_turn]
    assert first and all(t.text == 0.0 for t in first) and any(t.cross != 0.0 for t in first)
    # the score it explains is the shipped one
    assert explanation.score == pytest.approx(ranked[sticker].score, abs=1e-4)
    assert explanation.text == pytest.approx(ranked[sticker].text, abs=1e-4)


def test_parts_add_up_as_the_score_does(selectors):
    plain, full = selectors
    sticker = full.sticker_ids()[2]
    explanation = full.explain(TURNS, {sticker: 1.0}, "integrated_gradients", n_steps=128)
    assert explanation.notes == [] and explanation.unplaced == 0.0
    cross = sum(t.cross for t in explanation.tokens)
    text = sum(t.text for t in explanation.tokens)
    # Integrated Gradients is complete: each part's attributions sum to its change from the [PAD] baseline
    assert cross == pytest.approx(explanation.cross - explanation.baseline_cross, rel=0.05, abs=1e-3)
    assert text == pytest.approx(explanation.text - explanation.baseline_text, rel=0.05, abs=1e-3)
    assert explanation.attributed == pytest.approx(explanation.explained, rel=0.05, abs=1e-3)
    # the cross-encoder's part is its own (scaled by cross_weight), with or without the text scorer
    alone = plain.explain(TURNS, {sticker: 1.0}, "integrated_gradients", n_steps=128)
    weight = full.scorer.cross_weight
    assert [t.cross for t in explanation.tokens] == pytest.approx([weight * t.cross for t in alone.tokens], abs=1e-5)
    assert all(t.text == 0.0 for t in alone.tokens)


def test_contrastive_explains_the_score_difference(selectors):
    _, full = selectors
    ranked = by_sticker(full)
    pick, gold = list(ranked)[0], list(ranked)[-1]
    difference = full.explain(TURNS, {pick: 1.0, gold: -1.0}, "gradient")
    assert difference.score == pytest.approx(ranked[pick].score - ranked[gold].score, abs=1e-4)
    one, other = (full.explain(TURNS, {s: 1.0}, "gradient") for s in (pick, gold))
    assert [t.total for t in difference.tokens] == pytest.approx(
        [a.total - b.total for a, b in zip(one.tokens, other.tokens)], abs=1e-5)


def test_saliency_keeps_its_format_and_includes_the_text_share(selectors):
    plain, full = selectors
    sticker = full.sticker_ids()[0]
    pairs = full.saliency(TURNS, sticker, "gradient")
    assert [t for t, _ in pairs] == [t for t, _ in plain.saliency(TURNS, sticker, "gradient")]
    assert all(score >= 0 for _, score in pairs)
    explanation = full.explain(TURNS, {sticker: 1.0}, "gradient")
    assert [s for _, s in pairs] == pytest.approx([abs(t.cross + t.text) for t in explanation.tokens])


def test_an_encoder_that_cannot_be_rebuilt_leaves_a_note(tmp_path, mini_stickers):
    plain = StickerSelector.tiny_random(mini_stickers, seed=1)
    served = tiny_text_scorer(tmp_path / "served", mini_stickers, TURNS + ["吃饭了吗"])
    # scores with the saved encoder, but names another one: the gradients could not be the served model's
    other = tiny_text_scorer(tmp_path / "other", mini_stickers, TURNS + ["吃饭了吗"])
    odd = TextScorer(served.config, served.bilinear, served.dialogue_mean, served.dialogue_covariance,
                     encode=lambda texts: other.encode(texts) * 0 + torch.nn.functional.normalize(
                         torch.ones(len(texts), served.config.hidden), dim=-1))
    selector = StickerSelector(plain.model, plain.tokenizer, mini_stickers, image_encoder=plain.image_encoder,
                               text_scorer=odd)
    explanation = selector.explain(TURNS, {selector.sticker_ids()[0]: 1.0})
    assert explanation.notes and "not explained" in explanation.notes[0]
    assert all(t.text == 0.0 for t in explanation.tokens) and any(t.cross != 0 for t in explanation.tokens)


def test_context_spans_follow_the_kept_tokens(mini_selector):
    encoder = mini_selector.encoder
    texts = ["你好呀", "再见", "我们去玩吧" * 20]  # long: the earliest tokens are cut
    speakers = ["[speaker1]", "[speaker2]", "[speaker1]"]
    spans = context_spans(encoder, speakers, texts)
    ids = encoder.context_ids(speakers, texts)
    dialogue = "\n".join(texts)
    assert spans is not None and len(spans) == len(ids)
    pieces = mini_selector.tokenizer.convert_ids_to_tokens(ids)
    for piece, (start, end) in zip(pieces, spans):
        if start >= 0 and piece != "[UNK]":
            assert dialogue[start:end] == piece
    assert spans[-1][1] == len(dialogue)


def test_place_characters():
    values = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0])
    assert place_characters(values, [(0, 2), (3, 4)]) == ([1.0 + 2.0 + 3.0, 4.0 + 5.0], 0.0)  # a tie: the left one
    assert place_characters(values, [(-1, -1)]) == ([0.0], 15.0)
    totals, rest = place_characters(values, [(1, 2), (4, 5)])
    assert sum(totals) == 15.0 and rest == 0.0


@pytest.mark.slow
def test_the_default_model_explains_its_text_scorer_share():
    """The shipped model: its text scorer's fine-tuned e5 is rebuilt for gradients exactly, and
    Integrated Gradients' token totals add up to the dialogue's part of the score."""
    from demo.user_stickers import load_starter_stickers

    selector = StickerSelector.load(None, stickers=load_starter_stickers(), device="cpu")
    turns = ["你还没睡吗", "还在加班呢", "好困啊，我去睡觉了"]
    top = selector.rank(turns, semantic_top_k=0)[0]
    explanation = selector.explain(turns, {top.sticker_id: 1.0}, "integrated_gradients", n_steps=32)
    assert explanation.notes == []
    assert explanation.score == pytest.approx(top.score, abs=1e-3)
    assert explanation.text == pytest.approx(top.text, abs=1e-3) and top.text != 0
    assert explanation.attributed == pytest.approx(explanation.explained, rel=0.05)
    assert any(t.text != 0 for t in explanation.tokens if "困" in t.token)
