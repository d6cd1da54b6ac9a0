"""Baselines beside the selector: the CLIP-style dual encoder (dual_encoder.py), SRS (srs.py) and the
MOD-GPT stand-in (mod_gpt.py); base.py has their shared inputs, checkpoint format and ranker building."""
