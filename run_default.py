"""The embedded default: rank the offline model zoo on the offline datasets, judged by fine-tuning.

Runs the whole EMMS chain on a fresh machine with no network: features of the real pre-trained
models shipped in registry packages (EfficientNet-Lite0/1/2, DINOv2-S, the PaddleOCR CNNs) on real
offline datasets (Fashion-MNIST, MNIST, sklearn digits, texture patches), class-name label
embeddings with the packaged all-MiniLM-L6-v2, every transferability metric, and the agreement of
each metric's ranking with our own fine-tuned accuracies (``data/ground_truth/offline_zoo.json``,
made by ``finetune.py``): weighted tau, Kendall tau, Pearson, Rel@1 per dataset and averaged, a
bootstrap interval of the mean weighted tau (model subsets, plus seed noise where the table has
seeds) with the significant differences, wall time per metric, PNG plots. Resumable: caches under CACHE_DIR, scores under RESULTS_DIR.

    .venv/bin/python run_default.py                         # everything (about 10 minutes on 2 cores)
    .venv/bin/python run_default.py --datasets digits --n-per-class 30 --metrics emms logme
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

MODELS = None                        # None: the ground truth's models (else the whole offline zoo)
DATASETS = ("fashion_mnist", "mnist", "digits", "textures")
GROUND_TRUTH = "offline_zoo"         # data/ground_truth/offline_zoo.json (finetune.py)
METRICS = None                       # None: every registered metric (metrics.list_metrics())
ENCODERS = ("minilm", "e5", "mpnet") # three packaged text encoders: EMMS with K = 3 (docs/encoders.md)
SPLIT = "train"                      # transferability is measured on the target training data
N_PER_CLASS = 50                     # images per class scored (seeded subsample)
BATCH_SIZE = 64
RANDOM_STATE = 0
N_BOOT = 1000                        # bootstrap replicates of the weighted-tau intervals (0: none)
CACHE_DIR = ROOT / "cache" / "default"
RESULTS_DIR = ROOT / "results" / "default"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=MODELS,
                   help="default: the models of the ground-truth table (without it: models.list_models('offline'))")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--ground-truth", default=GROUND_TRUTH,
                   help="ground-truth group to judge against; 'none' ranks without it")
    p.add_argument("--metrics", nargs="+", default=METRICS, help="default: every registered metric")
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    p.add_argument("--split", default=SPLIT)
    p.add_argument("--n-per-class", type=int, default=N_PER_CLASS)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--random-state", type=int, default=RANDOM_STATE)
    p.add_argument("--n-boot", type=int, default=N_BOOT, help="bootstrap replicates of the intervals (0: none)")
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from data.ground_truth import list_groups, load_ground_truth
    from evaluation import save_results
    from evaluation.end_to_end import score_models
    from data.ground_truth import ground_truth_seeds
    from evaluation.report import format_bootstrap, print_report, write_report
    from evaluation.results import save_bootstrap
    from evaluation.uncertainty import bootstrap_rank_measures

    truth = None
    if args.ground_truth.lower() != "none":
        if args.ground_truth not in list_groups():
            raise SystemExit(f"ground-truth group {args.ground_truth!r} not found (have: {', '.join(list_groups())}); "
                             "run finetune.py to make it, or pass --ground-truth none to rank without it")
        table = load_ground_truth(args.ground_truth)
        missing = [d for d in args.datasets if d not in table]
        if missing:
            raise SystemExit(f"ground truth {args.ground_truth!r} has no table for {missing}; "
                             f"it covers {sorted(table)} (or pass --ground-truth none)")
        truth = {d: table[d] for d in args.datasets}
    model_names = args.models
    if model_names is None:
        import models
        model_names = ([m for m in truth[args.datasets[0]] if all(m in truth[d] for d in args.datasets)] if truth is not None
                       else models.list_models("offline"))
    t0 = time.perf_counter()
    result = score_models(model_names, args.datasets, cache_dir=args.cache_dir, results_dir=args.results_dir,
                          encoders=args.encoders, metrics=args.metrics, ground_truth=truth,
                          group=None if truth is None else args.ground_truth, split=args.split,
                          n_per_class=args.n_per_class, batch_size=args.batch_size,
                          random_state=args.random_state, progress=not args.quiet)
    written = save_results(result, args.results_dir)
    if not args.no_plots:
        written.update(write_report(result, args.results_dir / "plots"))
    print_report(result)
    if truth is not None and args.n_boot:
        seeds = {d: v for d, v in ground_truth_seeds(args.ground_truth).items() if d in truth}
        boot = bootstrap_rank_measures(list(result.datasets.values()), seeds=seeds, n_boot=args.n_boot,
                                       random_state=args.random_state)
        written.update(save_bootstrap(boot, args.results_dir))
        print("\n" + format_bootstrap(boot))
    print(f"\n{result.computed} score(s) computed, {result.reused} reused; "
          f"{time.perf_counter() - t0:.0f} s in all; results under {args.results_dir} ({len(written)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
