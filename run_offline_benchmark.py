"""The full offline benchmark (track 2): every offline candidate, encoder and dataset, judged with intervals.

Every candidate of the offline zoo (the 7 packaged networks, their intermediate layers, the networks
pre-trained here), the three packaged label encoders (EMMS with K = 3), every metric, on the offline
datasets; the features come from the fine-tuning protocol's training images and pipeline
(evaluation.offline_benchmark, finetuning.protocol), so scores and ground truth see the same inputs.
Judged against GROUND_TRUTH with weighted tau etc. per dataset and a bootstrap interval of the mean
over ground-truth seed noise and model subsets. Resumable: caches under CACHE_DIR, scores under
RESULTS_DIR. The embedded default (run_default.py) is the fast subset of this.

    .venv/bin/python run_offline_benchmark.py                               # everything the table covers
    .venv/bin/python run_offline_benchmark.py --ground-truth offline_probe   # against the linear probe
    .venv/bin/python run_offline_benchmark.py --ground-truth none --datasets digits   # rankings only
    .venv/bin/python run_offline_benchmark.py --finished-cells    # interim: the v2 cells finished so far
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent

MODEL_GROUPS = ("offline", "offline_trained")     # every candidate of these model-registry groups
DATASETS = ("fashion_mnist", "mnist", "digits", "textures")
GROUND_TRUTH = "offline_zoo_v2"      # finetune.py's table (protocol v2); 'none' ranks without it
PROTOCOL_OF = "offline_zoo_v2"       # whose fine-tuning protocol defines the images and resolution
PARTIAL_DIR = ROOT / "data" / "ground_truth" / "partial"
METRICS = None                       # None: every registered metric
ENCODERS = ("minilm", "e5", "mpnet") # three packaged encoders of different models (docs/encoders.md)
N_BOOT = 1000                        # bootstrap replicates of the intervals
BATCH_SIZE = 64
RANDOM_STATE = 0
CACHE_DIR = ROOT / "cache" / "offline_benchmark"
RESULTS_DIR = ROOT / "results" / "offline_benchmark"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=None, help=f"default: every model of the groups {MODEL_GROUPS}")
    p.add_argument("--datasets", nargs="+", default=list(DATASETS))
    p.add_argument("--ground-truth", default=GROUND_TRUTH, help="ground-truth group, or 'none'")
    p.add_argument("--finished-cells", action="store_true",
                   help="judge against the cells of the ground truth's partial-results file finished so far "
                        "(an interim judgement while finetune.py fills it; datasets with < 2 finished cells are left out)")
    p.add_argument("--protocol-of", default=PROTOCOL_OF, help="ground-truth group whose protocol is used")
    p.add_argument("--metrics", nargs="+", default=METRICS)
    p.add_argument("--encoders", nargs="+", default=list(ENCODERS))
    p.add_argument("--n-boot", type=int, default=N_BOOT)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--random-state", type=int, default=RANDOM_STATE)
    p.add_argument("--cache-dir", type=Path, default=CACHE_DIR)
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    import models
    from evaluation import save_results
    from evaluation.offline_benchmark import judging_truth, protocol_of, run_offline_benchmark
    from evaluation.report import format_bootstrap, print_report, write_report
    from evaluation.results import save_bootstrap

    names = args.models or [m for g in MODEL_GROUPS for m in models.list_models(g)]
    truth = seeds = group = None
    if args.ground_truth.lower() != "none":
        try:
            truth, seeds, group = judging_truth(args.ground_truth, PARTIAL_DIR, names, args.datasets,
                                                finished=args.finished_cells)
        except (FileNotFoundError, ValueError) as err:
            raise SystemExit(f"error: {err}") from None
        if args.finished_cells:
            args.datasets = list(truth)
            print(f"interim judgement: {sum(len(r) for r in truth.values())} finished cells of "
                  f"{args.ground_truth}.partial.json ({', '.join(f'{d} {len(r)}' for d, r in truth.items())})")
    elif args.finished_cells:
        raise SystemExit("--finished-cells needs a ground-truth group with a partial-results file, not 'none'")
    try:
        config = protocol_of(args.protocol_of, PARTIAL_DIR)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(str(err)) from None
    t0 = time.perf_counter()
    try:
        result, boot = run_offline_benchmark(
            names, args.datasets, config=config, cache_dir=args.cache_dir, results_dir=args.results_dir,
            encoders=args.encoders, metrics=args.metrics, ground_truth=truth,
            group=group if truth is not None else None, seeds=seeds, n_boot=args.n_boot,
            batch_size=args.batch_size, random_state=args.random_state, progress=not args.quiet)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    written = save_results(result, args.results_dir)
    if not args.no_plots:
        written.update(write_report(result, args.results_dir / "plots"))
    print_report(result)
    if boot is not None:
        written.update(save_bootstrap(boot, args.results_dir))
        print("\n" + format_bootstrap(boot))
    print(f"\n{result.computed} score(s) computed, {result.reused} reused; {time.perf_counter() - t0:.0f} s in all; "
          f"protocol: {config.n_train_per_class} training images per class at {config.resolution} px; "
          f"results under {args.results_dir} ({len(written)} files)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
