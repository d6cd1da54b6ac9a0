"""The frozen-text scorer: exact per-sticker normalisation, persistence, use in the selector and the CLIs."""
import hashlib
import json
import shutil

import pytest
import torch
from PIL import Image

from core.data.mod import Sticker, load_stickers
from core.serving.text_scorer import (TEXT_SCORER_CONFIG, TEXT_SCORER_WEIGHTS, FrozenTextBilinear, TextScorer,
                              TextScorerConfig, reference_statistics)
from core.serving.inference import StickerSelector
from core.serving.prior import StickerPrior
from core.serving.scoring import record_scoring_file
from tests.support.mini_mod import make_mini_mod

HIDDEN = 16


def hashed_encode(texts: list[str]) -> torch.Tensor:
    """A deterministic stand-in sentence encoder: unit vectors seeded by each text's digest."""
    rows = []
    for text in texts:
        seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
        rows.append(torch.randn(HIDDEN, generator=torch.Generator().manual_seed(seed)))
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def random_scorer(weight: float = 1.5, n_reference: int = 40) -> tuple[TextScorer, torch.Tensor]:
    torch.manual_seed(0)
    bilinear = FrozenTextBilinear(HIDDEN, rank=4, temperature=0.1)
    with torch.no_grad():
        bilinear.dialogue_map.normal_(0, 0.3)
        bilinear.sticker_map.normal_(0, 0.3)
    reference = torch.nn.functional.normalize(torch.randn(n_reference, HIDDEN) + 0.5, dim=-1)
    mean, covariance = reference_statistics(reference)
    config = TextScorerConfig(encoder="unused", hidden=HIDDEN, rank=4, temperature=0.1, weight=weight,
                              reference_dialogues=n_reference)
    return TextScorer(config, bilinear, mean, covariance, encode=hashed_encode), reference


def test_sticker_statistics_are_exact_over_the_reference_dialogues():
    scorer, reference = random_scorer()
    stickers = hashed_encode(["再见", "好的", "哈哈", "生气", "开心"])
    with torch.no_grad():
        table = scorer.bilinear(reference, stickers)                                  # (R, C)
    mean, std = scorer.bilinear.sticker_statistics(stickers, scorer.dialogue_mean, scorer.dialogue_covariance)
    assert torch.allclose(mean, table.mean(0), atol=1e-4)
    assert torch.allclose(std, table.std(0, unbiased=False), atol=1e-4)
    z = scorer.z_scores(reference, stickers)  # so the z-scores over the reference are standardised
    assert torch.allclose(z.mean(0), torch.zeros(5), atol=1e-4)
    assert torch.allclose(z.std(0, unbiased=False), torch.ones(5), atol=1e-3)
    assert torch.allclose(scorer.scores(reference, stickers), 1.5 * z)


def test_save_and_load_round_trip_and_clear_errors(tmp_path):
    scorer, reference = random_scorer()
    assert TextScorer.load(tmp_path) is None  # a folder without a text scorer
    scorer.save(tmp_path)
    loaded = TextScorer.load(tmp_path, encode=hashed_encode)
    assert loaded.config == scorer.config
    stickers = hashed_encode(["再见", "好的"])
    assert torch.allclose(loaded.scores(reference, stickers), scorer.scores(reference, stickers))
    dialogue = loaded.dialogue_vectors([["你好", "今天好累啊"]])
    assert torch.equal(dialogue, hashed_encode(["今天好累啊"]))  # turns=1: the last turn

    (tmp_path / TEXT_SCORER_WEIGHTS).write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=TEXT_SCORER_WEIGHTS):
        TextScorer.load(tmp_path)
    scorer.save(tmp_path)
    values = json.loads((tmp_path / TEXT_SCORER_CONFIG).read_text())
    (tmp_path / TEXT_SCORER_CONFIG).write_text(json.dumps({**values, "bogus": 1}))
    with pytest.raises(ValueError, match="bogus"):
        TextScorer.load(tmp_path)
    (tmp_path / TEXT_SCORER_CONFIG).write_text(json.dumps({**values, "rank": 5}))
    with pytest.raises(ValueError, match="does not match its config"):
        TextScorer.load(tmp_path)
    (tmp_path / TEXT_SCORER_CONFIG).unlink()
    with pytest.raises(ValueError, match="is missing"):
        TextScorer.load(tmp_path)
    with pytest.raises(ValueError, match="sticker_text"):
        TextScorerConfig(sticker_text="emoji")
    with pytest.raises(ValueError, match="need"):
        reference_statistics(torch.zeros(1, HIDDEN))


def test_wrong_encoder_size_is_named():
    scorer, _ = random_scorer()
    scorer._encode = lambda texts: torch.zeros(len(texts), HIDDEN + 1)
    with pytest.raises(ValueError, match="hidden size 16"):
        scorer.dialogue_vectors([["你好"]])


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_mod(tmp_path_factory.mktemp("mini") / "mod", n_dialogues=16)


def test_selector_adds_the_text_share_to_each_score(mini, mini_selector):
    selector = mini_selector
    dialogue = ["你好呀", "今天天气真好"]
    plain = {r.sticker_id: r.score for r in selector.rank(dialogue, semantic_top_k=0)}
    scorer, _ = random_scorer(weight=2.0)
    with_text = StickerSelector(selector.model, selector.tokenizer, load_stickers(mini),
                                image_encoder=selector.image_encoder, text_scorer=scorer)
    ranked = with_text.rank(dialogue, semantic_top_k=0)
    ids = [r.sticker_id for r in ranked]
    stickers = {s.sticker_id: s for s in load_stickers(mini)}
    expected = scorer.scores(hashed_encode(["今天天气真好"]), scorer.sticker_vectors([stickers[i] for i in ids]))[0]
    for r, share in zip(ranked, expected.tolist()):
        assert r.text == pytest.approx(share, abs=1e-5)
        assert r.score - r.text == pytest.approx(plain[r.sticker_id], abs=1e-4)
    assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:]))
    assert len({round(r.text, 4) for r in ranked}) > 1

    with_text.add_sticker(Sticker("user-0001", None, None, "加油", "加油"), image=Image.new("RGB", (32, 32)))
    added = {r.sticker_id: r for r in with_text.rank(dialogue, semantic_top_k=0)}["user-0001"]
    new_share = scorer.scores(hashed_encode(["今天天气真好"]), hashed_encode(["加油"]))[0, 0]
    assert added.text == pytest.approx(float(new_share), abs=1e-5)


def parts(cross, text, gold, prior=None):
    """fit_weights' input for candidate sets whose rows are given as lists."""
    zeros = [[0.0] * len(row) for row in cross]
    return {"gold": torch.tensor(gold), "cross": torch.tensor(cross), "text_z": torch.tensor(text),
            "text_raw": torch.tensor(zeros), "prior": torch.tensor(prior or zeros)}


def test_fit_weights_picks_the_text_weight_only_when_it_helps():
    from train.text_scorer import fit_weights

    gold = [0, 1, 2, 2]
    cross = [[0.0, 0.0, 0.0]] * 4
    reads = [[1.0 if c == g else 0.0 for c in range(3)] for g in gold]
    weights, fit = fit_weights({"valid": parts(cross, reads, gold)})
    assert weights["text_z"] > 0 and fit["MRR10"]["valid"] == pytest.approx(100.0)
    noise = [[0.0, 0.0, 0.0]] * 4
    weights, _ = fit_weights({"valid": parts(reads, noise, gold)})
    assert weights["text_z"] == 0.0 and weights["cross"] > 0


def test_fit_weights_averages_seen_and_held_out_validation():
    """A prior that helps on seen stickers but buries held-out ones is not chosen at full weight."""
    from train.text_scorer import fit_weights

    log_prior = [[2.3, 0.7]] * 2   # the popular seen sticker first, then the mean prior of an unknown one
    seen = parts([[0.0, 0.0]] * 2, [[0.0, 0.0]] * 2, [0, 0], log_prior)
    held_out = parts([[0.0, 0.0]] * 2, [[0.0, 1.0]] * 2, [1, 1], log_prior)
    weights, fit = fit_weights({"valid": seen, "valid_hard": held_out})
    assert weights["text_z"] > 0 and set(fit["MRR10"]) == {"valid", "valid_hard"}
    assert fit["MRR10"]["valid_hard"] == pytest.approx(100.0)   # the unseen gold still ranks first
    only_seen, _ = fit_weights({"valid": seen})
    assert only_seen["prior"] > 0


def test_expected_reciprocal_rank_breaks_ties_at_random():
    from train.text_scorer import expected_reciprocal_rank

    scores = torch.tensor([[1.0, 1.0, 1.0], [3.0, 2.0, 1.0], [0.0, 5.0, 5.0]])
    err = expected_reciprocal_rank(scores, torch.tensor([0, 2, 1]))
    assert float(err) == pytest.approx(((1 + 1 / 2 + 1 / 3) / 3 + 1 / 3 + (1 + 1 / 2) / 2) / 3, abs=1e-9)


def test_prototypes_replace_text_vectors_of_seen_stickers_only():
    from core.serving.text_scorer import sticker_prototypes

    dialogues = hashed_encode(["早上好", "早安", "晚安啦", "睡了"])
    ids, prototypes = sticker_prototypes(dialogues, ["001", "001", "002", "002"])
    assert ids == ["001", "002"]
    assert torch.allclose(prototypes[0], torch.nn.functional.normalize(dialogues[:2].sum(0), dim=0), atol=1e-6)
    scorer, reference = random_scorer()
    config = TextScorerConfig(**{**scorer.config.__dict__, "prototype_ids": ids})
    with_prototypes = TextScorer(config, scorer.bilinear, scorer.dialogue_mean, scorer.dialogue_covariance,
                                 encode=hashed_encode, prototypes=prototypes)
    stickers = hashed_encode(["早上好", "晚安", "新的"])
    z = with_prototypes.z_scores(reference, stickers, ["001", "002", "999"])               # (R, 3)
    plain = scorer.z_scores(reference, stickers)
    assert torch.allclose(z[:, 2], plain[:, 2], atol=1e-5)      # no prototype: read through its text
    expected = (reference @ prototypes.t() - prototypes @ scorer.dialogue_mean) / (reference @ prototypes.t()).std(
        0, unbiased=False)
    assert torch.allclose(z[:, :2], expected, atol=1e-3)         # exact standardisation over the reference
    assert torch.allclose(z.mean(0), torch.zeros(3), atol=1e-4)
    with pytest.raises(ValueError, match="prototypes of shape"):
        TextScorer(config, scorer.bilinear, scorer.dialogue_mean, scorer.dialogue_covariance, prototypes=prototypes[:1])


def test_text_scorer_cli_evaluate_load_and_ship(mini, tmp_path):
    """train.text_scorer on a tiny selector with a tiny sentence encoder given as a local path
    (the hub-name / local-path route), then train.evaluate, StickerSelector.load and train.ship."""
    from core.model.backbone import tiny_backbone
    from train import evaluate as evaluate_cli
    from train import ship, text_scorer, trainer

    checkpoint = tmp_path / "run" / "best"
    trainer.main(["--recipe", "tiny", "--image-encoder", "random_projection:16", "--lexicon", "none",
                  "--test-candidates", "none", "--data", str(mini), "--output", str(tmp_path / "run"),
                  "--feature-cache", str(tmp_path / "f.safetensors")])
    texts = [s.ocr + s.name_label for s in load_stickers(mini)] + ["你好今天天气真好谢谢再见哈哈"]
    encoder, tokenizer = tiny_backbone(texts, seed=0)
    encoder.save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    result = text_scorer.main(["--checkpoint", str(checkpoint), "--data", str(mini), "--encoder",
                               str(tmp_path / "encoder"), "--rank", "4", "--epochs", "2", "--text-weight", "0.5",
                               "--cache-dir", str(tmp_path / "cache"), "--feature-cache", str(tmp_path / "f.safetensors")])
    assert result["weights"]["text_z"] == 0.5 and result["written"]
    loaded = TextScorer.load(checkpoint)
    assert loaded.config.weight == 0.5 and loaded.config.hidden == 32 and loaded.config.reference_dialogues > 0
    assert (checkpoint / "sticker_prior.json").exists()

    metrics = evaluate_cli.main(["--checkpoint", str(checkpoint), "--data", str(mini), "--candidates", "all",
                                 "--feature-cache", str(tmp_path / "f.safetensors")])
    for split in ("easy_test", "hard_test"):
        assert metrics[split]["text_weight"] == 0.5
        assert {"R10@1", "MRRALL"} <= set(metrics[split]["cross_encoder_alone"])
        assert {"R@1_sign_test_p", "MRR_difference"} <= set(metrics[split]["vs_popularity_10"])

    selector = StickerSelector.load(checkpoint, stickers=load_stickers(mini), device="cpu",
                                    feature_cache_path=tmp_path / "f.safetensors")
    ranked = selector.rank(["你好", "今天天气真好"], semantic_top_k=0)
    assert selector.text_scorer is not None and any(r.text != 0.0 for r in ranked)

    shipped = ship.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "shipped")])
    assert TextScorer.load(shipped["output"]).config == loaded.config

    # the same with the encoder fine-tuned first: its tuned layers travel with the checkpoint
    result = text_scorer.main(["--checkpoint", str(checkpoint), "--data", str(mini), "--encoder",
                               str(tmp_path / "encoder"), "--epochs", "0", "--text-weight", "1.0",
                               "--finetune-epochs", "1", "--finetune-layers", "1", "--finetune-batch-size", "8",
                               "--feature-cache", str(tmp_path / "f.safetensors")])
    assert result["fine_tuned"] and (checkpoint / "text_encoder.safetensors").is_file()
    tuned = TextScorer.load(checkpoint)
    assert tuned.config.tuned_layers == "text_encoder.safetensors"
    assert tuned.config.prototype_ids and tuned.prototypes.shape == (len(tuned.config.prototype_ids), 32)
    selector = StickerSelector.load(checkpoint, stickers=load_stickers(mini), device="cpu",
                                    feature_cache_path=tmp_path / "f.safetensors")
    assert any(r.text != 0.0 for r in selector.rank(["你好", "今天天气真好"], semantic_top_k=0))
    shipped = ship.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "shipped")])
    assert (tmp_path / "shipped" / "text_encoder.safetensors").is_file()
    frozen = TextScorer.load(tmp_path / "shipped")
    texts = ["你好今天天气真好", "谢谢"]
    assert torch.allclose(frozen.encode(texts), tuned.encode(texts), atol=1e-3)
    (tmp_path / "shipped" / "text_encoder.safetensors").unlink()
    with pytest.raises(ValueError, match="text_encoder.safetensors"):
        TextScorer.load(tmp_path / "shipped")

    # --refit-weights: the same encoder, map and prototypes; only the weights and the prior are chosen again
    tuned_bytes = (checkpoint / "text_encoder.safetensors").read_bytes()
    prototypes = tuned.prototypes.clone()
    (checkpoint / "sticker_prior.json").write_text(  # a prior from before the "unknown" rule
        json.dumps({"weight": 9.0, "counts": {}, "known": []}))
    result = text_scorer.main(["--checkpoint", str(checkpoint), "--data", str(mini), "--refit-weights",
                               "--text-weight", "0.5", "--feature-cache", str(tmp_path / "f.safetensors")])
    assert result["refit_weights"] and result["fine_tuned"] and result["unknown_prior"] == "log_mean"
    assert (checkpoint / "text_encoder.safetensors").read_bytes() == tuned_bytes
    refit = TextScorer.load(checkpoint)
    assert refit.config.weight == 0.5 and torch.equal(refit.prototypes, prototypes)
    prior = StickerPrior.load(checkpoint)
    assert prior.unknown == "log_mean" and prior.weight == result["weights"]["prior"] and prior.counts
    bare = tmp_path / "bare"
    shutil.copytree(checkpoint, bare)
    record_scoring_file(bare, "text_scorer", None)
    for name in (TEXT_SCORER_CONFIG, TEXT_SCORER_WEIGHTS, "text_encoder.safetensors"):
        (bare / name).unlink()
    with pytest.raises(SystemExit, match="no text scorer"):
        text_scorer.main(["--checkpoint", str(bare), "--data", str(mini), "--refit-weights",
                          "--feature-cache", str(tmp_path / "f.safetensors")])


def test_distant_supervision_stage_tunes_the_encoder_first(mini, tmp_path):
    """--distant-corpus: the encoder first learns (comment, emoticon tag) pairs, then the training split;
    its tuned layers differ from a run without the stage, and the option needs --finetune-epochs."""
    from core.model.backbone import tiny_backbone
    from train import text_scorer, trainer

    checkpoint = tmp_path / "run" / "best"
    trainer.main(["--recipe", "tiny", "--image-encoder", "random_projection:16", "--lexicon", "none",
                  "--test-candidates", "none", "--data", str(mini), "--output", str(tmp_path / "run"),
                  "--feature-cache", str(tmp_path / "f.safetensors")])
    corpus = tmp_path / "comments.txt"
    corpus.write_text("\n".join(f"{text}[{tag}]" for text, tag in [("今天天气真好", "哈哈"), ("谢谢你", "心"),
                                                                   ("再见", "泪"), ("你好", "哈哈"), ("好难过", "泪")] * 4),
                      encoding="utf-8")
    texts = [s.ocr + s.name_label for s in load_stickers(mini)] + ["你好今天天气真好谢谢再见哈哈心泪难过"]
    encoder, tokenizer = tiny_backbone(texts, seed=0)
    encoder.save_pretrained(tmp_path / "encoder")
    tokenizer.save_pretrained(tmp_path / "encoder")
    common = ["--checkpoint", str(checkpoint), "--data", str(mini), "--encoder", str(tmp_path / "encoder"),
              "--epochs", "0", "--text-weight", "1.0", "--finetune-layers", "1", "--finetune-batch-size", "8",
              "--feature-cache", str(tmp_path / "f.safetensors")]
    with pytest.raises(SystemExit, match="--finetune-epochs"):
        text_scorer.main(common + ["--distant-corpus", str(corpus)])
    plain = text_scorer.main(common + ["--finetune-epochs", "1"])
    plain_layers = (checkpoint / "text_encoder.safetensors").read_bytes()
    distant = text_scorer.main(common + ["--finetune-epochs", "1", "--distant-corpus", str(corpus),
                                         "--distant-min-count", "2", "--distant-epochs", "2"])
    assert plain["distant_corpus"] is None and distant["distant_corpus"] == str(corpus)
    assert distant["fine_tuned"] and (checkpoint / "text_encoder.safetensors").read_bytes() != plain_layers
    with pytest.raises(SystemExit, match="no such corpus file"):
        text_scorer.main(common + ["--finetune-epochs", "1", "--distant-corpus", str(tmp_path / "missing.txt")])
    subtitles = tmp_path / "subtitles"
    subtitles.mkdir()
    (subtitles / "a.conv").write_text("".join(f"E\nM {line}\nM {reply}\n" for line, reply in
                                              [("今天天气真好", "哈哈"), ("谢谢你", "不客气"), ("好难过", "抱抱")] * 3),
                                      encoding="utf-8")
    with pytest.raises(SystemExit, match="--finetune-epochs"):
        text_scorer.main(common + ["--distant-replies", str(subtitles)])
    replies = text_scorer.main(common + ["--finetune-epochs", "1", "--distant-replies", str(subtitles),
                                         "--sticker-text", "name+ocr+gloss"])
    assert replies["distant_replies"] == str(subtitles) and plain["distant_replies"] is None
    assert (checkpoint / "text_encoder.safetensors").read_bytes() != plain_layers
    assert json.loads((checkpoint / TEXT_SCORER_CONFIG).read_text())["sticker_text"] == "name+ocr+gloss"
    with pytest.raises(SystemExit, match="no subtitle dialogue file"):
        text_scorer.main(common + ["--finetune-epochs", "1", "--distant-replies", str(tmp_path / "none")])
