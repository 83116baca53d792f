"""Rank pre-trained models for YOUR image data, without fine-tuning them (EMMS + baselines).

Give an image folder (one sub-folder per class) or a CSV of ``path,label`` rows, and a list of
candidate models (registry names, ``models.list_models()``). The script extracts every model's
features on your images, embeds your class names with foundation-model text encoders, scores each
model with EMMS and the chosen baselines, prints a ranking and recommends a model.

    .venv/bin/python select_models.py my_images/                       # offline zoo, EMMS + LogME + ...
    .venv/bin/python select_models.py labels.csv --models efficientnet_lite0 dinov2_s --metrics emms logme
    .venv/bin/python select_models.py my_images/ --models resnet50 densenet121 --weights-dir ~/weights \
        --encoders clip bert gpt2 --encoder-weights-dir ~/text_weights

Everything is cached under ``--cache-dir`` (features, labels, label embeddings, scores): re-running
with more models or metrics computes only what is new. Offline it works with the offline zoo; the
full registries (torchvision CNNs, ViTs) work where their weights are on disk (``--weights-dir``).
"""
from __future__ import annotations

import argparse
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent

MODELS = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "dinov2_s",
          "ocr_det", "ocr_rec", "ocr_cls")
METRICS = ("emms", "logme", "leep", "nce", "transrate", "sfda", "hscore_reg")
PRIMARY_METRIC = "emms"              # the recommendation follows this metric's ranking
ENCODERS = ("minilm",)
N_PER_CLASS = 200                    # at most this many images per class are scored (seeded)
BATCH_SIZE = 32
CACHE_DIR = ROOT / "cache" / "select"
RESULTS_DIR = ROOT / "results" / "select"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Rank pre-trained models for an image classification dataset without fine-tuning.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("data", type=Path,
                   help="a folder with one sub-folder of images per class, or a CSV with 'path' and 'label' "
                        "columns (paths relative to the CSV)")
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   help="candidate models, registry names (see --list-models)")
    p.add_argument("--metrics", nargs="+", default=list(METRICS),
                   help="transferability metrics to compute (metrics.list_metrics())")
    p.add_argument("--primary", default=PRIMARY_METRIC, help="metric whose ranking gives the recommendation")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS),
                   help="text encoders that embed the class names (EMMS F-labels); 'minilm' is offline")
    p.add_argument("--templates", default="photo",
                   help="prompt templates for class names: a named set of Label_embedding.embed or one "
                        "template with {} (e.g. 'a satellite photo of {}.')")
    p.add_argument("--n-per-class", type=int, default=N_PER_CLASS,
                   help="score at most this many images per class (seeded subsample); 0 = all")
    p.add_argument("--name", default=None, help="dataset name used for the cache (default: from the path)")
    p.add_argument("--weights-dir", type=Path, default=None,
                   help="directory with local model weights (full registries; offline zoo needs none)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--random-state", type=int, default=0)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--list-models", action="store_true", help="print the registered models and exit")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def _dataset_name(path: Path) -> str:
    stem = path.resolve().stem if path.is_file() else path.resolve().name
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "user_data"


def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)
    import models as model_registry
    if args.list_models:
        for group in ("offline", "cnn", "vit", "caption"):
            print(f"{group}: {', '.join(model_registry.list_models(group))}")
        return 0
    if args.primary not in args.metrics:
        p.error(f"--primary {args.primary!r} is not among --metrics {args.metrics}")
    for name in args.models:
        try:
            model_registry.model_info(name)  # unknown names fail here, before any work
        except ValueError as exc:
            p.error(str(exc))

    import numpy as np
    from torch.utils.data import Subset

    from data import subsample_per_class
    from data.user_dataset import load_user_dataset
    from evaluation import save_results
    from evaluation.end_to_end import score_models
    from evaluation.selection_report import format_selection, selection_table

    dataset = load_user_dataset(args.data)
    name = args.name or _dataset_name(args.data)
    if args.n_per_class:
        idx = subsample_per_class(dataset, args.n_per_class, random_state=args.random_state)
        images = Subset(dataset, [int(i) for i in idx])
    else:
        images = dataset
    counts = np.bincount(dataset.targets, minlength=len(dataset.classes))
    print(f"{name}: {len(dataset)} images in {len(dataset.classes)} classes "
          f"({', '.join(f'{c}: {n}' for c, n in zip(dataset.classnames, counts))}); scoring {len(images)}")

    result = score_models(args.models, [name], cache_dir=args.cache_dir, results_dir=args.results_dir,
                          encoders=args.encoders, metrics=args.metrics, weights_dir=args.weights_dir,
                          dataset_factory=lambda _: images, classnames={name: dataset.classnames},
                          templates=args.templates, batch_size=args.batch_size, device=args.device,
                          random_state=args.random_state, progress=not args.quiet)
    table = selection_table(result.datasets[name], primary=args.primary)
    print()
    print(format_selection(table, primary=args.primary))
    written = save_results(result, args.results_dir)
    out_csv = args.results_dir / name / "selection.csv"
    out_csv.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv)
    print(f"\nranking written to {out_csv} (and {len(written)} result files under {args.results_dir})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
