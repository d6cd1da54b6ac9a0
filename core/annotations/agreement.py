"""Inter-annotator agreement: percent agreement, Cohen's kappa per annotator
pair and Fleiss' kappa, over items (dialogue_hash, sticker_id) labelled by at
least two annotators (:func:`compute_agreement`)."""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping, Sequence

from .records import LABELS, Annotation

#: {(dialogue_hash, sticker_id): {annotator: label}}
Items = dict[tuple[str, str], dict[str, str]]


def _cohen_kappa(pairs: Sequence[tuple[str, str]]) -> float | None:
    n = len(pairs)
    if n == 0:
        return None
    po = sum(a == b for a, b in pairs) / n
    ca = Counter(a for a, _ in pairs)
    cb = Counter(b for _, b in pairs)
    pe = sum(ca[c] * cb[c] for c in LABELS) / (n * n)
    if math.isclose(pe, 1.0):
        return None
    return (po - pe) / (1.0 - pe)


def _fleiss_kappa(items: Sequence[Mapping[str, int]], n_raters: int) -> float | None:
    n_items = len(items)
    if n_items == 0 or n_raters < 2:
        return None
    p_bar = sum(
        (sum(counts.get(c, 0) ** 2 for c in LABELS) - n_raters) / (n_raters * (n_raters - 1))
        for counts in items
    ) / n_items
    pj = [sum(counts.get(c, 0) for counts in items) / (n_items * n_raters) for c in LABELS]
    pe = sum(p * p for p in pj)
    if math.isclose(pe, 1.0):
        return None
    return (p_bar - pe) / (1.0 - pe)


def _collect_items(annotations: Iterable[Annotation | Mapping[str, Any]]) -> tuple[Items, int]:
    """-> ({(dialogue_hash, sticker_id): {annotator: label}}, number of records)."""
    items: Items = defaultdict(dict)
    n_records = 0
    for a in annotations:
        get = a.get if isinstance(a, Mapping) else (lambda k, _a=a: getattr(_a, k))
        items[(get("dialogue_hash"), get("sticker_id"))][get("annotator")] = get("label")
        n_records += 1
    return items, n_records


def _counts(n_records: int, items: Items, multi: Items) -> dict[str, Any]:
    """The result of :func:`compute_agreement` with its counts filled in and
    every statistic empty."""
    annotators = sorted({a for labs in multi.values() for a in labs})
    label_counts = Counter(lab for labs in multi.values() for lab in labs.values())
    return {
        "n_records": n_records,
        "n_items_total": len(items),
        "n_items": len(multi),
        "n_annotators": len(annotators),
        "annotators": annotators,
        "n_ratings": sum(len(v) for v in multi.values()),
        "label_counts": {lab: label_counts.get(lab, 0) for lab in LABELS},
        "percent_agreement": None,
        "unanimous_items": 0,
        "cohen_kappa": [],
        "mean_cohen_kappa": None,
        "fleiss_kappa": None,
        "fleiss_n_raters": None,
        "fleiss_n_items": None,
        "fleiss_by_n_raters": [],
    }


def _percent_agreement(multi: Items) -> dict[str, Any]:
    """Mean pairwise agreement over the items (%), and the unanimous items."""
    agree_fracs = []
    unanimous = 0
    for labs in multi.values():
        n = len(labs)
        counts = Counter(labs.values())
        agree_fracs.append(sum(c * (c - 1) for c in counts.values()) / (n * (n - 1)))
        unanimous += len(counts) == 1
    return {"percent_agreement": 100.0 * sum(agree_fracs) / len(agree_fracs),
            "unanimous_items": unanimous}


def _pairwise_cohen(multi: Items) -> dict[str, Any]:
    """Cohen's kappa for every annotator pair sharing >= 1 item, and their mean."""
    pairs: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
    for labs in multi.values():
        for a, b in itertools.combinations(sorted(labs), 2):
            pairs[(a, b)].append((labs[a], labs[b]))
    cohen = [
        {
            "annotators": [a, b],
            "n_items": len(lab_pairs),
            "percent_agreement": 100.0 * sum(x == y for x, y in lab_pairs) / len(lab_pairs),
            "kappa": _cohen_kappa(lab_pairs),
        }
        for (a, b), lab_pairs in sorted(pairs.items())
    ]
    kappas = [c["kappa"] for c in cohen if c["kappa"] is not None]
    return {"cohen_kappa": cohen,
            "mean_cohen_kappa": sum(kappas) / len(kappas) if kappas else None}


def _fleiss_groups(multi: Items) -> dict[str, Any]:
    """Fleiss' kappa per group of items with the same number of raters; the
    headline one is the largest group's."""
    groups: dict[int, list[Counter]] = defaultdict(list)
    for labs in multi.values():
        groups[len(labs)].append(Counter(labs.values()))
    by_n = [
        {"n_raters": n, "n_items": len(g), "kappa": _fleiss_kappa(g, n)}
        for n, g in sorted(groups.items())
    ]
    best = max(by_n, key=lambda g: (g["n_items"], g["n_raters"]))
    return {"fleiss_kappa": best["kappa"], "fleiss_n_raters": best["n_raters"],
            "fleiss_n_items": best["n_items"], "fleiss_by_n_raters": by_n}


def compute_agreement(annotations: Iterable[Annotation | Mapping[str, Any]]) -> dict:
    """Agreement statistics over items (dialogue_hash, sticker_id) labelled by
    at least two annotators.

    Returns a JSON-serialisable dict:

    * ``n_records``, ``n_items_total`` (all items), ``n_items`` (items with
      >= 2 annotators), ``n_annotators`` / ``annotators`` (on those items),
      ``n_ratings``, ``label_counts``;
    * ``percent_agreement``: mean pairwise agreement over the items, in %
      (None when there are no such items); ``unanimous_items``;
    * ``cohen_kappa``: one entry per annotator pair sharing >= 1 item:
      ``{"annotators": [a, b], "n_items", "percent_agreement", "kappa"}``
      (kappa None when chance agreement is 1, e.g. both used one label only);
      ``mean_cohen_kappa``;
    * ``fleiss_kappa`` over the largest group of items having the same number
      (>= 2) of raters (``fleiss_n_raters``, ``fleiss_n_items``), and
      ``fleiss_by_n_raters`` for every such group.
    """
    items, n_records = _collect_items(annotations)
    multi = {k: v for k, v in items.items() if len(v) >= 2}
    result = _counts(n_records, items, multi)
    if multi:
        result.update(_percent_agreement(multi))
        result.update(_pairwise_cohen(multi))
        result.update(_fleiss_groups(multi))
    return result
