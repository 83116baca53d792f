"""LogME and TransRate on foundation-model label embeddings ("F-labels"), the baselines EMMS is
compared with in Meng et al. (NeurIPS 2023, "LogME / TransRate with F-label").

Inputs as for :func:`metrics.emms`: features X (N, D) and per-sample label embeddings Y (N, E, K).

``logme_flabel``: LogME regression of X onto every column of every embedding, averaged::

    logme_flabel = (1/K) sum_k (1/E) sum_e logme_evidence(X, Y_k[:, e]) = logme(X, Y.reshape(N, E K))

(one eigendecomposition for all E K targets; the embeddings are used as given, as in the paper:
rescaling a target shifts its evidence by a model-independent constant, so rankings are unaffected).

``transrate_flabel`` -- our definition, since TransRate needs discrete labels. TransRate is a coding-
rate estimate of the mutual information between features and labels, ``R(X) - R(X | y)``. For a
continuous label embedding we use the same coding-rate estimate of the mutual information between
X and Y_k, averaged over the K embeddings::

    R(Z) = 1/2 log det(I + Z^T Z / (N eps))
    transrate_flabel = (1/K) sum_k [ R(X) + R(Y_k) - R([X, Y_k]) ]

with every column of X and Y_k z-scored (as in EMMS), so ``eps`` (default 1e-4) is relative to unit
variance; for ``eps -> 0`` each term is the Gaussian mutual information
``1/2 log(det S_X det S_Y / det S_XY)``. It is >= 0 and scale-free. (The EMMS code's
``Transrate_multi`` instead cuts every one of the E embedding dimensions into 50 "bins" by sample
*index* -- its ``discretize_vector`` never sorts -- and averages E TransRates; we do not reproduce that.)
Computation: for N > D + E, with ``A = I + a X^T X``, ``a = 1/(N eps)``, the Schur complement gives
``R(X) + R(Y) - R([X, Y]) = 1/2 [log det(I + a Y^T Y) - log det(I + a Y^T Y - a^2 Y^T X A^-1 X^T Y)]``
(one Cholesky of A shared by the K embeddings); otherwise the N x N dual Gram matrices are used.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
from threadpoolctl import threadpool_limits

from ._linalg import EIGH_THREADS, logdet_identity_plus_gram, logdet_spd
from ._prepared import prepare_features, prepare_label_embeddings
from ._validation import check_positive
from .logme import max_log_evidence
from .registry import register_metric

__all__ = ["logme_flabel", "transrate_flabel"]


@register_metric("logme_flabel", requires=("features", "label_embeddings"))
def logme_flabel(features, label_embeddings) -> float:
    """LogME regression on the K label embeddings (mean over the E K target columns)."""
    F = prepare_features(features)
    Y = prepare_label_embeddings(label_embeddings, F.n_samples)
    if np.array_equal(Y.rows.min(axis=0), Y.rows.max(axis=0)):
        raise ValueError("label embeddings are constant across samples (every sample has the same vector): "
                         "they carry no label information")
    return float(np.mean(max_log_evidence(F, Y)))


@register_metric("transrate_flabel", requires=("features", "label_embeddings"))
def transrate_flabel(features, label_embeddings, *, eps: float = 1e-4) -> float:
    """Coding-rate mutual information between z-scored features and each label embedding, averaged."""
    F = prepare_features(features)
    Y = prepare_label_embeddings(label_embeddings, F.n_samples)
    eps = check_positive(eps, "eps")
    # Cholesky / LU of 1000-2000 wide matrices: single-threaded (see _linalg.EIGH_THREADS)
    with threadpool_limits(limits=EIGH_THREADS, user_api="blas"):
        return _transrate_flabel(F, Y, eps)


def _transrate_flabel(F, Y, eps: float) -> float:
    N, D = F.shape
    _, E, K = Y.shape
    a = 1.0 / (N * eps)
    Ys = Y.zscored()
    terms = []
    if N > D + E:
        A = a * F.standardised_gram()
        A[np.diag_indices_from(A)] += 1.0
        L = scipy.linalg.cholesky(A, lower=True, overwrite_a=True, check_finite=False)
        B = Ys.cross(F, scale=F.zscore_scale(), centred=True).reshape(D, E, K)     # X_s^T Y_s
        for k in range(K):
            Cy = a * Ys.column_gram(k)
            Cy[np.diag_indices_from(Cy)] += 1.0
            W = scipy.linalg.solve_triangular(L, a * B[:, :, k], lower=True, check_finite=False)
            terms.append(0.5 * (logdet_spd(Cy) - logdet_spd(Cy - W.T @ W)))
    else:
        Xs, Yfull = F.zscored(), Ys.full()
        rx = logdet_identity_plus_gram(Xs, a)
        for k in range(K):
            Yk = Yfull[:, :, k]
            terms.append(0.5 * (rx + logdet_identity_plus_gram(Yk, a)
                                - logdet_identity_plus_gram(np.hstack([Xs, Yk]), a)))
    return float(np.mean(terms))
