"""Baselines beside the selector: the CLIP-style dual encoder."""
