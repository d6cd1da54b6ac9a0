"""python -m train.tradeoff: the seen/unseen frontier of a scorer as the unknown stickers' prior moves."""
from __future__ import annotations

import pytest

from core.data.mod import load_mod
from core.serving.prior import StickerPrior
from core.serving.scoring import record_scoring_file
from tests.support.mini_mod import make_mini_mod


@pytest.fixture(scope="module")
def mini_with_prior(tmp_path_factory):
    from train import trainer

    root = tmp_path_factory.mktemp("tradeoff")
    data = make_mini_mod(root / "mod", n_dialogues=40)
    trainer.main(["--recipe", "tiny", "--image-encoder", "random_projection:16", "--lexicon", "none",
                  "--test-candidates", "none", "--data", str(data), "--output", str(root / "run"),
                  "--feature-cache", str(root / "f.safetensors")])
    checkpoint = root / "run" / "best"
    mod = load_mod(data, seed=0)
    never = set(mod.split_info.never_in_train)
    known = [s.sticker_id for s in mod.stickers if s.sticker_id not in never]
    counts = {}
    for row in mod.splits["train"]:
        counts[row["sticker_id"]] = counts.get(row["sticker_id"], 0) + 1
    StickerPrior(counts, 1.0, known).save(checkpoint)
    record_scoring_file(checkpoint, "prior", "sticker_prior.json")
    return data, checkpoint, root / "f.safetensors"


def test_tradeoff_moves_unseen_stickers_up_as_the_offset_grows(mini_with_prior, tmp_path):
    from train import tradeoff

    data, checkpoint, features = mini_with_prior
    result = tradeoff.main(["--checkpoint", str(checkpoint), "--data", str(data), "--offsets", "0", "100",
                            "--feature-cache", str(features), "--output", str(tmp_path / "t.json")])
    assert result["checkpoint_rule"] == "log_mean" and result["unknown_stickers"] > 0
    for rule in ("log_mean", "mean_log"):
        low, high = result["rules"][rule]["rows"]
        assert (low["offset"], high["offset"]) == (0.0, 100.0)
        # a huge bonus for being unseen: every unseen gold beats the seen candidates (hard up), and
        # every unseen negative beats a seen gold (easy down, or equal when none was drawn)
        assert high["hard_test"]["R10@1"] >= low["hard_test"]["R10@1"]
        assert high["valid_hard_MRR10"] >= low["valid_hard_MRR10"]
        assert high["easy_test"]["R10@1"] <= low["easy_test"]["R10@1"]
        assert set(low) >= {"valid_MRR10", "valid_hard_MRR10", "valid_mean_MRR10", "easy_test", "hard_test"}
    assert (tmp_path / "t.json").exists()


def test_tradeoff_needs_a_prior(mini_with_prior, tmp_path):
    import shutil

    from train import tradeoff

    data, checkpoint, features = mini_with_prior
    bare = tmp_path / "bare"
    shutil.copytree(checkpoint, bare)
    record_scoring_file(bare, "prior", None)
    with pytest.raises(SystemExit, match="no prior"):
        tradeoff.main(["--checkpoint", str(bare), "--data", str(data), "--feature-cache", str(features)])
