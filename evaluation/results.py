"""Write an :class:`~evaluation.runner.EvaluationResult` to CSV and JSON.

Layout under ``results_dir`` (next to the score cache ``scores/{dataset}.json``)::

    tables/{dataset}_scores.csv      metric x model scores (+ ground_truth row)
    tables/{dataset}_ranking.csv     metric x (n_models, rank measures, seconds, top1_model)
    tables/{dataset}_agreement.csv   metric x metric Kendall tau between the metrics' scores
    summary.csv                      metric x across-datasets averages (see tables.summary_table)
    results.json                     all of the above plus rankings, skipped pairs and the setup
    bootstrap/{measure}_summary.csv      metric x (point, ci_low, ci_high, ...)   (save_bootstrap)
    bootstrap/{measure}_per_dataset.csv  (metric, dataset) x the same
    bootstrap/{measure}_significance.csv metric x metric: True where the row is significantly better
    bootstrap/{measure}_difference.csv   metric x metric: "[low, high]" interval of row - column
    bootstrap/ground_truth_resolution.csv  dataset x (n_models, accuracy_range, median_seed_std,
                                         separated_pairs, ...): how much of the ranking the ground
                                         truth resolves beyond its seed noise

Every file is written atomically.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Dict

import pandas as pd

from data.cache import atomic_write
from data.cache import atomic_save_json

from .runner import EvaluationResult
from .uncertainty import BootstrapResult
from .tables import agreement_table, ranking_table, rankings, scores_table, summary_table

__all__ = ["save_results", "result_to_json", "save_bootstrap"]


def _atomic_csv(path: Path, df: pd.DataFrame) -> Path:
    data = df.to_csv(float_format="%.6g").encode()
    atomic_write(path, lambda fh: fh.write(data))
    return path


def _jsonable(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item"):  # numpy scalar
        return _jsonable(value.item())
    return value


def _frame_json(df: pd.DataFrame) -> Dict[str, dict]:
    return _jsonable({idx: row.to_dict() for idx, row in df.iterrows()})


def result_to_json(result: EvaluationResult) -> dict:
    """Everything in ``result`` as plain JSON types (NaN -> null)."""
    datasets = {}
    for name, r in result.datasets.items():
        datasets[name] = {
            "models": r.models,
            "metrics": r.metrics,
            "scores": r.scores,
            "seconds": r.seconds,
            "skipped": r.skipped,
            "ground_truth": r.ground_truth,
            "rankings": rankings(r),
            "ranking": _frame_json(ranking_table(r)),
            "agreement": _frame_json(agreement_table(r)),
        }
    return _jsonable({
        "task": result.task,
        "group": result.group,
        "encoders": list(result.encoders),
        "backend": result.backend,
        "datasets": datasets,
        "summary": _frame_json(summary_table(list(result.datasets.values()))),
    })


def save_results(result: EvaluationResult, results_dir: str | os.PathLike) -> Dict[str, Path]:
    """Write every table of ``result`` under ``results_dir``; returns ``{label: path}``."""
    root = Path(results_dir)
    written: Dict[str, Path] = {}
    for name, r in result.datasets.items():
        for kind, table in (("scores", scores_table(r)), ("ranking", ranking_table(r)),
                            ("agreement", agreement_table(r))):
            written[f"{name}_{kind}"] = _atomic_csv(root / "tables" / f"{name}_{kind}.csv", table)
    written["summary"] = _atomic_csv(root / "summary.csv", summary_table(list(result.datasets.values())))
    written["json"] = atomic_save_json(root / "results.json", result_to_json(result))
    return written


def save_bootstrap(boot: BootstrapResult, results_dir: str | os.PathLike) -> Dict[str, Path]:
    """Write the tables of a :func:`evaluation.uncertainty.bootstrap_rank_measures` result under
    ``results_dir/bootstrap/``; returns ``{label: path}``."""
    root = Path(results_dir) / "bootstrap"
    m = boot.measure
    diff = boot.difference_low.copy().astype(object)
    for a in boot.metrics:
        for b in boot.metrics:
            lo, hi = boot.difference_low.loc[a, b], boot.difference_high.loc[a, b]
            diff.loc[a, b] = "" if not (math.isfinite(lo) and math.isfinite(hi)) else f"[{lo:.4f}, {hi:.4f}]"
    written = {f"bootstrap_{m}_summary": _atomic_csv(root / f"{m}_summary.csv", boot.summary),
               f"bootstrap_{m}_per_dataset": _atomic_csv(root / f"{m}_per_dataset.csv", boot.per_dataset),
               f"bootstrap_{m}_significance": _atomic_csv(root / f"{m}_significance.csv", boot.significant),
               f"bootstrap_{m}_difference": _atomic_csv(root / f"{m}_difference.csv", diff)}
    if boot.resolution is not None:
        written["bootstrap_ground_truth_resolution"] = _atomic_csv(root / "ground_truth_resolution.csv",
                                                                   boot.resolution)
    return written
