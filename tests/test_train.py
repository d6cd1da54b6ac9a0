"""End to end on a synthetic MOD folder: train, resume exactly, evaluate, rank."""
import json

import pytest
import torch
from safetensors.torch import load_file

from tests.support.mini_mod import make_mini_mod
from train import evaluate as evaluate_cli
from train import trainer

FAST = ["--recipe", "tiny", "--image-encoder", "random_projection:16", "--lexicon", "none",
        "--test-candidates", "all"]


@pytest.fixture(scope="module")
def mini(tmp_path_factory):
    return make_mini_mod(tmp_path_factory.mktemp("mini") / "mod", n_dialogues=16)


@pytest.fixture(scope="module")
def trained(mini, tmp_path_factory):
    """One tiny checkpoint, trained once for the tests that only evaluate."""
    output = tmp_path_factory.mktemp("trained") / "run"
    run(mini, output)
    return output / "best"


def wide_mod(root):
    """The mini folder with 28 more stickers (013-040, copies of one image), so that ids from 037 on exist."""
    import shutil

    make_mini_mod(root, n_dialogues=16)
    img2id = json.loads((root / "img2id.json").read_text(encoding="utf-8"))
    ocr = json.loads((root / "ocr.json").read_text(encoding="utf-8"))
    for k in range(13, 41):
        shutil.copy(root / "stickers" / "生气.png", root / "stickers" / f"extra{k}.png")
        img2id[f"extra{k}.png"] = f"{k:03d}"
        ocr[str(k)] = {"ocr": f"第{k}个", "name": f"extra{k}.png"}
    (root / "img2id.json").write_text(json.dumps(img2id, ensure_ascii=False), encoding="utf-8")
    (root / "ocr.json").write_text(json.dumps(ocr, ensure_ascii=False), encoding="utf-8")
    return root


EARLY_DIALOGUES = {"dialogue x": [  # early-release ids: 037 -> 038, 038 -> 039, 036 stays
    {"speaker_id": "[speaker1]", "txt": "你好呀", "img_id": "037"},
    {"speaker_id": "[speaker2]", "txt": "今天天气真好", "img_id": "038"},
    {"speaker_id": "[speaker1]", "txt": "谢谢你", "img_id": "036"},
    {"speaker_id": "[speaker2]", "txt": "好困啊", "img_id": "037"},
]}


def run(mini, output, *extra):
    return trainer.main([*FAST, "--data", str(mini), "--output", str(output),
                         "--feature-cache", str(output.parent / "features.safetensors"), *extra])


def test_one_epoch_end_to_end(mini, tmp_path):
    result = run(mini, tmp_path / "run")
    assert result["steps"] >= 1 and result["history"]
    for split in ("easy_test", "hard_test"):
        metrics = result[split]
        assert {"R10@1", "MRR10", "RALL@5", "MRRALL", "macro_R10@1", "popularity", "n"} <= set(metrics)
        assert 0.0 <= metrics["R10@1"] <= 100.0
    assert (tmp_path / "run" / "best" / "model.safetensors").exists()
    config = json.loads((tmp_path / "run" / "best" / "config.json").read_text())
    assert config["image_encoder"] == "random_projection:16" and config["task_weights"]["sem"] > 0


def test_resume_after_interruption_gives_the_same_state(mini, tmp_path):
    args = ["--epochs", "2", "--save-every", "1", "--test-candidates", "none"]
    run(mini, tmp_path / "straight", *args)
    stopped = run(mini, tmp_path / "resumed", *args, "--stop-after-steps", "3")
    assert stopped == {"stopped_at": 3}
    state = json.loads((tmp_path / "resumed" / "last" / "state.json").read_text())
    assert state["step"] == 3
    run(mini, tmp_path / "resumed", *args, "--resume")
    a = load_file(str(tmp_path / "straight" / "last" / "model" / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "last" / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_evaluate_cli_on_a_tiny_dialogue_file(mini, trained, tmp_path, capsys):
    dialogues = {"dialogue x": [
        {"speaker_id": "[speaker1]", "txt": "你好呀"},
        {"speaker_id": "[speaker2]", "txt": "今天天气真好", "img_id": "1"},
        {"speaker_id": "[speaker1]", "txt": "谢谢你", "img_id": "003"},
    ]}
    path = tmp_path / "new_dialogues.json"
    path.write_text(json.dumps(dialogues, ensure_ascii=False), encoding="utf-8")
    out = tmp_path / "eval.json"
    result = evaluate_cli.main(["--checkpoint", str(trained), "--data", str(mini),
                                "--dialogues", str(path), "--candidates", "all", "--output", str(out),
                                "--feature-cache", str(tmp_path / "f.safetensors"), "--reference-contexts", "5"])
    assert result["n"] == 2  # both sticker turns after the first
    assert result["sticker_normalized"]["reference_contexts"] == 5 and "R10@1" in result["sticker_normalized"]
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(out.read_text())
    keys = {"R10@1", "R10@2", "R10@5", "MRR10", "RALL@1", "RALL@2", "RALL@5", "MRRALL", "n"}
    assert keys <= set(printed) and keys <= set(printed["popularity"]) and "macro_R10@1" in printed


def test_dual_encoder_baseline_end_to_end(mini, tmp_path):
    from train import baseline

    result = baseline.main(["--data", str(mini), "--output", str(tmp_path / "dual"), "--backbone", "tiny",
                            "--num-layers", "2", "--image-encoder", "random_projection:16", "--epochs", "2",
                            "--batch-size", "8", "--feature-cache", str(tmp_path / "f.safetensors")])
    assert result["steps"] >= 2
    for split in ("easy_test", "hard_test"):
        assert {"R10@1", "MRRALL", "popularity"} <= set(result[split])
    assert (tmp_path / "dual" / "best" / "dual_encoder.json").exists()


def test_frozen_text_baseline_end_to_end(mini, tmp_path):
    from train import frozen_text

    args = ["--data", str(mini), "--output", str(tmp_path / "ft"), "--encoder", "tiny", "--epochs", "2",
            "--seeds", "0", "1", "--candidate-seeds", "0", "1", "--rank", "4"]
    result = frozen_text.main(args)
    assert len(result["runs"]) == 4
    for split in ("easy_test", "hard_test"):
        for view in ("model", "sticker_normalized", "normalized_plus_prior", "popularity"):
            assert 0.0 <= result["mean"][split][view]["R10@1"] <= 100.0
    assert json.loads((tmp_path / "ft" / "results.json").read_text())["n"] == result["n"]
    again = frozen_text.main(args)  # embeddings come from the cache; training is seeded
    assert again["mean"] == result["mean"]


def test_evaluate_cli_sticker_ids_early_release(trained, tmp_path, capsys):
    """--sticker-ids early-release scores a file in the early numbering exactly as its official conversion."""
    from core.data.mod import convert_dialogue_ids

    data = wide_mod(tmp_path / "wide")
    early = tmp_path / "early.json"
    early.write_text(json.dumps(EARLY_DIALOGUES, ensure_ascii=False), encoding="utf-8")
    official = tmp_path / "official.json"
    converted = convert_dialogue_ids(EARLY_DIALOGUES, "early-release")
    assert [t["img_id"] for t in converted["dialogue x"]] == ["038", "039", "036", "038"]
    official.write_text(json.dumps(converted, ensure_ascii=False), encoding="utf-8")
    common = ["--checkpoint", str(trained), "--data", str(data), "--candidates", "all",
              "--feature-cache", str(tmp_path / "f.safetensors")]
    by_flag = evaluate_cli.main(common + ["--dialogues", str(early), "--sticker-ids", "early-release"])
    plain = evaluate_cli.main(common + ["--dialogues", str(official)])
    capsys.readouterr()
    assert by_flag == plain and by_flag["n"] == 3 and by_flag["pool_size"] == 40
    with pytest.raises(SystemExit):
        evaluate_cli.main(common + ["--sticker-ids", "upstream"])


def test_prepare_data_converts_early_release_ids(tmp_path):
    data = wide_mod(tmp_path / "wide")
    path = tmp_path / "early.json"
    path.write_text(json.dumps(EARLY_DIALOGUES, ensure_ascii=False), encoding="utf-8")
    base = ["--data", str(data), "--dialogues", str(path), "--lexicon", "none"]
    official = trainer.prepare_data(trainer.parse_args(base))
    early = trainer.prepare_data(trainer.parse_args(base + ["--sticker-ids", "early-release"]))
    assert [s["sticker_id"] for s in official.samples] == ["038", "036", "037"]
    assert [s["sticker_id"] for s in early.samples] == ["039", "036", "038"]


def test_every_entry_point_takes_sticker_ids():
    from demo import launcher
    from train import baseline, bench, check_alignment, fit_prior, frozen_text, report, text_scorer

    required = {fit_prior: ["--checkpoint", "c"], text_scorer: ["--checkpoint", "c"]}
    parsers = [m.build_parser() for m in (evaluate_cli, report, bench, frozen_text, text_scorer, fit_prior,
                                          baseline, check_alignment, launcher)]
    for module, parser in zip((evaluate_cli, report, bench, frozen_text, text_scorer, fit_prior, baseline,
                               check_alignment, launcher), parsers):
        extra = required.get(module, [])
        assert parser.parse_args(extra).sticker_ids == "official", module.__name__
        assert parser.parse_args(extra + ["--sticker-ids", "early-release"]).sticker_ids == "early-release"
        (action,) = [a for a in parser._actions if a.dest == "sticker_ids"]
        assert "feizc/Dialogue-System data/data.json" in action.help and action.choices == ("official", "early-release")
    assert trainer.parse_args([]).sticker_ids == "official"
    assert trainer.parse_args(["--sticker-ids", "early-release"]).sticker_ids == "early-release"
    with pytest.raises(SystemExit):
        trainer.parse_args(["--sticker-ids", "upstream"])


def test_report_passes_sticker_ids_to_every_run(tmp_path, monkeypatch):
    from train import report

    calls = []

    def fake(module, argv):  # report runs each entry point as `python -m MODULE ...`
        name = module.removeprefix("train.")
        calls.append((name, list(argv)))
        if name != "mlm_warmup":
            out = argv[argv.index("--output") + 1]
            (tmp_path / out).mkdir(parents=True, exist_ok=True)
            (tmp_path / out / "results.json").write_text("{}")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(report, "run_entry_point", fake)
    args = report.build_parser().parse_args(["--output", "rep", "--data", "d", "--sticker-ids", "early-release"])
    for name in ("full", "dual-encoder", "full+mlm-warmup", "full+late+in-batch", "backbone=minilm"):
        report.run_one(name, args)
    assert [name for name, _ in calls] == ["train", "baseline", "mlm_warmup", "train", "train", "train"]
    for _, argv in calls:
        assert argv[argv.index("--sticker-ids") + 1] == "early-release" and argv[argv.index("--data") + 1] == "d"
    # mlm_warmup hands its unknown flags to `python -m train`'s parser: the flag reaches prepare_data
    assert trainer.parse_args(["--sticker-ids", "early-release", "--data", "d"]).sticker_ids == "early-release"


def test_entry_points_import_core_never_each_other():
    """train/ and demo/ modules import core and the shared helpers (train.cli, train.options,
    train.paths), never another entry point; core imports neither (issue 13, item 5)."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    shared = {"train.cli", "train.options", "train.paths"}
    offenders = []
    for folder in ("core", "train", "demo"):
        for path in (root / folder).rglob("*.py"):
            if path == root / "train" / "__main__.py":  # `python -m train` is the trainer itself
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                names = []
                if isinstance(node, ast.ImportFrom):
                    base = node.module or ""
                    if node.level:  # relative: resolve against the module's package
                        package = path.relative_to(root).parent.parts
                        base = ".".join(package[: len(package) - node.level + 1] + ((base,) if base else ()))
                    names = [base] + [f"{base}.{a.name}" for a in node.names]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                for name in names:
                    top = name.split(".")[0]
                    if folder == "core" and top in ("train", "demo"):
                        offenders.append((str(path.relative_to(root)), name))
                    if folder == "train" and top == "train" and name not in shared and name != "train" \
                            and not any(name.startswith(s) for s in shared):
                        offenders.append((str(path.relative_to(root)), name))
                    if folder == "demo" and top == "train" and not any(name.startswith(s) for s in shared):
                        offenders.append((str(path.relative_to(root)), name))
    assert offenders == []


def test_evaluate_imports_no_sqlalchemy_without_extra_positives():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, train.evaluate, core.serving.scoring; assert 'sqlalchemy' not in sys.modules, 'sqlalchemy'"
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
