"""Serving: the one scoring path (cross-encoder + text scorer + popularity prior), StickerSelector
(rank, emotions, semantic labels, saliency) and the exact fast ranking of late-interaction models."""
