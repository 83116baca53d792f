"""Rank measures: how well a transferability metric's scores order models like their fine-tuned
accuracies (the ground truth).

Every function takes two dicts ``{model name: value}`` -- ``scores`` (the metric) and ``gt`` (ground
truth, e.g. fine-tuned top-1 accuracy) -- matched by name. Models present in only one of them, a
non-finite value or fewer than two models (one suffices for rel@k and regret) raise ``ValueError`` naming the problem. Vectors are built
in the order of ``scores``; only :func:`weighted_pearson` with ``published=True`` depends on it.

* ``kendall_tau``      -- ``scipy.stats.kendalltau`` (tau-b).
* ``weighted_tau``     -- ``scipy.stats.weightedtau(s, g)`` with its defaults (hyperbolic weigher,
  ``rank=True``): the headline measure of the LogME, SFDA and EMMS papers.
* ``pearson``          -- ``scipy.stats.pearsonr``.
* ``weighted_pearson`` -- weighted Pearson correlation ``sum w (s - s_w)(g - g_w) /
  sqrt(sum w (s - s_w)^2 sum w (g - g_w)^2)`` (weighted means ``s_w``, ``g_w``). Weights by
  ground-truth rank: the best model gets weight M, the next M-1, ..., the worst 1 (ties share the
  average). ``published=True`` reproduces the EMMS code (``w_pearson.wpearson``), whose default
  weights are M, M-1, ..., 1 by *list position*, i.e. the insertion order of ``scores``, so its value
  depends on how the models happen to be listed (the published function also rounds to 4 decimals;
  we do not round).
* ``rel_at_k``         -- best ground truth among the top-k models by score / best ground truth.
* ``top1_regret``      -- best ground truth minus the ground truth of the top-scored model.

Ties in ``scores`` for ``rel_at_k`` / ``top1_regret`` are broken by the order of ``scores`` (a
stable sort).
"""
from __future__ import annotations

import numpy as np
import scipy.stats

from ._validation import check_same_keys

__all__ = ["kendall_tau", "weighted_tau", "pearson", "weighted_pearson", "rel_at_k", "top1_regret",
           "evaluate_ranking"]


def _check_variation(s: np.ndarray, g: np.ndarray, what: str) -> None:
    if np.ptp(s) == 0 or np.ptp(g) == 0:
        which = "scores" if np.ptp(s) == 0 else "ground truth"
        raise ValueError(f"{what} is undefined: all {which} values are equal")


def kendall_tau(scores: dict, gt: dict) -> float:
    """Kendall's tau-b between scores and ground truth."""
    _, s, g = check_same_keys(scores, gt)
    _check_variation(s, g, "Kendall tau")
    return float(scipy.stats.kendalltau(s, g).statistic)


def weighted_tau(scores: dict, gt: dict) -> float:
    """``scipy.stats.weightedtau(s, g)`` with default arguments."""
    _, s, g = check_same_keys(scores, gt)
    _check_variation(s, g, "weighted tau")
    return float(scipy.stats.weightedtau(s, g).statistic)


def pearson(scores: dict, gt: dict) -> float:
    """Pearson correlation between scores and ground truth."""
    _, s, g = check_same_keys(scores, gt)
    _check_variation(s, g, "Pearson correlation")
    return float(scipy.stats.pearsonr(s, g).statistic)


def weighted_pearson(scores: dict, gt: dict, *, published: bool = False) -> float:
    """Weighted Pearson correlation; weights by ground-truth rank (best = M), or, with
    ``published=True``, by position in ``scores`` (first = M) as in the EMMS code."""
    _, s, g = check_same_keys(scores, gt)
    _check_variation(s, g, "weighted Pearson correlation")
    M = s.shape[0]
    w = np.arange(M, 0, -1, dtype=np.float64) if published else scipy.stats.rankdata(g)
    sw = s - np.average(s, weights=w)
    gw = g - np.average(g, weights=w)
    return float(np.sum(w * sw * gw) / np.sqrt(np.sum(w * sw ** 2) * np.sum(w * gw ** 2)))


def _order_by_score(s: np.ndarray) -> np.ndarray:
    return np.argsort(-s, kind="stable")


def rel_at_k(scores: dict, gt: dict, k: int) -> float:
    """Best ground truth among the ``k`` highest-scored models divided by the best ground truth
    (defined for a single model)."""
    _, s, g = check_same_keys(scores, gt, min_models=1)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= s.shape[0]:
        raise ValueError(f"k must be an integer in [1, {s.shape[0]}] (the number of models), got {k!r}")
    if g.max() <= 0:
        raise ValueError("rel@k needs a positive best ground truth (it is a ratio)")
    return float(g[_order_by_score(s)[:k]].max() / g.max())


def top1_regret(scores: dict, gt: dict) -> float:
    """Best ground truth minus the ground truth of the model ranked first by the scores (>= 0;
    defined for a single model)."""
    _, s, g = check_same_keys(scores, gt, min_models=1)
    return float(g.max() - g[_order_by_score(s)[0]])


def evaluate_ranking(scores: dict, gt: dict) -> dict[str, float]:
    """All rank measures: kendall_tau, weighted_tau, pearson, weighted_pearson, rel@1, rel@3
    (rel@M if fewer than 3 models), top1_regret."""
    k3 = min(3, len(scores))
    return {
        "kendall_tau": kendall_tau(scores, gt),
        "weighted_tau": weighted_tau(scores, gt),
        "pearson": pearson(scores, gt),
        "weighted_pearson": weighted_pearson(scores, gt),
        "rel@1": rel_at_k(scores, gt, 1),
        "rel@3": rel_at_k(scores, gt, k3),
        "top1_regret": top1_regret(scores, gt),
    }
