"""EMMS: Efficient Multi-task Model Selector (Meng et al., "Foundation Model is Efficient Multimodal
Multitask Model Selector", NeurIPS 2023).

Inputs: features ``X`` (N, D) of one pre-trained model and K foundation-model label embeddings
``Y_k`` (N, E) stacked as ``Y`` (N, E, K). Every column of X and of each ``Y_k`` is z-scored
(population std; a column with std <= 1e-6 x the largest counts as constant and becomes 0 --
the published code adds 1e-8 to the std instead, see ``PreparedFeatures.zscore_scale``). Model: the true label embedding is a noisy linear
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

Ledoit-Wolf ridge, ``ridge="ledoit_wolf"`` (the registry name ``emms``, with ``standardise=False``).
With ``(a, mu)`` the Ledoit-Wolf shrinkage of ``S = X_s^T X_s / N`` (scikit-learn's estimator, cached on
:class:`PreparedFeatures` and shared with ``hscore_reg``) the ridge is ``lam = a mu / (1 - a)``, so
``X_s^T X_s + lam N I = N Sigma_LW / (1 - a)`` and the w-step is ``w = (1 - a) Sigma_LW^-1 cov(X_s, Y t)``:
regression with the Ledoit-Wolf covariance in place of the sample covariance. The ridge does not
depend on t (exact QP t-step). At N <= D the shrinkage is > 0, so the penalised residual is never the
degenerate 0; as N -> inf with anisotropic features ``a -> 0`` and the score tends to the paper's OLS
value. ``standardise=False`` (registry) only centres the feature columns: the OLS score does not depend
on column scales at all, only the ridge prior does, and z-scoring 1280 columns from a few dozen images
blows up near-constant ones (on the offline zoo with 5-10 images per class the z-scored variant ranks
models worse than chance; ``docs/metrics.md``). Out-of-sample variants: :func:`emms_cv` (exact LOO /
GCV residual of the ridge w-step, ridge minimising it).

Evidence-chosen ridge, ``ridge="auto"`` (the registry name ``emms_evidence``; ``emms`` before the
Ledoit-Wolf estimator). The ridge is not a
free constant but the one chosen by Bayesian evidence maximisation in LogME's model: every z-scored
label-embedding column ``y_j`` (j = 1..T, T = E K) is ``X m_j + noise`` with ``m_j ~ N(0, alpha^-1 I_D)``
and noise ``N(0, beta^-1)``, whose posterior mean is the ridge solution with penalty
``(alpha / beta) ||m||^2``. ONE pair (alpha, beta) per call maximises the pooled log evidence
``sum_j log p(y_j | alpha, beta)`` of all T columns. Pooling keeps the ridge independent of the
simplex weights t, so the t-step remains the exact convex QP above (a per-column or per-``Y t``
ridge would make the penalised objective non-quadratic in t). With ``sigma_i`` the eigenvalues of
``X^T X`` (D x D, one eigendecomposition; never an N x N matrix), ``V`` its eigenvectors and
``x2_i = sum_j (v_i^T X^T y_j)^2 / sigma_i`` (one GEMM ``V^T B``; N x N side when N <= D), the pooled evidence at
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

Cost, N > D: ``X^T X`` (N D^2), ``X^T Y`` (N D E K), a pivoted Cholesky of the D x D Gram matrix
(D^3/3) and one triangular solve (D^2 E K); no N x N matrix. ``ridge="auto"`` adds one D x D
eigendecomposition and one GEMM ``V^T B`` (D^2 E K) for the evidence, then the fixed-ridge Cholesky
route (D^3/3 + 2 D^2 E K); ``"ledoit_wolf"`` adds O(D^2) for the shrinkage.
N <= D (every ridge mode): the N x N side, no D x D matrix -- ``X_s X_s^T`` (N^2 D), its
eigendecomposition (N^3) and ``U^T Y`` from the distinct label rows (N^2 + N U E K); the hat matrix is
``S = U diag(f) U^T`` (:func:`_dual_gram_terms`). 20 x 5000: milliseconds instead of ~20 s.
"""
from __future__ import annotations

import numpy as np
import scipy.linalg
import scipy.optimize

from ._linalg import class_sums, project_simplex, simplex_qp
from ._prepared import PreparedFeatures, PreparedLabelEmbeddings, prepare_label_embeddings
from ._validation import DegenerateInputError, check_positive
from .logme import maximise_evidence
from ._backend import accepts_backend, prepare_on, to_host
from .registry import register_metric

__all__ = ["emms", "emms_cv", "emms_default", "emms_auto", "emms_ols", "emms_onestep"]

#: relative pivot tolerance of the pivoted Cholesky factorisation (numerical rank of X^T X)
RANK_RTOL = 1e-10

#: ``ridge`` value selecting the evidence-maximising ridge
RIDGE_AUTO = "auto"
#: ``ridge`` value selecting the Ledoit-Wolf ridge
RIDGE_LEDOIT_WOLF = "ledoit_wolf"

#: convergence of the evidence fixed point for ``ridge="auto"`` (relative change of alpha / beta)
EVIDENCE_TOL = 1e-10
EVIDENCE_MAX_ITER = 10_000


@accepts_backend
def emms(features, label_embeddings, *, max_iter: int = 100, tol: float = 1e-10,
         ridge: float | str | None = None, standardise: bool = True, return_weights: bool = False,
         backend=None, device=None):
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
    ridge : None, float, "auto" or "ledoit_wolf"
        None (default, the paper): ordinary least squares; ``ValueError`` if the fit is exact
        (rank(X) >= N - 1). ``lam > 0``: ridge w-step with penalty ``lam * N * ||w||^2``.
        ``"auto"``: ``lam`` chosen by maximising the pooled Bayesian evidence of all E K label-embedding
        columns (registry name ``emms_evidence``). ``"ledoit_wolf"``: ``lam = a mu / (1 - a)`` from the
        Ledoit-Wolf shrinkage ``(a, mu)`` of the covariance of the (scaled) features, i.e. the w-step
        is regression with the Ledoit-Wolf covariance (registry ``emms``, with ``standardise=False``).
        Both are defined for any N, D (module docstring).
    standardise : bool
        True (the paper): z-score every feature column. False: only centre them (the ridge prior is
        then on the features' own scale; the OLS score does not depend on column scales at all).
    return_weights : bool
        Also return the simplex weights ``t`` (K,) -- and, with a string ``ridge``, the chosen ridge
        ``lam`` (float in ``[0, inf]``, same convention as a fixed ``ridge``).
    backend, device
        Where the Gram matrix / spectrum of X and the projections ``X^T Y`` are computed (``"numpy"``
        default, ``"torch"`` on ``device``; :mod:`metrics._backend`); the K x K QP stays numpy.

    Returns
    -------
    float; with ``return_weights=True`` ``(float, ndarray (K,))``, or ``(float, ndarray (K,), float)``
    when ``ridge`` is a string.
    """
    F = prepare_on(features, backend, device)
    Y = prepare_label_embeddings(to_host(label_embeddings), F.n_samples)
    max_iter = check_positive(max_iter, "max_iter", integer=True)
    tol = check_positive(tol, "tol")
    auto = isinstance(ridge, str)
    if auto and ridge not in (RIDGE_AUTO, RIDGE_LEDOIT_WOLF):
        raise ValueError(f"ridge must be None, a positive number, {RIDGE_AUTO!r} or {RIDGE_LEDOIT_WOLF!r}, "
                         f"got {ridge!r}")
    if not auto:
        ridge = check_positive(ridge, "ridge", allow_none=True)
    N, E, K = Y.shape

    H, G, Q, Q_fit, ridge = _gram_terms(_Design(F, standardise), Y.zscored(), ridge)
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
        # slack: tol relative, and at least the rounding of t^T G t (G = H - Q cancels: ~eps trace H);
        # an almost exact fit otherwise failed on rounding noise (1.9626e-15 < 1.9659e-15)
        if rss_next < rss - max(tol * rss, 1e-12 * float(np.trace(H))):
            raise RuntimeError(f"EMMS alternation is not at a fixed point: {rss_next!r} < {rss!r}")
    score = -max(rss, 0.0) / (N * E)
    if not return_weights:
        return score
    return (score, t, ridge) if auto else (score, t)


@accepts_backend
def emms_cv(features, label_embeddings, *, cv: str = "gcv", standardise: bool = True,
            return_weights: bool = False, backend=None, device=None):
    """Out-of-sample EMMS: ``- min_{lam >= 0, t in simplex} CV(lam, t) / E`` (higher is better).

    ``CV(lam, t)`` is the mean squared leave-one-out prediction error per sample of the ridge w-step
    (penalty ``lam ||w||^2``, unpenalised intercept) fitted to the weighted label embedding ``Y t``
    (label-embedding columns z-scored, feature columns z-scored or, if not ``standardise``, centred,
    as in :func:`emms`): ``cv="loo"`` the exact LOO error
    ``(1/N) sum_i ||e_i||^2 / (1 - h_ii)^2`` (``e = (I - S) Y t``, ``S`` the hat matrix incl. the
    intercept), ``cv="gcv"`` (default) its rotation-invariant form, generalised cross-validation
    ``N ||e||^2 / (N - 1 - df)^2`` with ``df = tr S - 1``. For every ``lam`` both are convex quadratics
    ``t^T G(lam) t`` (the t-step is the exact simplex QP); ``lam`` is minimised over a log grid with
    the limits 0 (the min-norm interpolating fit, whose LOO error is finite) and inf (w = 0), then
    refined by a bounded scalar search. An interpolating fit does not drive it to 0, so the score
    stays discriminative when N <= D. Formulas and cost: module docstring, ``docs/metrics.md``.

    Returns the score; with ``return_weights`` ``(score, t (K,), ridge)`` with ``ridge = lam / N``
    (the convention of :func:`emms`; ``inf`` = no fit). ``backend`` / ``device`` as :func:`emms`.
    """
    F = prepare_on(features, backend, device)
    Y = prepare_label_embeddings(to_host(label_embeddings), F.n_samples)
    if cv not in CV_CRITERIA:
        raise ValueError(f"cv must be one of {sorted(CV_CRITERIA)}, got {cv!r}")
    N, E, K = Y.shape
    if N < 3:
        raise ValueError(f"emms_cv needs at least 3 samples (leave-one-out with an intercept), got {N}")
    spec = _Spectrum(_Design(F, standardise), Y.zscored())
    crit = CV_CRITERIA[cv](spec, N)
    value, t, lam = _minimise_over_ridge(crit, spec)
    score = -max(value, 0.0) / E
    return (score, t, lam / N) if return_weights else score


class _GCV:
    """``CV(lam) = G(lam)`` (K, K) with ``t^T G t`` the GCV error ``N ||(I - S) Y t||^2 / (N-1-df)^2``.

    ``g_i = lam / (sigma_i + lam)``: ``||(I - S) Y t||^2 = t^T (sum_i g_i^2 C_i + C_out) t`` and
    ``N - 1 - df = (N - 1 - r) + sum_i g_i``. When ``rank = N - 1`` (``C_out = 0``) both are divided
    by ``lam``, i.e. ``h_i = 1 / (sigma_i + lam)``, which is finite at ``lam = 0``. O(r K^2) per lam.
    """

    def __init__(self, spec: "_Spectrum", N: int):
        self.spec, self.N, self.m = spec, N, N - 1 - spec.rank

    def __call__(self, lam: float) -> np.ndarray:
        sp = self.spec
        if lam == np.inf:
            return self.N * sp.H / (self.N - 1) ** 2
        if self.m == 0:
            h = 1.0 / (sp.sigma + lam)
            return self.N * np.einsum("i,ikl->kl", h * h, sp.blocks) / h.sum() ** 2
        g = lam / (sp.sigma + lam)
        return self.N * (np.einsum("i,ikl->kl", g * g, sp.blocks) + sp.outside) / (self.m + g.sum()) ** 2


class _LOO:
    """``CV(lam) = G(lam)`` (K, K) with ``t^T G t`` the exact LOO error ``(1/N) sum_j ||e_j||^2 / (1 - h_jj)^2``.

    With the left singular vectors ``U`` (N, r), ``z = U^T Y`` (r, E K) and ``Y_out = Y - U z``:
    ``e = U diag(g) z + Y_out``, ``1 - h_jj = o_j + sum_i U_ji^2 g_i`` with ``o_j = 1 - 1/N - ||U_j||^2``
    (the leverage outside the span, exactly 0 when rank = N - 1; the intercept's leverage is 1/N).
    When rank = N - 1 both are divided by ``lam`` (``h_i = 1 / (sigma_i + lam)``): finite at 0, the
    LOO error of the min-norm interpolating fit. Residuals from the distinct label rows:
    ``e = A R`` with ``A = U diag(g) (U^T P) + (P - U U^T P)`` (N, U_rows). O(N r U_rows) per lam.
    """

    def __init__(self, spec: "_Spectrum", N: int):
        self.spec, self.N = spec, N
        Ys = spec.Ys
        self.R = Ys.rows.reshape(Ys.rows.shape[0], -1)              # (U_rows, E K)
        U = spec.left_vectors()                                      # (N, r)
        n_rows = self.R.shape[0]
        if Ys.grouped:
            P = np.zeros((N, n_rows))
            P[np.arange(N), Ys.index] = 1.0
        else:
            P = np.eye(N)
        self.U, self.W = U, U.T @ P                                  # (N, r), (r, U_rows)
        self.U2 = U * U
        if spec.spans:
            self.base, self.lev_out = np.zeros_like(P), np.zeros(N)
        else:
            self.base = P - U @ self.W                               # Y_out = base R
            self.lev_out = np.maximum(1.0 - 1.0 / N - self.U2.sum(axis=1), 0.0)

    def __call__(self, lam: float) -> np.ndarray:
        sp = self.spec
        if lam == np.inf:
            return self._from(np.ones_like(sp.sigma), 1.0)          # e = Y, 1 - h_jj = 1 - 1/N
        if sp.spans:
            h = 1.0 / (sp.sigma + lam)
            return self._from(h, 0.0)
        return self._from(lam / (sp.sigma + lam), 1.0)

    def _from(self, g: np.ndarray, out_weight: float) -> np.ndarray:
        A = (self.U * g) @ self.W + out_weight * self.base          # e = A R
        denom = out_weight * self.lev_out + self.U2 @ g              # 1 - h_jj (times 1 / lam if spans)
        Ad = A / denom[:, None]
        M = Ad.T @ Ad                                                # (U_rows, U_rows)
        K = self.spec.K
        MR = M @ self.R
        return np.einsum("uk,ul->kl", self.R.reshape(-1, K), MR.reshape(-1, K)) / self.N


CV_CRITERIA = {"gcv": _GCV, "loo": _LOO}

#: log10 of the ridge grid relative to the largest eigenvalue, and its number of points
RIDGE_GRID_LOG10 = (-10.0, 4.0)
RIDGE_GRID_POINTS = 57


def _minimise_over_ridge(crit, spec: "_Spectrum") -> tuple[float, np.ndarray, float]:
    """``min_{lam in [0, inf]} min_{t in simplex} t^T crit(lam) t``: ``(value, t, lam)``.

    Grid of ``RIDGE_GRID_POINTS`` log-spaced ``lam / sigma_max`` plus the limits 0 and inf, then a
    bounded scalar search in ``log lam`` between the neighbours of the best interior grid point.
    """
    K = spec.K

    def solve(lam):
        G = crit(lam)
        G = 0.5 * (G + G.T)
        t = np.ones(1) if K == 1 else simplex_qp(G)
        return float(t @ G @ t), t

    if spec.rank == 0:                                     # constant features: only w = 0
        v, t = solve(np.inf)
        return v, t, np.inf
    scale = float(spec.sigma.max())
    logs = np.linspace(*RIDGE_GRID_LOG10, RIDGE_GRID_POINTS)
    lams = [0.0] + list(scale * 10.0 ** logs) + [np.inf]
    vals = [solve(lam) for lam in lams]
    best = int(np.argmin([v for v, _ in vals]))
    if 0 < best < len(lams) - 1:
        lo, hi = np.log(lams[max(best - 1, 1)]), np.log(lams[min(best + 1, len(lams) - 2)])
        res = scipy.optimize.minimize_scalar(lambda x: solve(np.exp(x))[0], bounds=(lo, hi), method="bounded",
                                             options=dict(xatol=1e-8))
        if res.fun < vals[best][0]:
            lam = float(np.exp(res.x))
            v, t = solve(lam)
            return v, t, lam
    v, t = vals[best]
    return v, t, lams[best]


@register_metric("emms", requires=("features", "label_embeddings"))
@accepts_backend
def emms_default(features, label_embeddings, *, backend=None, device=None) -> float:
    """Registry ``emms``: converged EMMS whose w-step is regression with the Ledoit-Wolf covariance of
    the centred features, ``emms(..., ridge="ledoit_wolf", standardise=False)``.

    Never the degenerate 0 of an exact fit when N <= D (the shrinkage is > 0 there), and -> the
    paper's :func:`emms_ols` as N -> inf for anisotropic features (the shrinkage -> 0); see
    ``docs/metrics.md`` for the small-sample study that chose it.
    """
    return emms(features, label_embeddings, ridge=RIDGE_LEDOIT_WOLF, standardise=False, backend=backend, device=device)


@register_metric("emms_evidence", requires=("features", "label_embeddings"))
@accepts_backend
def emms_auto(features, label_embeddings, *, backend=None, device=None) -> float:
    """Registry ``emms_evidence``: converged EMMS with the evidence-chosen ridge, ``emms(..., ridge="auto")``
    (the registry's ``emms`` before the out-of-sample estimator; its in-sample residual is 0 when the
    evidence prefers the interpolating fit, which happens at N <= D).

    Defined for every N, D with one rule for all models of a dataset, so scores stay comparable
    whether D < N or D >= N; for N >> D it is close to :func:`emms_ols`.
    """
    return emms(features, label_embeddings, ridge=RIDGE_AUTO, backend=backend, device=device)


@register_metric("emms_ols", requires=("features", "label_embeddings"))
@accepts_backend
def emms_ols(features, label_embeddings, *, backend=None, device=None) -> float:
    """Registry ``emms_ols``: the paper's unregularised converged EMMS, ``emms(...)`` (``ValueError``
    when rank(X) >= N - 1, where it is identically 0)."""
    return emms(features, label_embeddings, backend=backend, device=device)


@register_metric("emms_onestep", requires=("features", "label_embeddings"))
@accepts_backend
def emms_onestep(features, label_embeddings, *, backend=None, device=None) -> float:
    """The published one-sweep EMMS value, ``emms(..., max_iter=1)`` (= published figure / E^2)."""
    return emms(features, label_embeddings, max_iter=1, backend=backend, device=device)


def _gram_terms(Xd: "_Design", Ys: PreparedLabelEmbeddings, ridge: float | str | None):
    """K x K matrices ``H = <Y_k, Y_l>``, ``Q = Y_k^T S Y_l``, ``Q_fit = Y_k^T S^2 Y_l``, and the ridge.

    ``Xd`` the features (z-scored ``X_s = (X - mean) / zscore_scale()`` or centred), ``Ys`` the z-scored label
    embeddings. ``S = X_s (X_s^T X_s + lam I)^+ X_s^T`` is the hat matrix of the w-step
    (``lam = ridge * N`` or 0), so ``min_w ||X_s w - Y t||^2 (+ lam ||w||^2) = t^T (H - Q) t`` and
    ``||X_s w(t0)||^2 = t0^T Q_fit t0``. ``ridge="auto"`` is first resolved by :func:`_evidence_ridge`
    and ``"ledoit_wolf"`` by :func:`_ledoit_wolf_ridge` (returned as the 5th element; the given ``ridge``
    otherwise); the limits ``inf`` (S = 0) and ``0`` with rank(X) = N - 1 (S Y = Y, exact fit) are
    returned directly. The first returned matrix after H is the residual ``G = H - Q``.
    """
    if ridge == RIDGE_LEDOIT_WOLF:
        ridge = _ledoit_wolf_ridge(Xd)
        if ridge == np.inf:
            H = Ys.embedding_gram()
            zero = np.zeros_like(H)
            return H, H, zero, zero, ridge
        if ridge == 0.0:                 # no shrinkage (a = 0): the OLS w-step (raises if exact)
            return _gram_terms(Xd, Ys, None)[:4] + (0.0,)
    F = Xd.F
    if F.side == "dual":
        return _dual_gram_terms(Xd, Ys, ridge)
    N, E, K = Ys.shape
    H = Ys.embedding_gram()
    A = Xd.gram()                                               # (D, D) X_s^T X_s, read-only (shared)
    B = _CrossProduct(Xd, Ys)                                   # X_s^T Y (D, E K), possibly factored
    D = A.shape[0]
    if ridge == RIDGE_AUTO:
        ridge = _evidence_ridge(Xd, B, float(np.trace(H)), N)
        if ridge in (0.0, np.inf):
            return _boundary_terms(H, ridge)
    if ridge is None:
        # pivoted Cholesky  P^T A P = L L^T  with numerical rank r; B lies in range(A), so
        # B^T A^+ B = C^T C  with  C = L_11^-1 (P^T B)[:r]
        L, piv, rank, _ = scipy.linalg.lapack.dpstrf(A, lower=1, tol=RANK_RTOL * float(np.max(np.diag(A))))
        if rank >= N - 1:
            raise _degenerate_ols(Xd.what, rank, N, D)
        C = scipy.linalg.solve_triangular(np.tril(L[:rank, :rank]), B.left[piv[:rank] - 1], lower=True,
                                          check_finite=False)
        Q = B.block_gram(C)
        return H, H - Q, Q, Q, ridge
    lam = ridge * N
    A = A + lam * np.eye(D)
    L = scipy.linalg.cholesky(A, lower=True, overwrite_a=True, check_finite=False)
    C = scipy.linalg.solve_triangular(L, B.left, lower=True, check_finite=False)
    Q = B.block_gram(C)
    # S^2 = S - lam X M^2 X^T with M = (X^T X + lam I)^-1:  Y^T X M^2 X^T Y = ||L^-T C||^2 blockwise
    M_B = scipy.linalg.solve_triangular(L, C, lower=True, trans="T", check_finite=False)
    return H, H - Q, Q, Q - lam * B.block_gram(M_B), ridge


def _boundary_terms(H: np.ndarray, ridge: float):
    """:func:`_gram_terms` at the evidence's boundaries: ``ridge = inf`` (w = 0: the residual is Y
    itself) and ``ridge = 0`` (exact interpolation: no residual)."""
    zero = np.zeros_like(H)
    if ridge == np.inf:
        return H, H, zero, zero, ridge
    return H, zero, H, H, ridge


def _degenerate_ols(what: str, rank: int, N: int, D: int) -> DegenerateInputError:
    """The error of the unregularised w-step when the features interpolate (rank >= N - 1)."""
    return DegenerateInputError(
        f"EMMS is degenerate: the {what} features have rank {rank} >= N - 1 = {N - 1} (D={D}), so the "
        "least-squares fit of every label embedding is exact and the score is 0 for every model. Use "
        "more samples than feature dimensions, reduce D (e.g. PCA), or pass ridge=<lam> for a "
        "ridge-regularised w-step.")


def _dual_gram_terms(Xd: "_Design", Ys: PreparedLabelEmbeddings, ridge: float | str | None):
    """:func:`_gram_terms` for N <= D on the N x N side (no D x D matrix).

    With ``X_s X_s^T = U diag(sigma) U^T`` (N, N) and the per-direction block Gram matrices
    ``C_i = sum_e z_{i,e,:} z_{i,e,:}^T`` (K, K) of ``z = U^T Y`` (N, E, K), the hat matrix is
    ``S = U diag(f) U^T`` with ``f_i = sigma_i / (sigma_i + lam)`` (OLS: 1 on the numerical rank,
    0 elsewhere), so ``Q = sum_i f_i C_i``, ``Q_fit = sum_i f_i^2 C_i`` and the residual
    ``G = sum_i (1 - f_i) C_i`` is summed directly (no cancellation in ``H - Q``).
    Cost ``N^2 D`` (Gram) + ``N^3`` (eigh) + ``N U E K`` (projections).
    """
    N, E, K = Ys.shape
    H = Ys.embedding_gram()
    spec = _Spectrum(Xd, Ys)
    sigma, C = spec.sigma_all, spec.blocks_all
    if ridge == RIDGE_AUTO:
        ridge = _evidence_ridge_from_spectrum(spec, N)
        if ridge in (0.0, np.inf):
            return _boundary_terms(H, ridge)
    if ridge is None:
        fitted = sigma > RANK_RTOL * Xd.max_column_sq()
        rank = int(fitted.sum())
        if rank >= N - 1:
            raise _degenerate_ols(Xd.what, rank, N, Xd.F.n_dims)
        Q = np.einsum("i,ikl->kl", fitted.astype(np.float64), C)
        return H, np.einsum("i,ikl->kl", (~fitted).astype(np.float64), C), Q, Q, ridge
    lam = ridge * N
    f = sigma / (sigma + lam)
    Q = np.einsum("i,ikl->kl", f, C)
    return H, np.einsum("i,ikl->kl", lam / (sigma + lam), C), Q, np.einsum("i,ikl->kl", f * f, C), ridge


class _Design:
    """The design matrix of the w-step: z-scored feature columns (``standardise``, the paper) or
    centred ones, with its Gram matrix / spectrum taken from the (cached) :class:`PreparedFeatures`."""

    def __init__(self, F: PreparedFeatures, standardise: bool):
        if not isinstance(standardise, (bool, np.bool_)):
            raise ValueError(f"standardise must be True or False, got {standardise!r}")
        self.F, self.standardise = F, bool(standardise)
        self.what = "z-scored" if standardise else "centred"

    def scale(self) -> np.ndarray | None:
        """Column divisors (D,) (``PreparedFeatures.zscore_scale``), or None (centred only)."""
        return self.F.zscore_scale() if self.standardise else None

    def gram(self) -> np.ndarray:
        return self.F.standardised_gram() if self.standardise else self.F.centred_gram()

    def spectrum(self) -> tuple[np.ndarray, np.ndarray, str]:
        return self.F.standardised_spectrum() if self.standardise else self.F.centred_spectrum()

    def matrix(self) -> np.ndarray:
        return self.F.zscored() if self.standardise else self.F.centred()

    def max_column_sq(self) -> float:
        """``max_j ||x_j||^2`` over the columns of the design matrix (the Gram diagonal)."""
        F = self.F
        ratio = F.std() / F.zscore_scale() if self.standardise else F.std()
        return float(np.max(F.n_samples * ratio ** 2))


def _ledoit_wolf_ridge(Xd: _Design) -> float:
    """``a mu / (1 - a)`` (in the convention penalty ``ridge * N * ||w||^2``) from the Ledoit-Wolf
    shrinkage ``(a, mu)`` of ``S = X_s^T X_s / N``: then ``X_s^T X_s + ridge N I = N Sigma_LW / (1 - a)``
    with ``Sigma_LW = (1 - a) S + a mu I``. ``inf`` when ``a = 1`` (w = 0), ``0`` when ``a = 0``."""
    a, mu = Xd.F.ledoit_wolf(standardised=Xd.standardise)
    if a >= 1.0:
        return np.inf
    return float(a * mu / (1.0 - a))


class _Spectrum:
    """The label embeddings in the left singular basis of the z-scored features (either side).

    ``sigma`` (r,) the positive eigenvalues of ``X_s^T X_s``, ``blocks`` (r, K, K) the block Gram
    matrices ``C_i = sum_e z_{i,e,:} z_{i,e,:}^T`` of the projections ``z_i = u_i^T Y_s`` (E, K) on the
    left singular vectors ``u_i = X_s v_i / sqrt(sigma_i)``, ``outside`` (K, K) the block Gram of the
    part of ``Y_s`` outside their span (exactly 0 when ``rank = N - 1``: the span is then the whole
    centred space, ``spans``), ``H`` (K, K) ``<Y_k, Y_l>``. Dual side (N <= D) also: ``sigma_all``,
    ``blocks_all`` over all N eigenvectors of ``X_s X_s^T`` (zeros included) and ``U`` (N, N).
    """

    def __init__(self, Xd: "_Design", Ys: PreparedLabelEmbeddings):
        N, self.E, self.K = Ys.shape
        self.Xd, self.Ys = Xd, Ys
        self.H = Ys.embedding_gram()
        sigma, vecs, side = Xd.spectrum()
        self.side = side
        positive = sigma > 0
        self.rank = int(positive.sum())
        self.spans = self.rank >= N - 1
        if side == "dual":
            Z = self._left_projections(vecs)                        # (N, E K) = U^T Y_s
            self.U = vecs
            self.sigma_all = sigma
            self.blocks_all = _per_row_block_gram(Z, self.E, self.K)
            self.sigma, self.blocks = sigma[positive], self.blocks_all[positive]
            self.Z = Z[positive]
            self.outside = (np.zeros_like(self.H) if self.spans
                            else self.blocks_all[~positive].sum(axis=0))
        else:
            self.sigma = sigma[positive]
            Vp = vecs[:, positive]
            B = _CrossProduct(Xd, Ys)
            VB = Vp.T @ B.left
            self.Z = (VB if B.R is None else VB @ B.R) / np.sqrt(self.sigma)[:, None]   # (r, E K)
            self.blocks = _per_row_block_gram(self.Z, self.E, self.K)
            self.outside = (np.zeros_like(self.H) if self.spans
                            else self.H - self.blocks.sum(axis=0))
            self._Vp = Vp

    def _left_projections(self, U: np.ndarray) -> np.ndarray:
        """``U^T Y_s`` (n, E K) for ``U`` (N, n), from the distinct rows when grouped."""
        Ys = self.Ys
        R = Ys.rows.reshape(Ys.rows.shape[0], -1)
        if Ys.grouped:
            return class_sums(U, Ys.index, R.shape[0]).T @ R
        return U.T @ R

    def left_vectors(self) -> np.ndarray:
        """``u_i`` (N, r) for the positive ``sigma_i`` (primal side: ``X_s V / sqrt(sigma)``, N D r)."""
        if self.side == "dual":
            return self.U[:, self.sigma_all > 0]
        return (self.Xd.matrix() @ self._Vp) / np.sqrt(self.sigma)

    def x2(self) -> np.ndarray:
        """Pooled squared projections ``sum_{e,k} z_{i,e,k}^2`` (r,)."""
        return np.einsum("ikk->i", self.blocks)


def _per_row_block_gram(Z: np.ndarray, E: int, K: int) -> np.ndarray:
    """``C_i = sum_e Z[i, e, :] Z[i, e, :]^T`` (n, K, K) for ``Z`` (n, E K) laid out as (n, E, K)."""
    Zr = Z.reshape(Z.shape[0], E, K)
    return np.einsum("iek,iel->ikl", Zr, Zr)


class _CrossProduct:
    """``B = X_s^T Y_s`` (D, E K) of the z-scored features and label embeddings, kept factored as
    ``B = left @ R`` when the label embeddings have U < E K distinct rows: ``left = X_s^T P`` (D, U)
    (group sums, P the N x U group indicator) and ``R`` (U, E K) the distinct rows. Every use of B
    here is ``block_gram(T B)`` for a linear map T, and ``(T left) R`` only needs U-column solves and
    U x U products. Otherwise ``left = B`` and ``R = None`` (identity)."""

    def __init__(self, Xd: "_Design", Ys: PreparedLabelEmbeddings):
        _, self.E, self.K = Ys.shape
        U = Ys.rows.shape[0]
        F, scale = Xd.F, Xd.scale()
        if Ys.grouped and U < self.E * self.K:
            self.left = F.group_sums(Ys.index, U, centred=True).T
            if scale is not None:
                self.left /= scale[:, None]
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


def _evidence_ridge(Xd: "_Design", B: _CrossProduct, y_sq: float, N: int) -> float:
    """Ridge (penalty ``ridge * N * ||w||^2``) maximising the pooled evidence of the label columns.

    ``A = X_s^T X_s`` (D, D) of the z-scored features (its eigendecomposition
    ``A = V diag(sigma) V^T`` is cached on ``F``), ``B = X_s^T Y`` (D, T) of the z-scored data,
    ``y_sq = ||Y||_F^2``. Pooled squared projections ``x2_i = sum_j (V^T B)_ij^2 / sigma_i`` over the
    positive eigenvalues, energy outside the column space ``y_sq - sum_i x2_i`` (exactly 0 when
    rank(X) = N - 1, the whole centred space), and LogME's fixed point on this single pooled target
    with ``N - 1`` observations. Returns ``(alpha / beta) / N`` in ``[0, inf]``.
    """
    n_obs = N - 1                      # centred columns: the complement of the all-ones vector
    sigma, V, _ = Xd.spectrum()
    positive = sigma > 0
    rank = int(positive.sum())
    if rank == 0:                      # constant features: nothing to fit, the null model
        return np.inf
    sigma = sigma[positive]
    x2 = B.row_sq_norms(V[:, positive].T) / sigma     # v_i^T X^T y_j = sqrt(sigma_i) u_i^T y_j
    spans = rank >= n_obs
    outside = 0.0 if spans else max(y_sq - float(x2.sum()), 0.0)
    return _pooled_evidence_ridge(sigma, x2, outside, spans, N)


def _evidence_ridge_from_spectrum(spec: "_Spectrum", N: int) -> float:
    """:func:`_evidence_ridge` from a :class:`_Spectrum` (the N x N side)."""
    if spec.rank == 0:
        return np.inf
    outside = 0.0 if spec.spans else float(np.trace(spec.outside))
    return _pooled_evidence_ridge(spec.sigma, spec.x2(), outside, spec.spans, N)


def _pooled_evidence_ridge(sigma: np.ndarray, x2: np.ndarray, outside: float, spans: bool, N: int) -> float:
    """LogME's fixed point on the pooled target (``N - 1`` observations); ``(alpha / beta) / N``."""
    _, t = maximise_evidence(sigma, x2[:, None], np.array([outside]), N - 1, tol=EVIDENCE_TOL,
                             max_iter=EVIDENCE_MAX_ITER, full_rank_dual=spans)
    return float(t[0]) / N


def _block_gram(C: np.ndarray, E: int, K: int) -> np.ndarray:
    """``sum_{rows, e} C[:, e, k] C[:, e, l]`` for ``C`` (r, E K) laid out as (r, E, K) -> (K, K)."""
    Cv = C.reshape(-1, K)
    return Cv.T @ Cv
