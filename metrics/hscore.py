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

N <= D: everything is computed on the N x N side (:meth:`PreparedFeatures.centred_spectrum`: the
eigendecomposition of the centred kernel ``Xc Xc^T``, whose non-zero eigenvalues are those of
``Xc^T Xc``; class-mean projections from per-class sums of its eigenvectors; the Ledoit-Wolf terms
``||S||_F = ||Xc Xc^T||_F / N`` and ``diag S`` from the rows), O(N^2 D + N^3) instead of O(N D^2 + D^3).
"""
from __future__ import annotations

import numpy as np

from ._linalg import class_sums
from ._prepared import PreparedFeatures
from ._validation import DegenerateInputError, check_labels
from ._backend import accepts_backend, prepare_on
from .registry import register_metric

__all__ = ["hscore", "hscore_regularized", "ledoit_wolf_shrinkage"]


def _projected_means(F: PreparedFeatures, labels):
    """Centred class means in the eigenbasis of the covariance: ``(M V (C, r), eigenvalues / N (r,),
    weights (C,))``; the eigendecomposition is cached on ``F`` (shared by both H-scores).

    N > D: ``V`` (D, D) from ``Xc^T Xc``. N <= D (dual): from ``Xc Xc^T = U diag(sigma) U^T`` (N, N),
    ``m_c^T v_i = (1 / n_c) sum_{j in c} (Xc v_i)_j = sqrt(sigma_i) (P^T U)_{ci} / n_c`` (P the class
    indicator), so ``r = N`` and no D x D matrix is formed; the axes of the ``D - N`` further (zero)
    eigenvalues are orthogonal to every class mean (projection exactly 0).
    """
    enc = check_labels(labels, F.n_samples)
    weights = enc.counts / F.n_samples
    lam, vecs, side = F.centred_spectrum()
    if side == "primal":
        M = F.group_sums(enc.index, enc.n_classes, centred=True) / enc.counts[:, None]
        return M @ vecs, lam / F.n_samples, weights
    proj = class_sums(vecs, enc.index, enc.n_classes) * np.sqrt(lam) / enc.counts[:, None]
    return proj, lam / F.n_samples, weights


def _pinv_keep(lam: np.ndarray, n_dims: int) -> np.ndarray:
    """Eigenvalues kept by the pseudo-inverse: above ``D * eps * lambda_max`` (NumPy's ``rcond``, with
    D the covariance's size on either side)."""
    return lam > lam.max() * n_dims * np.finfo(np.float64).eps


@register_metric("hscore", requires=("features", "labels"))
@accepts_backend
def hscore(features, labels, *, backend=None, device=None) -> float:
    """H-score ``tr(pinv(cov X) cov(E[X|y]))`` (higher is better; at most C - 1); ``backend`` / ``device``:
    where the covariance and its eigendecomposition are computed (:mod:`metrics._backend`)."""
    F = prepare_on(features, backend, device)
    proj, lam, weights = _projected_means(F, labels)
    keep = _pinv_keep(lam, F.n_dims)
    return float(np.sum(weights[:, None] * proj[:, keep] ** 2 / lam[keep]))


def ledoit_wolf_shrinkage(F: PreparedFeatures) -> tuple[float, float]:
    """Ledoit-Wolf shrinkage ``a`` of the covariance of ``F`` and its target scale ``mu = tr S / D``
    (scikit-learn's ``ledoit_wolf_shrinkage`` / ``ledoit_wolf``), :meth:`PreparedFeatures.ledoit_wolf`
    (cached; shared with the registry's ``emms``)."""
    return F.ledoit_wolf()


@register_metric("hscore_reg", requires=("features", "labels"))
@accepts_backend
def hscore_regularized(features, labels, *, backend=None, device=None) -> float:
    """Ledoit-Wolf shrinkage-regularised H-score (higher is better; ``backend`` / ``device`` as :func:`hscore`)."""
    F = prepare_on(features, backend, device)
    shrinkage, mu = ledoit_wolf_shrinkage(F)
    if mu == 0:
        raise DegenerateInputError("features are constant: every column has zero variance, so the "
                                   "covariance is 0 (hscore_reg is undefined; hscore gives 0)")
    proj, lam, weights = _projected_means(F, labels)
    # Sigma_LW = V diag((1 - a) lam + a mu) V^T  (same eigenvectors as the covariance)
    shrunk = (1.0 - shrinkage) * lam + shrinkage * mu
    # dual side (N <= D): the D - N eigenvalues not in ``lam`` are 0 (shrunk: a mu; projections 0)
    if not np.all(shrunk > 0) or (lam.shape[0] < F.n_dims and not shrinkage * mu > 0):
        raise ValueError("hscore_reg: the shrunk covariance is singular (zero shrinkage and rank-deficient "
                         "features); use hscore, which takes a pseudo-inverse")
    return float((1.0 - shrinkage) * np.sum(weights[:, None] * proj ** 2 / shrunk))
