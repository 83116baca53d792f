"""Print a fine-tuning table (finetune.py) as markdown: mean ± std over the seeds, best lr in parentheses.

    .venv/bin/python scripts/finetune_table.py                                    # the v2 table
    .venv/bin/python scripts/finetune_table.py data/ground_truth/partial/offline_zoo_v2.partial.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TABLE = ROOT / "data" / "ground_truth" / "offline_zoo_v2.json"
DATASETS = ["fashion_mnist", "mnist", "digits", "textures"]
MODEL_GROUPS = ("offline", "offline_trained")   # rows in the model registry's order (others after them)
DIGITS = 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("table", type=Path, nargs="?", default=TABLE, help="a fine-tuning table or partial-results file")
    p.add_argument("--datasets", nargs="+", default=DATASETS)
    p.add_argument("--digits", type=int, default=DIGITS)
    args = p.parse_args(argv)
    import models
    from finetuning.results import markdown_table, read_results
    try:
        cells = read_results(args.table)[1]
        seen = list(dict.fromkeys(m for row in cells.values() for m in row))
        order = [m for g in MODEL_GROUPS for m in models.list_models(g) if m in seen]
        print(markdown_table(args.table, models=order + [m for m in seen if m not in order],
                             datasets=args.datasets, digits=args.digits))
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
