"""H-score (Bao et al., "An Information-Theoretic Approach to Transferability in Task Transfer
Learning", ICIP 2019) and its shrinkage-regularised variant (Ibrahim, Ponomareva & Mazumder,
"Newer is not always better: Rethinking transferability metrics, their peculiarities, stability and
performance", ECML-PKDD 2022).

With ``cov(X)`` (D, D) the feature covariance and ``cov(E[X | y])`` the covariance of the features
after replacing each sample by its class mean::

    hscore     = tr( pinv(cov(X)) cov(E[X | y]) )
    hscore_reg = tr( inv(Sigma_LW) (1 - a) cov(E[X | y]) ),  Sigma_LW = (1 - a) cov(X) + a mu I

where ``Sigma_LW`` is the Ledoit-Wolf shrunk covariance with data-driven shrinkage ``a`` and
``mu = tr cov(X) / D`` (scikit-learn's ``ledoit_wolf``). Both covariances use the 1/N normalisation.

``cov(E[X | y]) = M^T diag(n_c / N) M`` with ``M`` (C, D) the centred class means, so the trace is
``sum_c (n_c / N) m_c^T S^+ m_c``: one D x D eigendecomposition (or Cholesky) and a (D, C) solve,
never an (N, D) matrix of class means. The pseudo-inverse drops eigenvalues below
``D * eps * lambda_max`` (NumPy's default ``rcond``); the reference code's ``rcond=1e-15`` keeps
near-null directions and is numerically unstable for near-singular covariances.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
from sklearn.covariance import ledoit_wolf
from threadpoolctl import threadpool_limits

from ._linalg import EIGH_THREADS, class_means, psd_eigh
from ._validation import check_features, check_labels
from .registry import register_metric

__all__ = ["hscore", "hscore_regularized"]


def _centred_class_means(X: np.ndarray, labels):
    enc = check_labels(labels, X.shape[0])
    mu = X.mean(axis=0)
    M = class_means(X, enc.index, enc.counts) - mu           # (C, D)
    weights = enc.counts / X.shape[0]                          # (C,)
    return X - mu, M, weights


@register_metric("hscore", requires=("features", "labels"))
def hscore(features, labels) -> float:
    """H-score ``tr(pinv(cov X) cov(E[X|y]))`` (higher is better; at most C - 1)."""
    X = check_features(features)
    Xc, M, weights = _centred_class_means(X, labels)
    cov = Xc.T @ Xc / X.shape[0]
    lam, V = psd_eigh(cov, overwrite=True)                    # single-threaded LAPACK (see psd_eigh)
    keep = lam > lam.max() * cov.shape[0] * np.finfo(np.float64).eps
    proj = M @ V[:, keep]                                      # (C, r)
    return float(np.sum(weights[:, None] * proj ** 2 / lam[keep]))


@register_metric("hscore_reg", requires=("features", "labels"))
def hscore_regularized(features, labels) -> float:
    """Ledoit-Wolf shrinkage-regularised H-score (higher is better)."""
    X = check_features(features)
    Xc, M, weights = _centred_class_means(X, labels)
    with threadpool_limits(limits=EIGH_THREADS, user_api="blas"):      # see _linalg.EIGH_THREADS
        shrunk, shrinkage = ledoit_wolf(Xc, assume_centered=True)
        factor = scipy.linalg.cho_factor(shrunk, lower=True, check_finite=False)
        solved = scipy.linalg.cho_solve(factor, M.T, check_finite=False)    # (D, C)
    return float((1.0 - shrinkage) * np.sum(weights * np.einsum("cd,dc->c", M, solved)))
