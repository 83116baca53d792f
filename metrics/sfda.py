"""SFDA: Self-challenging Fisher Discriminant Analysis (Shao et al., "Not All Models Are Equal:
Predicting Model Transferability in a Self-challenging Fisher Space", ECCV 2022).

Fisher step on features X (N, D) with C classes, priors ``pi_c = n_c / N``, class means M (C, D)::

    Sw       = sum_c pi_c cov_c                      (within-class scatter, 1/n_c normalisation)
    lambda   = max(exp(-5 * lambda_max(Sw)), 1e-10)  (lambda_max: 3 power iterations from Sw.sum(1))
    shrink(S) = (1 - lambda) S + lambda (tr S / D) I
    St = shrink(cov X),  Sw' = shrink(Sw),  Sb = St - Sw'
    V  = generalised eigenvectors of (Sb, Sw'), by descending eigenvalue
    coef = M V V^T,  intercept_c = -1/2 m_c^T coef_c + log pi_c
    p(c | x) = softmax_c(x^T coef_c + intercept_c)

Self-challenge (ConfMix): soften ``p' = softmax(p)`` row-wise, replace every sample by
``x_i <- p'_{i, y_i} x_i + (1 - p'_{i, y_i}) * mean of the other classes' means`` (means of the
original X), refit with the same lambda and report ``sfda = mean_i p(y_i | x_i)`` of the refit (no
log, as in the paper).

Implementation note: all D generalised eigenvectors are kept, and they are ``Sw'``-orthonormal
(``V^T Sw' V = I``), so ``V V^T = Sw'^{-1}`` exactly and ``coef = M Sw'^{-1}``: ``St`` and ``Sb``
cancel out. We therefore solve with a Cholesky factor of ``Sw'`` instead of a D x D generalised
eigenproblem (identical result up to rounding, checked in the tests; ~10x faster at D = 2048).
``Sw`` of the first fit comes from the centred Gram matrix shared with the other metrics
(:class:`metrics.PreparedFeatures`) minus the between-class scatter; that of the ConfMix refit is
one GEMM of its class-centred features (no per-class loop).

Numerics (the score is invariant to a shift and a rotation of X, not to its scale: the shrinkage
``exp(-5 lambda_max(Sw))`` depends on the units). Everything is computed on ``s (X - mean)`` with ``s``
an exact power of four (:func:`metrics._validation.pow2_scale`): the posteriors of the Fisher
classifier for a given lambda are invariant to both (a shift adds a class-independent term to every
logit, a scale cancels in ``M Sw'^-1 x``), and lambda itself is taken from ``lambda_max / s^2``, i.e.
in the caller's units. The reference instead multiplies raw features: an offset of 1e8 cost it 8
digits (0.70 instead of 1.00), and features beyond ~1e100 overflowed. Degenerate inputs raise
:class:`metrics.DegenerateInputError`: constant features, and classes whose samples are all identical
(e.g. one sample per class), where the within-class scatter is 0 and the shrunk ``Sw'`` is singular
(the reference returned NaN). If the power iteration's start ``Sw.sum(axis=1)`` is 0 while ``Sw`` is
not (only for exactly cancelling rows), it starts from ``diag(Sw)`` instead.

Departures from the reference code: it rewrites the caller's X in place during ConfMix (here a new
array), loops over ``range(num_classes)`` with raw label values (non-contiguous ids break it; here
remapped) and prints the shrinkage.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from ._linalg import class_means, row_softmax
from ._prepared import prepare_features
from ._validation import DegenerateInputError, EncodedLabels, check_labels, check_not_constant, pow2_scale
from .registry import register_metric

__all__ = ["sfda"]

#: power iterations used by the reference code to estimate the largest eigenvalue of Sw
POWER_ITERATIONS = 3


def _largest_eigenvalue(A: np.ndarray, n_iter: int = POWER_ITERATIONS) -> float:
    """The reference's power-iteration estimate ``x^T A y`` (x, y alternate normalised iterates)."""
    x = A.sum(axis=1)
    if not np.any(x):                 # rows cancel exactly (A != 0 is checked by the caller)
        x = np.diag(A).copy()
    y = x
    for _ in range(n_iter):
        y = A @ x
        y /= np.linalg.norm(y)
        x = A @ y
        x /= np.linalg.norm(x)
    return float(x @ A @ y)


def _shrink(S: np.ndarray, lam: float) -> np.ndarray:
    out = (1.0 - lam) * S
    out[np.diag_indices_from(out)] += lam * np.trace(S) / S.shape[0]
    return out


def _fisher_posteriors(X: np.ndarray, enc: EncodedLabels, shrinkage: float | None,
                       moments: np.ndarray | None = None, unit: float = 1.0):
    """Return (p (N, C) posteriors of the shrunk Fisher classifier on X, shrinkage used).

    ``X`` is centred and scaled by ``unit`` (caller's features times ``unit``); a new ``shrinkage``
    is computed from ``lambda_max(Sw) / unit^2`` (the caller's units). ``moments``: ``Xc^T Xc`` of
    X if already known; then ``N Sw = Xc^T Xc - sum_c n_c m_c m_c^T`` (no N x D^2 product), else
    ``N Sw = R^T R`` with the class-centred R.
    """
    N = X.shape[0]
    means = class_means(X, enc.index, enc.counts)               # (C, D)
    if moments is None:
        R = X - means[enc.index]
        Sw = R.T @ R / N                                        # sum_c pi_c cov_c
    else:
        Sw = (moments - means.T @ (enc.counts[:, None] * means)) / N
    if shrinkage is None:
        with np.errstate(over="ignore"):
            top = _largest_eigenvalue(Sw) / (unit * unit)       # in the caller's units (may be inf)
            shrinkage = max(float(np.exp(-5.0 * top)), 1e-10)
    Sw_shrunk = _shrink(Sw, shrinkage)
    try:
        factor = scipy.linalg.cho_factor(Sw_shrunk, lower=True, check_finite=False)
    except np.linalg.LinAlgError as exc:
        raise DegenerateInputError("SFDA: the shrunk within-class scatter is singular (classes whose samples "
                                   "(almost) coincide); the Fisher discriminant is undefined") from exc
    coef = scipy.linalg.cho_solve(factor, means.T, check_finite=False).T    # M Sw'^-1  (C, D)
    intercept = -0.5 * np.einsum("cd,cd->c", means, coef) + np.log(enc.counts / N)
    return row_softmax(X @ coef.T + intercept), shrinkage


@register_metric("sfda", requires=("features", "labels"))
def sfda(features, labels) -> float:
    """SFDA score: mean probability of the true class after ConfMix (in (0, 1], higher is better)."""
    F = prepare_features(features)
    enc = check_labels(labels, F.n_samples)
    check_not_constant(F.X, what="SFDA's within-class scatter is 0")
    first = np.zeros(enc.n_classes, dtype=np.int64)
    first[enc.index[::-1]] = np.arange(F.n_samples)[::-1]         # first sample of each class
    if np.array_equal(F.X, F.X[first[enc.index]]):
        raise DegenerateInputError("SFDA: within every class all samples are identical (e.g. one sample per "
                                   "class), so the within-class scatter is 0 and the Fisher discriminant is "
                                   "undefined")
    Xc = F.centred()
    unit = pow2_scale(Xc)
    Xc *= unit                                                  # exact: unit is a power of four
    N = F.n_samples
    probs, shrinkage = _fisher_posteriors(Xc, enc, None, F.centred_gram() * (unit * unit), unit)
    soft = row_softmax(probs)                                   # the paper's "softened" probabilities
    conf = soft[np.arange(N), enc.index][:, None]
    means = class_means(Xc, enc.index, enc.counts)
    other_means = (means.sum(axis=0) - means) / (enc.n_classes - 1)
    mixed = conf * Xc + (1.0 - conf) * other_means[enc.index]
    probs2, _ = _fisher_posteriors(mixed, enc, shrinkage)
    return float(np.mean(probs2[np.arange(N), enc.index]))
