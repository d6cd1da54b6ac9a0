"""Ranking stickers for a dialogue, with emotions, semantic labels and word saliency.

`StickerSelector` wraps a trained model, its tokenizer, the image encoder and a sticker bank;
the demo and the evaluation scripts call it, never the model directly.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch

from core.model.checkpoint import load_selector
from core.data.mod import Sticker, Turn, UnknownStickerError
from core.model.features import PairEncoder, pair_batch
from core.model.image_encoder import FeatureCache, create_image_encoder
from core.model.mmbert import StickerSelectorModel
from core.serving.scoring import SelectorScorer, load_scoring_parts
from core.model.sticker_bank import StickerBank, build_sticker_bank, semantic_text

Progress = Callable[[float, str], None]
MAX_TURNS = 200  # only the most recent turns can fit the model's window anyway


@dataclass
class RankedSticker:
    sticker_id: str
    rank: int
    score: float                        # the ranking score: cross_weight * positive-class logit + `text` + `prior`
    probability: float                  # softmax probability of "matches"
    emotions: list[tuple[str, float]]   # top-3 (emotion name, probability)
    semantic_label: str                 # the OCR text the model reconstructs with the OCR masked
    ocr: str
    name_label: str
    image_path: str | None
    prior: float = 0.0                  # the popularity prior's share of `score` (w * log(1 + count); 0 without one)
    text: float = 0.0                   # the text scorer's share of `score` (core.serving.text_scorer.TextScorer; 0 without one)


def _turns(turns: Sequence[str | Turn]) -> tuple[list[str], list[str]]:
    """(speakers, texts) of the most recent turns; plain strings alternate speakers."""
    turns = list(turns)[-MAX_TURNS:]
    texts, speakers = [], []
    for i, turn in enumerate(turns):
        if isinstance(turn, Turn):
            texts.append(turn.text)
            speakers.append(turn.speaker)
        else:
            texts.append(str(turn))
            speakers.append(f"[speaker{i % 2 + 1}]")
    if not texts or not any(t.strip() for t in texts):
        raise ValueError("the dialogue is empty: give at least one turn with text")
    return speakers, texts


class StickerSelector:
    def __init__(self, model: StickerSelectorModel, tokenizer, stickers: Iterable[Sticker],
                 image_encoder=None, feature_cache_path: str | Path | None = None,
                 model_version: str = "unversioned", prior=None, part_cache_path: str | Path | None = None,
                 text_scorer=None):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.encoder = PairEncoder(tokenizer, model.config)
        self.image_encoder = image_encoder or create_image_encoder(model.config.image_encoder)
        self.features = FeatureCache(self.image_encoder, feature_cache_path)
        self._stickers = {s.sticker_id: s for s in stickers if s.image_path is not None}
        self.bank: StickerBank = build_sticker_bank(self._stickers.values(), self.features, self.encoder,
                                                    model.config.semantic_source)
        self.model_version = model_version
        self._vocab, self._vocab_size = torch.zeros(0, dtype=torch.long), -1  # semantic labels' vocabulary
        self.device = next(model.parameters()).device
        part_cache = None
        if model.config.late_interaction and part_cache_path:
            from core.serving.fast_ranking import StickerPartCache, model_fingerprint

            part_cache = StickerPartCache(part_cache_path, model_fingerprint(model))
        # the one scoring path (core.serving.scoring): cross-encoder + text scorer + popularity prior
        self.scorer = SelectorScorer(model, self.encoder, self.bank, text_scorer=text_scorer, prior=prior,
                                     stickers=self._stickers, part_cache=part_cache)

    @property
    def fast(self):  # exact one-layer ranking of every sticker (late-interaction models), or None
        return self.scorer.fast

    @property
    def prior(self):  # core.serving.prior.StickerPrior or None: score + w * log(1 + training count)
        return self.scorer.prior

    @prior.setter
    def prior(self, prior) -> None:
        self.scorer.prior = prior

    @property
    def text_scorer(self):  # core.serving.text_scorer.TextScorer or None: score + its share
        return self.scorer.text_scorer

    # construction -------------------------------------------------------------------------
    @classmethod
    def load(cls, checkpoint: str | Path | None = None, *, stickers=None, device: str | None = None,
             feature_cache_path: str | Path | None = None,
             part_cache_path: str | Path | None = None) -> "StickerSelector":
        """checkpoint None: the default model shipped in assets/. The two cache files (image
        features; sticker parts of a late-interaction model) make later starts faster. The
        checkpoint's popularity prior and text scorer (the files its config records) are used."""
        if checkpoint is None:
            from assets import DEFAULT_MODEL_DIR

            checkpoint = DEFAULT_MODEL_DIR
        from core.baselines.base import baseline_kind

        if baseline_kind(checkpoint) is not None:  # a trained baseline (dual encoder, SRS, MOD-GPT)
            from core.baselines.selector import BaselineSelector

            return BaselineSelector.load(checkpoint, stickers=stickers, feature_cache_path=feature_cache_path)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer = load_selector(checkpoint, device=device)
        prior, text_scorer = load_scoring_parts(checkpoint, model.config)
        return cls(model, tokenizer, stickers or [], feature_cache_path=feature_cache_path,
                   model_version=checkpoint_version(checkpoint), prior=prior,
                   part_cache_path=part_cache_path, text_scorer=text_scorer)

    @classmethod
    def tiny_random(cls, stickers, seed: int = 0, **overrides) -> "StickerSelector":
        """A tiny random-weight selector over `stickers`, for fast tests (overrides: SelectorConfig
        fields, e.g. late_interaction=True)."""
        from core.data.emotion import EMOTION_CLASSES
        from core.model.factory import create_model
        from core.model.image_encoder import RandomProjectionEncoder

        stickers = list(stickers)
        texts = [s.ocr for s in stickers] + [s.name_label for s in stickers] + ["你好再见谢谢哈哈"]
        torch.manual_seed(seed)
        model, tokenizer = create_model("tiny", tiny_texts=texts, image_feature_dim=16,
                                        image_encoder="random_projection:16:0",
                                        emotion_names=EMOTION_CLASSES, **{"max_length": 48, **overrides})
        return cls(model, tokenizer, stickers, image_encoder=RandomProjectionEncoder(16, 0),
                   model_version=f"tiny-random-{seed}")

    # stickers ------------------------------------------------------------------------------
    def sticker_ids(self) -> list[str]:
        return list(self.bank.ids)

    def sticker(self, sticker_id: str) -> Sticker:
        if sticker_id not in self._stickers:
            raise UnknownStickerError(sticker_id)
        return self._stickers[sticker_id]

    def add_sticker(self, sticker: Sticker, image=None) -> None:
        """Adds a sticker (image from `image` or its image_path); ranked at once, no retraining."""
        from core.data.images import image_of

        if sticker.sticker_id in self._stickers:
            raise ValueError(f"sticker id {sticker.sticker_id!r} already exists")
        image = image if image is not None else image_of(sticker)
        feature = self.features.encode([image])[0]
        text_vector = self.scorer.text_vector(sticker)  # before the bank changes: encoding may fail
        self.bank.add(sticker.sticker_id, feature, semantic_text(sticker, self.model.config.semantic_source),
                      self.encoder)
        self.scorer.sticker_added(text_vector)
        self._stickers[sticker.sticker_id] = sticker

    # ranking -------------------------------------------------------------------------------
    def _rows(self, candidate_ids: Sequence[str] | None) -> list[int]:
        if candidate_ids is None:
            return list(range(len(self.bank.ids)))
        return [self.bank.position(str(c)) for c in candidate_ids]

    def context_ids(self, turns: Sequence[str | Turn]) -> list[int]:
        speakers, texts = _turns(turns)
        return self.encoder.context_ids(speakers, texts)

    def prepare(self, turns: Sequence[str | Turn]) -> None:
        """Encodes the dialogue ahead of a ranking (the demo calls it while the user types): `rank`
        on the same turns then only scores the stickers."""
        speakers, texts = _turns(turns)
        self.scorer.prepare(speakers, texts)

    def _score(self, context: list[int], rows: list[int], batch_size: int = 64, progress: Progress | None = None,
               exhaustive: bool = False):
        """(positive-class logits, match probabilities, emotion probabilities or None) of bank rows:
        the cross-encoder alone."""
        logits, emotions = self.scorer.cross_logits(context, rows, True, progress, exhaustive)
        return logits[:, 1], logits.softmax(-1)[:, 1], (None if emotions is None else emotions.softmax(-1))

    def _batch(self, pairs, rows) -> dict[str, torch.Tensor]:  # (tests) the batch of already built pairs
        return pair_batch(self.encoder, self.bank, [[]] * len(rows), rows, mask_ocr=False, device=self.device,
                          pairs=pairs)[1]

    @torch.inference_mode()
    def semantic_labels(self, context: list[int], rows: list[int], exhaustive: bool = False) -> list[str]:
        """Reconstructs each sticker's text from the OCR run all masked (the L_sem task), decoded over the
        tokens of the stickers' texts (``StickerBank.text_vocabulary``): a label is a sticker text's
        reconstruction, and the 37k-token decoder would cost more than the ranking itself."""
        if not rows:
            return []
        vocab = self._label_vocabulary()                                              # (K,) token ids
        if self.fast is not None and not exhaustive:  # decode only the slots a label reads (MLM decoder is big)
            hidden = self.fast.masked_ocr_hidden(context, rows)                       # (B, S, H)
            slots = hidden.shape[1]
            keep = torch.zeros(hidden.shape[:2], dtype=torch.bool, device=hidden.device)
            for i, row in enumerate(rows):
                keep[i, slots - (len(self.bank.ocr_ids[row]) or 4):] = True
            with torch.inference_mode():
                tokens = self.model.mlm_head(hidden[keep], vocab.to(hidden.device)).argmax(-1)
            predicted = torch.zeros(hidden.shape[:2], dtype=torch.long, device=hidden.device)  # slots not read
            predicted[keep] = tokens
            predicted = predicted.cpu()                                                # (B, S)
        else:
            pairs, batch = pair_batch(self.encoder, self.bank, [context] * len(rows), rows, mask_ocr=True,
                                      device=self.device)
            hidden = self.model.encode(**batch)                                       # (B, T, H)
            positions = torch.tensor([p.ocr_positions for p in pairs], device=self.device)  # (B, S)
            logits = self.model.predict_masked(hidden, positions, vocab.to(self.device))  # (B, S, K)
            predicted = logits.argmax(-1).cpu()                                       # (B, S)
        labels = []
        for row, ids in zip(rows, vocab[predicted].tolist()):
            n = len(self.bank.ocr_ids[row]) or 4
            labels.append(self.tokenizer.decode(ids[-n:], skip_special_tokens=True).strip())
        return labels

    def _label_vocabulary(self) -> torch.Tensor:  # (K,) kept until a sticker is added
        if self._vocab_size != len(self.bank.ids):
            self._vocab = torch.tensor(self.bank.text_vocabulary() or [self.encoder.mask_id], dtype=torch.long)
            self._vocab_size = len(self.bank.ids)
        return self._vocab

    def rank(self, turns: Sequence[str | Turn], candidate_ids: Sequence[str] | None = None,
             progress: Progress | None = None, semantic_top_k: int | None = 30,
             exhaustive: bool = False) -> list[RankedSticker]:
        """Stickers ranked for the dialogue (best first). Semantic labels for the top `semantic_top_k`.

        exhaustive: one full sequence per sticker even when the model has the fast path (the
        same ranking, slower; for benchmarks)."""
        speakers, texts = _turns(turns)
        context = self.encoder.context_ids(speakers, texts)
        rows = self._rows(candidate_ids)
        if not rows:
            raise ValueError("no candidate stickers to rank")
        parts = self.scorer.score(speakers, texts, rows, with_emotions=True, progress=progress, exhaustive=exhaustive)
        scores, probs, emotions = parts.total, parts.probability, parts.emotions
        text_shares, priors = parts.text.tolist(), parts.prior.tolist()
        order = scores.argsort(descending=True).tolist()
        top_k = len(order) if semantic_top_k is None else semantic_top_k
        labels = self.semantic_labels(context, [rows[i] for i in order[:top_k]], exhaustive=exhaustive)
        names = self.model.config.emotion_names
        ranked = []
        for rank, i in enumerate(order, start=1):
            sticker = self._stickers[self.bank.ids[rows[i]]]
            top3 = []
            if emotions is not None:
                values, indices = emotions[i].topk(min(3, len(names)))
                top3 = [(names[j], float(v)) for v, j in zip(values.tolist(), indices.tolist())]
            ranked.append(RankedSticker(
                sticker_id=sticker.sticker_id, rank=rank, score=float(scores[i]), probability=float(probs[i]),
                emotions=top3, semantic_label=labels[rank - 1] if rank <= len(labels) else "",
                ocr=sticker.ocr, name_label=sticker.name_label,
                image_path=str(sticker.image_path) if sticker.image_path else None, prior=float(priors[i]),
                text=float(text_shares[i])))
        return ranked

    # saliency ------------------------------------------------------------------------------
    def saliency(self, turns: Sequence[str | Turn], sticker_id: str, method: str = "gradient",
                 n_steps: int = 32, progress: Progress | None = None) -> list[tuple[str, float]]:
        """Per dialogue token importance for the sticker's score (paper Fig. 3), via Captum.

        It explains the whole dialogue-dependent part of RankedSticker.score: the cross-encoder's
        share and the text scorer's, each token's value the magnitude of its summed (signed)
        attribution, in score units. method "gradient": gradient x (input - [PAD] baseline);
        "integrated_gradients": Integrated Gradients from that baseline (n_steps). Method and
        signed parts: core.serving.saliency (`explain`)."""
        return self.explain(turns, {str(sticker_id): 1.0}, method, n_steps, progress).pairs(signed=False)

    def explain(self, turns: Sequence[str | Turn], weights: dict[str, float], method: str = "gradient",
                n_steps: int = 32, progress: Progress | None = None):
        """core.serving.saliency.Explanation of sum_k weights[k] * score(k): e.g. {pick: 1, gold: -1}
        explains why the model scores `pick` above `gold`."""
        from core.serving.saliency import explain

        speakers, texts = _turns(turns)
        return explain(self, speakers, texts, weights, method=method, n_steps=n_steps, progress=progress)


def checkpoint_version(checkpoint: str | Path) -> str:
    """A short content hash of the checkpoint's config and weights (recorded with annotations)."""
    directory = Path(checkpoint)
    digest = hashlib.sha256()
    for name in ("config.json", "model.safetensors"):
        path = directory / name
        if path.exists():
            digest.update(path.name.encode())
            digest.update(str(path.stat().st_size).encode())
            with open(path, "rb") as handle:
                digest.update(handle.read(1 << 20))
    info = directory / "training_info.json"
    label = directory.name
    if info.exists():
        try:
            label = json.loads(info.read_text()).get("name", label)
        except (ValueError, OSError):
            pass
    return f"{label}-{digest.hexdigest()[:10]}"
