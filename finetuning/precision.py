"""Does a cheaper arithmetic change the ground truth? Replicate finished cells in another variant.

For a finished cell (model, dataset), :func:`replicate_cell` re-runs its seed runs at the chosen
learning rate in ``precision`` with everything else equal (same subsets, same seeds, hence the
same head initialisation and batch order) under the current code (e.g. fused graphs,
:mod:`models.fx_fusion`), so each seed gives a *paired* difference::

    d_s = acc_replication(seed s) - acc_cell(seed s),   s in config.seeds

(replicating in the cell's own precision measures what the code change alone does: the noise floor
of a change of rounding).

:func:`compare_seeds` summarises them: mean and standard deviation of ``d``, the paired t-test
p-value, and the float32 seed standard deviation the difference is to be small next to.
:func:`step_speedup` times training steps of both precisions alternately in one process (a ratio
measured side by side, not two timings taken at different moments).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from .config import FinetuneConfig
from .engine import check_precision

__all__ = ["replication_config", "replicate_cell", "compare_seeds", "step_speedup"]


def replication_config(config: FinetuneConfig, best_lr: float) -> FinetuneConfig:
    """``config`` with the grid reduced to ``best_lr`` and no extension: the cell's seed runs only
    (the subsets depend on the seed and the subset sizes, never on the grid)."""
    return dataclasses.replace(config, lrs=(float(best_lr),), max_lr_extensions=0)


def replicate_cell(record: Mapping, config: FinetuneConfig, precision: str, store_path: str | Path, *,
                   progress: bool = False, deadline=None, **pair_kwargs) -> dict:
    """Re-run the seed runs of the finished ``record`` (a :func:`finetuning.finetune_pair` record
    measured under ``config``) in ``precision``; resumable through ``store_path`` (a
    :class:`~finetuning.results.ResultsStore` of the reduced-grid config). Returns the new record."""
    from .results import ResultsStore
    from .runner import finetune_pair

    check_precision(precision)
    rep = replication_config(config, record["best_lr"])
    store = ResultsStore(store_path, rep)
    if store.has(record["model"], record["dataset"]):
        return store.get(record["model"], record["dataset"])
    new = finetune_pair(record["model"], record["dataset"], rep, store=store, progress=progress,
                        deadline=deadline, precision=precision, **pair_kwargs)
    store.put(new)
    return new


def compare_seeds(reference: Sequence[float], other: Sequence[float]) -> dict:
    """Paired comparison of two same-seed accuracy lists (percent).

    Returns ``{n, reference_mean, other_mean, reference_std, diff_mean, diff_std, max_abs_diff,
    p_paired}`` (stds with ddof=1; ``p_paired``: two-sided paired t-test, ``None`` when every
    difference is equal, e.g. all zero).
    """
    import scipy.stats

    a, b = np.asarray(reference, dtype=float), np.asarray(other, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError(f"need two equal-length lists of >= 2 seed accuracies, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("seed accuracies must be finite")
    d = b - a
    p = None if np.ptp(d) == 0 else float(scipy.stats.ttest_rel(b, a).pvalue)
    return {"n": int(a.size), "reference_mean": float(a.mean()), "other_mean": float(b.mean()),
            "reference_std": float(a.std(ddof=1)), "diff_mean": float(d.mean()),
            "diff_std": float(d.std(ddof=1)), "max_abs_diff": float(np.abs(d).max()), "p_paired": p}


def step_speedup(model_name: str, config: FinetuneConfig, precision: str, *, repeats: int = 3,
                 n_images: int = 64, **time_kwargs) -> dict:
    """Training seconds per image in float32 and in ``precision``, timed alternately ``repeats``
    times (:func:`finetuning.cost.time_run`); ``speedup`` = best float32 time / best other time."""
    from .cost import time_run

    check_precision(precision)
    times: dict = {"fp32": [], precision: []}
    for _ in range(repeats):
        for p in times:
            times[p].append(time_run(model_name, config, n_images=n_images, precision=p,
                                     **time_kwargs)["train_s_per_img"])
    return {"model": model_name, "train_s_per_img": times,
            "speedup": float(min(times["fp32"]) / min(times[precision]))}
