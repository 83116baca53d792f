"""Reproduce the INB and ModelGPT rows of the LOVM benchmark (Zohar et al., NeurIPS 2023) offline.

Leave-one-dataset-out on LOVM's published tables (35 VLMs x 23 datasets, ``data/lovm/``): per
dataset and on average, the accuracy of the selected model, top-1 hit, R@5, top-5 Kendall tau,
full Kendall tau, LOVM's L1@5 and the MAE of accuracy prediction. Writes CSVs under ``results/lovm/``.

    python lovm_reproduce.py                        # INB, ModelGPT (OLS on the 7 features), Oracle
    python lovm_reproduce.py --regressor lasso --alpha 0.01
    python lovm_reproduce.py --features text-f1 IN-score
    python lovm_reproduce.py --ablate-features      # + LOVM's 127-subset feature ablation (~1 min)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from data.cache import atomic_save_json
from mll.baselines import LOVM_FEATURES, LOVM_METHODS, REGRESSORS, load_lovm_tables, run_lovm_benchmark
from mll.baselines.lovm import ablate_modelgpt_features, save_lovm_result, write_csv_atomic

# ---- configuration (argparse overrides) -------------------------------------------------------
OUT_DIR = Path("results") / "lovm"
METHODS = ("INB", "ModelGPT", "Oracle")
REGRESSOR = "linear"          # LOVM's default LinearRegression
ALPHA = None                  # penalty of ridge / lasso (None: the factory default)
TARGET = "acc1"               # LOVM's PRED_TARGET
K = 5                         # LOVM's NUM_RANK
SHOW_PER_DATASET = ("selected_acc", "R@5", "tau@5", "L1@5")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", type=Path, default=None, help="folder of the LOVM tables (default: data/lovm)")
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=sorted(LOVM_METHODS))
    p.add_argument("--regressor", default=REGRESSOR, choices=sorted(REGRESSORS))
    p.add_argument("--alpha", type=float, default=ALPHA, help="ridge/lasso penalty")
    p.add_argument("--features", nargs="+", default=list(LOVM_FEATURES), choices=list(LOVM_FEATURES))
    p.add_argument("--no-standardize", action="store_true", help="fit on raw (unscaled) features")
    p.add_argument("--exclude-model", action="store_true",
                   help="accuracy prediction for (m, d) also leaves model m out of the fit (LOVM README rule)")
    p.add_argument("--target", default=TARGET, choices=["acc1", "mean_per_class_recall"])
    p.add_argument("--k", type=int, default=K)
    p.add_argument("--ablate-features", action="store_true", help="also run ModelGPT on every feature subset")
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    progress = not args.no_progress
    modelgpt_options = {"regressor": args.regressor, "features": list(args.features),
                        "standardize": not args.no_standardize, "exclude_model": args.exclude_model,
                        "regressor_params": {} if args.alpha is None else {"alpha": args.alpha}}
    if args.alpha is not None and args.regressor == "linear":
        raise SystemExit("--alpha applies to --regressor ridge or lasso, not linear")
    methods = {m: (modelgpt_options if m == "ModelGPT" else {}) for m in args.methods}

    tables = load_lovm_tables(args.data_dir, target=args.target, features=LOVM_FEATURES)
    result = run_lovm_benchmark(tables, methods, k=args.k, progress=progress)
    paths = save_lovm_result(result, args.out_dir)
    atomic_save_json(args.out_dir / "config.json", {
        "methods": methods, "target": args.target, "k": args.k,
        "n_models": len(tables.models), "n_datasets": len(tables.datasets),
        "protocol": "leave-one-dataset-out"})

    with pd.option_context("display.width", 200, "display.max_columns", 50, "display.max_rows", 200):
        shown = [c.replace("@5", f"@{args.k}") for c in SHOW_PER_DATASET]
        wide = result.per_dataset[shown].unstack(level="method")
        print(f"\nLOVM benchmark, {len(tables.models)} models x {len(tables.datasets)} datasets, per dataset:")
        print(wide.round(3).to_string())
        print("\nMean over datasets:")
        print(result.summary.round(3).to_string())

    if args.ablate_features:
        opts = {k: v for k, v in modelgpt_options.items() if k != "features"}
        ablation = ablate_modelgpt_features(tables, k=args.k, progress=progress, **opts)
        paths["ablation"] = write_csv_atomic(ablation, args.out_dir / "modelgpt_feature_ablation.csv", index=False)
        r_col, tau_col = f"R@{args.k}", f"tau@{args.k}"
        print("\nModelGPT feature ablation, best 10 subsets by R@k then tau@k:")
        print(ablation.sort_values([r_col, tau_col], ascending=False).head(10).round(3).to_string(index=False))
    print("\nwrote:", ", ".join(str(p) for p in paths.values()))


if __name__ == "__main__":
    main()
