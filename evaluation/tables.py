"""Tables judging each metric: rank correlation with fine-tuned accuracy, agreement, wall time.

For one dataset with models m = 1..M, scores s_m of a metric and fine-tuned values g_m, the rank
measures of :data:`RANK_MEASURES` (all from :mod:`metrics.ranking`) are

* ``kendall_tau``       Kendall's tau-b of (s, g)
* ``weighted_tau``      ``scipy.stats.weightedtau(s, g)`` (hyperbolic weights on the top ranks), the
                        headline measure of LogME (You et al., 2021), SFDA (Shao et al., 2022) and EMMS
                        (Meng et al., 2023)
* ``pearson``           Pearson's r of (s, g); ``weighted_pearson`` weights models by ground-truth rank
* ``rel@1``, ``rel@3``  max_{m in top-k by s} g_m / max_m g_m
* ``top1_regret``       max_m g_m - g_{argmax s}

each over the models the metric scored (LEEP and NCE need a source head; unregularised EMMS refuses
rank-deficient features), and NaN below the measure's ``min_models`` (correlations: 3,
:data:`MIN_RANKED_MODELS`). ``n_models`` says how many were scored: a metric scored on fewer models
than the others is judged on an easier problem.

Without ground truth a metric can still be compared with the others: ``agreement_table`` holds
Kendall's tau between every two metrics' scores over the models both scored.

Tables are pandas DataFrames indexed by metric name.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import Callable, Dict, List, Mapping, Sequence

import numpy as np
import pandas as pd

from metrics import ranking

from .runner import DatasetResult

__all__ = ["RankMeasure", "RANK_MEASURES", "MIN_RANKED_MODELS", "rankings", "scores_table", "ranking_table", "agreement_table",
           "summary_table"]


@dataclass(frozen=True)
class RankMeasure:
    """A measure of how well scores rank models against ground truth; defined from ``min_models`` on."""

    fn: Callable[[Mapping[str, float], Mapping[str, float]], float]
    min_models: int = 3


#: fewest scored models a rank correlation is computed on: over 2 models any correlation is +-1,
#: which would let a metric that scores only 2 of a dataset's models (e.g. unregularised EMMS where
#: the other features have D >= N) top a table with a coin flip
MIN_RANKED_MODELS = 3

#: Registry of rank measures: column name -> :class:`RankMeasure` (order = column order).
RANK_MEASURES: Dict[str, RankMeasure] = {
    "kendall_tau": RankMeasure(ranking.kendall_tau, min_models=MIN_RANKED_MODELS),
    "weighted_tau": RankMeasure(ranking.weighted_tau, min_models=MIN_RANKED_MODELS),
    "pearson": RankMeasure(ranking.pearson, min_models=3),
    "weighted_pearson": RankMeasure(ranking.weighted_pearson, min_models=3),
    "rel@1": RankMeasure(partial(ranking.rel_at_k, k=1), min_models=1),
    "rel@3": RankMeasure(partial(ranking.rel_at_k, k=3), min_models=3),
    "top1_regret": RankMeasure(ranking.top1_regret, min_models=1),
}


#: scores are compared at this many significant digits: differences below it are floating-point
#: noise (e.g. unregularised H-score saturates at exactly C - 1 for every model with D >= N) and
#: must count as ties, not decide a ranking
SIGNIFICANT_DIGITS = 10


def _comparable(scores: Mapping[str, float]) -> Dict[str, float]:
    """``scores`` rounded to :data:`SIGNIFICANT_DIGITS` significant digits (non-finite values kept)."""
    return {m: float(f"{v:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(v) else v for m, v in scores.items()}


def _finite(scores: Mapping[str, float]) -> bool:
    """True when the scores can be rank-correlated: all finite and not all equal (a constant score
    ranks nothing, so every correlation with it is undefined and is reported as NaN). Call it on
    :func:`_comparable` scores."""
    values = list(scores.values())
    return all(math.isfinite(v) for v in values) and len(set(values)) > 1


def rankings(result: DatasetResult) -> Dict[str, List[str]]:
    """metric -> its scored models, best (highest score) first; ties keep the model order."""
    order = {m: i for i, m in enumerate(result.models)}
    return {metric: sorted(s, key=lambda m: (-s[m], order[m])) for metric, s in result.scores.items()}


def scores_table(result: DatasetResult) -> pd.DataFrame:
    """metric x model scores (NaN where skipped), plus a ``ground_truth`` row when it is known."""
    df = pd.DataFrame({m: [result.scores[metric].get(m, np.nan) for metric in result.metrics] for m in result.models},
                      index=pd.Index(result.metrics, name="metric"))
    if result.ground_truth is not None:
        df.loc["ground_truth"] = [result.ground_truth[m] for m in result.models]
    return df


def ranking_table(result: DatasetResult) -> pd.DataFrame:
    """One row per metric: models scored, the rank measures (with ground truth), total wall seconds of
    the metric calls, and the model each metric ranks first."""
    rows = []
    ranked = rankings(result)
    for metric in result.metrics:
        scores = _comparable(result.scores[metric])
        row: Dict[str, object] = {"n_models": len(scores)}
        if result.ground_truth is not None:
            gt = {m: result.ground_truth[m] for m in scores}
            usable = _finite(scores)
            for name, measure in RANK_MEASURES.items():
                ok = usable and len(scores) >= measure.min_models
                row[name] = float(measure.fn(scores, gt)) if ok else np.nan
        row["seconds"] = float(sum(result.seconds[metric].values()))
        row["top1_model"] = ranked[metric][0] if ranked[metric] and _finite(scores) else ""
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(result.metrics, name="metric"))


def agreement_table(result: DatasetResult) -> pd.DataFrame:
    """metric x metric Kendall tau between the two metrics' scores over their common models
    (NaN with fewer than 2 common models or non-finite scores); the diagonal is 1."""
    names = result.metrics
    out = pd.DataFrame(np.nan, index=pd.Index(names, name="metric"), columns=names)
    for i, a in enumerate(names):
        for b in names[i:]:
            common = [m for m in result.models if m in result.scores[a] and m in result.scores[b]]
            sa = _comparable({m: result.scores[a][m] for m in common})
            sb = _comparable({m: result.scores[b][m] for m in common})
            if len(common) >= 2 and _finite(sa) and _finite(sb):
                tau = 1.0 if a == b else float(ranking.kendall_tau(sa, sb))
                out.loc[a, b] = out.loc[b, a] = tau
    return out


def summary_table(results: Sequence[DatasetResult]) -> pd.DataFrame:
    """Across-datasets average per metric: mean of every rank measure (over the datasets where it is
    defined), the spread (std) of weighted tau, the mean Kendall agreement with the other metrics, and
    the total wall seconds over all datasets."""
    if not results:
        raise ValueError("summary_table needs at least one dataset result")
    metrics_order: List[str] = []
    for r in results:
        metrics_order += [m for m in r.metrics if m not in metrics_order]
    tables = [ranking_table(r) for r in results]
    agreements = [agreement_table(r) for r in results]
    has_truth = any(r.ground_truth is not None for r in results)
    rows = []
    for metric in metrics_order:
        per = [t.loc[metric] for t in tables if metric in t.index]
        row: Dict[str, float] = {"n_datasets": len(per)}
        if has_truth:
            for name in RANK_MEASURES:
                vals = np.array([p[name] for p in per if name in p.index], dtype=float)
                row[name] = float(np.nanmean(vals)) if np.isfinite(vals).any() else np.nan
                if name == "weighted_tau":  # its spread over datasets, next to the mean
                    row["weighted_tau_std"] = float(np.nanstd(vals)) if np.isfinite(vals).sum() >= 2 else np.nan
        agree = [a.loc[metric].drop(metric).to_numpy(dtype=float) for a in agreements
                 if metric in a.index and len(a.index) > 1]
        agree_all = np.concatenate(agree) if agree else np.array([])
        row["mean_agreement"] = float(np.nanmean(agree_all)) if np.isfinite(agree_all).any() else np.nan
        row["seconds"] = float(sum(p["seconds"] for p in per))
        rows.append(row)
    return pd.DataFrame(rows, index=pd.Index(metrics_order, name="metric"))
