"""Command-line front end shared by the ``forward_feature_*.py`` scripts.

Each script defines its defaults as constants (MODELS, DATASETS, DATA_ROOT, CACHE_DIR, WEIGHTS_DIR,
BATCH_SIZE, N_PER_CLASS, SPLIT) and calls :func:`run_extraction_cli`, which lets every constant be
overridden on the command line and extracts every (model, dataset) pair
(:func:`executor.grids.extract_grid`: one unit per dataset and network family, whose candidates
share one forward pass): in this process (``--executor serial``, the default) or one Ray task per
unit (``--executor ray``, a local runtime or ``--ray-address`` of a running cluster,
``--gpus-per-task``). Both write the same cache files; a rerun skips every finished pair.
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from executor.cli import add_executor_arguments, executor_from_args, executor_resources
from executor.grids import extract_grid

from .pipeline import PairResult

__all__ = ["build_parser", "run_extraction_cli"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def build_parser(description: str, *, models: Sequence[str], datasets: Sequence[str],
                 data_root: str | os.PathLike | None, cache_dir: str | os.PathLike,
                 weights_dir: str | os.PathLike | None, batch_size: int, n_per_class: int | None,
                 split: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(models), help="registry names (models.list_models())")
    p.add_argument("--datasets", nargs="+", default=list(datasets), help="dataset registry names")
    p.add_argument("--data-root", default=data_root, help="dataset root (default: the data registry's)")
    p.add_argument("--cache-dir", default=cache_dir, help="cache root (data/cache.py layout)")
    p.add_argument("--weights-dir", default=weights_dir,
                   help="local weights directory (default: $MODEL_SELECTOR_WEIGHTS)")
    p.add_argument("--batch-size", type=_positive_int, default=batch_size)
    p.add_argument("--n-per-class", type=_positive_int, default=n_per_class,
                   help="subsample this many images per class (default: all)")
    p.add_argument("--split", default=split)
    p.add_argument("--random-state", type=int, default=0, help="seed of the per-class subsample")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--device", default=None, help="cuda / cpu (default: cuda when available)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    add_executor_arguments(p)
    return p


def run_extraction_cli(description: str, argv: Sequence[str] | None = None, **defaults) -> list[PairResult]:
    """Parse ``argv`` (defaults = the script's constants) and extract everything into the cache."""
    args = build_parser(description, **defaults).parse_args(argv)
    options = dict(cache_dir=args.cache_dir, split=args.split, data_root=args.data_root, weights_dir=args.weights_dir,
                   n_per_class=args.n_per_class, random_state=args.random_state, batch_size=args.batch_size,
                   num_workers=args.num_workers, device=args.device, progress=not args.quiet)
    with executor_from_args(args) as executor:
        results = extract_grid(args.models, args.datasets, executor=executor, resources=executor_resources(args),
                               **options)
    done = sum(r.status == "extracted" for r in results)
    print(f"{done} (model, dataset) pairs extracted, {len(results) - done} already cached, in {args.cache_dir}")
    return results
