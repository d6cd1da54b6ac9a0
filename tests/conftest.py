import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402

# ----------------------------------------------------------------- the tests' tiny random-weight selectors


@pytest.fixture(scope="session")
def make_tiny_selector():
    """``make_tiny_selector(stickers=None, *, n=None, seed=0, **overrides)``: a fresh
    ``StickerSelector.tiny_random`` over ``stickers`` (default: the bundled starter pack), the
    first ``n`` of them. Fresh on every call (~0.05 s), so a test or module may add stickers."""
    from core.serving.inference import StickerSelector

    def make(stickers=None, *, n: int | None = None, seed: int = 0, **overrides):
        if stickers is None:
            from demo.user_stickers import load_starter_stickers

            stickers = load_starter_stickers()
        return StickerSelector.tiny_random(list(stickers)[:n], seed=seed, **overrides)

    return make


@pytest.fixture
def tiny_selector(make_tiny_selector):
    """A fresh tiny selector over the first 16 starter stickers (seed 0; tests may add stickers)."""
    return make_tiny_selector(n=16)


@pytest.fixture(scope="session")
def mini_stickers(tmp_path_factory):
    """The stickers of a synthetic MOD folder (``tests/support/mini_mod.py``), sticker "012" without an image."""
    from core.data.mod import load_stickers
    from tests.support.mini_mod import make_mini_mod

    return load_stickers(make_mini_mod(tmp_path_factory.mktemp("mini-stickers") / "mod"))


@pytest.fixture
def mini_selector(make_tiny_selector, mini_stickers):
    """A fresh tiny selector over :func:`mini_stickers` (seed 0)."""
    return make_tiny_selector(mini_stickers)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, make_tiny_selector):
    """A saved tiny selector model over the first 8 starter stickers (for ``python -m demo --checkpoint``);
    read-only: tests must not write into it."""
    from core.model.checkpoint import save_selector

    selector = make_tiny_selector(n=8)
    path = tmp_path_factory.mktemp("tiny-checkpoint") / "model"
    save_selector(path, selector.model, selector.tokenizer)
    return path
