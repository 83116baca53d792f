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
``sum_c (n_c / N) m_c^T S^+ m_c``: one D x D eigendecomposition ``S = V diag(lam) V^T`` (cached on
:class:`metrics.PreparedFeatures`, shared by both scores and with the PCA of NLEEP / PARC) and the
projections ``M V``, never an (N, D) matrix of class means. The Ledoit-Wolf matrix has the same
eigenvectors (eigenvalues ``(1 - a) lam + a mu``), so the regularised score reuses them. The pseudo-inverse drops eigenvalues below
``D * eps * lambda_max`` (NumPy's default ``rcond``); the reference code's ``rcond=1e-15`` keeps
near-null directions and is numerically unstable for near-singular covariances.
"""
from __future__ import annotations

import numpy as np

from ._prepared import PreparedFeatures, prepare_features
from ._validation import check_labels
from .registry import register_metric

__all__ = ["hscore", "hscore_regularized", "ledoit_wolf_shrinkage"]


def _centred_class_means(F: PreparedFeatures, labels):
    """``(M (C, D) class means minus the overall mean, weights n_c / N (C,))``."""
    enc = check_labels(labels, F.n_samples)
    M = F.group_sums(enc.index, enc.n_classes, centred=True) / enc.counts[:, None]
    return M, enc.counts / F.n_samples


def _projected_means(F: PreparedFeatures, labels):
    """Centred class means in the eigenbasis of ``Xc^T Xc``: ``(M V (C, D), eigenvalues / N (D,),
    weights (C,))``; the eigendecomposition is cached on ``F`` (shared by both H-scores)."""
    M, weights = _centred_class_means(F, labels)
    lam, V = F.centred_eigh()
    return M @ V, lam / F.n_samples, weights


@register_metric("hscore", requires=("features", "labels"))
def hscore(features, labels) -> float:
    """H-score ``tr(pinv(cov X) cov(E[X|y]))`` (higher is better; at most C - 1)."""
    F = prepare_features(features)
    proj, lam, weights = _projected_means(F, labels)
    keep = lam > lam.max() * lam.shape[0] * np.finfo(np.float64).eps
    return float(np.sum(weights[:, None] * proj[:, keep] ** 2 / lam[keep]))


def ledoit_wolf_shrinkage(F: PreparedFeatures) -> tuple[float, float]:
    """Ledoit-Wolf shrinkage ``a`` of the covariance of ``F`` and its target scale ``mu = tr S / D``
    (scikit-learn's ``ledoit_wolf_shrinkage`` / ``ledoit_wolf``).

    With ``S = Xc^T Xc / N``, ``mu = tr S / D``: ``delta = ||S - mu I||_F^2 / D`` and
    ``beta = min(delta, (sum_i ||xc_i||^4 / N^2 - ||S||_F^2) / (D N))``, shrinkage ``beta / delta``.
    scikit-learn forms ``sum (X^2)^T (X^2)`` (another N D^2 product) for the first term; it equals
    ``sum_i ||xc_i||^4`` (O(N D)). ``S`` comes from the cached centred Gram matrix.
    """
    N, D = F.shape
    S = F.centred_gram() / N
    diag = np.diag(S)
    mu = diag.sum() / D
    if D == 1:
        return 0.0, float(mu)
    Xc = F.centred()
    row_sq = np.einsum("ij,ij->i", Xc, Xc)
    beta_ = float(row_sq @ row_sq)
    delta_ = float(np.einsum("ij,ij->", S, S))
    beta = (beta_ / N - delta_) / (D * N)
    delta = (delta_ - 2.0 * mu * diag.sum() + D * mu ** 2) / D
    beta = min(beta, delta)
    return (0.0 if beta == 0 else float(beta / delta)), float(mu)


@register_metric("hscore_reg", requires=("features", "labels"))
def hscore_regularized(features, labels) -> float:
    """Ledoit-Wolf shrinkage-regularised H-score (higher is better)."""
    F = prepare_features(features)
    shrinkage, mu = ledoit_wolf_shrinkage(F)
    proj, lam, weights = _projected_means(F, labels)
    # Sigma_LW = V diag((1 - a) lam + a mu) V^T  (same eigenvectors as the covariance)
    shrunk = (1.0 - shrinkage) * lam + shrinkage * mu
    if not np.all(shrunk > 0):
        raise ValueError("hscore_reg: the shrunk covariance is singular (zero shrinkage and rank-deficient "
                         "features); use hscore, which takes a pseudo-inverse")
    return float((1.0 - shrinkage) * np.sum(weights[:, None] * proj ** 2 / shrunk))
