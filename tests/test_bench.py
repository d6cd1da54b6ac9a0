"""A late-interaction model end to end: train, evaluate (fast == exhaustive), `train.bench`."""
import json

import pytest

from tests.support.mini_mod import make_mini_mod
from train import bench, trainer
from train import evaluate as evaluate_cli

KEYS = {"fast_p50_ms", "fast_p95_ms", "exhaustive_p50_ms", "top10_agreement", "rall5_fast", "rall5_exhaustive",
        "mrrall_fast", "mrrall_exhaustive", "peak_rss_mb", "n"}


@pytest.fixture(scope="module")
def late_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("late")
    mini = make_mini_mod(root / "mod", n_dialogues=16)
    trainer.main(["--recipe", "tiny", "--image-encoder", "random_projection:16", "--lexicon", "none",
                  "--test-candidates", "none", "--late-interaction", "true", "--popularity-negatives", "1.0",
                  "--data", str(mini), "--output", str(root / "run"),
                  "--feature-cache", str(root / "features.safetensors")])
    return mini, root / "run" / "best", root / "features.safetensors"


def test_late_model_saves_its_layout_and_evaluates_the_same_both_ways(late_model, tmp_path):
    mini, checkpoint, cache = late_model
    assert json.loads((checkpoint / "config.json").read_text())["late_interaction"] is True
    common = ["--checkpoint", str(checkpoint), "--data", str(mini), "--feature-cache", str(cache)]
    fast = evaluate_cli.main(common)
    slow = evaluate_cli.main(common + ["--exhaustive"])
    for split in ("easy_test", "hard_test"):
        for key in ("R10@1", "MRR10", "RALL@5", "MRRALL"):
            assert fast[split][key] == pytest.approx(slow[split][key])


def bench_args(late_model, tmp_path, *extra):
    mini, checkpoint, cache = late_model
    return ["--data", str(mini), "--checkpoint", str(checkpoint), "--feature-cache", str(cache), "--n", "5",
            "--saliency-n", "2", "--train-steps", "1", "--batch-size", "4", "--output", str(tmp_path / "b.json"),
            *extra]


def test_bench_reports_the_issue_keys(late_model, tmp_path, capsys):
    result = bench.main(bench_args(late_model, tmp_path, "--no-cold-start"))
    assert KEYS <= set(result) and result["n"] == 5
    assert result["top10_agreement"] == 1.0  # the fast path is exact
    assert result["rall5_fast"] == result["rall5_exhaustive"]
    assert result["mrrall_fast"] == pytest.approx(result["mrrall_exhaustive"])
    for variant in ("full_attention", "late_interaction", "late_interaction_in_batch"):
        assert result[f"train_samples_per_s_{variant}"] > 0
    assert result["saliency_ig32_progress_updates"] >= 4  # IG reports progress as it goes
    assert json.loads((tmp_path / "b.json").read_text())["n"] == 5
    assert "top-10 identical: 100.0%" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_cold_start_measures_a_new_demo_process(late_model, tmp_path):
    result = bench.main(bench_args(late_model, tmp_path, "--train-steps", "0", "--cold-start-runs", "1"))
    assert 0 < result["cold_start_page_s"] <= result["cold_start_s"] < bench.COLD_START_TIMEOUT_S
    assert len(result["cold_start_runs_s"]) == 1 and 0 < result["cold_start_empty_caches_s"] < bench.COLD_START_TIMEOUT_S
