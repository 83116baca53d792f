"""The embedded default: rank the offline model zoo on the offline datasets, judged by fine-tuning.

Runs the whole EMMS chain on a fresh machine with no network: features of the real pre-trained
models shipped in registry packages (EfficientNet-Lite0/1/2, DINOv2-S, the PaddleOCR CNNs) and of
their intermediate layers (20 candidates) on real offline datasets (Fashion-MNIST, MNIST, sklearn
digits, texture patches), class-name label embeddings with the three packaged text encoders, every
transferability metric, and the agreement of each metric's ranking with our own fine-tuned
accuracies (``data/ground_truth/offline_zoo_v2.json``, made by ``finetune.py``, 3 seeds per cell):
weighted tau, Kendall tau, Pearson, Rel@1 per dataset and averaged, a bootstrap interval of the mean
weighted tau (model subsets and the table's seed noise) with the significant differences, wall time
per metric, PNG plots. Resumable: caches under CACHE_DIR, scores under RESULTS_DIR.

FEATURES says which images the metrics score: "protocol" (the ground truth's own fine-tuning images
through its pipeline, ``evaluation.offline_benchmark``: what protocol v2 is measured on; the default)
or "sampled" (N_PER_CLASS training images per class at each model's native input, for the v1 table
``offline_zoo``). ``--finished-cells`` judges against the cells of a table still being filled.

    .venv/bin/python run_default.py                         # everything (under 10 minutes on 2 cores)
    .venv/bin/python run_default.py --ground-truth offline_zoo --features sampled   # the v1 table
    .venv/bin/python run_default.py --datasets digits --metrics emms logme
    .venv/bin/python run_default.py --ground-truth offline_zoo_v2 --finished-cells \
        --models efficientnet_lite0 efficientnet_lite1 efficientnet_lite2 dinov2_s ocr_det ocr_rec ocr_cls
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

MODELS = None                        # None: the ground truth's models of the registry group MODEL_GROUP
MODEL_GROUP = "offline"              # the 7 packaged networks and their 13 intermediate layers (the full
                                     # benchmark, run_offline_benchmark.py, adds the 11 networks pre-trained here)
DATASETS = ("fashion_mnist", "mnist", "digits", "textures")
GROUND_TRUTH = "offline_zoo_v2"      # data/ground_truth/offline_zoo_v2.json (finetune.py, protocol v2)
FEATURES = "protocol"                # "protocol": the ground truth's own training images and 112 px pipeline
                                     # (finetuning.protocol; what protocol v2 fine-tunes on); "sampled":
                                     # N_PER_CLASS images of SPLIT at each model's native input (the v1 table,
                                     # --ground-truth offline_zoo --features sampled)
PARTIAL_DIR = ROOT / "data" / "ground_truth" / "partial"   # tables being filled (--finished-cells)
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
                   help=f"default: the ground-truth table's models of the registry group {MODEL_GROUP!r} "
                        "(without a table: all of that group)")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--ground-truth", default=GROUND_TRUTH,
                   help="ground-truth group to judge against; 'none' ranks without it")
    p.add_argument("--features", choices=("sampled", "protocol"), default=FEATURES,
                   help="sampled: --n-per-class images of --split at native resolution; protocol: the ground "
                        "truth's fine-tuning images and pipeline (its recorded protocol)")
    p.add_argument("--finished-cells", action="store_true",
                   help="judge against the cells of the ground truth's partial-results file finished so far "
                        "(interim, while finetune.py fills it; implies --features protocol)")
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
    from evaluation import save_results
    from evaluation.end_to_end import score_models
    from evaluation.offline_benchmark import judging_truth, protocol_of, run_offline_benchmark
    from evaluation.report import format_bootstrap, print_report, write_report
    from evaluation.results import save_bootstrap
    from evaluation.uncertainty import bootstrap_rank_measures

    import models
    protocol = args.features == "protocol" or args.finished_cells
    truth = seeds = group = None
    if args.ground_truth.lower() != "none":
        try:
            truth, seeds, group = judging_truth(args.ground_truth, PARTIAL_DIR, args.models or models.list_models(),
                                                args.datasets, finished=args.finished_cells)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        args.datasets = [d for d in args.datasets if d in truth]
    elif protocol:
        raise SystemExit("--features protocol / --finished-cells need a ground-truth group: its protocol defines "
                         "the images (pass --features sampled to rank without one)")
    model_names = args.models
    if model_names is None:
        group_models = models.list_models(MODEL_GROUP)
        if truth is None:
            model_names = group_models
        elif protocol:        # every model of the table (each dataset scores the cells it has)
            model_names = [m for m in dict.fromkeys(m for d in args.datasets for m in truth[d]) if m in group_models]
        else:
            model_names = [m for m in truth[args.datasets[0]] if all(m in truth[d] for d in args.datasets)
                           and m in group_models]
        if not model_names:
            raise SystemExit(f"error: the ground truth {group!r} has no model of the registry group {MODEL_GROUP!r} "
                             f"on {', '.join(args.datasets)}; pass --models")
    t0 = time.perf_counter()
    boot = None
    if protocol:
        try:
            config = protocol_of(args.ground_truth, PARTIAL_DIR)
            result, boot = run_offline_benchmark(
                model_names, args.datasets, config=config, cache_dir=args.cache_dir, results_dir=args.results_dir,
                encoders=args.encoders, metrics=args.metrics, ground_truth=truth, group=group, seeds=seeds,
                n_boot=args.n_boot, batch_size=args.batch_size, random_state=args.random_state,
                progress=not args.quiet)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        what = f"protocol features: {config.n_train_per_class} training images per class at {config.resolution} px"
    else:
        result = score_models(model_names, args.datasets, cache_dir=args.cache_dir, results_dir=args.results_dir,
                              encoders=args.encoders, metrics=args.metrics, ground_truth=truth, group=group,
                              split=args.split, n_per_class=args.n_per_class, batch_size=args.batch_size,
                              random_state=args.random_state, progress=not args.quiet)
        if truth is not None and args.n_boot:
            boot = bootstrap_rank_measures(list(result.datasets.values()), seeds=seeds, n_boot=args.n_boot,
                                           random_state=args.random_state)
        what = f"sampled features: {args.n_per_class} {args.split} images per class at native resolution"
    written = save_results(result, args.results_dir)
    if not args.no_plots:
        written.update(write_report(result, args.results_dir / "plots"))
    print_report(result)
    if boot is not None:
        written.update(save_bootstrap(boot, args.results_dir))
        print("\n" + format_bootstrap(boot))
    print(f"\n{result.computed} score(s) computed, {result.reused} reused; "
          f"{time.perf_counter() - t0:.0f} s in all; {what}; results under {args.results_dir} ({len(written)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
