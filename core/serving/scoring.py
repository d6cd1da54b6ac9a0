"""The one scoring path: a selector's score of (dialogue, sticker) pairs, and each part's share.

    total = cross_weight * cross-encoder logit  +  text scorer's share  +  prior's share

`SelectorScorer` holds the parts (the cross-encoder over a sticker bank, the optional text scorer,
the optional popularity prior) and is what `StickerSelector.rank` (the demo), `train.evaluate`,
`train.fit_prior`, `train.text_scorer`, the trainer's validation and `train.bench` all score
with, so the demo ranks the way the reported numbers were measured. A checkpoint's prior and text
scorer are the files recorded in its config (`SelectorConfig.scoring_files`, written by
`record_scoring_file`); `load_scoring_parts` reads them.
"""
from __future__ import annotations

import json
import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from core.model.config import SCORING_PARTS
from core.model.features import PairEncoder, pair_batch
from core.model.mmbert import StickerSelectorModel
from core.model.sticker_bank import StickerBank

log = logging.getLogger(__name__)

PairScorer = Callable[[dict, list[str]], list[float]]  # (sample, candidate ids) -> a score per candidate
SHARES = ("cross", "text", "prior")
MAX_CACHED_DIALOGUES = 20_000  # text-scorer vectors kept (about 1.5 kB each for e5-small)


@dataclass
class ScoreBreakdown:
    """Scores of one dialogue against bank rows, by part. Every tensor (C,) except emotions (C, E)."""
    rows: list[int]
    cross: torch.Tensor                       # cross_weight * the cross-encoder's positive-class logit
    text: torch.Tensor                        # the text scorer's share (zeros without one)
    prior: torch.Tensor                       # the popularity prior's share (zeros without one)
    probability: torch.Tensor | None = None   # the cross-encoder's match probability
    emotions: torch.Tensor | None = None      # emotion probabilities of the sticker slot

    def sum(self, shares: Sequence[str] = SHARES) -> torch.Tensor:
        unknown = sorted(set(shares) - set(SHARES))
        if unknown:
            raise ValueError(f"unknown score shares {unknown}; expected some of {SHARES}")
        return sum((getattr(self, name) for name in shares), torch.zeros(len(self.rows)))

    @property
    def total(self) -> torch.Tensor:  # the ranking score
        return self.sum(SHARES)


class SelectorScorer:
    """Scores dialogues against the stickers of `bank`. model None: no cross-encoder share (a
    text-only scorer, e.g. the zero-shot floor). `stickers`: bank id -> Sticker, needed with a text
    scorer (its sticker vectors are computed once, for every bank row)."""

    def __init__(self, model: StickerSelectorModel | None, encoder: PairEncoder | None, bank: StickerBank, *,
                 text_scorer=None, prior=None, stickers: dict | None = None, exhaustive: bool = False,
                 batch_size: int = 64, part_cache=None):
        if model is None and text_scorer is None:
            raise ValueError("a SelectorScorer needs a model, a text scorer or both")
        self.model, self.encoder, self.bank = model, encoder, bank
        self.text_scorer, self.prior = text_scorer, prior
        self.exhaustive, self.batch_size = exhaustive, batch_size
        self.cross_weight = text_scorer.config.cross_weight if (text_scorer is not None and model is not None) else 1.0
        self.fast = None  # exact one-layer ranking of every sticker (late-interaction models)
        if model is not None and model.config.late_interaction and not exhaustive:
            from core.serving.fast_ranking import LateInteractionRanker

            self.fast = LateInteractionRanker(model, encoder, bank, cache=part_cache)
        self.text_vectors = None   # (bank size, H)
        self._dialogues: OrderedDict[tuple[str, ...], torch.Tensor] = OrderedDict()  # least recently used first
        if text_scorer is not None:
            missing = [i for i in bank.ids if stickers is None or i not in stickers]
            if missing:
                raise ValueError(f"a text scorer needs every bank sticker's text; missing {missing[:5]}")
            self.text_vectors = text_scorer.sticker_vectors([stickers[i] for i in bank.ids])

    # stickers ------------------------------------------------------------------------------
    def text_vector(self, sticker) -> torch.Tensor | None:
        """(1, H) the text scorer's vector of a sticker about to join the bank (None without one)."""
        return None if self.text_scorer is None else self.text_scorer.sticker_vectors([sticker])

    def sticker_added(self, text_vector: torch.Tensor | None) -> None:
        """Call after `bank.add(...)`, with `text_vector(sticker)` (the fast path encodes new rows lazily)."""
        if self.text_scorer is not None:
            self.text_vectors = torch.cat([self.text_vectors, text_vector])

    def rows(self, sticker_ids: Sequence[str]) -> list[int]:
        return [self.bank.position(str(s)) for s in sticker_ids]

    # parts ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def cross_logits(self, context: list[int], rows: list[int], with_emotions: bool = False, progress=None,
                     exhaustive: bool | None = None):
        """(C, 2) match logits and (C, E) emotion logits or None, of one dialogue against bank rows. A
        late-interaction model takes the exact fast path unless `exhaustive` (one full sequence per pair)."""
        exhaustive = self.exhaustive if exhaustive is None else exhaustive
        if self.fast is not None and not exhaustive:
            logits, emotions = self.fast.logits(context, rows, with_emotions=with_emotions)
            if progress:
                progress(1.0, "scoring stickers")
            return logits.float().cpu(), (None if emotions is None else emotions.float().cpu())
        mask_ocr = not self.model.config.ocr_in_inputs
        device = next(self.model.parameters()).device
        logits, emotions = [], []
        for start in range(0, len(rows), self.batch_size):
            chunk = rows[start:start + self.batch_size]
            _, batch = pair_batch(self.encoder, self.bank, [context] * len(chunk), chunk, mask_ocr=mask_ocr,
                                  device=device)
            out = self.model(**batch, compute_emotions=with_emotions)
            logits.append(out.match_logits.float().cpu())
            if out.emotion_logits is not None:
                emotions.append(out.emotion_logits.float().cpu())
            if progress:
                progress(min(1.0, (start + len(chunk)) / len(rows)), "scoring stickers")
        return torch.cat(logits) if logits else torch.zeros(0, 2), torch.cat(emotions) if emotions else None

    def prepare_dialogues(self, dialogues: Sequence[Sequence[str]], batch_size: int = 256) -> None:
        """Embeds the text scorer's view of many dialogues (turn texts each) in batches, up front."""
        if self.text_scorer is None:
            return
        todo = list(dict.fromkeys(tuple(d) for d in dialogues if tuple(d) not in self._dialogues))
        for start in range(0, len(todo), batch_size):
            chunk = todo[start:start + batch_size]
            self._dialogues.update(zip(chunk, self.text_scorer.dialogue_vectors([list(d) for d in chunk])))
        while len(self._dialogues) > max(MAX_CACHED_DIALOGUES, len(todo)):  # a long-running demo stays bounded
            self._dialogues.popitem(last=False)

    def prepare(self, speakers: Sequence, texts: Sequence[str]) -> None:
        """Encodes what scoring this dialogue reuses (its text-scorer vector, the fast path's dialogue
        part), so that a ranking that follows only scores the stickers."""
        self.prepare_dialogues([texts])
        if self.fast is not None:
            self.fast.prepare(self.encoder.context_ids(list(speakers), list(texts)))

    def text_shares(self, texts: Sequence[str], rows: list[int]) -> torch.Tensor:
        """(C,) the text scorer's share of one dialogue (its turn texts) against bank rows."""
        if self.text_scorer is None:
            return torch.zeros(len(rows))
        self.prepare_dialogues([texts])
        self._dialogues.move_to_end(tuple(texts))
        dialogue = self._dialogues[tuple(texts)][None]                                        # (1, H)
        index = torch.as_tensor(rows, dtype=torch.long)
        return self.text_scorer.scores(dialogue, self.text_vectors[index], [self.bank.ids[r] for r in rows])[0]

    def prior_shares(self, rows: list[int]) -> torch.Tensor:
        if self.prior is None or not self.prior.weight:
            return torch.zeros(len(rows))
        return torch.tensor([self.prior.weight * self.prior.log_prior(self.bank.ids[r]) for r in rows])

    # the score -----------------------------------------------------------------------------
    def score(self, speakers: Sequence, texts: Sequence[str], rows: list[int], *, with_emotions: bool = False,
              progress=None, exhaustive: bool | None = None) -> ScoreBreakdown:
        """One dialogue (speaker per turn, turn texts) against bank rows, by part."""
        if self.model is None:
            cross, probability, emotions = torch.zeros(len(rows)), None, None
        else:
            context = self.encoder.context_ids(list(speakers), list(texts))
            logits, emotion_logits = self.cross_logits(context, rows, with_emotions, progress, exhaustive)
            cross, probability = self.cross_weight * logits[:, 1], logits.softmax(-1)[:, 1]
            emotions = None if emotion_logits is None else emotion_logits.softmax(-1)
        return ScoreBreakdown(rows, cross, self.text_shares(texts, rows), self.prior_shares(rows), probability, emotions)

    def pair_scorer(self, shares: Sequence[str] = SHARES, cache: dict | None = None) -> PairScorer:
        """(sample, candidate ids) -> the sum of `shares` per candidate, for core.evaluation.protocol. Scorers
        that share `cache` score each (sample, sticker) pair once: the sample is known by its id and
        its turns, so two files' samples that share an id never share scores."""
        cache = {} if cache is None else cache

        def score(sample: dict, candidates: list[str]) -> list[float]:
            key = (str(sample["sample_id"]), tuple(sample.get("speakers", ())), tuple(sample["texts"]))
            missing = list(dict.fromkeys(c for c in candidates if (key, c) not in cache))
            if missing:
                parts = self.score(sample["speakers"], sample["texts"], self.rows(missing))
                for i, sticker_id in enumerate(missing):
                    cache[(key, sticker_id)] = {name: float(getattr(parts, name)[i]) for name in SHARES}
            return [sum(cache[(key, c)][name] for name in shares) for c in candidates]

        return score


class BaselineScorer(SelectorScorer):
    """A trained baseline (core.baselines: dual encoder, SRS, MOD-GPT) on the one scoring path: its
    score is the `cross` share (the model's own score), with no text scorer and no prior, so
    `pair_scorer`, `score` and `prepare_dialogues` work as for a selector. `ranker` scores one
    dialogue against bank rows (`ranker.scores(speakers, texts, rows) -> (C,)`)."""

    def __init__(self, ranker, bank: StickerBank, kind: str = "baseline"):
        self.model, self.encoder, self.bank, self.ranker, self.kind = ranker.model, None, bank, ranker, kind
        self.text_scorer, self.prior, self.fast, self.text_vectors = None, None, None, None
        self.exhaustive, self.batch_size, self.cross_weight = False, 64, 1.0
        self._dialogues = OrderedDict()

    def text_vector(self, sticker) -> None:
        return None

    def sticker_added(self, text_vector=None, grid_row: torch.Tensor | None = None) -> None:
        """Call after `bank.add(...)` (SRS also needs the new sticker's grid features)."""
        self.ranker.sticker_added(grid_row)

    def cross_logits(self, *args, **kwargs):
        raise NotImplementedError(f"a {self.kind} baseline has no cross-encoder logits; use score()")

    def score(self, speakers: Sequence, texts: Sequence[str], rows: list[int], *, with_emotions: bool = False,
              progress=None, exhaustive: bool | None = None) -> ScoreBreakdown:
        scores = self.ranker.scores(list(speakers), list(texts), rows).float().cpu()
        if progress:
            progress(1.0, "scoring stickers")
        zeros = torch.zeros(len(rows))
        return ScoreBreakdown(rows, scores, zeros, zeros.clone(), probability=torch.sigmoid(scores))


# checkpoint files ---------------------------------------------------------------------------
def load_scoring_parts(checkpoint: str | Path, config) -> tuple[object | None, object | None]:
    """(prior, text scorer) of a checkpoint: the files its config records. A config from before the
    record (scoring_files None) has its parts looked up by their usual file names."""
    from core.serving.text_scorer import TEXT_SCORER_CONFIG, TextScorer
    from core.serving.prior import PRIOR_FILE, StickerPrior

    checkpoint = Path(checkpoint)
    files = config.scoring_files
    if files is None:
        log.info("%s records no scoring files (an older checkpoint): looking for %s and %s", checkpoint,
                 PRIOR_FILE, TEXT_SCORER_CONFIG)
        return StickerPrior.load(checkpoint), TextScorer.load(checkpoint)
    expected = {"prior": PRIOR_FILE, "text_scorer": TEXT_SCORER_CONFIG}
    for part, name in files.items():
        if name != expected[part]:
            raise ValueError(f"{checkpoint}: scoring_files[{part!r}] = {name!r}; expected {expected[part]!r}")
        if not (checkpoint / name).is_file():
            raise FileNotFoundError(f"{checkpoint / name} is missing: the checkpoint's config records it as its {part}")
    prior = StickerPrior.load(checkpoint) if "prior" in files else None
    text = TextScorer.load(checkpoint) if "text_scorer" in files else None
    return prior, text


def record_scoring_file(checkpoint: str | Path, part: str, file_name: str | None) -> None:
    """Records (or, with None, removes) a scoring part's file in the checkpoint's config.json, atomically."""
    from core.model.checkpoint import CONFIG_FILE

    if part not in SCORING_PARTS:
        raise ValueError(f"unknown scoring part {part!r}; expected one of {SCORING_PARTS}")
    path = Path(checkpoint) / CONFIG_FILE
    values = json.loads(path.read_text(encoding="utf-8"))
    files = dict(values.get("scoring_files") or {})
    if values.get("scoring_files") is None:  # an older checkpoint: record what it has now
        from core.serving.text_scorer import TEXT_SCORER_CONFIG
        from core.serving.prior import PRIOR_FILE

        files = {p: n for p, n in (("prior", PRIOR_FILE), ("text_scorer", TEXT_SCORER_CONFIG))
                 if (Path(checkpoint) / n).is_file()}
    if file_name is None:
        files.pop(part, None)
    else:
        files[part] = file_name
    values["scoring_files"] = files
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(values, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(path)


def load_scorer(checkpoint: str | Path, stickers, *, feature_cache: Callable[[str], str | Path] | str | Path | None = None,
                device: str | None = None, with_prior: bool = True, with_text_scorer: bool = True,
                exhaustive: bool = False, batch_size: int = 64) -> SelectorScorer:
    """The scorer of a checkpoint over `stickers` (those with an image form the bank): its model, and
    the prior and text scorer its config records unless turned off. A baseline's checkpoint
    (core.baselines: baseline.json or dual_encoder.json) gives a BaselineScorer. feature_cache: the image
    feature cache file, or a function of the image encoder's name giving it."""
    from core.model.checkpoint import load_selector
    from core.model.image_encoder import FeatureCache, create_image_encoder
    from core.model.sticker_bank import build_sticker_bank

    from core.baselines.base import baseline_kind

    if baseline_kind(checkpoint) is not None:  # a trained baseline: its own model and ranker
        return load_baseline_scorer(checkpoint, stickers, feature_cache=feature_cache)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_selector(checkpoint, device=device)
    encoder = PairEncoder(tokenizer, model.config)
    image_encoder = create_image_encoder(model.config.image_encoder)
    if callable(feature_cache):
        feature_cache = feature_cache(image_encoder.name)
    bank = build_sticker_bank(stickers, FeatureCache(image_encoder, feature_cache), encoder,
                              model.config.semantic_source)
    prior, text_scorer = load_scoring_parts(checkpoint, model.config)
    return SelectorScorer(model, encoder, bank, text_scorer=text_scorer if with_text_scorer else None,
                          prior=prior if with_prior else None, stickers={s.sticker_id: s for s in stickers},
                          exhaustive=exhaustive, batch_size=batch_size)


def load_baseline_scorer(checkpoint: str | Path, stickers, *,
                         feature_cache: Callable[[str], str | Path] | str | Path | None = None) -> BaselineScorer:
    """The BaselineScorer of a baseline checkpoint (dual encoder, SRS, MOD-GPT) over `stickers`, on the CPU."""
    from core.baselines.base import baseline_kind, build_ranker, load_baseline

    model, tokenizer = load_baseline(checkpoint)
    ranker, bank = build_ranker(model, tokenizer, stickers, feature_cache)
    return BaselineScorer(ranker, bank, kind=baseline_kind(checkpoint))
