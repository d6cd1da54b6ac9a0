"""Error analysis (core.evaluation.errors): misses, recall per gold sticker, confusions, from ranked samples."""
from __future__ import annotations

import pytest

from core.evaluation.errors import RankedSample, confusions, misses, rank_samples, sticker_recall, summary


def sample(i, gold, rank, pick):
    top = (pick,) if rank > 1 else (gold,)
    return RankedSample(f"s{i}", gold, rank, top + ("x",), 10)


SAMPLES = [sample(0, "a", 1, "a"), sample(1, "a", 3, "b"), sample(2, "a", 2, "b"), sample(3, "c", 7, "b"),
           sample(4, "c", 1, "c"), sample(5, "d", 2, "a")]


def test_misses_worst_first_with_pick():
    got = misses(SAMPLES)
    assert [(s.sample_id, s.gold_rank, s.pick) for s in got] == [("s3", 7, "b"), ("s1", 3, "b"), ("s2", 2, "b"),
                                                                 ("s5", 2, "a")]


def test_recall_per_sticker_worst_first():
    rows = {r.sticker_id: r for r in sticker_recall(SAMPLES, k=5)}
    assert rows["a"].n == 3 and rows["a"].recall_at_1 == pytest.approx(1 / 3) and rows["a"].recall_at_k == 1.0
    assert rows["c"].recall_at_1 == 0.5 and rows["c"].recall_at_k == 0.5 and rows["c"].mean_rank == 4.0
    assert rows["d"].recall_at_1 == 0.0 and rows["d"].recall_at_k == 1.0
    assert [r.sticker_id for r in sticker_recall(SAMPLES, k=5)] == ["d", "a", "c"]


def test_confusions_most_frequent_first():
    assert confusions(SAMPLES) == [("a", "b", 2), ("c", "b", 1), ("d", "a", 1)]
    assert confusions(SAMPLES, top=1) == [("a", "b", 2)]
    assert confusions([sample(0, "a", 1, "a")]) == []


def test_summary():
    got = summary(SAMPLES, k=5)
    assert got["n"] == 6 and got["misses"] == 4
    assert got["recall_at_1"] == pytest.approx(2 / 6) and got["recall_at_5"] == pytest.approx(5 / 6)
    assert got["mrr"] == pytest.approx((1 + 1 / 3 + 1 / 2 + 1 / 7 + 1 + 1 / 2) / 6)
    assert summary([])["n"] == 0


def test_rank_samples_agrees_with_the_selector(mini_selector):
    """The gold's rank and the pick are those of StickerSelector.rank (the demo's ranking)."""
    ids = mini_selector.sticker_ids()
    samples = [{"sample_id": f"d{i}#1", "speakers": ["[speaker1]", "[speaker2]"], "texts": ["你好呀", text],
                "sticker_id": ids[i % len(ids)]} for i, text in enumerate(["好困啊", "气死我了", "谢谢你", "再见"])]
    samples.append({"sample_id": "gone#1", "speakers": ["[speaker1]"], "texts": ["嗯"], "sticker_id": "012"})
    steps = []
    ranked, skipped = rank_samples(mini_selector.scorer, samples, keep=3, progress=lambda f, _: steps.append(f))
    assert skipped == ["gone#1"] and len(ranked) == 4 and steps[-1] == 1.0
    for got, s in zip(ranked, samples):
        order = [r.sticker_id for r in mini_selector.rank(s["texts"], semantic_top_k=0)]
        assert got.top == tuple(order[:3]) and got.gold_rank == order.index(s["sticker_id"]) + 1
        assert got.n_candidates == len(ids) and got.texts == tuple(s["texts"])


# ----------------------------------------------------------------------------- the demo's analysis service


@pytest.fixture(scope="module")
def analysis(tmp_path_factory, make_tiny_selector):
    """An AnalysisService over the splits of a mini MOD folder, with a tiny selector."""
    from core.data.mod import load_mod
    from demo.analysis_service import AnalysisService
    from demo.service import DemoService, load_examples
    from tests.support.mini_mod import make_mini_mod

    root = make_mini_mod(tmp_path_factory.mktemp("analysis") / "mod", n_dialogues=40)
    mod = load_mod(root)
    selector = make_tiny_selector([s for s in mod.stickers if s.has_image], seed=2)
    service = DemoService(selector, examples=load_examples(mod, per_split=3))
    return AnalysisService(service, mod.split_rows), mod, root


def test_analysis_of_a_split_is_cached_and_misses_load_into_the_rank_view(analysis):
    from demo.service import DemoError

    service, mod, _ = analysis
    assert [key for _, key in service.sources()] == ["easy_test", "hard_test", "upload"]
    result = service.analyse("easy_test")
    assert result.name == "easy_test" and len(result.ranked) == len(mod.split_rows["easy_test"])
    assert service.analyse("easy_test") is result  # cached: not ranked again
    assert result.summary["misses"] == len(result.misses) > 0
    miss = result.misses[0]
    text, key = service.load_miss(result, miss.sample_id)
    parsed = service.service.parse(text)
    assert parsed.texts == list(miss.texts) and service.service.gold_for(parsed, key)[0] == miss.gold
    outcome = service.service.rank(text, example_key=key)
    assert outcome.gold_id == miss.gold and outcome.rank_of(miss.gold) == miss.gold_rank
    assert outcome.top_id == miss.pick
    with pytest.raises(DemoError, match="No sample"):
        service.load_miss(result, "nope#1")
    with pytest.raises(DemoError, match="Unknown split"):
        service.analyse("train")


def test_analysis_of_an_uploaded_file(analysis, tmp_path):
    from demo.analysis_service import UPLOAD
    from demo.service import DemoError

    service, mod, root = analysis
    result = service.analyse(UPLOAD, root / "dialogues.json")
    assert result.name == "dialogues.json" and len(result.ranked) == len(mod.samples)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(DemoError, match="Not a MOD-format dialogues file"):
        service.analyse(UPLOAD, bad)
    empty = tmp_path / "empty.json"
    empty.write_text('{"d": [{"speaker_id": 0, "txt": "你好"}]}', encoding="utf-8")
    with pytest.raises(DemoError, match="No samples"):
        service.analyse(UPLOAD, empty)
    with pytest.raises(DemoError, match="Upload a dialogues file"):
        service.analyse(UPLOAD, None)


def test_contrastive_explains_pick_over_gold(analysis):
    from demo.analysis_service import contrastive
    from demo.service import DemoError

    service, _, _ = analysis
    result = service.analyse("easy_test")
    miss = result.misses[0]
    text, key = service.load_miss(result, miss.sample_id)
    contrast = contrastive(service.service, text, key, method="gradient")
    assert (contrast.pick, contrast.gold) == (miss.pick, miss.gold) and contrast.gold_rank == miss.gold_rank
    ranked = {r.sticker_id: r.score for r in service.service.selector.rank(list(miss.texts), semantic_top_k=0)}
    assert contrast.explanation.score == pytest.approx(ranked[miss.pick] - ranked[miss.gold], abs=1e-4)
    with pytest.raises(DemoError, match="No gold sticker"):
        contrastive(service.service, text + "\n多一句", key)
    from demo.service import Example

    service.service.examples["as-if-hit"] = Example("as-if-hit", "t", text, gold_id=miss.pick)  # the pick is gold
    with pytest.raises(DemoError, match="nothing to contrast"):
        contrastive(service.service, text, "as-if-hit")
