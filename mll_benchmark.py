"""MLL benchmark (Tan et al., ICML 2025): INB / ModelGPT / MLL (k=1, 3) per target dataset, hub
growth, alpha and k ablations.

Offline (default; the ConSE stand-in hub on the offline datasets, a few minutes on 2 CPU cores)::

    python mll_benchmark.py

Full scale (49 open_clip models from local weights, graph on the ImageNet sample sets, 17 targets)::

    python mll_benchmark.py --scale full --sample-root /data/imagenets --target-root /data/mll_targets \
        --weights-dir /weights/open_clip [--captions-dir MLL/caption_gen/captions]

Before any work the full-scale run checks every path it will read (sample sets, targets, weights,
tokenizers, caption files) and stops with the list of the missing ones (``mll.preflight``).

Writes ``{out}/{scale}/``: main_table.csv/.md, ground_truth.csv, alpha_ablation.csv, k_ablation.csv,
hub_growth.csv and hub_growth.png, selection_quality.csv, heterogeneity.csv, graph.json, summary.json.
See docs/mll.md.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from data.cache import atomic_save_json
from executor import EXECUTORS
from executor.cli import add_executor_arguments, executor_from_args, executor_resources
from executor.grids import label_offline_hub
from mll.benchmark import build_full_benchmark, build_offline_benchmark, plot_hub_growth, table_to_markdown
from mll.config import METHOD_VARIANTS
from mll.heterogeneity import heterogeneity_table
from mll.preflight import check_caption_dir, check_full_scale, check_text_encoder
from mll.tasks import load_caption_dir

# ---- configuration -------------------------------------------------------------------------------
OFFLINE_SOURCES = ("fashion_mnist", "mnist", "digits", "textures", "lfw_faces",   # graph sample sets (train)
                   "easyvqa_shapes", "easyvqa_colors")
OFFLINE_TARGETS = OFFLINE_SOURCES                                                 # target tasks (test)
OFFLINE_IMAGES_PER_NODE = 10
OFFLINE_PER_CLASS = 15          # test images per class of each offline target
OFFLINE_IMAGE_SIZE = 128        # stand-ins run their backbone at this resolution (speed)
FULL_SOURCES = ("imagenet", "imagenet_v2", "imagenet_sketch", "imagenet_a", "imagenet_r")   # paper Sec. 5.2
TEXT_ENCODER = "minilm"         # class / node captions (paper: OpenAI text-embedding-3-large)
MODELGPT_FIT = "sample"         # ModelGPT fitted on the sample datasets (paper); "loto": leave-one-target-out
FULL_IMAGES_PER_NODE = 75       # paper Sec. 5.2
N_DISTRACTORS = 20              # competing WordNet neighbours per node when labelling
K_NODES = 5                     # top-k graph nodes per class (transfer matrix)
VARIANT = "released"            # MLL as in the authors' released code (docs/mll.md, "Variants")
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
    p.add_argument("--variant", choices=sorted(METHOD_VARIANTS), default=VARIANT,
                   help="MLL method variant (mll.config.METHOD_VARIANTS): the authors' released code or our "
                        "earlier reconstruction of the paper's prose")
    p.add_argument("--n-orders", type=int, default=N_ORDERS)
    p.add_argument("--sample-root", default=None, help="full scale: folder holding the ImageNet sample sets")
    p.add_argument("--target-root", default=None, help="full scale: folder holding the 17 target datasets")
    p.add_argument("--weights-dir", default=None, help="full scale: open_clip weights folder")
    p.add_argument("--captions", default=None, help="JSON {target: caption-file path}")
    p.add_argument("--captions-dir", default=None,
                   help="folder of the released caption files {target}.json = {class: [captions]} (keys must "
                        "equal the class list); generated captions when absent")
    p.add_argument("--text-encoder", default=TEXT_ENCODER, help="registered text encoder for the captions "
                   "(Label_embedding.list_text_encoders())")
    p.add_argument("--modelgpt-fit", choices=("sample", "loto"), default=MODELGPT_FIT,
                   help="ModelGPT's training rows: the sample datasets (paper) or leave-one-target-out")
    p.add_argument("--cache-dir", default=CACHE_DIR)
    p.add_argument("--out-dir", default=OUT_DIR)
    p.add_argument("--random-state", type=int, default=RANDOM_STATE)
    p.add_argument("--no-progress", action="store_true")
    add_executor_arguments(p)
    p.add_argument("--node-shards", type=int, default=1,
                   help="--executor ray: encode the graph images as (model, node shard) tasks, this many shards per model")
    return p.parse_args(argv)


def preflight(args: argparse.Namespace) -> dict:
    """Validate every input before any work; returns the class captions to use ({} = generated)."""
    check_text_encoder(args.text_encoder)
    if args.scale != "offline" and EXECUTORS[args.executor].distributed:
        raise ValueError(f"--executor {args.executor} labels the offline hub only so far; run --scale full serially")
    if args.captions and args.captions_dir:
        raise ValueError("give --captions or --captions-dir, not both")
    if args.scale == "full":
        from mll.targets import FULL_TARGETS, mll_datasets
        from mll.vlm import list_vlms
        targets = list(args.targets or FULL_TARGETS)
        check_full_scale(sample_root=args.sample_root, target_root=args.target_root, weights_dir=args.weights_dir,
                         models=list(args.models or list_vlms("openclip")), sample_sources=list(args.sources or FULL_SOURCES),
                         targets=targets, captions_dir=args.captions_dir, text_encoder=args.text_encoder)
        classnames = {t: mll_datasets()["classnames"][t] for t in targets}
    else:
        from mll.graph import offline_dataset_info
        targets = list(args.targets or OFFLINE_TARGETS)
        classnames = {t: list(offline_dataset_info(t)["classes"]) for t in targets}
    if args.captions_dir:
        check_caption_dir(args.captions_dir, targets)
        return load_caption_dir(args.captions_dir, classnames)
    if args.captions:
        with open(args.captions) as fh:
            return json.load(fh)
    return {}


def prefill(args: argparse.Namespace) -> None:
    """``--executor ray``: compute the hub's per-model caches (graph and target image features,
    node texts / labels) as one Ray task per image-feature key first; :func:`build` then only reads
    them. Serial: nothing here (the build computes them in-process)."""
    with executor_from_args(args) as ex:
        if not ex.distributed:
            return
        label_offline_hub(ex, sources=args.sources or OFFLINE_SOURCES, targets=args.targets or OFFLINE_TARGETS,
                          models=args.models, images_per_node=args.images_per_node or OFFLINE_IMAGES_PER_NODE,
                          per_class=args.per_class or OFFLINE_PER_CLASS, image_size=args.image_size,
                          variant=args.variant, n_distractors=args.n_distractors, k_nodes=args.k_nodes,
                          alpha=args.alpha, cache_dir=args.cache_dir, random_state=args.random_state,
                          node_shards=args.node_shards, resources=executor_resources(args),
                          progress=not args.no_progress)


def build(args: argparse.Namespace, captions: dict):
    common = dict(models=args.models, variant=args.variant, n_distractors=args.n_distractors, k_nodes=args.k_nodes, alpha=args.alpha,
                  text_encoder=args.text_encoder, class_captions=captions or None, modelgpt_fit=args.modelgpt_fit,
                  cache_dir=args.cache_dir, random_state=args.random_state, progress=not args.no_progress)
    if args.scale == "offline":
        return build_offline_benchmark(
            sources=args.sources or OFFLINE_SOURCES, targets=args.targets or OFFLINE_TARGETS,
            images_per_node=args.images_per_node or OFFLINE_IMAGES_PER_NODE,
            per_class=args.per_class or OFFLINE_PER_CLASS, image_size=args.image_size, **common)
    return build_full_benchmark(sample_root=args.sample_root, target_root=args.target_root,
                                weights_dir=args.weights_dir, targets=args.targets,
                                sample_sources=args.sources or FULL_SOURCES,
                                images_per_node=args.images_per_node or FULL_IMAGES_PER_NODE,
                                per_class=args.per_class, **common)


def main(argv=None) -> dict:
    args = parse_args(argv)
    return run(args, preflight(args))


def run(args: argparse.Namespace, captions: dict) -> dict:
    t0 = time.time()
    prefill(args)
    bench = build(args, captions)
    out = Path(args.out_dir) / args.scale
    out.mkdir(parents=True, exist_ok=True)

    table = bench.main_table(KS)
    gt = bench.ground_truth()
    ks = [k for k in K_ABLATION if k <= len(bench.models)]
    alpha_abl, k_abl = bench.alpha_ablation(ALPHAS), bench.k_ablation(ks)
    growth = bench.hub_growth(args.n_orders, random_state=args.random_state)
    quality = bench.selection_quality()
    hetero = heterogeneity_table(bench)

    table.to_csv(out / "main_table.csv", float_format="%.4f")
    (out / "main_table.md").write_text(table_to_markdown(table))
    gt.to_csv(out / "ground_truth.csv", float_format="%.4f")
    alpha_abl.to_csv(out / "alpha_ablation.csv", float_format="%.4f")
    k_abl.to_csv(out / "k_ablation.csv", float_format="%.4f")
    quality.to_csv(out / "selection_quality.csv", float_format="%.4f")
    hetero.to_csv(out / "heterogeneity.csv", float_format="%.4f")
    pd.DataFrame({f"{name} mean": arr.mean(axis=0) for name, arr in growth.items()} |
                 {f"{name} std": arr.std(axis=0) for name, arr in growth.items()},
                 index=pd.RangeIndex(1, len(bench.models) + 1, name="hub size")).to_csv(
        out / "hub_growth.csv", float_format="%.4f")
    plot_hub_growth(growth, out / "hub_growth.png")
    atomic_save_json(out / "graph.json", bench.hub.graph.to_json())
    summary = {"scale": args.scale, "variant": args.variant, "method": vars(bench.config).copy(), "models": bench.models, "targets": [t.name for t in bench.tasks],
               "graph": bench.hub.graph.summary(), "imagenet_scores": bench.imagenet_scores,
               "text_encoder": args.text_encoder, "modelgpt_fit": args.modelgpt_fit,
               "captions": args.captions_dir or args.captions or "generated",
               "average": table["Avg."].to_dict(), "alpha_ablation": alpha_abl.to_dict(),
               "k_ablation": k_abl.to_dict(), "seconds": round(time.time() - t0, 1)}
    atomic_save_json(out / "summary.json", summary)

    pd.set_option("display.width", 200)
    print(table.round(4).to_string())
    print("\nalpha ablation (MLL, k=1):", alpha_abl.round(4).to_dict())
    print("k ablation (MLL):", k_abl.round(4).to_dict())
    print("\nselection quality (Eq. 6 vs measured per-class recall):\n" + quality.round(3).to_string())
    print("hub growth (MLL mean):", np.round(growth["MLL"].mean(axis=0), 4).tolist())
    print("\nhub heterogeneity (per-class recall of the models):\n" + hetero.round(3).to_string())
    print(f"results in {out} ({summary['seconds']} s)")
    return summary


if __name__ == "__main__":
    _args = parse_args()
    try:
        _captions = preflight(_args)
    except (ValueError, FileNotFoundError) as exc:          # bad input: one line, before any work
        sys.exit(f"mll_benchmark.py: {exc}")
    run(_args, _captions)
