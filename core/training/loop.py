"""What the training entry points share: seeded randomness and training data from annotations.

Every draw of a training run comes from a generator seeded by (seed, step, purpose), so a run
resumed from its last checkpoint takes exactly the steps the uninterrupted run would have.
"""
from __future__ import annotations

import torch


def seeded_generator(*parts: int) -> torch.Generator:
    return torch.Generator().manual_seed(hash(tuple(parts)) % (2 ** 63))


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    return torch.randperm(n, generator=seeded_generator(seed, epoch, 17)).tolist()


def extra_positive_samples(train: list[dict], mod, bank_ids, held_out: set[str],
                           export) -> tuple[list[dict], dict]:
    """One more positive sample (same dialogue, the accepted sticker) per sticker that annotators
    accepted for a training sample's dialogue (matched as in ``train.evaluate --extra-positives``:
    by source_sample_id, else by the demo's dialogue hash). Left out: the gold sticker itself,
    stickers not in the bank, held-out (hard) stickers, and hash matches whose dialogue text is
    also that of a sample outside the training dialogues (valid / test), so no flag made on a
    valid or test dialogue ever becomes training data. Returns (new samples, counts)."""
    from core.annotations.positives import ExtraPositives, load_extra_positives

    extra = load_extra_positives(export)
    in_bank = set(bank_ids)
    train_dialogues = set(mod.splits["train"]["dialogue_id"])
    outside = set()
    if extra.by_hash:  # every sample of a valid / test (or dropped hard-test) dialogue
        outside = {ExtraPositives.sample_hash(s) for s in mod.samples if s["dialogue_id"] not in train_dialogues}
    counts = {"export": str(export), "samples_matched": 0, "added": 0, "skipped_gold": 0,
              "skipped_not_in_bank": 0, "skipped_held_out": 0, "skipped_eval_dialogue": 0}
    added = []
    for s in train:
        accepted = set(extra.by_sample_id.get(str(s["sample_id"]), ()))
        if extra.by_hash:
            h = ExtraPositives.sample_hash(s)
            if h in extra.by_hash and h in outside:
                counts["skipped_eval_dialogue"] += len(extra.by_hash[h])
            else:
                accepted |= extra.by_hash.get(h, set())
        counts["samples_matched"] += bool(accepted)
        for sticker in sorted(accepted):
            reason = ("skipped_gold" if sticker == s["sticker_id"] else "skipped_not_in_bank"
                      if sticker not in in_bank else "skipped_held_out" if sticker in held_out else None)
            if reason:
                counts[reason] += 1
                continue
            # lexicon emotions belong to the sticker: -1 lets the objective use the accepted one's label
            emotion = s.get("emotion_id", -1) if mod.emotion_source == "data" else -1
            added.append({**s, "sticker_id": sticker, "sample_id": f"{s['sample_id']}+accepted:{sticker}",
                          "emotion_id": emotion})
    counts["added"] = len(added)
    return added, counts
