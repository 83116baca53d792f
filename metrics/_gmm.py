"""Exact, fast full-covariance Gaussian-mixture EM (the GMM of NLEEP, Li et al., CVPR 2021).

:func:`gmm_posteriors` returns the posteriors that scikit-learn's ::

    GaussianMixture(n_components=K, covariance_type="full", tol=tol, reg_covar=reg_covar,
                    max_iter=max_iter, random_state=random_state).fit(Z).predict_proba(Z)

returns (scikit-learn 1.9.1, ``n_init=1``, ``init_params="kmeans"``), computed by the same algorithm
with the same floating-point formulas, only organised so that the work scales with the number of
(sample, component) pairs that matter instead of ``N * K * d^2``. Results agree with scikit-learn to
rounding (max abs posterior difference ~1e-15 on well-conditioned fits; see ``tests/test_gmm.py``).

Algorithm (Z: (N, d) samples z_i; K components; r: (N, K) responsibilities)::

    init     labels = KMeans(K, n_init=1, random_state=check_random_state(random_state)).fit(Z)
             r[i, k] = [labels_i == k]; M-step with weights w_k = n_k / N
    repeat   E-step: log p(z_i, k) = log w_k + log N(z_i; mu_k, S_k),   L_i = logsumexp_k(...)
             M-step on r[i, k] = exp(log p(z_i, k) - L_i):
                 n_k  = sum_i r_ik + 10 eps                      (K,)
                 mu_k = sum_i r_ik z_i / n_k                      (K, d)
                 S_k  = sum_i r_ik (z_i - mu_k)(z_i - mu_k)^T / n_k + reg_covar I      (K, d, d)
                 w_k  = n_k / sum_k n_k
             until |mean_i L_i - previous mean| < tol (ConvergenceWarning after max_iter steps)
    output   one final E-step: posteriors r (N, K)

Gaussian log-densities use the Cholesky factor of the precision, ``P_k = L_k^{-T}`` with
``S_k = L_k L_k^T`` (``P_k P_k^T = S_k^{-1}``): ``log N(z; mu_k, S_k) = -(d log 2 pi + ||P_k^T z -
P_k^T mu_k||^2) / 2 + sum_j log (P_k)_jj``. A covariance that is not positive definite raises the
same ``ValueError`` as scikit-learn (advice: fewer components, larger ``reg_covar``, scaled data).

Where the time goes, and what is done instead (N samples, K components, d dims, s_k = number of
samples with non-zero responsibility for component k; NLEEP has K = 5 C, i.e. 2-20 samples per
component, and there almost every r_ik is exactly 0.0 in float64):

* M-step. scikit-learn forms every S_k from all N rows (O(N K d^2)). A row with r_ik == 0.0
  contributes exactly nothing, so S_k is built from its s_k non-zero rows only: O(sum_k s_k d^2).
* E-step. scikit-learn runs one N x d x d GEMM per component (O(N K d^2)). Here an upper bound on
  every log p(z_i, k) costs O(N K d) (one GEMM for the Euclidean distances plus one against a basis
  of each low-rank component's span); a pair whose bound lies more than ``UNDERFLOW_MARGIN`` (800)
  nats below the sample's best exact log-probability has ``r_ik = exp(< -745) = 0.0`` exactly in
  float64 -- the value the full computation would produce -- so only the remaining pairs are
  evaluated exactly (O(pairs d^2)). It also contributes exactly 0 to scikit-learn's logsumexp.

  The bound: split S_k = A + B + reg I where A is the scatter of the s'_k "significant" rows and B
  that of the rows whose total contribution tr(B) = delta_k is below ``1e-3 reg``. Let Q_k (d, s'_k)
  be an orthonormal basis of span{z_i - mu_k: i significant}, c_k = reg + delta_k (+ a rounding
  allowance) and t_k = tr(S_k) >= lambda_max. Then S_k <= A + c_k I and, for v = z - mu_k::

      v^T S_k^{-1} v >= ||v||^2 / t_k + (1/c_k - 1/t_k) (||v||^2 - ||Q_k^T v||^2)

  (the second term is used only when s'_k <= d/2, so the projection costs at most half of an exact
  evaluation). With few samples per component S_k is rank-deficient up to reg = 1e-6, so a sample
  outside the component's affine span is >> 1600 Mahalanobis units away and is pruned. When a
  float64 E-step keeps more than half of all pairs (well-populated components) the next E-steps use
  the dense path; float32 input always uses it (the bound needs float64 cancellation accuracy).
  The dense path batches components in one GEMM, ``Z @ [P_1 ... P_b]``, with bounded temporaries.

Every array is float64, or float32 for float32 input (computed in float32, as scikit-learn does).
The caller is expected to limit BLAS threads (NLEEP wraps it in ``threadpool_limits(1)``).
Memory: the (K, d, d) precision factors, a few (N, K) arrays and O(``CHUNK_ELEMENTS``) temporaries;
no N x K x d array is ever formed.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

__all__ = ["gmm_posteriors", "UNDERFLOW_MARGIN"]

#: a pair whose log-probability bound lies this many nats below the sample's best exact log-probability
#: is pruned: its responsibility exp(<= -800) underflows to exactly 0.0 in float64 (below -745.1);
#: the 55-nat slack absorbs rounding in the log-determinants and weights.
UNDERFLOW_MARGIN = 800.0

#: temporaries of the batched GEMMs hold at most about this many elements (32 MiB in float64)
CHUNK_ELEMENTS = 1 << 22

#: rows whose summed contribution to tr(S_k) is at most this fraction of reg_covar are folded into
#: the bound's isotropic part instead of its span (see the module docstring)
_NEGLIGIBLE_SCATTER = 1e-3

#: an E-step that keeps more than this fraction of the (sample, component) pairs switches the
#: following E-steps to the dense path (the bound cannot prune them)
_DENSE_FRACTION = 0.5

#: a component is evaluated with one full N x d x d GEMM when more than this fraction of rows are kept
_FULL_ROWS_FRACTION = 0.25

_NOT_PD_MESSAGE = (
    "Fitting the mixture model failed because some components have ill-defined empirical covariance "
    "(for instance caused by singleton or collapsed samples). Try to decrease the number of "
    "components, increase reg_covar, or scale the input data.")


def gmm_posteriors(Z, n_components, *, random_state=0, tol=1e-3, reg_covar=1e-6,
                   max_iter=100) -> np.ndarray:
    """Posteriors (N, K) of a full-covariance GMM fitted by EM on ``Z`` (N, d); = scikit-learn's.

    Same result, to rounding, as ``GaussianMixture(n_components, covariance_type="full", tol=tol,
    reg_covar=reg_covar, max_iter=max_iter, random_state=random_state).fit(Z).predict_proba(Z)``
    (see the module docstring for the algorithm and why it is faster). ``random_state`` is an int,
    ``None`` or a ``numpy.random.RandomState`` (consumed by the KMeans initialisation, as in
    scikit-learn). Float32 input is computed and returned in float32, anything else in float64;
    ``Z`` is never modified. Emits ``sklearn.exceptions.ConvergenceWarning`` when EM stops after
    ``max_iter`` iterations without converging (``max_iter=0``: posteriors of the initialisation).
    """
    X = _check_samples(Z)
    K, tol, reg_covar, max_iter = _check_parameters(X, n_components, tol, reg_covar, max_iter)
    rng = check_random_state(random_state)
    labels = KMeans(n_clusters=K, n_init=1, random_state=rng).fit(X).labels_
    resp = _Responsibilities(comp=labels, rows=np.arange(X.shape[0]),
                             value=np.ones(X.shape[0], dtype=X.dtype), n_components=K)
    prune = X.dtype == np.float64
    mixture = _m_step(X, resp, reg_covar, normalise_weights=False, with_bounds=prune)
    lower_bound, converged = -np.inf, max_iter == 0
    for _ in range(max_iter):
        previous = lower_bound
        resp, log_norm, kept = _e_step(X, mixture, prune)
        prune = prune and kept <= _DENSE_FRACTION
        mixture = _m_step(X, resp, reg_covar, normalise_weights=True, with_bounds=prune)
        lower_bound = np.mean(log_norm)
        if abs(lower_bound - previous) < tol:
            converged = True
            break
    if not converged:
        warnings.warn("Best performing initialization did not converge. Try different init "
                      "parameters, or increase max_iter, tol, or check for degenerate data.",
                      ConvergenceWarning)
    resp, _, _ = _e_step(X, mixture, prune)
    return resp.to_dense(X.shape[0])


# ----------------------------------------------------------------------------- validation
def _check_samples(Z) -> np.ndarray:
    X = np.asarray(Z)
    if X.ndim != 2:
        raise ValueError(f"Z must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if X.dtype != np.float32:
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_):
            raise ValueError(f"Z must be numeric, got dtype {X.dtype}")
        X = X.astype(np.float64)
    if X.shape[0] < 2 or X.shape[1] < 1:
        raise ValueError(f"Z needs at least 2 samples and 1 feature, got shape {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("Z contains NaN or infinity")
    return X


def _check_parameters(X, n_components, tol, reg_covar, max_iter):
    if isinstance(n_components, bool) or not isinstance(n_components, Integral) or n_components < 1:
        raise ValueError(f"n_components must be a positive integer, got {n_components!r}")
    if n_components > X.shape[0]:
        raise ValueError(f"n_components={n_components} exceeds the number of samples "
                         f"n_samples={X.shape[0]}: each component needs at least one sample")
    for name, value in (("tol", tol), ("reg_covar", reg_covar)):
        if isinstance(value, bool) or not isinstance(value, Real) or not value >= 0 or math.isinf(value):
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 0:
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    return int(n_components), float(tol), float(reg_covar), int(max_iter)


# ----------------------------------------------------------------------------- state
@dataclass
class _Responsibilities:
    """Non-zero responsibilities as (component, row, value) triplets sorted by component
    (``value=None``: just a set of (sample, component) pairs to evaluate)."""

    comp: np.ndarray
    rows: np.ndarray
    value: np.ndarray | None
    n_components: int

    def __post_init__(self):
        order = np.argsort(self.comp, kind="stable")
        self.comp, self.rows = self.comp[order], self.rows[order]
        if self.value is not None:
            self.value = self.value[order]

    def segments(self) -> np.ndarray:
        """(K + 1,) offsets: component k owns entries ``ptr[k]:ptr[k + 1]``."""
        return np.concatenate(([0], np.cumsum(np.bincount(self.comp, minlength=self.n_components))))

    def to_dense(self, n_samples: int) -> np.ndarray:
        out = np.zeros((n_samples, self.n_components), dtype=self.value.dtype)
        out[self.rows, self.comp] = self.value
        return out


@dataclass
class _Mixture:
    """Parameters of one M-step, plus what the E-step's bound needs (float64 fits only)."""

    log_weights: np.ndarray     # (K,)
    means: np.ndarray           # (K, d)
    prec_chol: np.ndarray       # (K, d, d)  P_k = L_k^{-T}, upper triangular
    log_det: np.ndarray         # (K,)       sum_j log (P_k)_jj
    means_prec: np.ndarray      # (K, d)     mu_k^T P_k
    inv_trace: np.ndarray | None = None    # (K,) 1 / t_k
    perp_coef: np.ndarray | None = None    # (K,) 1/c_k - 1/t_k, or 0 when the span is not used
    span_basis: np.ndarray | None = None   # (d, S) [Q_k for the components with perp_coef > 0]
    span_ptr: np.ndarray | None = None     # (K + 1,) column offsets of Q_k in span_basis


# ----------------------------------------------------------------------------- M-step
def _m_step(X, resp: _Responsibilities, reg_covar: float, *, normalise_weights: bool,
            with_bounds: bool) -> _Mixture:
    """scikit-learn's ``_estimate_gaussian_parameters`` + ``_compute_precision_cholesky`` on the
    non-zero responsibilities only; ``normalise_weights=False`` is the initialisation (w = n_k / N)."""
    N, d = X.shape
    K = resp.n_components
    dtype = X.dtype
    nk = np.bincount(resp.comp, weights=resp.value, minlength=K).astype(dtype)
    nk += 10 * np.finfo(dtype).eps
    R = scipy.sparse.csr_array((resp.value, (resp.comp, resp.rows)), shape=(K, N))
    means = (R @ X) / nk[:, None]
    weights = nk / (nk.sum() if normalise_weights else N)
    ptr = resp.segments()

    prec_chol = np.empty((K, d, d), dtype=dtype)
    trtri = scipy.linalg.get_lapack_funcs("trtri", dtype=dtype)
    if with_bounds:
        inv_trace, perp_coef = np.empty(K), np.zeros(K)
        bases, span_len = [], np.zeros(K, dtype=np.int64)
    chunk = max(1, min(K, CHUNK_ELEMENTS // (d * d)))
    for k0 in range(0, K, chunk):
        k1 = min(K, k0 + chunk)
        cov = np.zeros((k1 - k0, d, d), dtype=dtype)
        for k in range(k0, k1):
            rows, w = resp.rows[ptr[k]:ptr[k + 1]], resp.value[ptr[k]:ptr[k + 1]]
            diff = X[rows] - means[k]
            cov[k - k0] = ((w * diff.T) @ diff) / nk[k]
            cov[k - k0].flat[::d + 1] += reg_covar
            if with_bounds:
                inv_trace[k], perp_coef[k], basis = _span_bound(diff, w, nk[k], cov[k - k0], reg_covar)
                if basis is not None:
                    bases.append(basis)
                    span_len[k] = basis.shape[1]
        try:
            chol = np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            raise ValueError(_NOT_PD_MESSAGE + _float32_advice(dtype)) from None
        for j in range(k1 - k0):
            inv, info = trtri(chol[j], lower=1)
            if info != 0:
                raise ValueError(_NOT_PD_MESSAGE + _float32_advice(dtype))
            prec_chol[k0 + j] = inv.T
    log_det = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
    mixture = _Mixture(log_weights=np.log(weights), means=means, prec_chol=prec_chol,
                       log_det=log_det, means_prec=np.einsum("kd,kde->ke", means, prec_chol))
    if with_bounds:
        mixture.inv_trace, mixture.perp_coef = inv_trace, perp_coef
        mixture.span_basis = np.concatenate(bases, axis=1) if bases else np.empty((d, 0))
        mixture.span_ptr = np.concatenate(([0], np.cumsum(span_len)))
    return mixture


def _float32_advice(dtype) -> str:
    return (" The numerical accuracy can also be improved by passing float64 data instead of float32."
            if dtype == np.float32 else "")


def _span_bound(diff, w, nk, cov, reg_covar):
    """(1/t_k, 1/c_k - 1/t_k or 0, Q_k or None) of the bound in the module docstring (float64).

    ``diff`` (s, d) are the centred rows with non-zero weights ``w``; ``cov`` the regularised S_k.
    """
    s, d = diff.shape
    trace = float(np.trace(cov))
    contrib = w * np.einsum("ij,ij->i", diff, diff) / nk
    order = np.argsort(contrib)                                          # ascending
    tail = np.cumsum(contrib[order])
    n_negligible = int(np.searchsorted(tail, _NEGLIGIBLE_SCATTER * reg_covar, side="right"))
    delta = float(tail[n_negligible - 1]) if n_negligible else 0.0
    n_span = s - n_negligible
    # rounding allowance for the computed covariance / Cholesky factor (backward error ~ d eps tr S)
    c = (reg_covar + delta) * (1 + 1e-9) + 64 * d * np.finfo(np.float64).eps * trace
    if n_span > d // 2 or c <= 0 or c >= trace:
        return 1.0 / trace, 0.0, None
    if n_span == 0:
        return 1.0 / trace, 1.0 / c - 1.0 / trace, None
    basis = np.linalg.qr(diff[order[n_negligible:]].T, mode="reduced")[0]             # (d, n_span) orthonormal
    return 1.0 / trace, 1.0 / c - 1.0 / trace, basis


# ----------------------------------------------------------------------------- E-step
def _e_step(X, mix: _Mixture, prune: bool):
    """(responsibilities, log_prob_norm (N,), fraction of pairs evaluated exactly)."""
    if not prune:
        return _dense_e_step(X, mix)
    N = X.shape[0]
    K = mix.means.shape[0]
    upper = _log_prob_upper_bounds(X, mix)                                  # (N, K)
    first = np.argmax(upper, axis=1)
    best = _Responsibilities(comp=first, rows=np.arange(N), value=None, n_components=K)
    best_lp = np.empty(N)
    best_lp[best.rows] = _pair_weighted_log_prob(X, mix, best)
    keep = upper >= (best_lp - UNDERFLOW_MARGIN)[:, None]
    keep[np.arange(N), first] = True
    comp, rows = np.nonzero(keep.T)                                         # component-major
    pairs = _Responsibilities(comp=comp, rows=rows, value=None, n_components=K)
    wlp = _pair_weighted_log_prob(X, mix, pairs)
    log_norm = _segment_logsumexp(wlp, pairs.rows, N)
    with np.errstate(under="ignore"):
        value = np.exp(wlp - log_norm[pairs.rows])
    nz = value != 0
    pairs.comp, pairs.rows, pairs.value = pairs.comp[nz], pairs.rows[nz], value[nz]
    return pairs, log_norm, comp.shape[0] / (N * K)


def _log_prob_upper_bounds(X, mix: _Mixture) -> np.ndarray:
    """(N, K) upper bounds on log w_k + log N(x_i; mu_k, S_k) from the span bound (float64)."""
    N, d = X.shape
    K = mix.means.shape[0]
    eps = np.finfo(np.float64).eps
    x_sq = np.einsum("ij,ij->i", X, X)
    mu_sq = np.einsum("kd,kd->k", mix.means, mix.means)
    const = mix.log_det + mix.log_weights - 0.5 * d * math.log(2 * math.pi)
    upper = np.empty((N, K))
    chunk = max(1, CHUNK_ELEMENTS // N)
    for k0 in range(0, K, chunk):
        k1 = min(K, k0 + chunk)
        dist = (x_sq[:, None] + mu_sq[None, k0:k1]) - 2.0 * (X @ mix.means[k0:k1].T)
        slack = (8 * (d + 2) * eps) * (x_sq[:, None] + mu_sq[None, k0:k1])
        perp = dist - slack
        perp -= _span_sq_norms(X, mix, k0, k1)
        np.maximum(perp, 0.0, out=perp)
        np.maximum(dist - slack, 0.0, out=dist)
        maha = dist * mix.inv_trace[k0:k1] + perp * mix.perp_coef[k0:k1]
        maha *= 1.0 - 64 * d * eps
        upper[:, k0:k1] = const[k0:k1] - 0.5 * maha
    return upper


def _span_sq_norms(X, mix: _Mixture, k0: int, k1: int) -> np.ndarray:
    """(N, k1 - k0) ||Q_k^T (x_i - mu_k)||^2 (0 for components without a span basis)."""
    N = X.shape[0]
    out = np.zeros((N, k1 - k0))
    c0, c1 = mix.span_ptr[k0], mix.span_ptr[k1]
    if c1 == c0:
        return out
    lens = np.diff(mix.span_ptr[k0:k1 + 1])
    owner = np.repeat(np.arange(k0, k1), lens)                 # component of each basis column
    step = max(1, CHUNK_ELEMENTS // N)
    for a in range(c0, c1, step):                               # column blocks, cut at components
        b = min(c1, a + step)
        Q = mix.span_basis[:, a:b]
        proj = X @ Q
        proj -= np.einsum("jd,dj->j", mix.means[owner[a - c0:b - c0]], Q)
        np.square(proj, out=proj)
        comps = owner[a - c0:b - c0] - k0
        starts = np.flatnonzero(np.r_[True, comps[1:] != comps[:-1]])
        out[:, comps[starts]] += np.add.reduceat(proj, starts, axis=1)
    return out


def _pair_weighted_log_prob(X, mix: _Mixture, pairs: _Responsibilities) -> np.ndarray:
    """log w_k + log N(x_i; mu_k, S_k) for the (component-major) pairs, scikit-learn's formula."""
    N, d = X.shape
    out = np.empty(pairs.comp.shape[0], dtype=X.dtype)
    ptr = pairs.segments()
    log_2pi = d * math.log(2 * math.pi)
    for k in np.flatnonzero(np.diff(ptr)):
        rows = pairs.rows[ptr[k]:ptr[k + 1]]
        if rows.shape[0] > _FULL_ROWS_FRACTION * N:
            y = (X @ mix.prec_chol[k])[rows]
        else:
            y = X[rows] @ mix.prec_chol[k]
        y -= mix.means_prec[k]
        maha = np.sum(np.square(y), axis=1)
        out[ptr[k]:ptr[k + 1]] = -0.5 * (log_2pi + maha) + mix.log_det[k] + mix.log_weights[k]
    return out


def _segment_logsumexp(values, rows, n_rows) -> np.ndarray:
    """Per-row logsumexp of ``values`` grouped by ``rows`` (every row present), in scikit-learn's
    formulation: max m, ties counted, ``log1p(sum exp(v - m) over non-max / n_max) + log n_max + m``."""
    order = np.argsort(rows, kind="stable")
    v = values[order]
    starts = np.concatenate(([0], np.cumsum(np.bincount(rows, minlength=n_rows))[:-1]))
    vmax = np.maximum.reduceat(v, starts)
    vmax_rep = np.repeat(vmax, np.diff(np.r_[starts, v.shape[0]]))
    is_max = v == vmax_rep
    n_max = np.add.reduceat(is_max.astype(v.dtype), starts)
    with np.errstate(under="ignore"):
        e = np.exp(np.where(is_max, -np.inf, v - vmax_rep))
    s = np.add.reduceat(e, starts)
    s = np.where(s == 0, s, s / n_max)
    return np.log1p(s) + np.log(n_max) + vmax


def _dense_e_step(X, mix: _Mixture):
    """scikit-learn's E-step on all N x K pairs, components batched in one GEMM per chunk."""
    N, d = X.shape
    K = mix.means.shape[0]
    wlp = np.empty((N, K), dtype=X.dtype)
    chunk = max(1, min(K, CHUNK_ELEMENTS // (N * d)))
    log_2pi = d * math.log(2 * math.pi)
    for k0 in range(0, K, chunk):
        k1 = min(K, k0 + chunk)
        P = mix.prec_chol[k0:k1].transpose(1, 0, 2).reshape(d, (k1 - k0) * d)   # [P_k0 .. P_k1-1]
        y = X @ P
        y -= mix.means_prec[k0:k1].reshape(-1)
        np.square(y, out=y)
        wlp[:, k0:k1] = y.reshape(N, k1 - k0, d).sum(axis=2)
    wlp = -0.5 * (log_2pi + wlp) + mix.log_det
    wlp += mix.log_weights
    log_norm = _dense_logsumexp(wlp)
    with np.errstate(under="ignore"):
        resp = np.exp(wlp - log_norm[:, None])
    comp, rows = np.nonzero(resp.T)
    return (_Responsibilities(comp=comp, rows=rows, value=resp[rows, comp], n_components=K),
            log_norm, 1.0)


def _dense_logsumexp(a) -> np.ndarray:
    """Row logsumexp in scikit-learn's ``_logsumexp`` formulation (see :func:`_segment_logsumexp`)."""
    amax = a.max(axis=1, keepdims=True)
    is_max = a == amax
    n_max = is_max.sum(axis=1, dtype=a.dtype, keepdims=True)
    with np.errstate(under="ignore"):
        e = np.exp(np.where(is_max, -np.inf, a - amax))
    s = e.sum(axis=1, keepdims=True)
    s = np.where(s == 0, s, s / n_max)
    return (np.log1p(s) + np.log(n_max) + amax)[:, 0]
