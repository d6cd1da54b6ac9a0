"""python -m train.reader_study: blind questionnaires on train.evaluate's candidate sets, and their scoring."""
from __future__ import annotations

import json

import pytest

from core.data.mod import load_mod
from core.evaluation.metrics import candidate_sets
from tests.support.mini_mod import make_mini_mod
from train import reader_study


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_mod(tmp_path_factory.mktemp("reader") / "mod", n_dialogues=40)


def test_questions_use_the_evaluation_candidate_sets_and_hide_the_gold(mini, tmp_path):
    out = tmp_path / "q"
    result = reader_study.main(["questions", "--data", str(mini), "--split", "easy_test", "--n", "5",
                                "--output", str(out)])
    mod = load_mod(mini, seed=0)
    rows = list(mod.split_rows["easy_test"])
    sets = candidate_sets([r["sticker_id"] for r in rows], mod.stickers.ids_with_image(), 10, 0)
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    text = (out / "questions.md").read_text(encoding="utf-8")
    assert result["n"] == len(key["items"]) == min(5, len(rows))
    by_id = {r["sample_id"]: (r, s) for r, s in zip(rows, sets)}
    for item in key["items"]:
        row, expected = by_id[item["sample_id"]]
        assert item["candidates"] == expected                     # the very sets train.evaluate ranks
        assert item["candidates"][reader_study.LETTERS.index(item["gold"])] == row["sticker_id"]
        assert f"▶ {row['speakers'][-1]}: {row['texts'][-1]}" in text
    assert "gold" not in text and row["sticker_id"] not in text.split("## 1")[0]


def test_score_counts_hits_and_compares_with_a_model(mini, tmp_path):
    out = tmp_path / "q"
    reader_study.main(["questions", "--data", str(mini), "--split", "easy_test", "--n", "4", "--output", str(out)])
    key = json.loads((out / "key.json").read_text(encoding="utf-8"))
    items = key["items"]
    wrong = {g: next(letter for letter in reader_study.LETTERS if letter != g) for g in reader_study.LETTERS}
    answers = tmp_path / "answers.txt"
    answers.write_text("# reader\n" + "\n".join(f"{it['item']} {it['gold'] if it['item'] <= 2 else wrong[it['gold']]}"
                                                for it in items) + "\n", encoding="utf-8")
    scores = tmp_path / "scores.jsonl"  # a model that ranks the gold first everywhere
    scores.write_text("".join(json.dumps({"sample_id": it["sample_id"],
                                          "scores": {c: float(c == it["candidates"][reader_study.LETTERS.index(it["gold"])])
                                                     for c in it["candidates"]}}) + "\n" for it in items))
    result = reader_study.main(["score", "--key", str(out / "key.json"), "--answers", str(answers),
                                "--scores", str(scores), "--output", str(tmp_path / "r.json")])
    assert result["reader_R10@1"] == pytest.approx(100 * 2 / len(items))
    low, high = result["reader_R10@1_95ci"]
    assert low < result["reader_R10@1"] < high
    assert result["model_R10@1"] == 100.0
    assert result["reader_vs_model"]["R@1_only_other"] == len(items) - 2 and result["items_only_reader"] == []
    assert json.loads((tmp_path / "r.json").read_text())["n"] == len(items)


@pytest.mark.parametrize("content, message", [("1 C\n1 D\n", "answered twice"), ("1 Q\n", "not 'ITEM LETTER'"),
                                               ("9 C\n", "not between"), ("1 C\n", "no answer for items [2]")])
def test_bad_answer_files_are_named(tmp_path, content, message):
    path = tmp_path / "a.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        reader_study.read_answers(path, 2)


def test_wilson_interval():
    assert reader_study.wilson(0, 0) == (0.0, 0.0)
    low, high = reader_study.wilson(30, 100)
    assert 21 < low < 22 and 39 < high < 40
