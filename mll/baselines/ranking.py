"""Model-selection measures of the LOVM benchmark (Zohar et al., NeurIPS 2023, Sec. 3.2 and
``LOVM/lovm.py``) plus the MLL-style "accuracy of the selected model".

Every function takes, for ONE target dataset, ``pred`` (the method's score per model) and ``true``
(the ground-truth zero-shot accuracy per model), two Series over the same models. Rankings use
:func:`mll.baselines.inb.rank_by_score` (descending, ties by name); k defaults to LOVM's NUM_RANK = 5:

* ``selected_acc``  = true[m_hat], m_hat = top-1 of pred       (MLL's Tables 1-2 measure)
* ``top1_hit``      = 1 if true[m_hat] == max_m true[m] else 0  (the best model was picked)
* ``R@k``           = |top_k(pred) ∩ top_k(true)| / k           (LOVM's top-5 recall, "acc")
* ``tau@k``         = Kendall tau-b between pred and true on the models in top_k(pred) ∩ top_k(true);
                      0 when fewer than 3 models are shared (LOVM's top-5 ``k_tau``)
* ``tau_all``       = Kendall tau-b over all models (not in LOVM; a less noisy ranking measure)
* ``L1@k``          = | mean_{m in top_k(pred)} (pred[m] - true[m]) |   (LOVM's ``get_l1``: the
                      absolute value of the MEAN SIGNED error over the k top-predicted models)
* ``MAE``           = mean_m |pred[m] - true[m]| over all models (the plain L1 error)

Tables print the measures with the value of k (``R@5``, ``tau@5``, ``L1@5`` for LOVM's k = 5).
``L1@k``/``MAE`` are only meaningful when ``pred`` is an accuracy (not a centred score).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

from common import Registry
from .inb import rank_by_score

__all__ = [
    "selected_accuracy", "top1_hit", "topk_recall", "topk_kendall_tau", "kendall_tau_all",
    "lovm_l1", "mean_absolute_error", "Metric", "METRICS", "register_metric",
]

DEFAULT_K = 5


def _aligned(pred: pd.Series, true: pd.Series):
    if not isinstance(pred, pd.Series) or not isinstance(true, pd.Series):
        raise ValueError("pred and true must be pandas Series indexed by model")
    if set(pred.index) != set(true.index):
        only_p = sorted(set(pred.index) - set(true.index))[:3]
        only_t = sorted(set(true.index) - set(pred.index))[:3]
        raise ValueError(f"pred and true cover different models (only in pred: {only_p}, only in true: {only_t})")
    if len(pred) < 2:
        raise ValueError(f"ranking measures need at least 2 models, got {len(pred)}")
    true = true.reindex(pred.index).astype(float)
    pred = pred.astype(float)
    if pred.isna().any() or true.isna().any():
        raise ValueError("pred and true must not contain NaN")
    return pred, true


def _check_k(k: int, n: int) -> int:
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    return k


def selected_accuracy(pred: pd.Series, true: pd.Series) -> float:
    """Ground-truth accuracy of the model ranked first by ``pred``."""
    pred, true = _aligned(pred, true)
    return float(true[rank_by_score(pred)[0]])


def top1_hit(pred: pd.Series, true: pd.Series) -> float:
    """1.0 if the selected model reaches the best ground-truth accuracy (ties count as hits), else 0.0."""
    pred, true = _aligned(pred, true)
    return float(true[rank_by_score(pred)[0]] >= true.max())


def topk_recall(pred: pd.Series, true: pd.Series, k: int = DEFAULT_K) -> float:
    """LOVM's R_k: fraction of the true top-k models found in the predicted top-k."""
    pred, true = _aligned(pred, true)
    k = _check_k(k, len(pred))
    return len(set(rank_by_score(pred)[:k]) & set(rank_by_score(true)[:k])) / k


def topk_kendall_tau(pred: pd.Series, true: pd.Series, k: int = DEFAULT_K) -> float:
    """LOVM's top-k Kendall tau: tau-b of pred vs true on the models shared by both top-k lists
    (0.0 if fewer than 3 are shared, as in LOVM; NaN if one side is constant there)."""
    pred, true = _aligned(pred, true)
    k = _check_k(k, len(pred))
    top_true = rank_by_score(true)[:k]
    shared = [m for m in top_true if m in set(rank_by_score(pred)[:k])]
    if len(shared) < 3:
        return 0.0
    return float(kendalltau(pred[shared].to_numpy(), true[shared].to_numpy()).statistic)


def kendall_tau_all(pred: pd.Series, true: pd.Series, k: int = DEFAULT_K) -> float:
    """Kendall tau-b over all models (``k`` unused; same signature as the other measures)."""
    pred, true = _aligned(pred, true)
    return float(kendalltau(pred.to_numpy(), true.to_numpy()).statistic)


def lovm_l1(pred: pd.Series, true: pd.Series, k: int = DEFAULT_K) -> float:
    """LOVM's L1: ``|mean_{m in top_k(pred)} (pred[m] - true[m])|``."""
    pred, true = _aligned(pred, true)
    k = _check_k(k, len(pred))
    top = rank_by_score(pred)[:k]
    return float(abs(np.mean(pred[top].to_numpy() - true[top].to_numpy())))


def mean_absolute_error(pred: pd.Series, true: pd.Series, k: int = DEFAULT_K) -> float:
    """Mean absolute accuracy-prediction error over all models (``k`` unused)."""
    pred, true = _aligned(pred, true)
    return float(np.mean(np.abs(pred.to_numpy() - true.to_numpy())))


@dataclass(frozen=True)
class Metric:
    """A per-dataset measure. ``uses`` is ``"rank"`` (computed on a method's ranking scores) or
    ``"accuracy"`` (on its accuracy predictions); ``higher_is_better`` orients the table."""

    fn: Callable[..., float]
    uses: str
    higher_is_better: bool
    takes_k: bool = True

    def __call__(self, pred: pd.Series, true: pd.Series, k: int = DEFAULT_K) -> float:
        return self.fn(pred, true, k) if self.takes_k else self.fn(pred, true)


METRICS: Registry[Metric] = Registry("LOVM ranking metric")


def register_metric(name: str, metric: Metric) -> Metric:
    if metric.uses not in ("rank", "accuracy"):
        raise ValueError(f"metric.uses must be 'rank' or 'accuracy', got {metric.uses!r}")
    return METRICS.add(name, metric)


register_metric("selected_acc", Metric(selected_accuracy, "rank", True, takes_k=False))
register_metric("top1_hit", Metric(top1_hit, "rank", True, takes_k=False))
register_metric("R@k", Metric(topk_recall, "rank", True))
register_metric("tau@k", Metric(topk_kendall_tau, "rank", True))
register_metric("tau_all", Metric(kendall_tau_all, "rank", True))
register_metric("L1@k", Metric(lovm_l1, "accuracy", False))
register_metric("MAE", Metric(mean_absolute_error, "accuracy", False))
