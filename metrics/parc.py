"""PARC: Pairwise Annotation Representation Comparison (Bolya et al., "Scalable Diverse Model
Selection for Accessible Transfer Learning", NeurIPS 2021).

On (a subsample of) n samples::

    F      = standardise(PCA_{n_dims}(X))                        (n, n_dims)
    RDM_f  = 1 - corrcoef(rows of F)                              (n, n)
    RDM_y  = 1 - corrcoef(rows of onehot(y))                      (n, n)
    parc   = 100 * Spearman( upper triangle of RDM_f, upper triangle of RDM_y )

The correlation of two one-hot rows is 1 for the same class and ``-1/(C-1)`` otherwise, so the
label RDM's upper triangle is built directly from ``y_i == y_j`` (same values as the corrcoef,
without a second n x n matrix). ``RDM_f`` is the only n x n matrix of the whole library: PARC is
O(n^2) in time and memory, so above ``max_samples`` samples a uniformly random subset of
``max_samples`` rows (``random_state``) is used. The default 5000 keeps the n x n float64 matrix at
200 MB (the EMMS code's threshold of 15000 needs 1.8 GB per matrix -- and its subsample is then
not even used: ``PARC_Score`` passes the full X to ``PARC``).

PCA: scikit-learn ``PCA(n_components=min(n_dims, n, D), random_state=random_state)``.
"""
from __future__ import annotations

import numpy as np
import scipy.stats
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from ._linalg import EIGH_THREADS
from ._validation import check_features, check_labels, check_positive
from .registry import register_metric

__all__ = ["parc", "PARC_MAX_SAMPLES"]

#: default subsample size (the n x n matrix costs 8 n^2 bytes: 200 MB at 5000)
PARC_MAX_SAMPLES = 5000


@register_metric("parc", requires=("features", "labels"))
def parc(features, labels, *, n_dims: int = 32, max_samples: int = PARC_MAX_SAMPLES,
         random_state: int = 0) -> float:
    """PARC score in [-100, 100] (higher is better)."""
    X = check_features(features, min_samples=3)
    enc = check_labels(labels, X.shape[0])
    n_dims = check_positive(n_dims, "n_dims", integer=True)
    max_samples = check_positive(max_samples, "max_samples", integer=True)
    if max_samples < 3:
        raise ValueError(f"max_samples must be >= 3, got {max_samples}")
    y = enc.index
    if X.shape[0] > max_samples:
        rows = np.sort(np.random.default_rng(random_state).choice(X.shape[0], max_samples, replace=False))
        X, y = X[rows], y[rows]
        if np.unique(y).shape[0] < 2:
            raise ValueError("the PARC subsample contains a single class; increase max_samples")
    n_components = min(n_dims, X.shape[0], X.shape[1])
    with threadpool_limits(limits=EIGH_THREADS, user_api="blas"):
        F = PCA(n_components=n_components, random_state=random_state).fit_transform(X)
    std = F.std(axis=0)
    F = (F - F.mean(axis=0)) / np.where(std > 0, std, 1.0)          # StandardScaler
    # row-wise correlation: centre and normalise each row, then inner products
    F = F - F.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(F, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError("PARC: a sample has constant reduced features (correlation undefined); "
                         "use n_dims >= 2 and non-degenerate features")
    F /= norms
    n = F.shape[0]
    iu = np.triu_indices(n, 1)
    rdm_f = (1.0 - F @ F.T)[iu]
    del F
    # RDM_y takes two values (0 for same-class pairs, 1 + 1/(C-1) otherwise), so its ranks are an
    # increasing affine function of the indicator "different class": Spearman = Pearson(rank(RDM_f),
    # indicator) (point-biserial), with ties of RDM_f ranked by their average as in scipy.
    # One argsort of the m = n(n-1)/2 entries; without ties the ranks are the sorted positions.
    diff = y[iu[0]] != y[iu[1]]
    del iu
    m = rdm_f.size
    k = int(np.count_nonzero(diff))
    if k == 0 or k == m:
        return float("nan")                                      # constant RDM_y (as scipy)
    order = np.argsort(rdm_f)
    sorted_f = rdm_f[order]
    if np.any(sorted_f[1:] == sorted_f[:-1]):                    # ties: average ranks (rare)
        rank = scipy.stats.rankdata(rdm_f)
        sum_rank_diff = float(rank[diff].sum())
        var_r = float(np.var(rank))
    else:                                                        # ranks are the sorted positions
        sum_rank_diff = float((np.flatnonzero(diff[order]) + 1.0).sum())
        var_r = (m * m - 1.0) / 12.0
    del order, sorted_f
    mean_r = (m + 1) / 2.0
    cov = (sum_rank_diff - k * mean_r) / m                       # E[(rank - mean) * indicator]
    var_d = (k / m) * (1.0 - k / m)
    return float(100.0 * cov / np.sqrt(var_r * var_d))
