"""`python -m train.reader_study`: how often a person reading the dialogue picks the gold sticker.

    python -m train.reader_study questions --split hard_test --n 50 --output runs/reader/hard
    (a reader answers OUTPUT/questions.md in a text file, one "ITEM LETTER" line per item)
    python -m train.reader_study score --key runs/reader/hard/key.json --answers ANSWERS.txt
                                       [--scores SCORES.jsonl] [--output FILE.json]

`questions` takes a seeded subset of a split's samples with **the very 10-candidate sets
`train.evaluate --candidates 10 --seed S` ranks them in** and writes, for a reader blind to the
answer, each dialogue's last --turns turns (the last one is the turn the sticker was sent with)
and the ten candidates as letters with the text a model reads of them (name label and OCR text).
The answers go in OUTPUT/key.json, kept apart: a reader should not open it.

`score` reads the answers and reports the reader's R10@1 with a 95 % Wilson interval beside the
popularity floor on the same items, and, with --scores (the JSON lines of
`train.evaluate --scores-output`), the model's R10@1 on the same items and a paired sign test of
reader against model. It measures what the dialogue and the sticker texts let a reader do: the
ceiling a text-reading selector can be expected to approach on that split.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import random
import re
from collections import Counter
from pathlib import Path

from core.evaluation.metrics import PopularityRanker, candidate_sets, paired_comparison, rank_of

from .cli import add_sticker_ids_argument, parse_entry_args
from .paths import default_data_dir

LETTERS = "ABCDEFGHIJ"
ANSWER_LINE = re.compile(r"^\s*(\d+)\s*[:.)\-]?\s*([A-Ja-j])\s*$")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train.reader_study", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    q = sub.add_parser("questions", help="write a blind questionnaire and its key")
    q.add_argument("--data")
    add_sticker_ids_argument(q)
    q.add_argument("--split", default="hard_test", choices=["valid", "valid_hard", "easy_test", "hard_test"])
    q.add_argument("--split-seed", type=int, default=0)
    q.add_argument("--seed", type=int, default=0, help="candidate-set seed, as train.evaluate --seed")
    q.add_argument("--n", type=int, default=50, help="how many samples (seeded subset of the split)")
    q.add_argument("--sample-seed", type=int, default=0, help="seed of the subset")
    q.add_argument("--turns", type=int, default=3, help="dialogue turns shown (the last is the sticker's turn)")
    q.add_argument("--output", required=True)
    s = sub.add_parser("score", help="score a reader's answers")
    s.add_argument("--key", required=True)
    s.add_argument("--answers", required=True)
    s.add_argument("--scores", help="JSON lines of train.evaluate --scores-output: the model on the same items")
    s.add_argument("--output")
    return p


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson interval of a proportion k/n, in percent."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (100 * max(0.0, centre - half), 100 * min(1.0, centre + half))


def sticker_line(sticker) -> str:
    name, ocr = (sticker.name_label or "").strip(), (sticker.ocr or "").strip()
    return f"{name} | {ocr}" if ocr and ocr != name else name or ocr or "(no text)"


def top1_share(scores: list[float], gold_index: int) -> float:
    """1 when the gold candidate scores highest, 1/k when it ties with k-1 others there, else 0
    (the expected R10@1 of a ranker that breaks ties at random)."""
    top = max(scores)
    return 1.0 / sum(s == top for s in scores) if scores[gold_index] == top else 0.0


def make_questions(mod, split: str, *, seed: int, n: int, sample_seed: int, turns: int) -> tuple[str, dict]:
    """(questionnaire markdown, key) for a seeded subset of `split`, on train.evaluate's candidate sets."""
    rows = [dict(r) for r in mod.split_rows[split]]
    if not rows:
        raise ValueError(f"split {split!r} has no samples")
    pool = mod.stickers.ids_with_image()
    sets = candidate_sets([r["sticker_id"] for r in rows], pool, 10, seed)
    chosen = sorted(random.Random(sample_seed).sample(range(len(rows)), min(n, len(rows))))
    popularity = PopularityRanker([r["sticker_id"] for r in mod.split_rows["train"]])
    lines = [f"# Which sticker was sent? ({split}, {len(chosen)} items)", "",
             "Each item: the end of a dialogue; the sticker was sent with the last turn (marked ▶).",
             "Pick the one candidate you think was sent. Answer one line per item: `ITEM LETTER`.", ""]
    items = []
    for number, i in enumerate(chosen, 1):
        row, candidates = rows[i], sets[i]
        shown = list(zip(row["speakers"], row["texts"]))[-turns:]
        lines.append(f"## {number}")
        for j, (speaker, text) in enumerate(shown):
            mark = "▶" if j == len(shown) - 1 else " "
            lines.append(f"{mark} {speaker}: {text}")
        lines.append("")
        lines += [f"- {LETTERS[k]}. {sticker_line(mod.stickers.get(c))}" for k, c in enumerate(candidates)]
        lines.append("")
        pop = popularity.scores(candidates)
        items.append({"item": number, "sample_id": row["sample_id"], "candidates": candidates,
                      "gold": LETTERS[candidates.index(row["sticker_id"])],
                      "popularity_hit": top1_share(pop, candidates.index(row["sticker_id"]))})
    key = {"split": split, "seed": seed, "sample_seed": sample_seed, "turns": turns, "items": items}
    return "\n".join(lines), key


def read_answers(path: str | Path, n_items: int) -> dict[int, str]:
    """ITEM LETTER lines -> {item: letter}; errors name the line."""
    answers = {}
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = ANSWER_LINE.match(line)
        if not match:
            raise ValueError(f"{path}:{number}: {line!r} is not 'ITEM LETTER' (e.g. '12 C')")
        item, letter = int(match.group(1)), match.group(2).upper()
        if not 1 <= item <= n_items:
            raise ValueError(f"{path}:{number}: item {item} is not between 1 and {n_items}")
        if item in answers:
            raise ValueError(f"{path}:{number}: item {item} answered twice")
        answers[item] = letter
    missing = sorted(set(range(1, n_items + 1)) - set(answers))
    if missing:
        raise ValueError(f"{path}: no answer for items {missing[:10]}{' ...' if len(missing) > 10 else ''}")
    return answers


def model_ranks(scores_path: str | Path, items: list[dict]) -> list[int]:
    """The model's gold rank in each item's candidate set, from train.evaluate --scores-output lines."""
    wanted = {item["sample_id"] for item in items}
    table = {}
    with open(scores_path, encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row["sample_id"] in wanted:
                table[row["sample_id"]] = row["scores"]
    missing = sorted(wanted - set(table))
    if missing:
        raise ValueError(f"{scores_path} has no scores for samples {missing[:5]}")
    ranks = []
    for item in items:
        scores = [table[item["sample_id"]][c] for c in item["candidates"]]
        ranks.append(rank_of(scores, LETTERS.index(item["gold"]), random.Random(item["item"])))
    return ranks


def score(key: dict, answers: dict[int, str], scores_path: str | None = None) -> dict:
    items = key["items"]
    reader_ranks = [1 if answers[item["item"]] == item["gold"] else 2 for item in items]  # 2: "not first"
    hits = sum(r == 1 for r in reader_ranks)
    pop_hits = sum(item["popularity_hit"] for item in items)
    result = {"split": key["split"], "n": len(items), "reader_R10@1": 100 * hits / len(items),
              "reader_R10@1_95ci": wilson(hits, len(items)),
              "popularity_R10@1": 100 * pop_hits / len(items),
              "chosen_letters": dict(sorted(Counter(answers.values()).items()))}
    if scores_path:
        ranks = model_ranks(scores_path, items)
        result["model_R10@1"] = 100 * sum(r == 1 for r in ranks) / len(items)
        paired = paired_comparison(reader_ranks, [1 if r == 1 else 2 for r in ranks])
        result["reader_vs_model"] = {k: v for k, v in paired.items() if k.startswith("R@1")}  # a reader gives no rank
        result["items_only_reader"] = [item["item"] for item, r, m in zip(items, reader_ranks, ranks) if r == 1 and m != 1]
    return result


def main(argv=None) -> dict:
    args = parse_entry_args(build_parser(), argv, level=logging.WARNING)
    if args.command == "questions":
        from core.data.mod import load_mod

        mod = load_mod(Path(args.data) if args.data else default_data_dir(), seed=args.split_seed,
                       sticker_ids=args.sticker_ids)
        text, key = make_questions(mod, args.split, seed=args.seed, n=args.n, sample_seed=args.sample_seed,
                                   turns=args.turns)
        output = Path(args.output)
        output.mkdir(parents=True, exist_ok=True)
        (output / "questions.md").write_text(text + "\n", encoding="utf-8")
        (output / "key.json").write_text(json.dumps(key, ensure_ascii=False, indent=1), encoding="utf-8")
        result = {"questions": str(output / "questions.md"), "key": str(output / "key.json"), "n": len(key["items"])}
    else:
        key = json.loads(Path(args.key).read_text(encoding="utf-8"))
        try:
            answers = read_answers(args.answers, len(key["items"]))
            result = score(key, answers, args.scores)
        except ValueError as error:
            raise SystemExit(str(error)) from error
        if args.output:
            Path(args.output).write_text(json.dumps(result, indent=1), encoding="utf-8")
    print(json.dumps(result, ensure_ascii=False, indent=1))
    return result


if __name__ == "__main__":
    main()
