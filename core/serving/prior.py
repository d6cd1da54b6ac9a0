"""An optional popularity prior added to the matching score: score + w * log(1 + count).

Sticker use in MOD is very skewed, and a cross-encoder trained for a few CPU epochs learns the
per-sticker base rate only partly. The prior makes it explicit: `counts` are how often each
sticker was the gold one in the training split, `weight` is fitted on the validation split
(it can be 0). `known` lists the stickers that were candidates in training (when given): one of
them that was never gold has count 0, while a sticker outside it (held out of training, or added
by a user later) has an unknown base rate. It gets log(1 + c̄), c̄ the mean count of the known
stickers (`unknown="log_mean"`): its expected count, since a sticker nobody has counted yet is as
likely to be a popular one as any, and a ranking by expected probability is the best bet for the
top pick. Counts are skewed (a few stickers are used very often), so this is above the median
known sticker's log prior. Priors saved before this rule (no "unknown" in the file) keep the one
they were fitted with, the mean of the known stickers' log priors (`unknown="mean_log"`). Saved as
`sticker_prior.json` in the checkpoint folder; evaluation reports the scores with and without it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

PRIOR_FILE = "sticker_prior.json"
UNKNOWN_RULES = ("log_mean", "mean_log")  # an unknown sticker's log prior: log(1 + mean count), mean log(1 + count)
WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0)


@dataclass
class StickerPrior:
    counts: dict[str, int] = field(default_factory=dict)
    weight: float = 0.0
    known: list[str] | None = None  # stickers that were training candidates (None: every sticker)
    unknown: str = "log_mean"       # the log prior of a sticker outside `known` (UNKNOWN_RULES)

    def __post_init__(self) -> None:
        if self.unknown not in UNKNOWN_RULES:
            raise ValueError(f"unknown={self.unknown!r}; expected one of {UNKNOWN_RULES}")
        self._known = None if self.known is None else set(self.known) | set(self.counts)
        self._unknown_log_prior = 0.0
        if self._known:
            counts = [self.counts.get(s, 0) for s in self._known]
            if self.unknown == "log_mean":
                self._unknown_log_prior = math.log1p(sum(counts) / len(counts))
            else:
                self._unknown_log_prior = sum(math.log1p(c) for c in counts) / len(counts)

    def is_unknown(self, sticker_id: str) -> bool:
        """True for a sticker outside `known` (held out of training, or added later)."""
        return self._known is not None and sticker_id not in self._known

    @property
    def unknown_log_prior(self) -> float:
        return self._unknown_log_prior

    def log_prior(self, sticker_id: str) -> float:
        if self.is_unknown(sticker_id):
            return self._unknown_log_prior
        return math.log1p(self.counts.get(sticker_id, 0))

    def adjust(self, sticker_ids: Sequence[str], scores: Sequence[float]) -> list[float]:
        return [s + self.weight * self.log_prior(i) for i, s in zip(sticker_ids, scores)]

    def save(self, directory: str | Path) -> None:
        path = Path(directory) / PRIOR_FILE
        tmp = path.with_suffix(".tmp")
        values = {"weight": self.weight, "counts": self.counts}
        if self.known is not None:
            values["known"] = sorted(self.known)
            values["unknown"] = self.unknown
        tmp.write_text(json.dumps(values, indent=1))
        tmp.replace(path)

    @classmethod
    def load(cls, directory: str | Path) -> "StickerPrior | None":
        path = Path(directory) / PRIOR_FILE
        if not path.exists():
            return None
        try:
            values = json.loads(path.read_text())
            known = values.get("known")
            return cls({str(k): int(v) for k, v in values["counts"].items()}, float(values["weight"]),
                       None if known is None else [str(k) for k in known], str(values.get("unknown", "mean_log")))
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a valid sticker prior: {error}") from error


def fit_weight(counts: dict[str, int], candidates: Sequence[Sequence[str]], scores: Sequence[Sequence[float]],
               gold: Sequence[str], grid: Sequence[float] = WEIGHT_GRID,
               known: Sequence[str] | None = None, unknown: str = "log_mean") -> tuple[float, dict[float, float]]:
    """The grid weight with the best MRR of the gold sticker over the given candidate sets."""
    prior = StickerPrior(dict(counts), known=None if known is None else list(known), unknown=unknown)
    mrr = {}
    for weight in grid:
        prior.weight = weight
        total = 0.0
        for cands, row, g in zip(candidates, scores, gold):
            adjusted = prior.adjust(cands, row)
            gold_index = list(cands).index(g)
            mine = adjusted[gold_index]
            higher = sum(1 for a in adjusted if a > mine)
            tied = sum(1 for i, a in enumerate(adjusted) if a == mine and i != gold_index)
            # expected reciprocal rank when ties are broken at random (a constant scorer is not perfect)
            total += sum(1.0 / (1 + higher + k) for k in range(tied + 1)) / (tied + 1)
        mrr[weight] = 100.0 * total / max(len(gold), 1)
    best = max(grid, key=lambda w: (mrr[w], -w))
    return best, mrr
