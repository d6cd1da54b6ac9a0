"""`python -m train.ship --checkpoint CKPT`: make CKPT the default model in assets/.

Writes CKPT's weights as fp16 safetensors (about half the size), its config, tokenizer and
training_info.json into assets/default_model (or --output), replacing what is there in one atomic
step, copies sticker_prior.json and the text scorer's files (its fine-tuned encoder layers too) when CKPT has them, then loads the
result back to check it.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import torch

from core.model.checkpoint import load_selector, save_selector
from core.serving.text_scorer import TEXT_SCORER_CONFIG
from core.serving.prior import PRIOR_FILE
from core.serving.scoring import load_scoring_parts, record_scoring_file

from .paths import DEFAULT_MODEL_DIR


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(prog="python -m train.ship", description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--output", default=str(DEFAULT_MODEL_DIR))
    args = p.parse_args(argv)
    source = Path(args.checkpoint)
    model, tokenizer = load_selector(source)
    info_path = source / "training_info.json"
    info = json.loads(info_path.read_text(encoding="utf-8")) if info_path.exists() else {}
    info["shipped_from"] = str(source)
    out = save_selector(args.output, model, tokenizer, info, dtype=torch.float16)
    prior, text = load_scoring_parts(source, model.config)
    names = ([PRIOR_FILE] if prior is not None else []) + ([] if text is None else text.file_names())
    for name in names:
        shutil.copyfile(source / name, Path(out) / name)
    if model.config.scoring_files is None:  # an older checkpoint: record what it had
        for part, name in (("prior", PRIOR_FILE), ("text_scorer", TEXT_SCORER_CONFIG)):
            record_scoring_file(out, part, name if (Path(out) / name).exists() else None)
    shipped, _ = load_selector(out)  # fails loudly if the written folder does not load
    load_scoring_parts(out, shipped.config)  # ... or its scoring parts
    size = sum(f.stat().st_size for f in Path(out).iterdir())
    result = {"output": str(out), "bytes": size}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
