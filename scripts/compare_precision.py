"""Replicate finished fine-tuning cells in another variant and say whether the ground truth moves.

    .venv/bin/python scripts/compare_precision.py                       # bfloat16, current code
    .venv/bin/python scripts/compare_precision.py --precision fp32 --cells dinov2_s/textures  # noise floor
    .venv/bin/python scripts/compare_precision.py --tag unfused --repeats 0   # re-read older stores

For each cell: its seed runs at the chosen learning rate re-run in PRECISION by the current code
(TAG names it) with the same subsets and seeds (finetuning.precision), the paired per-seed
differences, and the training-step speed-up measured side by side; then every variant pooled over
the cells. Writes OUT_DIR/summary.json (and one resumable store per cell and variant).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PARTIAL = ROOT / "data" / "ground_truth" / "partial" / "offline_zoo_v2.partial.json"
CELLS = ["dinov2_s@block4/textures", "dinov2_s/textures", "dinov2_s/digits"]   # finished cells, cheapest first
PRECISION = "bf16"
TAG = "fused"                    # names the code's variant of the networks (models.fx_fusion since 2026-12-02);
                                 # a new tag re-runs the replications, an old one reads its stores
REPEATS = 3                      # alternating timing repeats per model (0: no timing)
OUT_DIR = ROOT / "docs" / "results" / "precision"


def _cpu_flags() -> str:
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--partial", type=Path, default=PARTIAL)
    p.add_argument("--cells", nargs="+", default=CELLS, metavar="MODEL/DATASET")
    p.add_argument("--precision", default=PRECISION)
    p.add_argument("--tag", default=TAG, help="variant name: stores and summary rows are kept per tag")
    p.add_argument("--repeats", type=int, default=REPEATS)
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = p.parse_args(argv)

    import torch

    from data.cache import atomic_save_json
    from finetuning import FinetuneConfig
    from finetuning.engine import check_precision
    from finetuning.precision import compare_seeds, replicate_cell, step_speedup

    try:
        check_precision(args.precision)
        doc = json.loads(args.partial.read_text(encoding="utf-8"))
        config = FinetuneConfig.from_dict(doc["protocol"])
        cells = [tuple(c.split("/")) for c in args.cells]
        bad = [c for c in args.cells if c.count("/") != 1]
        if bad:
            raise ValueError(f"cells must be MODEL/DATASET, got {bad}")
        missing = [f"{m}/{d}" for m, d in cells if m not in doc["runs"].get(d, {})]
        if missing:
            raise ValueError(f"not finished in {args.partial}: {missing}")
    except (OSError, ValueError, KeyError) as err:
        raise SystemExit(f"error: {err}") from None
    torch.set_num_threads(config.num_threads)
    summary_path = args.out_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    summary.update({"partial": str(args.partial.relative_to(ROOT)) if args.partial.is_relative_to(ROOT)
                    else str(args.partial), "precision": args.precision, "torch": torch.__version__,
                    "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(terse=True),
                                "bf16_cpu": torch.backends.mkldnn.is_available() and "avx512_bf16" in _cpu_flags()}})
    for model, dataset in cells:
        ref = doc["runs"][dataset][model]
        variant = f"{args.precision}.{args.tag}"
        store = args.out_dir / f"{model}__{dataset}.{variant}.partial.json"
        new = replicate_cell(ref, config, args.precision, store, progress=True)
        row = {"test_acc_seeds": new["test_acc_seeds"], **compare_seeds(ref["test_acc_seeds"], new["test_acc_seeds"]),
               "seconds": [r["seconds"] for r in new["seed_runs"]],
               "fused": new["seed_runs"][0].get("fused")}
        if args.repeats:
            row["step"] = step_speedup(model, config, args.precision, repeats=args.repeats)
        cell = summary.setdefault("cells", {}).setdefault(f"{model}/{dataset}", {})
        cell.update({"best_lr": ref["best_lr"], "seeds": ref["seeds"], "precision": ref.get("precision", "fp32"),
                     "test_acc_seeds": ref["test_acc_seeds"], "seconds": [r["seconds"] for r in ref["seed_runs"]]})
        cell.setdefault("replications", {})[variant] = row
        atomic_save_json(summary_path, summary)
        speed = f", step speed-up {row['step']['speedup']:.2f}x" if "step" in row else ""
        print(f"{model}/{dataset} lr {ref['best_lr']:g}: cell ({cell['precision']}) {row['reference_mean']:.2f} ± "
              f"{row['reference_std']:.2f}, "
              f"{variant} {row['other_mean']:.2f}; paired diff {row['diff_mean']:+.2f} ± {row['diff_std']:.2f} "
              f"(max |d| {row['max_abs_diff']:.2f}, p {row['p_paired']}){speed}")
    pooled = {}                       # every cell's seeds of one variant together (paired)
    for cell in summary.get("cells", {}).values():
        for variant, row in cell["replications"].items():
            ref_new = pooled.setdefault(variant, ([], []))
            ref_new[0].extend(cell["test_acc_seeds"])
            ref_new[1].extend(row["test_acc_seeds"])
    summary["pooled"] = {v: {"cells": sum(v in c["replications"] for c in summary["cells"].values()),
                             **compare_seeds(*ab)} for v, ab in pooled.items()}
    atomic_save_json(summary_path, summary)
    for v, row in summary["pooled"].items():
        print(f"pooled {v} ({row['cells']} cells, {row['n']} seeds): paired diff {row['diff_mean']:+.2f} ± "
              f"{row['diff_std']:.2f}, p {row['p_paired']}")
    print(f"wrote {summary_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
