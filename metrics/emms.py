"""EMMS: Efficient Multi-task Model Selector (Meng et al., "Foundation Model is Efficient Multimodal
Multitask Model Selector", NeurIPS 2023).

Inputs: features ``X`` (N, D) of one pre-trained model and K foundation-model label embeddings
``Y_k`` (N, E) stacked as ``Y`` (N, E, K). Every column of X and of each ``Y_k`` is z-scored
(population std, ``+1e-8`` in the denominator). Model: the true label embedding is a noisy linear
function of the features and each ``Y_k`` a noisy oracle of it, which gives the weighted regression::

    min_{w in R^{D x E}, t in simplex}  f(w, t) = ||X w - sum_k t_k Y_k||_F^2
    simplex = {t in R^K : t_k >= 0, sum_k t_k = 1}

    emms = - f(w*, t*) / (N E)                      (higher is better)

Alternating minimisation (the paper's Algorithm 1):

* w-step: ``w = argmin_w ||X w - Y t||^2`` (least squares), so ``X w = P_X (Y t)``;
* t-step: minimise over t in the simplex.

Reduction used here. Eliminating w, ``min_w f(w, t) = t^T G t`` with the K x K Gram matrix
``G_kl = <R_k, R_l>_F``, ``R_k = (I - P_X) Y_k``; ``G = H - Q`` with ``H_kl = <Y_k, Y_l>`` and
``Q_kl = <P_X Y_k, P_X Y_l> = B_k^T (X^T X)^+ B_l`` where ``B = X^T Y`` (D, E K). The t-step is
solved *exactly* on this partially minimised objective: ``t* = argmin_{simplex} t^T G t``, a convex
K-dimensional QP solved exactly by :func:`metrics._linalg.simplex_qp` (active-set enumeration). With
this exact t-step the alternation reaches its fixed point after one sweep: the next sweep (w fixed at
``w(t*)``, t-step ``argmin_{simplex} ||X w - Y t||^2``) returns the same objective, which is checked
(to ``tol``) as a certificate. The result is the exact optimum of the simplex-constrained problem
(the tests compare it with a brute-force grid and check the projected-gradient residual).

The published code's t-step is different: an *unconstrained* least-squares fit of ``vec(X w)`` on
the K columns ``vec(Y_k)`` followed by a Euclidean projection onto the simplex (sparsemax). That
projection is in the wrong metric (Euclidean instead of ``H``), so iterating it need not reach the
optimum; and the published code runs exactly one sweep: w from the uniform ``t0 = 1/K``, one such
t-step giving ``t1``, and the residual of the *old* w against the *new* t::

    onestep = - ||P_X Y t0 - Y t1||_F^2 / (N E)

``max_iter=1`` reproduces this value. The published code prints ``-sum(res**2) / N*D2`` which, by
operator precedence, is ``-(RSS / N) * E``: its reported number equals ``onestep * E**2`` (the same
ranking within a dataset, since E is fixed by the label embeddings).

Degenerate case D >= N - 1. The z-scored columns of X and Y all lie in the (N-1)-dimensional
space orthogonal to the all-ones vector. When ``rank(X) >= N - 1`` the least-squares fit is exact
for every model and the score is identically 0 (the published code silently returns -0.0). This is
detected from the numerical rank and raises ``ValueError`` unless a ridge is requested:
``ridge=lam`` replaces the w-step by ridge regression with penalty ``lam * N * ||w||_F^2``
(``lam`` is relative to ``N``, the diagonal of ``X^T X`` for z-scored X); the score is then minus
the penalised objective ``min_w ||X w - Y t||^2 + lam N ||w||^2 = t^T (H - B^T (X^T X + lam N I)^-1 B) t``
over ``N E``.

Evidence-chosen ridge, ``ridge="auto"`` (what the registry name ``emms`` uses). The ridge is not a
free constant but the one chosen by Bayesian evidence maximisation in LogME's model: every z-scored
label-embedding column ``y_j`` (j = 1..T, T = E K) is ``X m_j + noise`` with ``m_j ~ N(0, alpha^-1 I_D)``
and noise ``N(0, beta^-1)``, whose posterior mean is the ridge solution with penalty
``(alpha / beta) ||m||^2``. ONE pair (alpha, beta) per call maximises the pooled log evidence
``sum_j log p(y_j | alpha, beta)`` of all T columns. Pooling keeps the ridge independent of the
simplex weights t, so the t-step remains the exact convex QP above (a per-column or per-``Y t``
ridge would make the penalised objective non-quadratic in t). With ``sigma_i`` the eigenvalues of
``X^T X`` (D x D, one eigendecomposition; never an N x N matrix), ``V`` its eigenvectors and
``x2_i = sum_j (v_i^T X^T y_j)^2 / sigma_i`` (one GEMM ``V^T B``), the pooled evidence at
``(T alpha, T beta)`` is ``T`` times the single-target evidence of the squared projections ``x2``
plus a constant, so its maximiser ``alpha / beta`` is found by LogME's vectorised MacKay fixed point
(:func:`metrics.logme.maximise_evidence`, shared code) on one pooled target. The observations live
in the ``n = N - 1``-dimensional complement of the all-ones vector (centring = a flat-prior intercept
integrated out), so the evidence uses ``n = N - 1`` observations; with ``n = N`` the evidence would be
unbounded whenever ``rank(X) = N - 1`` (noise precision -> inf along the all-ones direction, where
every centred observation is exactly 0). The chosen ``alpha / beta`` is expressed in the ridge
convention above, ``ridge = (alpha / beta) / N``, and the score is then computed exactly as for that
fixed ridge. Boundary maxima: ``alpha -> inf`` (features explain nothing) gives ``ridge = inf``,
``w = 0`` and the score ``-min_t t^T H t / (N E)``; ``beta -> inf`` (possible only when
``rank(X) = N - 1``: exact interpolation is the most probable model) gives ``ridge = 0`` and the
exact-fit score 0. For N >> D the chosen ridge is tiny and the score is close to the OLS one.

Other departures from the published code: the caller's arrays are not z-scored in place; float64
throughout; K = 1 is plain regression (t = 1).

Cost: ``X^T X`` (N D^2), ``X^T Y`` (N D E K), a pivoted Cholesky of the D x D Gram matrix (D^3/3)
and one triangular solve (D^2 E K); no N x N matrix. ``ridge="auto"`` adds one D x D
eigendecomposition and one GEMM ``V^T B`` (D^2 E K) for the evidence, then the fixed-ridge Cholesky
route (D^3/3 + 2 D^2 E K).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg

from ._linalg import project_simplex, simplex_qp
from ._prepared import PreparedFeatures, PreparedLabelEmbeddings, prepare_features, prepare_label_embeddings
from ._validation import DegenerateInputError, check_positive
from .logme import maximise_evidence
from .registry import register_metric

__all__ = ["emms", "emms_auto", "emms_ols", "emms_onestep"]

#: relative pivot tolerance of the pivoted Cholesky factorisation (numerical rank of X^T X)
RANK_RTOL = 1e-10

#: ``ridge`` value selecting the evidence-maximising ridge
RIDGE_AUTO = "auto"

#: convergence of the evidence fixed point for ``ridge="auto"`` (relative change of alpha / beta)
EVIDENCE_TOL = 1e-10
EVIDENCE_MAX_ITER = 10_000


def emms(features, label_embeddings, *, max_iter: int = 100, tol: float = 1e-10,
         ridge: float | str | None = None, return_weights: bool = False):
    """EMMS transferability score (higher is better).

    Parameters
    ----------
    features : (N, D) array
        Features of one pre-trained model on the target data.
    label_embeddings : (N, E, K) array, or a list of K (N, E) arrays
        Per-sample label embeddings from K foundation models.
    max_iter : int
        ``1`` reproduces the published one-sweep procedure (see the module docstring). Any value
        ``> 1`` runs the alternation with the exact t-step, which converges in one sweep (plus the
        certifying sweep), i.e. the exact optimum; larger values change nothing.
    tol : float
        Relative tolerance of the fixed-point certificate (the objective after a further sweep may
        not be lower by more than ``tol * objective``).
    ridge : None, float or "auto"
        None (default, the paper): ordinary least squares; ``ValueError`` if the fit is exact
        (rank(X) >= N - 1). ``lam > 0``: ridge w-step with penalty ``lam * N * ||w||^2``.
        ``"auto"``: ``lam`` chosen by maximising the pooled Bayesian evidence of all E K label-embedding
        columns (module docstring); defined for any N, D (registry name ``emms``).
    return_weights : bool
        Also return the simplex weights ``t`` (K,) -- and, with ``ridge="auto"``, the chosen ridge
        ``lam`` (float in ``[0, inf]``, same convention as a fixed ``ridge``).

    Returns
    -------
    float; with ``return_weights=True`` ``(float, ndarray (K,))``, or ``(float, ndarray (K,), float)``
    when ``ridge="auto"``.
    """
    F = prepare_features(features)
    Y = prepare_label_embeddings(label_embeddings, F.n_samples)
    max_iter = check_positive(max_iter, "max_iter", integer=True)
    tol = check_positive(tol, "tol")
    auto = isinstance(ridge, str)
    if auto and ridge != RIDGE_AUTO:
        raise ValueError(f"ridge must be None, a positive number or {RIDGE_AUTO!r}, got {ridge!r}")
    if not auto:
        ridge = check_positive(ridge, "ridge", allow_none=True)
    N, E, K = Y.shape

    H, Q, Q_fit, ridge = _gram_terms(F, Y.zscored(), ridge)
    G = H - Q
    t0 = np.full(K, 1.0 / K)
    if max_iter == 1:
        # published procedure: unconstrained LS of vec(X w0) on the vec(Y_k), then sparsemax
        t1 = project_simplex(np.linalg.lstsq(H, Q @ t0, rcond=None)[0])
        # ||X w0 - Y t1||^2 with X w0 = S Y t0 (S the hat matrix; S^2 = S without ridge)
        rss = float(t1 @ H @ t1 - 2.0 * t1 @ Q @ t0 + t0 @ Q_fit @ t0)
        t = t1
    else:
        # t-step with w eliminated: t* = argmin_{simplex} min_w f(w, t) = argmin t^T G t (exact), then the
        # w-step w* = w(t*). One more sweep of the alternation -- the t-step with w fixed at w*,
        # argmin_{simplex} ||X w* - Y t||^2 = argmin t^T H t - 2 t^T Q t* -- must leave the objective
        # unchanged (fixed point); it is checked to ``tol`` as a certificate.
        t = simplex_qp(G)
        rss = float(t @ G @ t)
        t_next = simplex_qp(H, -(Q @ t))
        rss_next = float(t_next @ G @ t_next)
        if rss_next < rss - tol * max(rss, float(np.trace(H)) * 1e-12):
            raise RuntimeError(f"EMMS alternation is not at a fixed point: {rss_next!r} < {rss!r}")
    score = -max(rss, 0.0) / (N * E)
    if not return_weights:
        return score
    return (score, t, ridge) if auto else (score, t)


@register_metric("emms", requires=("features", "label_embeddings"))
def emms_auto(features, label_embeddings) -> float:
    """Registry ``emms``: converged EMMS with the evidence-chosen ridge, ``emms(..., ridge="auto")``.

    Defined for every N, D with one rule for all models of a dataset, so scores stay comparable
    whether D < N or D >= N; for N >> D it is close to :func:`emms_ols`.
    """
    return emms(features, label_embeddings, ridge=RIDGE_AUTO)


@register_metric("emms_ols", requires=("features", "label_embeddings"))
def emms_ols(features, label_embeddings) -> float:
    """Registry ``emms_ols``: the paper's unregularised converged EMMS, ``emms(...)`` (``ValueError``
    when rank(X) >= N - 1, where it is identically 0)."""
    return emms(features, label_embeddings)


@register_metric("emms_onestep", requires=("features", "label_embeddings"))
def emms_onestep(features, label_embeddings) -> float:
    """The published one-sweep EMMS value, ``emms(..., max_iter=1)`` (= published figure / E^2)."""
    return emms(features, label_embeddings, max_iter=1)


def _gram_terms(F: PreparedFeatures, Ys: PreparedLabelEmbeddings, ridge: float | str | None):
    """K x K matrices ``H = <Y_k, Y_l>``, ``Q = Y_k^T S Y_l``, ``Q_fit = Y_k^T S^2 Y_l``, and the ridge.

    ``F`` the features (z-scored here: ``X_s = (X - mean) / (std + 1e-8)``), ``Ys`` the z-scored label
    embeddings. ``S = X_s (X_s^T X_s + lam I)^+ X_s^T`` is the hat matrix of the w-step
    (``lam = ridge * N`` or 0), so ``min_w ||X_s w - Y t||^2 (+ lam ||w||^2) = t^T (H - Q) t`` and
    ``||X_s w(t0)||^2 = t0^T Q_fit t0``. ``ridge="auto"`` is first resolved by :func:`_evidence_ridge`
    (returned as the 4th element; the given ``ridge`` otherwise); its limits ``inf`` (S = 0) and ``0``
    with rank(X) = N - 1 (S Y = Y, exact fit) are returned directly.
    """
    N, E, K = Ys.shape
    H = Ys.embedding_gram()
    A = F.standardised_gram()                                   # (D, D) X_s^T X_s, read-only (shared)
    B = _CrossProduct(F, Ys)                                    # X_s^T Y (D, E K), possibly factored
    D = A.shape[0]
    if ridge == RIDGE_AUTO:
        ridge = _evidence_ridge(F, B, float(np.trace(H)), N)
        if ridge == np.inf:
            zero = np.zeros_like(H)
            return H, zero, zero, ridge
        if ridge == 0.0:
            return H, H, H, ridge
    if ridge is None:
        # pivoted Cholesky  P^T A P = L L^T  with numerical rank r; B lies in range(A), so
        # B^T A^+ B = C^T C  with  C = L_11^-1 (P^T B)[:r]
        L, piv, rank, _ = scipy.linalg.lapack.dpstrf(A, lower=1, tol=RANK_RTOL * float(np.max(np.diag(A))))
        if rank >= N - 1:
            raise DegenerateInputError(
                f"EMMS is degenerate: the z-scored features have rank {rank} >= N - 1 = {N - 1} (D={D}), so "
                "the least-squares fit of every label embedding is exact and the score is 0 for every model. "
                "Use more samples than feature dimensions, reduce D (e.g. PCA), or pass ridge=<lam> "
                "for a ridge-regularised w-step.")
        C = scipy.linalg.solve_triangular(np.tril(L[:rank, :rank]), B.left[piv[:rank] - 1], lower=True,
                                          check_finite=False)
        Q = B.block_gram(C)
        return H, Q, Q, ridge
    lam = ridge * N
    A = A + lam * np.eye(D)
    L = scipy.linalg.cholesky(A, lower=True, overwrite_a=True, check_finite=False)
    C = scipy.linalg.solve_triangular(L, B.left, lower=True, check_finite=False)
    Q = B.block_gram(C)
    # S^2 = S - lam X M^2 X^T with M = (X^T X + lam I)^-1:  Y^T X M^2 X^T Y = ||L^-T C||^2 blockwise
    M_B = scipy.linalg.solve_triangular(L, C, lower=True, trans="T", check_finite=False)
    return H, Q, Q - lam * B.block_gram(M_B), ridge


class _CrossProduct:
    """``B = X_s^T Y_s`` (D, E K) of the z-scored features and label embeddings, kept factored as
    ``B = left @ R`` when the label embeddings have U < E K distinct rows: ``left = X_s^T P`` (D, U)
    (group sums, P the N x U group indicator) and ``R`` (U, E K) the distinct rows. Every use of B
    here is ``block_gram(T B)`` for a linear map T, and ``(T left) R`` only needs U-column solves and
    U x U products. Otherwise ``left = B`` and ``R = None`` (identity)."""

    def __init__(self, F: PreparedFeatures, Ys: PreparedLabelEmbeddings):
        _, self.E, self.K = Ys.shape
        U = Ys.rows.shape[0]
        scale = F.zscore_scale()
        if Ys.grouped and U < self.E * self.K:
            self.left = F.group_sums(Ys.index, U, centred=True).T / scale[:, None]
            self.R = Ys.rows.reshape(U, self.E * self.K)
        else:
            self.left = Ys.cross(F, scale=scale, centred=True)
            self.R = None

    def block_gram(self, C: np.ndarray) -> np.ndarray:
        """``_block_gram(C R)`` (K, K) for ``C = T left`` (r, U) (or ``C = T B`` if not factored)."""
        if self.R is None:
            return _block_gram(C, self.E, self.K)
        MR = (C.T @ C) @ self.R                                 # (U, E K)
        return np.einsum("uk,ul->kl", self.R.reshape(-1, self.K), MR.reshape(-1, self.K))

    def row_sq_norms(self, T: np.ndarray) -> np.ndarray:
        """``sum_j (T B)_ij^2`` (r,) for a map ``T`` (r, D)."""
        TL = T @ self.left
        if self.R is None:
            return np.einsum("ij,ij->i", TL, TL)
        return np.einsum("iu,iu->i", TL @ (self.R @ self.R.T), TL)


def _evidence_ridge(F: PreparedFeatures, B: _CrossProduct, y_sq: float, N: int) -> float:
    """Ridge (penalty ``ridge * N * ||w||^2``) maximising the pooled evidence of the label columns.

    ``A = X_s^T X_s`` (D, D) of the z-scored features (its eigendecomposition
    ``A = V diag(sigma) V^T`` is cached on ``F``), ``B = X_s^T Y`` (D, T) of the z-scored data,
    ``y_sq = ||Y||_F^2``. Pooled squared projections ``x2_i = sum_j (V^T B)_ij^2 / sigma_i`` over the
    positive eigenvalues, energy outside the column space ``y_sq - sum_i x2_i`` (exactly 0 when
    rank(X) = N - 1, the whole centred space), and LogME's fixed point on this single pooled target
    with ``N - 1`` observations. Returns ``(alpha / beta) / N`` in ``[0, inf]``.
    """
    n_obs = N - 1                      # centred columns: the complement of the all-ones vector
    sigma, V = F.standardised_eigh()
    positive = sigma > 0
    rank = int(positive.sum())
    if rank == 0:                      # constant features: nothing to fit, the null model
        return np.inf
    sigma = sigma[positive]
    x2 = B.row_sq_norms(V[:, positive].T) / sigma     # v_i^T X^T y_j = sqrt(sigma_i) u_i^T y_j
    spans = rank >= n_obs
    outside = 0.0 if spans else max(y_sq - float(x2.sum()), 0.0)
    _, t = maximise_evidence(sigma, x2[:, None], np.array([outside]), n_obs, tol=EVIDENCE_TOL,
                             max_iter=EVIDENCE_MAX_ITER, full_rank_dual=spans)
    return float(t[0]) / N


def _block_gram(C: np.ndarray, E: int, K: int) -> np.ndarray:
    """``sum_{rows, e} C[:, e, k] C[:, e, l]`` for ``C`` (r, E K) laid out as (r, E, K) -> (K, K)."""
    Cv = C.reshape(-1, K)
    return Cv.T @ Cv
