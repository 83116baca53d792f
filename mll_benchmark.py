"""MLL benchmark (Tan et al., ICML 2025): INB / ModelGPT / MLL (k=1, 3) per target dataset, hub
growth, alpha and k ablations.

Offline (default; the ConSE stand-in hub on the offline datasets, a few minutes on 2 CPU cores)::

    python mll_benchmark.py

Full scale (49 open_clip models from local weights, graph on the ImageNet sample sets, 17 targets)::

    python mll_benchmark.py --scale full --sample-root /data/imagenets --target-root /data/mll_targets \
        --weights-dir /weights/open_clip

Writes ``{out}/{scale}/``: main_table.csv/.md, ground_truth.csv, alpha_ablation.csv, k_ablation.csv,
hub_growth.csv and hub_growth.png, selection_quality.csv, graph.json, summary.json. See docs/mll.md.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data.cache import atomic_save_json
from mll.benchmark import build_full_benchmark, build_offline_benchmark, plot_hub_growth, table_to_markdown

# ---- configuration -------------------------------------------------------------------------------
OFFLINE_SOURCES = ("fashion_mnist", "mnist", "digits", "textures", "lfw_faces")   # graph sample sets (train)
OFFLINE_TARGETS = ("fashion_mnist", "mnist", "digits", "textures", "lfw_faces")   # target tasks (test)
OFFLINE_IMAGES_PER_NODE = 10
OFFLINE_PER_CLASS = 15          # test images per class of each offline target
OFFLINE_IMAGE_SIZE = 128        # stand-ins run their backbone at this resolution (speed)
FULL_IMAGES_PER_NODE = 75       # paper Sec. 5.2
N_DISTRACTORS = 20              # competing WordNet neighbours per node when labelling
K_NODES = 5                     # top-k graph nodes per class (transfer matrix)
ALPHA = 0.7                     # Eq. 7 (paper Sec. 5.2)
KS = (1, 3)                     # Tables 1-2
ALPHAS = (0.5, 0.6, 0.7, 0.8, 0.9)  # Table 3
K_ABLATION = (1, 2, 3, 4, 5, 6)     # Table 4
N_ORDERS = 30                   # Fig. 3: random expansion orders
CACHE_DIR = "cache"
OUT_DIR = "results/mll"
RANDOM_STATE = 0


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", choices=("offline", "full"), default="offline")
    p.add_argument("--models", nargs="*", default=None, help="hub models (default: the whole hub of the scale)")
    p.add_argument("--targets", nargs="*", default=None, help="target datasets (default: all of the scale)")
    p.add_argument("--sources", nargs="*", default=None, help="sample datasets of the graph")
    p.add_argument("--images-per-node", type=int, default=None)
    p.add_argument("--per-class", type=int, default=None, help="test images per class (full: all by default)")
    p.add_argument("--image-size", type=int, default=OFFLINE_IMAGE_SIZE, help="offline stand-ins' input size")
    p.add_argument("--n-distractors", type=int, default=N_DISTRACTORS)
    p.add_argument("--k-nodes", type=int, default=K_NODES)
    p.add_argument("--alpha", type=float, default=ALPHA)
    p.add_argument("--n-orders", type=int, default=N_ORDERS)
    p.add_argument("--sample-root", default=None, help="full scale: folder holding the ImageNet sample sets")
    p.add_argument("--target-root", default=None, help="full scale: folder holding the 17 target datasets")
    p.add_argument("--weights-dir", default=None, help="full scale: open_clip weights folder")
    p.add_argument("--captions", default=None, help="full scale: JSON {target: caption-file path}")
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--out-dir", default=OUT_DIR)
    p.add_argument("--random-state", type=int, default=RANDOM_STATE)
    p.add_argument("--no-progress", action="store_true")
    return p.parse_args(argv)


def build(args: argparse.Namespace):
    common = dict(models=args.models, n_distractors=args.n_distractors, k_nodes=args.k_nodes, alpha=args.alpha,
                  cache_dir=args.cache_dir, random_state=args.random_state, progress=not args.no_progress)
    if args.scale == "offline":
        return build_offline_benchmark(
            sources=args.sources or OFFLINE_SOURCES, targets=args.targets or OFFLINE_TARGETS,
            images_per_node=args.images_per_node or OFFLINE_IMAGES_PER_NODE,
            per_class=args.per_class or OFFLINE_PER_CLASS, image_size=args.image_size, **common)
    captions = None
    if args.captions:
        with open(args.captions) as fh:
            captions = json.load(fh)
    extra = {"sample_sources": args.sources} if args.sources else {}
    return build_full_benchmark(sample_root=args.sample_root, target_root=args.target_root,
                                weights_dir=args.weights_dir, targets=args.targets,
                                images_per_node=args.images_per_node or FULL_IMAGES_PER_NODE,
                                per_class=args.per_class, class_captions=captions, **extra, **common)


def main(argv=None) -> dict:
    args = parse_args(argv)
    t0 = time.time()
    bench = build(args)
    out = Path(args.out_dir) / args.scale
    out.mkdir(parents=True, exist_ok=True)

    table = bench.main_table(KS)
    gt = bench.ground_truth()
    ks = [k for k in K_ABLATION if k <= len(bench.models)]
    alpha_abl, k_abl = bench.alpha_ablation(ALPHAS), bench.k_ablation(ks)
    growth = bench.hub_growth(args.n_orders, random_state=args.random_state)
    quality = bench.selection_quality()

    table.to_csv(out / "main_table.csv", float_format="%.4f")
    (out / "main_table.md").write_text(table_to_markdown(table))
    gt.to_csv(out / "ground_truth.csv", float_format="%.4f")
    alpha_abl.to_csv(out / "alpha_ablation.csv", float_format="%.4f")
    k_abl.to_csv(out / "k_ablation.csv", float_format="%.4f")
    quality.to_csv(out / "selection_quality.csv", float_format="%.4f")
    pd.DataFrame({f"{name} mean": arr.mean(axis=0) for name, arr in growth.items()} |
                 {f"{name} std": arr.std(axis=0) for name, arr in growth.items()},
                 index=pd.RangeIndex(1, len(bench.models) + 1, name="hub size")).to_csv(
        out / "hub_growth.csv", float_format="%.4f")
    plot_hub_growth(growth, out / "hub_growth.png")
    atomic_save_json(out / "graph.json", bench.hub.graph.to_json())
    summary = {"scale": args.scale, "models": bench.models, "targets": [t.name for t in bench.tasks],
               "graph": bench.hub.graph.summary(), "imagenet_scores": bench.imagenet_scores,
               "average": table["Avg."].to_dict(), "alpha_ablation": alpha_abl.to_dict(),
               "k_ablation": k_abl.to_dict(), "seconds": round(time.time() - t0, 1)}
    atomic_save_json(out / "summary.json", summary)

    pd.set_option("display.width", 200)
    print(table.round(4).to_string())
    print("\nalpha ablation (MLL, k=1):", alpha_abl.round(4).to_dict())
    print("k ablation (MLL):", k_abl.round(4).to_dict())
    print("\nselection quality (Eq. 6 vs measured per-class recall):\n" + quality.round(3).to_string())
    print("hub growth (MLL mean):", np.round(growth["MLL"].mean(axis=0), 4).tolist())
    print(f"results in {out} ({summary['seconds']} s)")
    return summary


if __name__ == "__main__":
    main()
