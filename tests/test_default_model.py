"""The shipped default model on the real MOD stickers (slow; skipped when the data is absent)."""
import pytest

from assets import DEFAULT_MODEL_DIR
from core.data import load_stickers
from core.inference import StickerSelector
from tests.mini_mod import real_mod_dir

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
