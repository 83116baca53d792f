"""NLEEP: Gaussian-mixture LEEP (Li et al., "Ranking Neural Checkpoints", CVPR 2021).

The source classifier of LEEP is replaced by a Gaussian mixture fitted on the target features::

    Z = PCA(X) keeping 80% of the variance                 (N, d)
    GMM with  round(component_ratio * C)  full-covariance components on Z
    P = GMM posteriors p(component | z_i)                  (N, n_components)
    nleep = LEEP(P, y)   (see metrics.leep)

``component_ratio`` is 5 in the paper (the EMMS code uses 1 for food and pets). The GMM fit is
random: ``random_state`` seeds it (default 0) so the score is deterministic. Departure from the
EMMS code: it reports ``mean_i P(y_i | x_i)`` without the log; here the log is kept (LEEP's
definition, as in the NLEEP paper), and class ids are remapped.

``covariance_type``: ``"full"`` (default) is what the published code does (scikit-learn's
``GaussianMixture`` default). It is fitted by :func:`metrics._gmm.gmm_posteriors`, which runs
scikit-learn's algorithm step for step (same KMeans start, E/M loop, stopping rule and formulas) and
returns the same posteriors (tested to 1e-8; bit-identical on the benchmark), 10-20x faster at
NLEEP's sizes (N = 5000, 235-1985 components, d ~ 80): with 2-5 samples per component most
responsibilities are exactly 0, so the M-step uses only the non-zero ones and the E-step skips
(sample, component) pairs whose log-probability provably lies > 800 nats below the sample's best
(their responsibility is exactly 0.0 in float64 either way). ``"diag"`` (or ``"spherical"``,
``"tied"``) is an opt-in cheap variant fitted by scikit-learn, NOT the published metric. The PCA step
uses the eigendecomposition of the D x D scatter matrix when N > D (shared with H-score and PARC
through :class:`metrics.PreparedFeatures`; same components, signs and kept dimension as
``PCA(0.8, svd_solver="full")``, up to rounding), and the whole metric runs with single-threaded BLAS
(see ``_linalg.EIGH_THREADS``: 2 threads on 2 loaded cores made the GMM 10x slower).
"""
from __future__ import annotations

import numpy as np
from sklearn.decomposition import PCA
from sklearn.mixture import GaussianMixture
from threadpoolctl import threadpool_limits

from ._gmm import gmm_posteriors
from ._linalg import EIGH_THREADS
from ._prepared import PreparedFeatures, prepare_features
from ._validation import check_labels, check_not_constant, check_positive
from .leep import leep_from_encoded
from .registry import register_metric

__all__ = ["nleep"]

#: fraction of the feature variance kept by the PCA step
NLEEP_VARIANCE = 0.8


@register_metric("nleep", requires=("features", "labels"))
def nleep(features, labels, *, component_ratio: float = 5, random_state: int = 0,
          covariance_type: str = "full") -> float:
    """NLEEP score (<= 0, higher is better); ``covariance_type`` of the GMM ("full" = published)."""
    F = prepare_features(features)
    enc = check_labels(labels, F.n_samples)
    check_not_constant(F.X, what="NLEEP's PCA keeps no component")
    component_ratio = check_positive(component_ratio, "component_ratio")
    if covariance_type not in ("full", "tied", "diag", "spherical"):
        raise ValueError(f"covariance_type must be 'full', 'tied', 'diag' or 'spherical', got {covariance_type!r}")
    n_components = max(1, int(round(component_ratio * enc.n_classes)))
    if n_components > F.n_samples:
        raise ValueError(f"NLEEP needs at least as many samples as GMM components: "
                         f"{n_components} components (component_ratio={component_ratio:g} x {enc.n_classes} "
                         f"classes) for {F.n_samples} samples")
    with threadpool_limits(limits=EIGH_THREADS, user_api="blas"):
        Z = pca_keep_variance(F, NLEEP_VARIANCE)
        if covariance_type == "full":
            P = gmm_posteriors(Z, n_components, random_state=random_state)
        else:
            P = GaussianMixture(n_components=n_components, covariance_type=covariance_type,
                                random_state=random_state).fit(Z).predict_proba(Z)
    return leep_from_encoded(P, enc)


def pca_keep_variance(features, fraction: float) -> np.ndarray:
    """``PCA(n_components=fraction, svd_solver="full").fit_transform(X)``, cheaper when N > D.

    For N > D the principal axes come from the (cached, shared) eigendecomposition of the D x D
    scatter matrix :meth:`PreparedFeatures.centred_eigh` instead of an SVD of the N x D data; the
    kept dimension (smallest k with cumulative explained-variance ratio >= fraction, scikit-learn's
    ``searchsorted(..., side="right") + 1``) and scikit-learn's sign convention are reproduced
    (see :func:`principal_components`).
    """
    F = prepare_features(features)
    N, D = F.shape
    if N <= D:
        return PCA(n_components=fraction, svd_solver="full").fit_transform(F.X)
    lam = F.centred_eigh()[0][::-1]                              # descending
    ratio = np.cumsum(lam / lam.sum())
    k = min(int(np.searchsorted(ratio, fraction, side="right")) + 1, D)
    return principal_components(F, k)


def principal_components(F: PreparedFeatures, k: int) -> np.ndarray:
    """Scores ``Xc V_k`` (N, k) on the top-k principal axes of ``Xc^T Xc`` (cached on ``F``).

    Signs follow scikit-learn >= 1.5 (``svd_flip(u_based_decision=False)``): the largest-magnitude
    entry of each principal axis is positive.
    """
    V = F.centred_eigh()[1][:, ::-1][:, :k]
    flip = np.sign(V[np.argmax(np.abs(V), axis=0), np.arange(k)])
    flip[flip == 0] = 1.0
    return F.centred() @ (V * flip)
