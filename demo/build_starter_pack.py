"""Rebuild ``assets/starter_stickers/`` from two MIT-licensed npm packages.

The starter pack lets the demo run without the (research-only) MOD data: about 60
face emoji from Microsoft's Fluent Emoji 3D set, as repackaged on npm by LobeHub
(``@lobehub/fluent-emoji-3d``), named in English and Chinese with the CLDR labels
shipped in ``emojibase-data`` (``en/data.json`` and ``zh/data.json``).

Usage (network access to the npm registry needed only for ``npm pack``)::

    mkdir -p /tmp/emoji && cd /tmp/emoji
    npm pack @lobehub/fluent-emoji-3d@1.1.0 emojibase-data@17.0.0
    mkdir fe eb
    tar xzf lobehub-fluent-emoji-3d-1.1.0.tgz -C fe
    tar xzf emojibase-data-17.0.0.tgz -C eb
    cd /work/main   # the repository root
    python -m demo.build_starter_pack --fluent /tmp/emoji/fe/package --emojibase /tmp/emoji/eb/package

Images are downscaled to at most 128 px and saved as optimised PNG (with alpha), so the
pack stays well under 2 MB.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO_ROOT / "assets" / "starter_stickers"
MAX_SIDE = 128

#: Hex codes (emojibase spelling) of the face emoji in the pack, in display order.
FACES: tuple[str, ...] = (
    "1F600", "1F603", "1F601", "1F606", "1F605", "1F923", "1F602", "1F642", "1F643",
    "1FAE0", "1F609", "1F60A", "1F607", "1F970", "1F60D", "1F929", "1F618", "1F972",
    "1F60B", "1F61B", "1F92A", "1F911", "1F917", "1F92D", "1FAE3", "1F92B", "1F914",
    "1FAE1", "1F910", "1F928", "1F610", "1F611", "1F60F", "1F612", "1F644", "1F62C",
    "1F925", "1F60C", "1F614", "1F62A", "1F634", "1F924", "1F637", "1F922",
    "1F635-200D-1F4AB", "1F92F", "1F973", "1F60E", "1F913", "1F615", "1F61F", "1F62E",
    "1F633", "1F97A", "1F62D", "1F622", "1F631", "1F629", "1F971", "1F621", "1F620",
    "1F608",
)


def sticker_id(hexcode: str) -> str:
    """The stable sticker id of an emoji: ``emoji-`` plus its lower-case hex code."""
    return "emoji-" + hexcode.lower()


def build(fluent_dir: Path, emojibase_dir: Path, out_dir: Path = DEFAULT_OUT) -> list[dict]:
    """Write the PNGs and ``index.json`` into ``out_dir``; return the index entries."""
    en = {e["hexcode"]: e for e in json.loads((emojibase_dir / "en" / "data.json").read_text("utf-8"))}
    zh = {e["hexcode"]: e for e in json.loads((emojibase_dir / "zh" / "data.json").read_text("utf-8"))}
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for hexcode in FACES:
        source = fluent_dir / "assets" / f"{hexcode.lower()}.webp"
        if not source.is_file():
            raise FileNotFoundError(f"{source}: not in the fluent-emoji-3d package")
        with Image.open(source) as image:
            image = image.convert("RGBA")
            image.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
            # 256-colour palette with alpha: about a third of the RGBA size, no visible loss.
            small = image.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
            file_name = f"{hexcode.lower()}.png"
            small.save(out_dir / file_name, format="PNG", optimize=True)
        entries.append({
            "id": sticker_id(hexcode),
            "file": file_name,
            "name_en": en[hexcode]["label"],
            "name_zh": zh[hexcode]["label"],
            "emoji": en[hexcode]["emoji"],
            "ocr": "",
        })
    tmp = out_dir / "index.json.tmp"
    tmp.write_text(json.dumps(entries, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out_dir / "index.json")
    return entries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fluent", type=Path, required=True, help="unpacked @lobehub/fluent-emoji-3d package dir")
    parser.add_argument("--emojibase", type=Path, required=True, help="unpacked emojibase-data package dir")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    entries = build(args.fluent, args.emojibase, args.out)
    total = sum((args.out / e["file"]).stat().st_size for e in entries)
    print(f"wrote {len(entries)} stickers to {args.out} ({total / 1024:.0f} KiB of PNG)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
