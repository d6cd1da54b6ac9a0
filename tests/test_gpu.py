"""The GPU path (skipped without CUDA): train a tiny late-interaction model on the GPU, then
check that the fast ranker on the GPU equals one full sequence per sticker there."""
import pytest
import torch

from core.model.checkpoint import load_selector
from core.data.mod import load_stickers
from core.evaluation.protocol import score_candidates
from core.serving.inference import StickerSelector
from tests.support.mini_mod import make_mini_mod
from train import trainer

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def test_train_and_rank_on_the_gpu(tmp_path):
    mini = make_mini_mod(tmp_path / "mod", n_dialogues=16)
    result = trainer.main(["--recipe", "tiny", "--image-encoder", "random_projection:16", "--lexicon", "none",
                           "--late-interaction", "true", "--match-loss", "in_batch", "--test-candidates", "all",
                           "--data", str(mini), "--output", str(tmp_path / "run"),
                           "--feature-cache", str(tmp_path / "f.safetensors")])
    assert result["steps"] >= 1
    selector = StickerSelector.load(tmp_path / "run" / "best", stickers=load_stickers(mini), device="cuda",
                                    feature_cache_path=tmp_path / "f.safetensors")
    assert selector.device.type == "cuda"
    context = selector.context_ids(["你好呀", "今天天气真好"])
    fast = selector.fast.logits(context)[0][:, 1].float().cpu()
    rows = list(range(len(selector.bank.ids)))
    full = score_candidates(selector.model, selector.encoder, selector.bank, context, rows)
    torch.testing.assert_close(fast, full, atol=1e-4, rtol=1e-3)
    assert [r.sticker_id for r in selector.rank(["你好呀", "今天天气真好"], semantic_top_k=3)][:3]
    model, _ = load_selector(tmp_path / "run" / "best", device="cuda")
    assert next(model.parameters()).is_cuda
