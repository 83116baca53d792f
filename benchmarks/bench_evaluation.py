"""Benchmark: the full CNN-group evaluation (11 models x 11 datasets x every metric), end to end.

Synthetic caches of realistic size are written to a temporary folder one dataset at a time
(untimed), then that dataset is evaluated through ``evaluation.evaluate_dataset`` (timed: loading the
caches, assembling inputs, every metric call, the score cache), then its caches are deleted, so the
disk never holds more than one dataset (~1.5 GB at full size).

Sizes (full run):
  N  per dataset = the dataset's standard training-split size clipped to [MIN_N, MAX_N] = [2500, 5000]:
     the published EMMS/SFDA feature caches hold a few thousand samples, and the unregularised EMMS
     least-squares fit needs N > D (= 2048 for the widest CNNs; flowers and dtd have fewer training
     images, so their caches must use train+val or more);
  D  per model   = the penultimate width of each torchvision CNN (512 .. 2048);
  C  per dataset = the EMMS class lists (``data.get_classnames``), 10 .. 397;
  E = 1024, K = 3 label-embedding encoders (the paper's CLIP / BERT / GPT-2 width), Cs = 1000
  source classes. The model qualities follow each dataset's published ground truth, so the synthetic
  ranking resembles the real one.
  Spectrum: ``noise_decay`` = NOISE_DECAY (0.6): the feature noise has a power-law spectrum, so PCA
  keeps 80% of the variance in 1-5% of the dimensions (23-107 of 2048), as for the real offline
  models of this project (2-6%); white noise (``--noise-decay 0``) would need 30-45% of them, which
  makes NLEEP's full-covariance mixture (fitted in the PCA space) unrealistically expensive.

Both cores are used (``--n-jobs 2``: two models are scored at once in worker processes, one BLAS
thread each); every metric of a model shares one :class:`metrics.PreparedFeatures` (Gram matrices and
eigendecompositions computed once). The per-metric seconds are measured inside the workers, so
their sum exceeds the wall time, and the first metric needing a shared quantity is charged for it.

    python benchmarks/bench_evaluation.py --quick          # ~1 min: 3 models x 2 datasets, N = 1500
    python benchmarks/bench_evaluation.py                  # the full run (see docs/evaluation.md)
    python benchmarks/bench_evaluation.py --datasets dtd pets --metrics emms logme
    python benchmarks/bench_evaluation.py --nleep-covariance diag    # NLEEP's cheap GMM variant
    python benchmarks/bench_evaluation.py --n-jobs 1                 # one process
"""
from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd

import data
import metrics
from data.cache import CacheLayout
from data.ground_truth import load_ground_truth
from evaluation import ScoreCache, evaluate_dataset
from evaluation.runner import worker_pool
from evaluation.report import format_summary
from evaluation.synthetic import write_synthetic_caches

GROUP = "cnn_group"
FEATURE_DIM = {  # penultimate feature width of each torchvision model
    "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048, "densenet121": 1024,
    "densenet169": 1664, "densenet201": 1920, "mnasnet1_0": 1280, "mobilenet_v2": 1280, "googlenet": 1024,
    "inception_v3": 2048,
}
TRAIN_SIZE = {  # standard training-split sizes of the 11 datasets
    "aircraft": 3334, "caltech101": 3060, "cars": 8144, "cifar10": 50000, "cifar100": 50000, "dtd": 1880,
    "flowers": 1020, "food": 75750, "pets": 3680, "sun397": 19850, "voc2007": 2501,
}
MIN_N, MAX_N = 2500, 5000
NOISE_DECAY = 0.6
N_JOBS = 2
EMBED_DIM = 1024
ENCODERS = ("clip", "bert", "gpt2")
SOURCE_CLASSES = 1000
QUICK = dict(models=["resnet34", "densenet121", "mnasnet1_0"], datasets=["dtd", "pets"], n=1500)


def _quality(truth_row: dict) -> dict:
    """Ground truth -> synthetic quality in [0.2, 0.8] (linear in the fine-tuned value)."""
    lo, hi = min(truth_row.values()), max(truth_row.values())
    return {m: 0.2 + 0.6 * (v - lo) / (hi - lo) for m, v in truth_row.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="3 models x 2 datasets, N = 1500")
    p.add_argument("--models", nargs="+", default=list(FEATURE_DIM))
    p.add_argument("--datasets", nargs="+", default=list(TRAIN_SIZE))
    p.add_argument("--metrics", nargs="+", default=None, help="default: every registered metric")
    p.add_argument("--min-n", type=int, default=MIN_N, help="floor on samples per dataset")
    p.add_argument("--max-n", type=int, default=MAX_N, help="cap on samples per dataset")
    p.add_argument("--workdir", type=Path, default=None, help="temporary folder (default: system temp)")
    p.add_argument("--out", type=Path, default=None, help="write the timings as JSON here")
    p.add_argument("--noise-decay", type=float, default=NOISE_DECAY,
                   help="exponent of the synthetic features' noise spectrum (0 = white noise)")
    p.add_argument("--n-jobs", type=int, default=N_JOBS, help="models scored at once (worker processes)")
    p.add_argument("--nleep-covariance", default="full", choices=("full", "tied", "diag", "spherical"),
                   help="GMM covariance of NLEEP: 'full' = the published metric (hours at full size), "
                        "'diag' = the cheap variant (see metrics/nleep.py)")
    args = p.parse_args()
    if args.quick:
        args.models, args.datasets = QUICK["models"], QUICK["datasets"]
        args.min_n = args.max_n = QUICK["n"]
    names = list(args.metrics) if args.metrics else metrics.list_metrics()
    fns = {n: metrics.get_metric(n) for n in names}
    if "nleep" in fns and args.nleep_covariance != "full":
        base = fns["nleep"]
        fns["nleep"] = functools.partial(base, covariance_type=args.nleep_covariance)
        fns["nleep"].__dict__.update(base.__dict__)              # registry attributes (requires, ...)
    truth = load_ground_truth(GROUP)

    work = Path(tempfile.mkdtemp(prefix="bench_eval_", dir=args.workdir))
    results, timed, cpu, sizes = [], {}, {}, {}
    # one pool for all datasets: the workers start once (inside the first dataset's timed evaluation)
    pool = worker_pool(args.n_jobs) if args.n_jobs > 1 else None
    try:
        for dataset in args.datasets:
            n, c = min(max(TRAIN_SIZE[dataset], args.min_n), args.max_n), len(data.get_classnames(dataset))
            sizes[dataset] = {"N": n, "C": c}
            quality = _quality({m: truth[dataset][m] for m in args.models})
            print(f"[{dataset}] writing synthetic caches: N={n}, C={c}, {len(args.models)} models", flush=True)
            write_synthetic_caches(work / "cache", datasets={dataset: (n, c)},
                                   models={m: FEATURE_DIM[m] for m in args.models}, quality=quality,
                                   encoders={e: EMBED_DIM for e in ENCODERS}, source_classes=SOURCE_CLASSES,
                                   noise_decay=args.noise_decay)
            start, cpu_start = time.perf_counter(), time.process_time()
            r = evaluate_dataset(CacheLayout(work / "cache"), dataset, args.models, fns,
                                 cache=ScoreCache(work / "results", dataset), encoders=ENCODERS,
                                 ground_truth={m: truth[dataset][m] for m in args.models}, pool=pool)
            timed[dataset] = time.perf_counter() - start
            cpu[dataset] = time.process_time() - cpu_start
            results.append(r)
            per_metric = {k: sum(v.values()) for k, v in r.seconds.items()}
            print(f"[{dataset}] evaluated in {timed[dataset]:.1f} s; slowest metric: "
                  f"{max(per_metric, key=per_metric.get)} ({max(per_metric.values()):.1f} s)", flush=True)
            shutil.rmtree(work / "cache")
    finally:
        if pool is not None:
            pool.shutdown()
        shutil.rmtree(work, ignore_errors=True)

    per_metric = pd.Series({k: sum(sum(r.seconds[k].values()) for r in results) for k in names}).sort_values(
        ascending=False)
    total = sum(timed.values())
    print()
    try:
        print(format_summary(results))
    except ValueError as exc:   # e.g. a metric constant over the models (NLEEP = 0 on separable synthetic data)
        print(f"(ranking summary not printed: {exc})")
    print("\nper-metric wall time over all datasets (seconds, share of the metric total):")
    print(pd.DataFrame({"seconds": per_metric, "share": per_metric / per_metric.sum()}).to_string(
        float_format=lambda v: f"{v:.3f}"))
    print(f"\nend to end: {total / 60:.2f} min wall, {sum(cpu.values()) / 60:.2f} min CPU of the main process for "
          f"{len(args.models)} models x {len(args.datasets)} datasets x {len(names)} metrics "
          f"(metric calls: {per_metric.sum() / 60:.2f} min summed over {args.n_jobs} worker(s))")
    if args.out is not None:
        args.out.write_text(json.dumps({"models": args.models, "datasets": sizes, "metrics": names,
                                        "seconds_per_dataset": timed, "cpu_seconds_per_dataset": cpu, "seconds_per_metric": per_metric.to_dict(),
                                        "total_minutes": total / 60,
                                        "nleep_covariance": args.nleep_covariance, "noise_decay": args.noise_decay,
                                        "n_jobs": args.n_jobs}, indent=2))


if __name__ == "__main__":
    main()
