"""Small-sample study on the offline zoo: rank correlation of metrics with 5 / 10 images per class.

Extracts (once, cached under CACHE_DIR) a pool of POOL_PER_CLASS images per class of every offline
dataset for every offline model, embeds the class names (all-MiniLM-L6-v2), then for N_DRAWS seeded
draws of each of N_PER_CLASS images per class scores every model with every metric and reports the
weighted Kendall tau against the fine-tuned ground truth (``data/ground_truth/offline_zoo.json``).
Writes ``study.csv`` (one row per dataset, n_per_class, draw, metric), ``summary.csv`` and
``summary.md`` under RESULTS_DIR.

    .venv/bin/python benchmarks/small_sample_zoo.py
    .venv/bin/python benchmarks/small_sample_zoo.py --datasets digits --n-draws 5 --metrics emms logme
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DATASETS = ("fashion_mnist", "mnist", "digits", "textures")
GROUND_TRUTH = "offline_zoo"
ENCODER = "minilm"
POOL_PER_CLASS = 20                  # images per class extracted once (the draws subsample them)
N_PER_CLASS = (5, 10)
N_DRAWS = 20
CACHE_DIR = ROOT / "cache" / "small_n"
RESULTS_DIR = ROOT / "results" / "small_n"


def parse_args(argv=None) -> argparse.Namespace:
    from evaluation.small_sample import STUDY_METRICS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--models", nargs="+", default=None, help="default: models.list_models('offline')")
    p.add_argument("--metrics", nargs="+", default=list(STUDY_METRICS))
    p.add_argument("--n-per-class", nargs="+", type=int, default=list(N_PER_CLASS))
    p.add_argument("--n-draws", type=int, default=N_DRAWS)
    p.add_argument("--pool-per-class", type=int, default=POOL_PER_CLASS)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import models
    from data.cache import atomic_write
    from data.ground_truth import load_ground_truth
    from evaluation.small_sample import small_sample_study, study_metrics, summarise, summary_markdown
    from Label_embedding.embed import write_label_embeddings
    from models.pipeline import extract_to_cache

    study_metrics(args.metrics)                               # unknown names fail before any work
    if max(args.n_per_class) > args.pool_per_class:
        raise SystemExit(f"--n-per-class {max(args.n_per_class)} exceeds --pool-per-class {args.pool_per_class}")
    model_names = args.models or models.list_models("offline")
    truth = load_ground_truth(GROUND_TRUTH)
    extract_to_cache(model_names, args.datasets, cache_dir=args.cache_dir, n_per_class=args.pool_per_class,
                     random_state=0, progress=not args.quiet)
    for d in args.datasets:
        write_label_embeddings(d, ENCODER, args.cache_dir, progress=not args.quiet)
    t0 = time.perf_counter()
    table = small_sample_study(args.cache_dir, args.datasets, model_names, truth, metric_names=args.metrics,
                               n_per_class=args.n_per_class, n_draws=args.n_draws, encoder=ENCODER,
                               progress=not args.quiet)
    summary = summarise(table)
    md = summary_markdown(summary, args.metrics, args.datasets, args.n_draws, table)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(args.results_dir / "study.csv", lambda f: f.write(table.to_csv(index=False).encode()))
    atomic_write(args.results_dir / "summary.csv", lambda f: f.write(summary.to_csv().encode()))
    atomic_write(args.results_dir / "summary.md", lambda f: f.write(md.encode()))
    print(md)
    print(f"{len(table)} rows in {time.perf_counter() - t0:.0f} s -> {args.results_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
