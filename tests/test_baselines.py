"""The SRS and MOD-GPT baselines (core/baselines), their grid features, scorer and entry points, at tiny sizes."""
from __future__ import annotations

import json

import pytest
import torch

from core.baselines.base import NoTokens, baseline_kind, build_ranker, load_baseline, save_baseline
from core.baselines.mod_gpt import ModGpt, ModGptConfig, ModGptInputs, causal_mask
from core.baselines.srs import Srs, SrsConfig, SrsInputs
from core.model.backbone import add_speaker_tokens, tiny_backbone
from core.model.bert import load_backbone_weights
from core.model.image_encoder import FeatureCache, GridFeatures, RandomProjectionEncoder
from core.model.sticker_bank import StickerBank

WORDS = ["开心", "生气", "晚安", "谢谢"]  # sticker i is the answer to a dialogue that says WORDS[i]
TEXTS = WORDS + ["哈哈", "你好呀", "今天天气真好", "好的吧"]


def tiny(kind: str, seed: int = 0, **overrides):
    """(model, tokenizer) of a tiny SRS or MOD-GPT over TEXTS' characters."""
    bert, tokenizer = tiny_backbone(TEXTS, hidden=32, layers=2, seed=seed)
    if kind == "srs":
        config = SrsConfig(grid_dim=16, hidden=16, max_utterances=3, utterance_length=12, fusion_heads=2,
                           image_encoder="random_projection:16:0", **overrides)
        extra = []
    else:
        config = ModGptConfig(image_feature_dim=16, embed_dim=16, max_length=32, ocr_max_length=8,
                              image_encoder="random_projection:16:0", **overrides)
        extra = [config.slot_token]
    add_speaker_tokens(bert, tokenizer, config.speaker_tokens + extra)
    config.backbone = json.loads(bert.config.to_json_string(use_diff=False))
    torch.manual_seed(seed)
    model = (Srs if kind == "srs" else ModGpt)(config)
    load_backbone_weights(model.bert, bert.state_dict())
    return model, tokenizer


def synthetic(n_stickers: int = 4, regions: int = 4, seed: int = 0):
    """A bank of random stickers, their grid features and samples whose last turn names the gold's word."""
    g = torch.Generator().manual_seed(seed)
    grid = torch.randn(n_stickers, regions, 16, generator=g)
    bank = StickerBank(ids=[f"{i:03d}" for i in range(n_stickers)], features=grid.mean(1),
                       semantic_texts=[WORDS[i] if i % 2 == 0 else "" for i in range(n_stickers)],
                       emotion_labels=[i % 2 for i in range(n_stickers)])
    samples = [{"speakers": ["[speaker1]", "[speaker2]"], "texts": [TEXTS[4 + k % 4], f"{WORDS[i]}{WORDS[i]}"],
                "sticker_id": bank.ids[i]} for k in range(4) for i in range(n_stickers)]
    return bank, grid, samples


def train_steps(objective, model, samples, steps: int = 40, lr: float = 3e-3) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(steps):
        loss = objective(samples, torch.Generator().manual_seed(step))["loss"]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


# grid features ------------------------------------------------------------------------------------
def test_grid_features_pool_to_the_pooled_feature_and_are_cached(tmp_path):
    from PIL import Image

    encoder = RandomProjectionEncoder(16, 0)
    images = [Image.new("RGB", (20, 20), c) for c in ((200, 10, 10), (10, 200, 10))]
    images[1].paste((0, 0, 255), (0, 0, 10, 10))
    grid = GridFeatures(encoder).encode(images)                                      # (2, 4, 16)
    assert grid.shape == (2, 4, 16)
    torch.testing.assert_close(grid.mean(1), encoder.encode(images), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(grid[1, 0], grid[1, 3])                               # regions differ
    cache = FeatureCache(GridFeatures(encoder), tmp_path / "grid.safetensors")
    first = cache.encode(images)
    class Refuses(GridFeatures):  # a warm cache never calls the encoder
        def encode(self, images):
            raise AssertionError("encoded again")

    again = FeatureCache(Refuses(encoder), tmp_path / "grid.safetensors")
    torch.testing.assert_close(again.encode(images), first)


def test_grid_features_need_an_encoder_with_a_grid():
    class Pooled:
        name, feature_dim = "pooled", 4

    with pytest.raises(ValueError, match="no grid features"):
        GridFeatures(Pooled())


# SRS ----------------------------------------------------------------------------------------------
def test_srs_shapes_and_masking():
    model, tokenizer = tiny("srs")
    model.eval()
    inputs = SrsInputs(tokenizer, model.config)
    samples = [{"speakers": ["[speaker1]"], "texts": ["你好呀"]},
               {"speakers": ["[speaker1]", "[speaker2]"] * 3, "texts": TEXTS[:6]}]
    ids, mask = inputs.dialogues(samples)
    assert ids.shape == mask.shape == (2, 3, 12)                                    # (B, U, L)
    assert mask[0, :, 0].tolist() == [1, 0, 0] and mask[1, :, 0].tolist() == [1, 1, 1]
    tokens = model.encode_dialogue(ids, mask)
    assert tokens.shape == (2, 3, 12, 16)                                           # (B, U, L, d)
    regions, stickers = model.encode_stickers(torch.randn(5, 4, 16))
    assert regions.shape == (5, 4, 16) and stickers.shape == (5, 16)
    scores = model.interact(tokens, mask, regions[None].expand(2, -1, -1, -1), stickers[None].expand(2, -1, -1))
    assert scores.shape == (2, 5) and torch.isfinite(scores).all()
    # padding utterances and tokens change nothing: dialogue 0 scored alone gives the same scores
    alone_ids, alone_mask = inputs.dialogues(samples[:1])
    alone = model.interact(model.encode_dialogue(alone_ids, alone_mask), alone_mask, regions[None], stickers[None])
    torch.testing.assert_close(alone[0], scores[0], rtol=1e-4, atol=1e-5)


def test_srs_loss_falls_and_the_ranker_learns_the_synthetic_set():
    model, tokenizer = tiny("srs")
    bank, grid, samples = synthetic()
    objective = Srs.objective_class(model, tokenizer, bank, grid, allowed_rows=[0, 1, 2, 3], negatives=3)
    losses = train_steps(objective, model, samples, steps=60)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    model.eval()
    ranker = Srs.ranker_class(model, tokenizer, bank, grid)
    hits = [int(ranker.scores(s["speakers"], s["texts"], [0, 1, 2, 3]).argmax()) == bank.position(s["sticker_id"])
            for s in samples]
    assert sum(hits) >= 0.75 * len(hits)


# MOD-GPT ------------------------------------------------------------------------------------------
def test_causal_mask_sees_only_earlier_real_positions():
    mask = causal_mask(torch.tensor([[1, 1, 1, 0]]), torch.float32)                 # (1, 1, 4, 4)
    seen = (mask[0, 0] == 0).int().tolist()
    assert seen == [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 0]]


def test_mod_gpt_shapes_and_causality():
    model, tokenizer = tiny("mod-gpt", emotion_names=["乐", "哀"])
    model.eval()
    inputs = ModGptInputs(tokenizer, model.config)
    ids, mask = inputs.dialogues([{"speakers": ["[speaker1]", "[speaker2]"], "texts": ["你好呀", "晚安"]},
                                  {"speakers": ["[speaker1]"], "texts": ["谢谢"]}])
    assert ids[0, 0] == tokenizer.cls_token_id
    assert ids[0, int(mask[0].sum()) - 1] == inputs.slot_id and ids[1, int(mask[1].sum()) - 1] == inputs.slot_id
    states = model.causal_states(ids, mask)                                         # (B, T, H)
    changed = ids.clone()
    changed[0, 3] = tokenizer.convert_tokens_to_ids("哈")
    after = model.causal_states(changed, mask)
    torch.testing.assert_close(after[0, :3], states[0, :3])                        # the past does not see the future
    assert not torch.allclose(after[0, 3:int(mask[0].sum())], states[0, 3:int(mask[0].sum())])
    text_ids, text_mask, has_text = inputs.sticker_texts(["开心", "", "生气"])
    out = model(ids, mask, torch.randn(3, 16), text_ids, text_mask, has_text)
    assert out.logits.shape == (2, 3) and out.emotion_logits.shape == (2, 2) and out.loss is None


def test_mod_gpt_loss_falls_and_scores_unseen_stickers_through_features():
    model, tokenizer = tiny("mod-gpt", emotion_names=["乐", "哀"])
    bank, _, samples = synthetic()
    objective = ModGpt.objective_class(model, tokenizer, bank, None, allowed_rows=[0, 1, 2, 3])
    losses = train_steps(objective, model, samples, steps=40)
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    model.eval()
    ranker = ModGpt.ranker_class(model, tokenizer, bank)
    bank.add("new", torch.randn(16), "开心", NoTokens())                            # never trained on: no id to embed
    ranker.sticker_added()
    scores = ranker.scores(["[speaker1]"], ["开心开心"], [0, 1, 2, 3, 4])
    assert scores.shape == (5,) and torch.isfinite(scores).all()


# checkpoints and scoring ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["srs", "mod-gpt"])
def test_save_load_round_trip_gives_the_same_scores(kind, tmp_path):
    model, tokenizer = tiny(kind)
    model.eval()
    bank, grid, samples = synthetic()
    save_baseline(tmp_path / "ckpt", model, tokenizer)
    assert baseline_kind(tmp_path / "ckpt") == kind
    loaded, loaded_tokenizer = load_baseline(tmp_path / "ckpt")
    assert loaded.config == model.config and not loaded.training
    before = model.ranker_class(model, tokenizer, bank, grid).scores(samples[0]["speakers"], samples[0]["texts"], [0, 1, 2])
    after = loaded.ranker_class(loaded, loaded_tokenizer, bank, grid).scores(samples[0]["speakers"],
                                                                              samples[0]["texts"], [0, 1, 2])
    torch.testing.assert_close(after, before)


def test_a_corrupt_baseline_checkpoint_is_named(tmp_path):
    from core.model.checkpoint import CheckpointError

    model, tokenizer = tiny("srs")
    save_baseline(tmp_path / "ckpt", model, tokenizer)
    (tmp_path / "ckpt" / "model.safetensors").write_bytes(b"not weights")
    with pytest.raises(CheckpointError, match="not a readable srs checkpoint"):
        load_baseline(tmp_path / "ckpt")


def test_load_scorer_dispatches_to_a_baseline_scorer(tmp_path, mini_stickers):
    from core.serving.scoring import BaselineScorer, load_scorer

    model, tokenizer = tiny("srs")
    save_baseline(tmp_path / "ckpt", model, tokenizer)
    scorer = load_scorer(tmp_path / "ckpt", mini_stickers, feature_cache=tmp_path / "f.safetensors")
    assert isinstance(scorer, BaselineScorer) and scorer.kind == "srs" and scorer.prior is None
    assert (tmp_path / "f.grid.safetensors").exists()                               # grid features cached apart
    sample = {"sample_id": "x", "speakers": ["[speaker1]"], "texts": ["开心"]}
    ids = scorer.bank.ids[:4]
    shipped = scorer.pair_scorer()(sample, ids)
    parts = scorer.score(sample["speakers"], sample["texts"], scorer.rows(ids))
    assert shipped == pytest.approx(parts.cross.tolist(), abs=1e-5) and parts.prior.abs().sum() == 0
    ranker, _ = build_ranker(scorer.ranker.model, tokenizer, mini_stickers, tmp_path / "f.safetensors")
    assert ranker.scores(sample["speakers"], sample["texts"], scorer.rows(ids)).tolist() == pytest.approx(shipped, abs=1e-5)


# entry points -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    from tests.support.mini_mod import make_mini_mod

    return make_mini_mod(tmp_path_factory.mktemp("baselines") / "mod")


@pytest.mark.parametrize("kind", ["srs", "mod-gpt", "dual-encoder"])
def test_train_baseline_then_evaluate_end_to_end(kind, mini, tmp_path, capsys):
    from train import baseline
    from train import evaluate as evaluate_cli

    out, cache = tmp_path / kind, str(tmp_path / "f.safetensors")
    result = baseline.main(["--model", kind, "--data", str(mini), "--output", str(out), "--backbone", "tiny",
                            "--num-layers", "2", "--image-encoder", "random_projection:16", "--epochs", "2",
                            "--batch-size", "8", "--hidden", "16", "--embed-dim", "16", "--lexicon", "none",
                            "--feature-cache", cache])
    assert result["model"] == kind and result["steps"] >= 2 and len(result["history"]) == 2
    assert {"valid", "valid_hard"} <= set(result["history"][0]["valid"])
    for split in ("easy_test", "hard_test"):
        assert {"R10@1", "MRRALL", "popularity"} <= set(result[split])
    assert baseline_kind(out / "best") == kind and baseline_kind(out / "last") == kind
    info = json.loads((out / "best" / "training_info.json").read_text())
    assert info["model"] == kind and info["history"]
    capsys.readouterr()
    report = evaluate_cli.main(["--checkpoint", str(out / "best"), "--data", str(mini), "--candidates", "10",
                                "--feature-cache", cache, "--reference-contexts", "5", "--zero-shot", "none"])
    keys = {"R10@1", "R10@2", "R10@5", "MRR10", "n", "popularity", "macro_R10@1",
            "sticker_normalized", "vs_popularity_10"}
    for split in ("easy_test", "hard_test"):
        assert keys <= set(report[split])
        assert "without_prior" not in report[split] and "cross_encoder_alone" not in report[split]
    # train.evaluate scores what train.baseline measured (same candidate sets, same seed)
    assert report["easy_test"]["R10@1"] == pytest.approx(result["easy_test"]["R10@1"])


def test_report_trains_the_baselines_through_train_baseline(tmp_path, monkeypatch):
    from train import report

    calls = []

    def fake(module, argv):  # report runs each entry point as `python -m MODULE ...`
        calls.append((module, list(argv)))
        out = tmp_path / argv[argv.index("--output") + 1]
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text("{}")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "run_entry_point", fake)
    args = report.build_parser().parse_args(["--output", "rep"])
    for name in ("srs", "mod-gpt", "dual-encoder"):
        report.run_one(name, args)
    assert [(m, argv[argv.index("--model") + 1]) for m, argv in calls] == [
        ("train.baseline", "srs"), ("train.baseline", "mod-gpt"), ("train.baseline", "dual-encoder")]
    assert {"srs", "mod-gpt"} <= set(report.DEFAULT_RUNS)
    assert report.PAPER["paper: SRS"]["easy"]["R10@1"] == 30.51 and report.PAPER["paper: MOD-GPT"]["hard"]["R10@1"] == 25.50


# the demo ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["srs", "mod-gpt"])
def test_the_demo_ranks_and_explains_with_a_baseline_checkpoint(kind, tmp_path, mini_stickers):
    from PIL import Image

    from core.data.mod import Sticker
    from core.serving.inference import StickerSelector
    from demo.service import DemoError, DemoService

    model, tokenizer = tiny(kind)
    save_baseline(tmp_path / "ckpt", model, tokenizer)
    selector = StickerSelector.load(tmp_path / "ckpt", stickers=mini_stickers,
                                    feature_cache_path=tmp_path / "f.safetensors")
    assert selector.kind == kind and selector.model_version.startswith("ckpt-")
    service = DemoService(selector, ocr_engine=None, thumbnails=None)
    outcome = service.rank("A: 开心\nB: 晚安", mode="all")
    ranked = outcome.ranked
    assert len(ranked) == len(selector.sticker_ids()) and [r.rank for r in ranked] == list(range(1, len(ranked) + 1))
    assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:])) and ranked[0].prior == 0 and ranked[0].text == 0
    tokens = service.saliency("A: 开心\nB: 晚安", ranked[0].sticker_id)
    assert "".join(t for t, _ in tokens).replace(" ", "").endswith("晚安") and all(s >= 0 for _, s in tokens)
    assert any(s > 0 for _, s in tokens)
    with pytest.raises(DemoError, match="gradient"):
        service.saliency("A: 开心\nB: 晚安", ranked[0].sticker_id, "integrated_gradients")
    image = Image.new("RGB", (32, 32), (10, 200, 30))
    selector.add_sticker(Sticker(sticker_id="user-0001", file_name="new.png", name_label="新", ocr="新的", image_path=None), image=image)
    assert "user-0001" in [r.sticker_id for r in selector.rank(["开心", "晚安"])]


def test_mod_gpt_sampled_classes_hold_every_gold_and_only_allowed_stickers():
    model, tokenizer = tiny("mod-gpt")
    bank, _, samples = synthetic(n_stickers=4)
    objective = ModGpt.objective_class(model, tokenizer, bank, None, allowed_rows=[0, 1, 2], sticker_sample=2)
    rows = objective.classes([2, 0, 2], torch.Generator().manual_seed(0))
    assert rows[:2] == [2, 0] and len(rows) == 2                                    # golds first, never dropped
    objective.sticker_sample = 3
    assert sorted(objective.classes([1], torch.Generator().manual_seed(0))) == [0, 1, 2]   # never row 3 (held out)
    assert torch.isfinite(objective(samples[:3], torch.Generator().manual_seed(0))["loss"])
