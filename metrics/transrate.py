"""TransRate (Huang et al., "Frustratingly Easy Transferability Estimation", ICML 2022).

Coding rate of features ``Z`` (n, D) at distortion ``eps``::

    R(Z) = 1/2 log det( I_D + Z^T Z / (n eps) )

    transrate = R(X) - (1/C) sum_c R(X_c)

where X (N, D) is centred (column means removed once, over all samples) and ``X_c`` holds the rows
of class c (not re-centred, as in the paper's code). ``eps = 1e-4``.

Speed: ``det(I_D + a Z^T Z) = det(I_n + a Z Z^T)`` (Sylvester), so every log-determinant is taken on
the smaller Gram side, via a Cholesky factor: for ``n_c < D`` (the usual case for per-class blocks)
an ``n_c x n_c`` matrix instead of ``D x D``. The reference code always forms the D x D matrix and
loops over ``range(y.max() + 1)`` (empty classes for non-contiguous ids; ``slogdet`` of an identity
then adds 0 but the average is divided by the wrong C). Here class ids are remapped.
"""
from __future__ import annotations

import numpy as np

from ._linalg import logdet_identity_plus_gram
from ._validation import check_labels, check_positive
from ._backend import accepts_backend, prepare_on
from .registry import register_metric

__all__ = ["transrate", "coding_rate"]


def coding_rate(Z: np.ndarray, eps: float = 1e-4) -> float:
    """``R(Z) = 1/2 log det(I + Z^T Z / (n eps))`` for ``Z`` (n, D), on the smaller Gram side."""
    return 0.5 * logdet_identity_plus_gram(Z, 1.0 / (Z.shape[0] * eps))


@register_metric("transrate", requires=("features", "labels"))
@accepts_backend
def transrate(features, labels, *, eps: float = 1e-4, backend=None, device=None) -> float:
    """TransRate score ``R(X) - mean_c R(X_c)`` (higher is better); ``backend`` / ``device``: where the
    log-determinants are computed (:mod:`metrics._backend`)."""
    F = prepare_on(features, backend, device)
    enc = check_labels(labels, F.n_samples)
    eps = check_positive(eps, "eps")
    N, D = F.shape
    # R(X_c) of the centred rows of each class; R(X) too when N <= D (row order leaves it unchanged)
    rates = 0.5 * F.group_logdets(enc.index, 1.0 / (enc.counts * eps), whole_scale=None if N > D else 1.0 / (N * eps))
    per_class = rates[:enc.n_classes]
    # N > D: R(X) from the (cached, shared) centred Gram matrix
    r_all = 0.5 * F.centred_gram_logdet(N * eps) if N > D else rates[-1]
    return float(r_all - np.mean(per_class))
