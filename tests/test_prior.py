"""The popularity prior: log counts, stickers unknown to training, save/load, fitted weight."""
import math

import pytest

from core.serving.prior import PRIOR_FILE, StickerPrior, fit_weight


def test_known_stickers_use_their_count_and_unknown_ones_the_expected_count():
    prior = StickerPrior({"a": 3, "b": 1}, weight=2.0, known=["a", "b", "c"])
    assert prior.log_prior("a") == pytest.approx(math.log(4))
    assert prior.log_prior("c") == 0.0  # a training candidate never chosen: count 0
    expected = math.log1p((3 + 1 + 0) / 3)  # held out / user-added: unknown base rate, its expected count
    assert prior.log_prior("new") == pytest.approx(expected)
    assert prior.log_prior("new") > prior.log_prior("b")  # skewed counts: above the median known sticker
    assert prior.adjust(["a", "new"], [1.0, 1.0]) == pytest.approx([1 + 2 * math.log(4), 1 + 2 * expected])
    assert StickerPrior({"a": 3}).log_prior("new") == 0.0  # without `known`: every absent sticker is 0
    older = StickerPrior({"a": 3, "b": 1}, weight=2.0, known=["a", "b", "c"], unknown="mean_log")
    assert older.log_prior("new") == pytest.approx((math.log(4) + math.log(2) + 0.0) / 3)
    with pytest.raises(ValueError, match="unknown='median'"):
        StickerPrior({"a": 3}, known=["a"], unknown="median")


def test_a_prior_saved_before_the_unknown_rule_keeps_the_mean_log_prior(tmp_path):
    (tmp_path / PRIOR_FILE).write_text('{"weight": 1.0, "counts": {"a": 3, "b": 1}, "known": ["a", "b", "c"]}')
    loaded = StickerPrior.load(tmp_path)
    assert loaded.unknown == "mean_log"
    assert loaded.log_prior("new") == pytest.approx((math.log(4) + math.log(2)) / 3)


def test_save_and_load_round_trip(tmp_path):
    StickerPrior({"a": 3}, 1.5, ["a", "b"]).save(tmp_path)
    loaded = StickerPrior.load(tmp_path)
    assert (loaded.counts, loaded.weight, sorted(loaded.known), loaded.unknown) == ({"a": 3}, 1.5, ["a", "b"], "log_mean")
    assert StickerPrior.load(tmp_path / "missing") is None
    (tmp_path / PRIOR_FILE).write_text("{not json")
    with pytest.raises(ValueError, match=PRIOR_FILE):
        StickerPrior.load(tmp_path)


def test_fit_weight_uses_the_prior_only_when_it_helps():
    counts = {"pop": 50, "rare": 1}
    sets = [["pop", "rare"]] * 4
    flat = [[0.0, 0.1]] * 4  # the model slightly prefers the rare one
    assert fit_weight(counts, sets, flat, ["pop"] * 4)[0] > 0  # the popular sticker is right
    anti = [[0.0, 5.0]] * 4
    assert fit_weight(counts, sets, anti, ["rare"] * 4)[0] == 0.0  # the model is right, the prior hurts


def test_fit_weight_counts_ties_as_random_not_as_wins():
    counts = {"a": 1, "b": 1, "c": 1}
    sets = [["a", "b", "c"]] * 3
    _, mrr = fit_weight(counts, sets, [[0.0, 0.0, 0.0]] * 3, ["a", "b", "c"], grid=(0.0,))
    assert mrr[0.0] == pytest.approx(100.0 * (1 + 1 / 2 + 1 / 3) / 3)  # a constant scorer is at chance
