"""Does a dialogue file's sticker numbering match the sticker set's? A zero-shot text check.

A dialogue file written with another numbering than ``img2id.json``'s (the early MOD release, see
``../shared/data/mod/README.md``, "Sticker ids") pairs each sticker turn with a neighbour's image,
OCR text and name. Nothing in the files says so; the text does. For every sticker turn:

1. embed its text (the turn carrying the sticker, optionally with the turns before it) and every
   sticker's ``name + OCR`` text (:func:`core.serving.text_scorer.sticker_text`) with a frozen sentence
   encoder (unit vectors);
2. cosine similarity, turns x stickers; each sticker's column standardised over all turns (a
   z-score: how much more this turn fits this sticker than the average turn does, so that a
   sticker whose text resembles everything is no evidence);
3. for a turn with sticker id ``i`` and a shift ``s`` the agreement is ``z[turn, i + s]`` (left out
   when no sticker with an image has id ``i + s``);
4. the sticker ids used in the file, in numeric order, are cut into consecutive windows of about
   ``window`` ids; a window's best shift is the one with the highest mean agreement.

Decision rule (:func:`window_agrees`): a window agrees with the numbering when its best shift is 0,
or when shift 0's mean agreement is within ``tolerance`` of the best one, where ``tolerance`` is
the larger of ``min_margin`` (0.05) and two standard errors of the paired per-turn difference
(best minus shift 0; turns where both exist). Neighbouring ids are often variants of one sticker
(好困1, 好困2), so a right numbering can tie with ±1 in a window; a wrong one loses by far more
(on MOD's early numbering shift 0 trails the true shift by 0.3-0.6 z). Windows with fewer than
``min_window_turns`` turns are reported but do not decide. The file is aligned when every deciding
window agrees; with fewer than ``min_turns`` sticker turns in all (or no deciding window) the
check says nothing (``aligned`` is None).

No argparse here: ``python -m train.check_alignment`` is the command, ``python -m train`` runs it
before training.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from core.data.mod import StickerSet, Turn

__all__ = [
    "AlignmentReport",
    "AlignmentWindow",
    "CachedEncoder",
    "DEFAULT_WINDOW",
    "MIN_TURNS",
    "SHIFTS",
    "StickerTurn",
    "alignment_report",
    "check_dialogues",
    "id_windows",
    "sticker_texts",
    "sticker_turns",
    "window_agrees",
]

logger = logging.getLogger(__name__)

Encode = Callable[[list[str]], torch.Tensor]  # texts -> (N, H) vectors

SHIFTS: tuple[int, ...] = tuple(range(-3, 4))
DEFAULT_WINDOW = 25          # sticker ids per window (about)
MIN_TURNS = 200              # fewer sticker turns in all: no verdict
MIN_WINDOW_TURNS = 20        # fewer turns in a window: reported, does not decide
MIN_MARGIN = 0.05            # a tie: shift 0 within this much mean z of the best shift
STANDARD_ERRORS = 2.0        # ... or within this many standard errors of the paired difference
STICKER_TEXT = "name+ocr"


@dataclass(frozen=True)
class StickerTurn:
    """One turn that carries a sticker: where it is, its sticker id, the text embedded for it."""

    dialogue_id: str
    turn_index: int
    sticker_id: str
    text: str


def sticker_turns(dialogues: Mapping[str, Sequence[Turn]], context_turns: int = 1) -> list[StickerTurn]:
    """Every turn with a sticker (the first turn of a dialogue too; unlike samples, every use of a
    sticker is evidence), its text joined with the ``context_turns - 1`` turns before it."""
    if context_turns < 1:
        raise ValueError(f"context_turns={context_turns!r}; expected >= 1")
    out = []
    for dialogue_id, turns in dialogues.items():
        for index, turn in enumerate(turns):
            if turn.sticker_id is None:
                continue
            text = "\n".join(t.text for t in turns[max(0, index - context_turns + 1): index + 1])
            out.append(StickerTurn(dialogue_id, index, turn.sticker_id, text))
    return out


def sticker_texts(stickers: StickerSet, which: str = STICKER_TEXT) -> dict[str, str]:
    """Sticker id -> text embedded for it (``name + OCR``), for every sticker with an image."""
    from core.serving.text_scorer import sticker_text

    return {s.sticker_id: sticker_text(s, which) for s in stickers if s.has_image}


def id_windows(ids: Iterable[str], window: int = DEFAULT_WINDOW) -> list[list[str]]:
    """The distinct ``ids`` in numeric order cut into ``round(n / window)`` (at least 1) consecutive
    windows of near-equal size (sizes differ by at most one)."""
    if window < 1:
        raise ValueError(f"window={window!r}; expected >= 1")
    ordered = sorted(set(ids), key=int)
    if not ordered:
        return []
    count = max(1, round(len(ordered) / window))
    size, extra = divmod(len(ordered), count)
    out, start = [], 0
    for k in range(count):
        end = start + size + (k < extra)
        out.append(ordered[start:end])
        start = end
    return out


@dataclass
class AlignmentWindow:
    """One window of sticker ids: its verdict and the mean agreement at every shift."""

    ids: list[str]                  # [first id, last id] of the window
    n: int                          # sticker turns whose id is in the window
    n_ids: int                      # distinct ids used in the window
    best_shift: int
    mean_z: dict[int, float]        # shift -> mean agreement (NaN: no turn has a sticker at id + shift)
    n_by_shift: dict[int, int]      # shift -> turns counted
    tolerance: float                # how far behind the best shift 0 may be and still agree
    agrees: bool                    # best shift 0, or shift 0 within `tolerance` of the best
    decides: bool                   # n >= min_window_turns

    def to_dict(self) -> dict:
        out = asdict(self)
        out["mean_z"] = {f"{s:+d}": _rounded(v) for s, v in self.mean_z.items()}
        out["n_by_shift"] = {f"{s:+d}": v for s, v in self.n_by_shift.items()}
        out["tolerance"] = _rounded(self.tolerance)
        return out


@dataclass
class AlignmentReport:
    """The verdict (``aligned``: True, False, or None when there is too little data) and its windows."""

    aligned: bool | None
    windows: list[AlignmentWindow]
    n_turns: int
    n_stickers: int
    shifts: list[int]
    window: int
    context_turns: int
    rule: str
    note: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def best_shifts(self) -> list[int]:
        return [w.best_shift for w in self.windows]

    def to_dict(self) -> dict:
        return {"aligned": self.aligned, "windows": [w.to_dict() for w in self.windows],
                "n_turns": self.n_turns, "n_stickers": self.n_stickers, "shifts": self.shifts,
                "window": self.window, "context_turns": self.context_turns, "rule": self.rule,
                "note": self.note, **self.extra}

    def table(self) -> str:
        """A Markdown table: ids, turns, best shift, mean z at each shift."""
        head = "| ids | n | best shift | " + " | ".join(f"z {s:+d}" for s in self.shifts) + " | agrees |"
        lines = [head, "|---" * (len(self.shifts) + 4) + "|"]
        for w in self.windows:
            cells = " | ".join("–" if math.isnan(w.mean_z[s]) else f"{w.mean_z[s]:.2f}" for s in self.shifts)
            verdict = ("yes" if w.agrees else "**no**") if w.decides else "(too few turns)"
            lines.append(f"| {w.ids[0]}–{w.ids[1]} | {w.n} | {w.best_shift:+d} | {cells} | {verdict} |")
        return "\n".join(lines)


def _rounded(value: float) -> float | None:
    return None if math.isnan(value) else round(float(value), 4)


RULE = (f"a window agrees when its best shift is 0 or shift 0's mean z is within max({MIN_MARGIN}, "
        f"{STANDARD_ERRORS:g} standard errors of the paired per-turn difference) of the best; windows with "
        f"fewer than {MIN_WINDOW_TURNS} turns do not decide; aligned when every deciding window agrees")


def window_agrees(best: torch.Tensor, zero: torch.Tensor, min_margin: float = MIN_MARGIN,
                  standard_errors: float = STANDARD_ERRORS) -> tuple[bool, float]:
    """(agrees, tolerance) from paired per-turn agreements at the best shift and at shift 0."""
    n = len(best)
    if n == 0:
        return False, min_margin
    diff = best - zero
    se = float(diff.std(unbiased=True)) / math.sqrt(n) if n > 1 else float("inf")
    tolerance = max(min_margin, standard_errors * se)
    return float(diff.mean()) <= tolerance, tolerance


def standardised_similarity(turn_vectors: torch.Tensor, sticker_vectors: torch.Tensor) -> torch.Tensor:
    """Cosine similarity (turns x stickers), each sticker's column z-scored over the turns."""
    turns = torch.nn.functional.normalize(turn_vectors.float(), dim=-1)
    stickers = torch.nn.functional.normalize(sticker_vectors.float(), dim=-1)
    cos = turns @ stickers.T
    mean = cos.mean(dim=0, keepdim=True)
    std = cos.std(dim=0, keepdim=True) if len(cos) > 1 else torch.ones_like(mean)
    return (cos - mean) / std.clamp_min(1e-6)


def alignment_report(turns: Sequence[StickerTurn], texts: Mapping[str, str], encode: Encode, *,
                     window: int = DEFAULT_WINDOW, shifts: Sequence[int] = SHIFTS, context_turns: int = 1,
                     min_turns: int = MIN_TURNS, min_window_turns: int = MIN_WINDOW_TURNS,
                     min_margin: float = MIN_MARGIN) -> AlignmentReport:
    """The check described in the module docstring.

    Args:
        turns: the sticker turns (:func:`sticker_turns`), ids as in the file after any conversion.
        texts: sticker id -> its text, for every sticker that can be a candidate (with an image).
        encode: texts -> (N, H) sentence vectors (a frozen encoder; :class:`CachedEncoder` caches it).
        context_turns: recorded in the report (the turns' texts already hold it).
    """
    shifts = sorted(set(int(s) for s in shifts) | {0})
    if not texts:
        raise ValueError("no sticker texts: no sticker has an image")
    columns = {int(sid): k for k, sid in enumerate(texts)}
    rule = RULE.replace(str(MIN_MARGIN), str(min_margin)).replace(f"fewer than {MIN_WINDOW_TURNS}",
                                                                  f"fewer than {min_window_turns}")
    base = dict(n_turns=len(turns), n_stickers=len(texts), shifts=shifts, window=window,
                context_turns=context_turns, rule=rule)
    if len(turns) < min_turns:
        return AlignmentReport(None, [], note=f"only {len(turns)} sticker turns (< {min_turns}): no verdict", **base)
    unique = list(dict.fromkeys([t.text for t in turns] + list(texts.values())))
    vectors = encode(unique)
    vectors = torch.as_tensor(vectors, dtype=torch.float32)
    row = {text: k for k, text in enumerate(unique)}
    z = standardised_similarity(vectors[[row[t.text] for t in turns]], vectors[[row[t] for t in texts.values()]])
    ids = torch.tensor([int(t.sticker_id) for t in turns])
    windows = []
    for group in id_windows([t.sticker_id for t in turns], window):
        in_window = torch.isin(ids, torch.tensor([int(g) for g in group]))
        rows = torch.nonzero(in_window).flatten()
        per_shift: dict[int, torch.Tensor] = {}   # shift -> (rows kept, agreement)
        kept: dict[int, torch.Tensor] = {}
        for s in shifts:
            cols = torch.tensor([columns.get(int(ids[r]) + s, -1) for r in rows], dtype=torch.long)
            ok = cols >= 0
            kept[s] = rows[ok]
            per_shift[s] = z[rows[ok], cols[ok]] if ok.any() else torch.zeros(0)
        mean_z = {s: float(v.mean()) if len(v) else float("nan") for s, v in per_shift.items()}
        best = max((s for s in shifts if not math.isnan(mean_z[s])), key=lambda s: (mean_z[s], -abs(s)), default=0)
        if best == 0 or math.isnan(mean_z[0]):
            agrees, tolerance = best == 0 and not math.isnan(mean_z[0]), min_margin
        else:  # paired: turns counted at both shifts
            both = torch.isin(kept[best], kept[0])
            zero_rows = torch.isin(kept[0], kept[best])
            agrees, tolerance = window_agrees(per_shift[best][both], per_shift[0][zero_rows], min_margin)
        windows.append(AlignmentWindow(
            ids=[group[0], group[-1]], n=len(rows), n_ids=len(group), best_shift=best, mean_z=mean_z,
            n_by_shift={s: len(v) for s, v in per_shift.items()}, tolerance=tolerance, agrees=agrees,
            decides=len(rows) >= min_window_turns))
    deciding = [w for w in windows if w.decides]
    aligned = all(w.agrees for w in deciding) if deciding else None
    note = "" if deciding else f"no window has {min_window_turns} turns: no verdict"
    if aligned is False:
        shifted = sorted({w.best_shift for w in deciding if not w.agrees})
        note = ("sticker ids look shifted by " + ", ".join(f"{s:+d}" for s in shifted) + " in windows " +
                ", ".join(f"{w.ids[0]}-{w.ids[1]}" for w in deciding if not w.agrees))
    return AlignmentReport(aligned, windows, note=note, **base)


def check_dialogues(dialogues: Mapping[str, Sequence[Turn]], stickers: StickerSet, encode: Encode, *,
                    context_turns: int = 1, **options) -> AlignmentReport:
    """:func:`alignment_report` for loaded dialogues (``core.data.mod.load_dialogues`` / ``ModData.dialogues``)."""
    return alignment_report(sticker_turns(dialogues, context_turns), sticker_texts(stickers), encode,
                            context_turns=context_turns, **options)


class CachedEncoder:
    """``encode`` with a per-text cache on disk (one safetensors file; key: digest of the encoder
    name and the text), so that checking another numbering of the same dialogues embeds nothing new.

    ``encode`` may be a factory (``lazy=True``): it is called once, on the first text not cached.
    Texts are embedded longest first in one call (less padding per batch)."""

    def __init__(self, encode, name: str, path: str | Path | None, lazy: bool = False) -> None:
        self._encode = None if lazy else encode
        self._factory = encode if lazy else None
        self.name = name
        self.path = Path(path) if path is not None else None
        self.embedded = 0  # texts this object sent to the encoder

    def _key(self, text: str) -> str:
        return hashlib.sha256(json.dumps([self.name, text], ensure_ascii=False).encode()).hexdigest()[:32]

    def _load(self) -> dict[str, torch.Tensor]:
        if self.path is None or not self.path.is_file():
            return {}
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as f:
                keys = json.loads((f.metadata() or {}).get("keys", "[]"))
                vectors = f.get_tensor("vectors")
        except Exception as exc:  # a broken cache is only a cache
            logger.warning("%s: unreadable embedding cache (%s); embedding again", self.path, exc)
            return {}
        return dict(zip(keys, vectors))

    def _save(self, cache: dict[str, torch.Tensor]) -> None:
        if self.path is None or not cache:
            return
        from safetensors.torch import save_file

        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(cache)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        os.close(fd)
        os.chmod(tmp, 0o644)
        try:
            save_file({"vectors": torch.stack([cache[k] for k in keys]).contiguous()}, tmp,
                      metadata={"keys": json.dumps(keys), "encoder": self.name})
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        texts = list(texts)
        cache = self._load()
        keys = [self._key(t) for t in texts]
        missing = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in cache))
        if missing:
            if self._encode is None:
                self._encode = self._factory()
            order = sorted(missing, key=len, reverse=True)
            vectors = torch.as_tensor(self._encode(order), dtype=torch.float32)
            cache.update({self._key(t): v.clone() for t, v in zip(order, vectors)})
            self.embedded += len(order)
            self._save(cache)
        return torch.stack([cache[k] for k in keys]) if keys else torch.zeros(0, 0)


def cached_sentence_encoder(name: str, cache_dir: str | Path | None) -> CachedEncoder:
    """The frozen sentence encoder `name` (loaded on first need) with the per-text cache in `cache_dir`."""
    from core.serving.text_scorer import safe_name, sentence_encoder

    path = None if cache_dir is None else Path(cache_dir) / f"embeddings-{safe_name(name)[-40:]}.safetensors"
    return CachedEncoder(lambda: sentence_encoder(name, max_length=128), name, path, lazy=True)
