"""LogME: maximum log evidence of a Bayesian linear head (You et al., ICML 2021; JMLR 2022).

For every target vector ``y`` (N,) (a one-hot class indicator for classification, a column of the
targets for regression / label embeddings) LogME fits ``y = X m + noise`` with prior
``m ~ N(0, alpha^-1 I_D)`` and noise ``N(0, beta^-1)`` and reports the maximised log evidence per
sample, averaged over the T targets::

    L(alpha, beta) = D/2 log alpha + N/2 log beta - N/2 log 2 pi
                     - beta/2 ||y - X m||^2 - alpha/2 ||m||^2 - 1/2 log det(alpha I_D + beta X^T X)

    logme = (1/T) sum_y max_{alpha, beta} L(alpha, beta) / N

with ``m = beta A^-1 X^T y``, ``A = alpha I + beta X^T X``. With the eigenvalues ``sigma_i`` of
``X^T X`` and ``x_i = u_i^T y`` (``u_i`` the left singular vectors of X) and ``t = alpha / beta``::

    ||m||^2        = sum_i sigma_i x_i^2 / (sigma_i + t)^2
    ||y - X m||^2  = sum_i x_i^2 t^2 / (sigma_i + t)^2  +  (||y||^2 - sum_i x_i^2)
    D/2 log alpha - 1/2 log det A = -1/2 sum_{i=1..D} log(1 + sigma_i / t)

(the last line runs over all D eigenvalues; the zero ones contribute exactly 0). MacKay's fixed
point ``gamma = sum_i sigma_i / (sigma_i + t)``, ``alpha = gamma / ||m||^2``,
``beta = (N - gamma) / ||y - X m||^2`` is iterated for all targets at once until the relative change
of ``t`` is below ``tol`` for every target.

Cost: one eigendecomposition of the smaller Gram matrix (``X^T X`` (D, D) if N > D, else the
N-dimensional dual ``X X^T``), one GEMM ``X^T Y`` (D, T) (or ``U^T Y``), then O(min(N, D) T) per
fixed-point iteration. Classification targets are never materialised as one-hot: ``X^T Y`` is a
per-class sum of rows; label-embedding targets given as :class:`metrics.PreparedLabelEmbeddings`
are handled the same way (group sums of X times the distinct rows). The eigendecomposition is
cached on a :class:`metrics.PreparedFeatures` and shared with the other metrics.

Departures from the reference code (``LogME._fit_fixed_point`` in the LogME / EMMS repositories):

* N < D: the reference keeps only the N non-zero singular values yet still adds ``D/2 log alpha``,
  i.e. it drops the ``(D - N) log alpha`` terms of ``log det A``; its scores then explode. Here the
  log-determinant runs over all D eigenvalues (computed in the N-dimensional dual), which is the
  true maximum evidence (checked against direct numerical maximisation in the tests).
* The reference stops after at most 11 iterations at a relative change of ``t`` of 1e-3 and adds
  1e-5 to ``||m||^2`` and to the residual. We iterate the exact fixed point to ``tol`` (default
  1e-10); when N > D the two agree to ~1e-6 (the evidence is stationary at the fixed point).
* Features with (almost) no signal: the maximum is then the null-model limit ``alpha -> inf``
  (``m = 0``, ``N/2 log(N / ||y||^2) - N/2 - N/2 log 2 pi``), towards which the fixed point only
  crawls. A target stops iterating once ``t > T_NULL * max sigma`` while the leading term of the
  profile evidence at large t still increases towards that limit, and the limit is a candidate;
  a candidate that evaluates to NaN / inf never wins over a finite one (``np.argmax`` used to pick
  a NaN). The rare flat profiles that still do not converge in ``max_iter`` steps are finished by a
  bounded 1-D maximisation over ``log t``.
* Class ids are remapped with ``np.unique`` (the reference loops over ``range(y.max() + 1)`` and
  silently adds empty classes for non-contiguous ids).
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.optimize
from sklearn.exceptions import ConvergenceWarning

from ._linalg import class_sums
from ._prepared import PreparedFeatures, PreparedLabelEmbeddings
from ._validation import check_labels, check_positive, check_targets, pow2_scale
from ._backend import accepts_backend, prepare_on
from .registry import register_metric

__all__ = ["logme", "max_log_evidence"]

#: a target whose t = alpha/beta leaves [T_LO * min sigma, T_HI * max sigma] is at a boundary
T_HI = 1e8
T_LO = 1e-8
#: beyond T_NULL * max sigma a target whose evidence increases towards the null limit stops iterating
T_NULL = 1e3
#: largest |column mean| / largest column std LogME accepts (see :func:`_check_offset`)
MAX_OFFSET_RATIO = 1e7
#: density (points per decade of t) of the log grid that picks each target's starting t
START_GRID_PER_DECADE = 2


@register_metric("logme", requires=("features", "labels"))
@accepts_backend
def logme(features, labels, *, tol: float = 1e-10, max_iter: int = 10_000, backend=None, device=None) -> float:
    """LogME score of ``features`` for ``labels`` (higher is better).

    Parameters
    ----------
    features : (N, D) array or :class:`metrics.PreparedFeatures`
        Target-data features of one pre-trained model.
    labels : (N,) integer array, or (N, T) float array
        Integer class ids -> classification (one target per class, the one-hot indicator).
        Float (N, T) -> regression on the T columns (e.g. label embeddings). A 1-D float array is
        refused as ambiguous: cast to int for classes or reshape to (N, 1) for one regression target.
    tol, max_iter
        Convergence of the fixed point: stop when ``|t_new - t| <= tol * t`` for every target.
    backend, device
        Where the Gram matrix, its eigendecomposition and ``X^T Y`` are computed (``"numpy"`` default,
        ``"torch"`` on ``device``; :mod:`metrics._backend`).

    Returns
    -------
    float
        Mean over targets of the maximum log evidence divided by N.
    """
    return float(np.mean(max_log_evidence(features, labels, tol=tol, max_iter=max_iter, backend=backend,
                                          device=device)))


@accepts_backend
def max_log_evidence(features, labels, *, tol: float = 1e-10, max_iter: int = 10_000, backend=None,
                     device=None) -> np.ndarray:
    """Per-target maximum log evidence / N, shape (T,) (see :func:`logme` for the arguments).

    ``labels`` may also be a :class:`metrics.PreparedLabelEmbeddings` (N, E, K): regression on its
    E K columns (column ``e * K + k``), computed from its distinct rows.
    """
    F = prepare_on(features, backend, device)
    tol = check_positive(tol, "tol")
    max_iter = check_positive(max_iter, "max_iter", integer=True)
    N = F.n_samples
    if isinstance(labels, PreparedLabelEmbeddings):
        if labels.n_samples != N:
            raise ValueError(f"label embeddings have {labels.n_samples} samples but the features have {N}")
        rows = labels.rows.reshape(labels.rows.shape[0], -1)
        index, counts = labels.index, labels.counts
    else:
        lab = np.asarray(labels)
        classification = lab.ndim == 1 and np.issubdtype(lab.dtype, np.integer)
        if lab.ndim == 1 and not classification:
            raise ValueError(f"labels is 1-D with dtype {lab.dtype}: pass integer class ids for classification "
                             "or an (N, T) float array for regression")
        if lab.ndim == 2 and not np.issubdtype(lab.dtype, np.floating):
            raise ValueError(f"labels is 2-D with dtype {lab.dtype}: pass a 1-D integer array of class ids for "
                             "classification, or float (N, T) regression targets")
        if classification:
            enc = check_labels(lab, N)
            rows, index, counts = None, enc.index, enc.counts        # rows = identity: one-hot targets
        else:
            rows, index, counts = check_targets(lab, N), None, None  # one row per sample
    return _max_log_evidence(F, rows, index, counts, tol=tol, max_iter=max_iter)


def _max_log_evidence(F: PreparedFeatures, rows, index, counts, *, tol: float, max_iter: int) -> np.ndarray:
    """Targets ``Y = rows[index]`` (N, T): ``rows`` (U, T) (None = the U x U identity, i.e. one-hot
    classes), ``index`` (N,) in ``0..U-1`` (None = one row per sample), ``counts`` (U,) group sizes."""
    N = F.n_samples
    _check_offset(F)
    weights = None if counts is None else counts.astype(np.float64)
    if rows is None:
        target_sq = weights                                          # ||one-hot column c||^2 = n_c
    else:
        target_sq = np.einsum("ij,ij->j", rows, rows) if weights is None else weights @ (rows * rows)
        zero = np.flatnonzero(target_sq == 0)
        if zero.size:
            raise ValueError(f"labels has identically zero target column(s) {zero[:10].tolist()}; "
                             "their evidence is unbounded")

    def project(A: np.ndarray | None, B: np.ndarray | None = None) -> np.ndarray:
        """``B^T A^T Y`` for A (N, k) (None: the features X, through their backend; B = identity if
        None), via per-group sums of the rows of A when targets repeat; ordered so the widest product
        is (k, U) x (U, T) when U < N."""
        if index is None:
            AtY = F.transpose_matmul(rows) if A is None else A.T @ rows
            return AtY if B is None else B.T @ AtY
        # (k, U) = A^T (group indicator)
        sums = (F.group_sums(index, len(weights)) if A is None else class_sums(A, index, len(weights))).T
        if B is not None:
            sums = B.T @ sums
        return sums if rows is None else sums @ rows

    sigma, vecs, side = F.gram_eigh()
    if side == "primal":
        # z_i = v_i^T X^T y = s_i x_i  (D, T)
        z = project(None, vecs)
        positive = sigma > 0
        x2 = np.zeros_like(z)
        x2[positive] = (z[positive] / np.sqrt(sigma[positive, None])) ** 2     # no overflow of z^2
    else:
        # u_i are the eigenvectors of X X^T themselves: x_i = u_i^T y  (N, T)
        x2 = project(vecs) ** 2
        # the u_i span R^N: nothing of y lies outside (set exactly, not up to rounding)
        target_sq = x2.sum(axis=0)
    outside = np.maximum(target_sq - x2.sum(axis=0), 0.0)  # ||y||^2 outside the span of the u_i
    full_rank_dual = side == "dual" and bool(np.all(sigma > 0))
    evidence, _ = maximise_evidence(sigma, x2, outside, N, tol=tol, max_iter=max_iter,
                                    full_rank_dual=full_rank_dual)
    return evidence


def _check_offset(F: PreparedFeatures) -> None:
    """``ValueError`` if a common offset hides the features' variation from ``X^T X``.

    LogME has no intercept and works with the eigenvalues of the uncentred Gram matrix, which resolve
    the spread of the features only to ``eps * (offset / spread)^2`` relative: beyond
    ``MAX_OFFSET_RATIO`` (largest |column mean| / largest column std) the small eigenvalues are lost
    to rounding and the score silently becomes that of constant features. Exactly constant features
    are fine (their Gram matrix is exact)."""
    spread = float(F.std().max())
    offset = float(np.abs(F.mean()).max())
    if spread > 0 and offset > MAX_OFFSET_RATIO * spread:
        raise ValueError(f"features have a common offset {offset / spread:.3g} times their spread (largest "
                         f"|column mean| {offset:.3g}, largest column std {spread:.3g}): LogME (no intercept) "
                         "cannot resolve their variation in X^T X; centre the features first")


def maximise_evidence(sigma: np.ndarray, x2: np.ndarray, outside: np.ndarray, N: int, *,
                      tol: float, max_iter: int, full_rank_dual: bool) -> tuple[np.ndarray, np.ndarray]:
    """Maximise the evidence of all T targets at once; return ``(max evidence / N, t)``, both (T,).

    ``t = alpha / beta`` is the maximiser, in ``[0, inf]``: ``inf`` when the supremum is the null-model
    limit ``alpha -> inf``, ``0`` when it is the exact-fit limit ``beta -> inf`` (see below). Shared
    with :func:`metrics.emms` (evidence-chosen ridge, ``ridge="auto"``).

    sigma (k,) eigenvalues, x2 (k, T) squared projections, outside (T,) energy of y outside the
    eigenbasis, N the number of observations (the dimension of the space y lives in).
    ``full_rank_dual``: the eigenvectors of the k (all positive) ``sigma`` span that whole space, so
    the exact-fit limit ``t -> 0`` is a finite candidate.
    Only ``t = alpha / beta`` is iterated: one fixed-point step is
    ``t <- gamma ||y - X m||^2 / ((N - gamma) ||m||^2)``; targets stop individually when the
    relative change of t is below ``tol`` or t leaves ``[T_LO * min sigma, T_HI * max sigma]``
    (the evidence is then increasing towards a boundary of the (alpha, beta) domain).

    The result is the largest of the profile evidence at the final t and the boundary limits:
    ``t -> inf`` (alpha -> inf, the null model m = 0) and, when X X^T has full rank N (only possible
    for N <= D), ``t -> 0`` (beta -> inf, y ~ N(0, X X^T / alpha)). Both limits are finite
    suprema of the evidence, so the maximum over the closure is the true maximum evidence.
    """
    T = x2.shape[1]
    # the evidence depends on sigma only through sigma / t: iterate in units where max sigma ~ 1 (an
    # exact power-of-four rescaling), so the result is invariant to the scale of X and nothing
    # overflows; t is returned in the caller's units
    unit = pow2_scale(sigma)
    sigma = sigma * unit
    s = sigma[:, None]
    positive = sigma[sigma > 0]
    if positive.size == 0:
        raise ValueError("features are identically zero: LogME is undefined")
    t_hi = T_HI * positive.max()
    t_lo = T_LO * positive.min()
    t_null = T_NULL * positive.max()
    y_sq = x2.sum(axis=0) + outside                 # ||y||^2
    sx2 = sigma @ x2                                 # sum_i sigma_i x_i^2
    sum_sigma = positive.sum()
    # start each target at the best point of a log grid over [t_lo, t_hi] (relative to the spectrum,
    # so scale-covariant): the profile evidence can have several local maxima when the eigenvalues
    # are far apart (e.g. features with a large common offset), and the reference's fixed start t = 1
    # depends on the units (it sent features of scale 1e-10 to the null limit)
    t = _grid_start(sigma, x2, outside, N, t_lo, t_hi)
    active = np.arange(T)
    n_boundary = 0
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        for _ in range(max_iter):
            ta = t[active]
            # w_i = 1 / (sigma_i + t): sigma_i / (sigma_i + t) = sigma_i w_i, t / (sigma_i + t) = t w_i;
            # the sums over i are matrix-vector products (few passes over the (k, T) arrays)
            w = 1.0 / (s + ta)
            gamma = sigma @ w                                                  # sum_i sigma_i w_i
            w *= w
            w *= x2[:, active] if active.size < T else x2                     # w_i^2 x_i^2
            m2 = sigma @ w                                                     # ||m||^2
            res2 = ta * ta * w.sum(axis=0) + outside[active]                   # ||y - X m||^2
            t_new = gamma * res2 / ((N - gamma) * m2)
            # far beyond the spectrum (sigma_i / t < 1 / T_NULL) the profile evidence is
            # L_inf + c / t + O(t^-2) with 2 c = N sum_i sigma_i x_i^2 / ||y||^2 - sum_i sigma_i:
            # for c < 0 it only increases towards the null-model limit t -> inf, which the fixed
            # point approaches ever more slowly (sub-linearly) -- stop there, the limit is a candidate
            heading_to_null = (ta > t_null) & (N * sx2[active] < y_sq[active] * sum_sigma)
            at_boundary = (~np.isfinite(t_new) | (t_new > t_hi) | (t_new < t_lo)
                           | (heading_to_null & (t_new > ta)))
            n_boundary += int(at_boundary.sum())
            t_new = np.where(np.isfinite(t_new), np.clip(t_new, t_lo, t_hi), t_hi)
            done = at_boundary | (np.abs(t_new - ta) <= tol * ta)
            t[active] = t_new
            active = active[~done]
            if active.size == 0:
                break
    if active.size:
        # very flat profiles (a maximum at t >> max sigma, barely above the null limit) make the
        # fixed point crawl: finish those few targets by a bounded 1-D maximisation over log t
        failed = 0
        for j in active:
            f = lambda lt: -_profile_evidence(np.array([np.exp(lt)]), sigma, x2[:, [j]], outside[[j]], N)[0]
            res = scipy.optimize.minimize_scalar(f, bounds=(np.log(t_lo), np.log(t_hi)), method="bounded",
                                                 options=dict(xatol=1e-10, maxiter=500))
            if res.success and -res.fun >= -f(np.log(t[j])):
                t[j] = np.exp(res.x)
            failed += not res.success
        if failed:
            warnings.warn(f"LogME evidence maximisation did not converge for {failed} of {T} target(s) in "
                          f"{max_iter} iterations (tol={tol:g})", ConvergenceWarning, stacklevel=3)
    log_2pi = np.log(2 * np.pi)
    candidates = [_profile_evidence(t, sigma, x2, outside, N)]
    candidates.append(0.5 * N * np.log(N / y_sq) - 0.5 * N - 0.5 * N * log_2pi)        # t -> inf
    if full_rank_dual:                                                                # t -> 0
        candidates.append(-0.5 * np.log(sigma).sum() + 0.5 * N * np.log(N / (x2 / s).sum(axis=0))
                          - 0.5 * N - 0.5 * N * log_2pi)
    candidates = np.array(candidates)
    # a candidate that is not finite (rounding at an extreme t, log of 0) is no maximum: never let
    # it win (np.argmax returns the first NaN) while a finite candidate -- the null-model limit
    # always is one for a non-zero target -- exists
    candidates[~np.isfinite(candidates)] = -np.inf
    best = np.argmax(candidates, axis=0)
    evidence = candidates[best, np.arange(T)]
    if not np.all(np.isfinite(evidence)):
        raise ValueError("LogME evidence is not finite (degenerate features or targets)")
    t_opt = np.choose(best, [t, np.full(T, np.inf), np.zeros(T)][:len(candidates)])
    return evidence / N, t_opt / unit


def _grid_start(sigma: np.ndarray, x2: np.ndarray, outside: np.ndarray, N: int, t_lo: float,
                t_hi: float) -> np.ndarray:
    """Per target (T,), the ``t`` of ``START_GRID_PER_DECADE`` log-spaced points in ``[t_lo, t_hi]``
    with the largest profile evidence (see :func:`_profile_evidence`): one (G, k) x (k, T) GEMM."""
    n_points = max(2, int(np.ceil(START_GRID_PER_DECADE * np.log10(t_hi / t_lo))) + 1)
    grid = np.geomspace(t_lo, t_hi, n_points)                         # (G,)
    ratio = grid[:, None] / (sigma[None, :] + grid[:, None])          # t / (sigma_i + t)  (G, k)
    logdet = np.log1p(sigma[None, :] / grid[:, None]).sum(axis=1)     # (G,)  target-independent
    with np.errstate(divide="ignore"):
        profile = -0.5 * logdet[:, None] - 0.5 * N * np.log(ratio @ x2 + outside)
    return grid[np.argmax(profile, axis=0)]


def _profile_evidence(t: np.ndarray, sigma: np.ndarray, x2: np.ndarray, outside: np.ndarray,
                      N: int) -> np.ndarray:
    """Evidence maximised over beta at fixed ``t = alpha / beta`` (not divided by N), shape (T,).

    With m depending on t only, the optimal ``beta = N / (||y - X m||^2 + t ||m||^2)`` and
    ``L = -1/2 sum_i log(1 + sigma_i / t) + N/2 log beta - N/2 - N/2 log 2 pi``; at the fixed point
    this beta equals MacKay's ``(N - gamma) / ||y - X m||^2``.
    """
    s = sigma[:, None]
    # ||y - X m||^2 + t ||m||^2 = sum_i x_i^2 (t^2 + t sigma_i) / (sigma_i + t)^2 + outside
    #                          = sum_i x_i^2 t / (sigma_i + t) + outside   (no overflow for large t)
    with np.errstate(divide="ignore", invalid="ignore"):
        beta = N / ((x2 * (t / (s + t))).sum(axis=0) + outside)
        return -0.5 * np.log1p(s / t).sum(axis=0) + 0.5 * N * np.log(beta) - 0.5 * N - 0.5 * N * np.log(2 * np.pi)
