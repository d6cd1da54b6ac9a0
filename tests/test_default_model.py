"""The shipped default model on the real MOD stickers (slow; skipped when the data is absent)."""
import pytest

from assets import DEFAULT_MODEL_DIR
from core.data.mod import load_stickers
from core.serving.inference import StickerSelector
from tests.support.mini_mod import real_mod_dir

REAL_MOD = real_mod_dir()
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not (REAL_MOD / "img2id.json").exists(), reason="MOD data not in ../shared/data/mod")]


def test_default_model_fits_the_budget_and_ranks_chinese_and_english(tmp_path):
    size = sum(f.stat().st_size for f in DEFAULT_MODEL_DIR.iterdir())
    assert size <= 80 * 1024 * 1024
    selector = StickerSelector.load(stickers=load_stickers(REAL_MOD), device="cpu",
                                    feature_cache_path=tmp_path / "features.safetensors")
    assert selector.model.config.late_interaction and selector.fast is not None
    assert selector.prior is not None and selector.prior.known  # held-out stickers are not "known"
    assert len(selector.bank.ids) == 306
    for dialogue in (["今天考试又挂了", "别难过，下次加油"], ["I failed my exam again", "don't be sad"]):
        fast = selector.rank(dialogue, semantic_top_k=5)
        slow = selector.rank(dialogue, semantic_top_k=5, exhaustive=True)
        assert [r.sticker_id for r in fast[:10]] == [r.sticker_id for r in slow[:10]]
        assert [r.semantic_label for r in fast[:5]] == [r.semantic_label for r in slow[:5]]
        assert all(r.emotions for r in fast[:5])


def test_warm_start_uses_the_caches_and_ranks_the_same(tmp_path):
    stickers = load_stickers(REAL_MOD)
    caches = dict(feature_cache_path=tmp_path / "features.safetensors", part_cache_path=tmp_path / "parts.safetensors")
    cold = StickerSelector.load(stickers=stickers, device="cpu", **caches)
    dialogue = ["今天好累啊", "早点休息吧"]
    expected = [(r.sticker_id, r.score, r.semantic_label) for r in cold.rank(dialogue, semantic_top_k=5)]
    assert (tmp_path / "parts.safetensors").is_file()
    warm = StickerSelector.load(stickers=stickers, device="cpu", **caches)
    warm.model.encode_sticker_part = None  # a warm start encodes no sticker part
    warm.features.encoder = None           # nor any image
    assert [(r.sticker_id, r.score, r.semantic_label) for r in warm.rank(dialogue, semantic_top_k=5)] == expected


def test_serving_the_default_model_imports_no_training_stack(tmp_path):
    """What keeps the demo's cold start short (train.bench measures it): with the caches filled,
    the selector and the app load without transformers, torch._dynamo or pyplot."""
    import subprocess
    import sys

    StickerSelector.load(stickers=load_stickers(REAL_MOD), device="cpu", feature_cache_path=tmp_path / "f.safetensors",
                         part_cache_path=tmp_path / "p.safetensors").rank(["你好"], semantic_top_k=3)
    code = (
        "import os, sys; os.environ.setdefault('MPLBACKEND', 'agg')\n"
        "from core.data.mod import load_stickers\n"
        "from core.serving.inference import StickerSelector\n"
        "import demo.app\n"
        f"s = StickerSelector.load(stickers=load_stickers({str(REAL_MOD)!r}), device='cpu', "
        f"feature_cache_path={str(tmp_path / 'f.safetensors')!r}, part_cache_path={str(tmp_path / 'p.safetensors')!r})\n"
        "s.rank(['你好', '再见'], semantic_top_k=3)\n"
        "heavy = [m for m in ('transformers', 'torch._dynamo', 'matplotlib.pyplot', 'datasets') if m in sys.modules]\n"
        "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], cwd=DEFAULT_MODEL_DIR.parents[1], check=True, timeout=300)
