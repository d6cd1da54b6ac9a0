"""The one scoring path (core.serving.scoring): the demo ranks the way train.evaluate measures, part by part,
and a checkpoint's scoring parts are the files its config records."""
from __future__ import annotations

import json
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

from core.model.checkpoint import load_selector, save_selector  # noqa: E402
from core.data.mod import load_stickers  # noqa: E402
from core.data.dialogue import sample_dialogue_text  # noqa: E402
from core.serving.text_scorer import TEXT_SCORER_CONFIG  # noqa: E402
from core.serving.inference import StickerSelector  # noqa: E402
from core.serving.prior import PRIOR_FILE, StickerPrior  # noqa: E402
from core.serving.scoring import SHARES, ScoreBreakdown, load_scorer, load_scoring_parts, record_scoring_file  # noqa: E402
from tests.support.mini_mod import make_mini_mod  # noqa: E402
from tests.support.text_scorer import tiny_text_scorer  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny selector checkpoint with all three parts: cross-encoder, text scorer (a tiny sentence
    encoder saved as a local path) and popularity prior, both recorded in its config."""
    tmp = tmp_path_factory.mktemp("scoring")
    mini = make_mini_mod(tmp / "mod", n_dialogues=16)
    stickers = load_stickers(mini)
    selector = StickerSelector.tiny_random(stickers, seed=3)
    path = tmp / "ckpt"
    save_selector(path, selector.model, selector.tokenizer)
    ids = [s.sticker_id for s in stickers if s.has_image]
    StickerPrior({ids[0]: 9, ids[1]: 3, ids[2]: 1}, weight=0.7, known=ids[:-2]).save(path)
    record_scoring_file(path, "prior", PRIOR_FILE)
    tiny_text_scorer(tmp / "encoder", stickers, ["你好今天天气真好谢谢"]).save(path)
    record_scoring_file(path, "text_scorer", TEXT_SCORER_CONFIG)
    return {"path": path, "mini": mini, "stickers": stickers, "features": tmp / "features.safetensors"}


def test_config_records_the_scoring_parts(checkpoint):
    model, _ = load_selector(checkpoint["path"])
    assert model.config.scoring_files == {"prior": PRIOR_FILE, "text_scorer": TEXT_SCORER_CONFIG}
    prior, text = load_scoring_parts(checkpoint["path"], model.config)
    assert prior.weight == 0.7 and text.config.cross_weight == 0.5


def test_a_recorded_part_must_exist_and_an_unrecorded_file_is_not_used(checkpoint, tmp_path):
    import shutil

    copy = tmp_path / "ckpt"
    shutil.copytree(checkpoint["path"], copy)
    record_scoring_file(copy, "prior", None)  # the file is still there, but no longer part of the model
    model, _ = load_selector(copy)
    prior, text = load_scoring_parts(copy, model.config)
    assert prior is None and text is not None
    (copy / TEXT_SCORER_CONFIG).unlink()
    with pytest.raises(FileNotFoundError, match="text_scorer.json is missing: the checkpoint's config records it"):
        load_scoring_parts(copy, model.config)
    with pytest.raises(ValueError, match="unknown scoring part 'bias'"):
        record_scoring_file(copy, "bias", "bias.json")


def test_an_older_checkpoint_without_the_record_finds_its_files(checkpoint, tmp_path):
    import shutil

    copy = tmp_path / "old"
    shutil.copytree(checkpoint["path"], copy)
    values = json.loads((copy / "config.json").read_text())
    del values["scoring_files"]
    (copy / "config.json").write_text(json.dumps(values))
    model, _ = load_selector(copy)
    assert model.config.scoring_files is None
    prior, text = load_scoring_parts(copy, model.config)
    assert prior.weight == 0.7 and text is not None


def test_breakdown_sums_its_shares():
    parts = ScoreBreakdown([0, 1], torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.0]), torch.tensor([0.0, -1.0]))
    assert parts.total.tolist() == [1.5, 1.0]
    assert parts.sum(("cross", "prior")).tolist() == [1.0, 1.0]
    with pytest.raises(ValueError, match="unknown score shares"):
        parts.sum(("cross", "bias"))


def test_selector_rank_and_pair_scorer_agree_part_by_part(checkpoint):
    selector = StickerSelector.load(checkpoint["path"], stickers=checkpoint["stickers"], device="cpu",
                                    feature_cache_path=checkpoint["features"])
    scorer = load_scorer(checkpoint["path"], checkpoint["stickers"], feature_cache=checkpoint["features"], device="cpu")
    turns = ["你好呀", "今天天气真好"]
    ranked = selector.rank(turns, semantic_top_k=0)
    sample = {"sample_id": "s", "speakers": ["[speaker1]", "[speaker2]"], "texts": turns}
    ids = [r.sticker_id for r in ranked]
    for shares in (SHARES, ("cross", "text"), ("cross",)):
        expected = scorer.pair_scorer(shares)(sample, ids)
        got = [r.score - (0.0 if "prior" in shares else r.prior) - (0.0 if "text" in shares else r.text)
               for r in ranked]
        assert got == pytest.approx(expected, abs=1e-4)
    assert any(r.prior != 0 for r in ranked) and any(r.text != 0 for r in ranked)


def test_demo_rank_api_scores_equal_train_evaluate_scores(checkpoint, tmp_path):
    """The same dialogue and candidates: /rank (the demo, over HTTP) gives the scores train.evaluate
    measured (written with --scores-output), for every part of the shipped score."""
    gradio_client = pytest.importorskip("gradio_client")
    from tests.support.demo_server import running_demo
    from train import evaluate as evaluate_cli

    scores_file = tmp_path / "scores.jsonl"
    evaluate_cli.main(["--checkpoint", str(checkpoint["path"]), "--data", str(checkpoint["mini"]),
                       "--dialogues", str(checkpoint["mini"] / "dialogues.json"), "--candidates", "10",
                       "--zero-shot", "none", "--reference-contexts", "0", "--scores-output", str(scores_file),
                       "--feature-cache", str(checkpoint["features"])])
    rows = [json.loads(line) for line in scores_file.read_text(encoding="utf-8").splitlines()]
    assert rows and all(len(r["scores"]) == len(rows[0]["scores"]) for r in rows)
    selector = StickerSelector.load(checkpoint["path"], stickers=checkpoint["stickers"], device="cpu",
                                    feature_cache_path=checkpoint["features"])
    with running_demo(selector, ocr_engine=None) as app:
        client = gradio_client.Client(app.url, analytics_enabled=False, verbose=False)
        for row in rows[:4]:
            candidates = sorted(row["scores"])[:6] + [row["gold"]]
            candidates = list(dict.fromkeys(candidates))
            text = sample_dialogue_text(row["speakers"], row["texts"])
            ranked = client.predict(text, "choice", candidates, 0, api_name="/rank")
            assert {r["sticker_id"] for r in ranked} == set(candidates)
            for r in ranked:
                assert r["score"] == pytest.approx(row["scores"][r["sticker_id"]], abs=1e-4), (row["sample_id"], r)


def test_the_text_scorers_dialogue_cache_stays_bounded(checkpoint, monkeypatch):
    import core.serving.scoring as scoring

    monkeypatch.setattr(scoring, "MAX_CACHED_DIALOGUES", 3)
    scorer = load_scorer(checkpoint["path"], checkpoint["stickers"], feature_cache=checkpoint["features"], device="cpu")
    rows = scorer.rows(scorer.bank.ids[:2])
    first = scorer.text_shares(["你好"], rows)
    for i in range(5):
        scorer.text_shares([f"第{i}句"], rows)
    assert len(scorer._dialogues) == 3 and ("你好",) not in scorer._dialogues
    assert torch.allclose(scorer.text_shares(["你好"], rows), first)  # embedded again, same share
    scorer.prepare_dialogues([[f"批{i}"] for i in range(10)])        # one evaluation batch is kept whole
    assert len(scorer._dialogues) == 10
