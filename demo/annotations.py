"""Command line for the sticker annotation store (see core/annotations/).

    python -m demo.annotations export  --db DB --format parquet|jsonl|hf DIR
    python -m demo.annotations import  --db DB PATH
    python -m demo.annotations summary --db DB [--json]

DB is a SQLite file path, ``sqlite:///...`` or ``postgresql://user:pass@host/db``
(default: $ANNOTATIONS_DB).  Exit status: 0 ok, 1 store/input error, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Sequence

from core.annotations import (
    EXPORT_FORMATS,
    AnnotationStore,
    AnnotationStoreError,
    compute_agreement,
    export_dataset,
    import_dataset,
)

ENV_DB = "ANNOTATIONS_DB"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m demo.annotations",
        description="Export, import and summarise sticker annotations "
                    "(\"other acceptable stickers\" flags).",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="{export,import,summary}")

    def add_db(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--db", default=os.environ.get(ENV_DB),
            help=f"SQLite file path, sqlite:///... or postgresql://... URL (default: ${ENV_DB})")

    ex = sub.add_parser("export", help="write the annotations as a dataset",
                        description="Write one row per dialogue (+ per-annotator records and "
                                    "summary.json) to DIR.")
    add_db(ex)
    ex.add_argument("--format", "-f", choices=EXPORT_FORMATS, default="parquet",
                    help="parquet (default), jsonl, or hf (datasets save_to_disk)")
    ex.add_argument("out_dir", metavar="DIR", help="output directory (created if missing)")

    im = sub.add_parser("import", help="merge an export back into the store",
                        description="Merge an export (directory or file, any format) into the "
                                    "store without duplicates.")
    add_db(im)
    im.add_argument("path", metavar="PATH", help="export directory or file")

    su = sub.add_parser("summary", help="print counts and inter-annotator agreement")
    add_db(su)
    su.add_argument("--json", action="store_true", help="print machine-readable JSON")
    return p


def _missing_sqlite_file(db: str) -> Path | None:
    """The SQLite file ``db`` points to when it does not exist, else None."""
    if "://" in db:
        if not db.startswith("sqlite:///") or "?" in db:
            return None
        db = db[len("sqlite:///"):]
        if not db or db == ":memory:":
            return None
    path = Path(db).expanduser()
    return None if path.exists() else path.absolute()


def _fmt(v: object, pct: bool = False) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.1f}%" if pct else f"{v:.3f}"
    return str(v)


def _print_summary(store: AnnotationStore, as_json: bool) -> None:
    records = store.all()
    agreement = compute_agreement(records)
    counts = {
        "records": len(records),
        "dialogues": len({a.dialogue_hash for a in records}),
        "stickers": len({a.sticker_id for a in records}),
        "annotators": len({a.annotator for a in records}),
        "acceptable": sum(a.label == "acceptable" for a in records),
        "not_acceptable": sum(a.label == "not_acceptable" for a in records),
    }
    if as_json:
        print(json.dumps({"store": store.url, "schema_version": store.schema_version,
                          "counts": counts, "agreement": agreement}, indent=2, ensure_ascii=False))
        return
    print(f"store:          {store.url} (schema v{store.schema_version})")
    for k, v in counts.items():
        print(f"{k + ':':<15} {v}")
    print(f"items with >=2 annotators: {agreement['n_items']} "
          f"({agreement['n_annotators']} annotators, {agreement['n_ratings']} ratings)")
    print(f"percent agreement:  {_fmt(agreement['percent_agreement'], pct=True)} "
          f"(unanimous items: {agreement['unanimous_items']})")
    if agreement["fleiss_n_items"]:
        print(f"Fleiss' kappa:      {_fmt(agreement['fleiss_kappa'])} "
              f"({agreement['fleiss_n_items']} items with {agreement['fleiss_n_raters']} raters)")
    else:
        print("Fleiss' kappa:      n/a")
    if agreement["cohen_kappa"]:
        print(f"Cohen's kappa per annotator pair (mean {_fmt(agreement['mean_cohen_kappa'])}):")
        for c in agreement["cohen_kappa"]:
            a, b = c["annotators"]
            print(f"  {a} / {b}: kappa {_fmt(c['kappa'])}, agreement "
                  f"{_fmt(c['percent_agreement'], pct=True)} on {c['n_items']} items")
    else:
        print("Cohen's kappa:      n/a (no item shared by two annotators)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.db:
        parser.error(f"--db is required (or set ${ENV_DB})")
    missing = _missing_sqlite_file(args.db)
    if missing is not None and args.command in ("export", "summary"):
        # reading commands must not silently create an empty database
        print(f"error: no annotation database at {missing}", file=sys.stderr)
        return 1
    try:
        store = AnnotationStore(args.db)
    except (AnnotationStoreError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    try:
        if args.command == "export":
            ds = export_dataset(store, args.out_dir, args.format)
            print(f"exported {store.count()} records / {len(ds)} dialogues "
                  f"as {args.format} to {args.out_dir}")
        elif args.command == "import":
            before = store.count()
            changed = import_dataset(store, args.path)
            after = store.count()
            print(f"imported {args.path}: {changed} records inserted or updated "
                  f"({after - before} new); store now has {after} records")
        else:
            _print_summary(store, args.json)
    except (AnnotationStoreError, ValueError, FileNotFoundError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
