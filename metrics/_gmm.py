"""Exact, fast full-covariance Gaussian-mixture EM (the GMM of NLEEP, Li et al., CVPR 2021).

:func:`gmm_posteriors` returns the posteriors that scikit-learn's ::

    GaussianMixture(n_components=K, covariance_type="full", tol=tol, reg_covar=reg_covar,
                    max_iter=max_iter, random_state=random_state).fit(Z).predict_proba(Z)

returns (scikit-learn 1.9.1, ``n_init=1``, ``init_params="kmeans"``): the same algorithm with the
same floating-point formulas, organised so that the work scales with the (sample, component) pairs
that matter instead of ``N * K * d^2``. Nothing is approximated: results agree with scikit-learn to
rounding (``tests/test_gmm.py``: max abs posterior difference <= 1e-8, typically ~1e-15 or exactly
0; ``benchmarks/bench_gmm.py``: 8-13x faster at NLEEP's realistic sizes).

Algorithm (Z: (N, d) samples z_i; K components; r: (N, K) responsibilities)::

    init     labels = KMeans(K, n_init=1, random_state=check_random_state(random_state)).fit(Z)
             r[i, k] = [labels_i == k]; M-step with weights w_k = n_k / N
    repeat   E-step: log p(z_i, k) = log w_k + log N(z_i; mu_k, S_k),   L_i = logsumexp_k(...)
             M-step on r[i, k] = exp(log p(z_i, k) - L_i):
                 n_k  = sum_i r_ik + 10 eps                                               (K,)
                 mu_k = sum_i r_ik z_i / n_k                                              (K, d)
                 S_k  = sum_i r_ik (z_i - mu_k)(z_i - mu_k)^T / n_k + reg_covar I         (K, d, d)
                 w_k  = n_k / sum_k n_k
             until |mean_i L_i - previous mean| < tol   (ConvergenceWarning after max_iter steps)
    output   one final E-step: the posteriors r (N, K)

Densities use the Cholesky factor of the precision, ``P_k = L_k^{-T}`` with ``S_k = L_k L_k^T``:
``log N(z; mu_k, S_k) = -(d log 2 pi + ||z^T P_k - mu_k^T P_k||^2) / 2 + sum_j log (P_k)_jj``. A
covariance that is not positive definite raises scikit-learn's ``ValueError`` (advice: fewer
components, larger ``reg_covar``, scaled data).

Where scikit-learn spends the time and what is done instead (s_k = number of samples with non-zero
responsibility for component k; NLEEP has K = 5 C, i.e. 2-20 samples per component, and there
almost every r_ik is exactly 0.0 in float64):

* M-step: scikit-learn forms every S_k from all N rows, O(N K d^2). A row with r_ik = 0.0
  contributes exactly nothing, so S_k is built from its s_k non-zero rows: O(sum_k s_k d^2).
* E-step: scikit-learn runs one N x d x d GEMM per component, O(N K d^2). Here an upper bound on
  every log p(z_i, k) costs O(N (K + S) d), S = total dimension of the component spans below (two
  GEMMs); a pair whose bound lies more than ``UNDERFLOW_MARGIN`` = 800 nats below the sample's best
  exact log-probability has ``r_ik = exp(< -745) = 0.0`` exactly in float64 -- the value the full
  computation produces -- and adds exactly 0 to the logsumexp, so only the remaining pairs are
  evaluated exactly, O(pairs d^2).

  The bound. Write S_k = A + B + reg I, A = W^T W with W the rows sqrt(r_ik / n_k) (z_i - mu_k),
  and keep in A the leading singular directions of W, Q_k (d, q_k) orthonormal, moving the
  discarded tail (trace delta_k <= 1e-3 reg) into B <= delta_k I. Then S_k <= M = A + c_k I with
  c_k = reg + delta_k (plus a rounding allowance), every eigenvalue of M is <= t_k = tr(S_k) + c_k
  and M = c_k I off span(Q_k), so S_k^{-1} >= M^{-1} >= I / t_k + (1/c_k - 1/t_k)(I - Q_k Q_k^T):
  for v = z - mu_k ::

      v^T S_k^{-1} v  >=  ||v||^2 / t_k  +  (1/c_k - 1/t_k) (||v||^2 - ||Q_k^T v||^2)

  (the second term is used when q_k <= d/2, so projecting costs at most half an exact evaluation;
  otherwise 1/t_k with t_k = tr(S_k) >= lambda_max(S_k)). Both products are lowered by their own
  rounding error (the cancellation in ||z||^2 - 2 z.mu + ||mu||^2).
  With few samples per component S_k is rank-deficient up to reg = 1e-6: a sample outside the
  component's affine span is >> 1600 Mahalanobis units away and is pruned.
* Repeated work: EM on NLEEP's data usually freezes after one step (each component keeps exactly
  its KMeans members with responsibility 1.0). An M-step whose responsibilities equal the previous
  ones bit for bit returns the previous parameters (new weights only when their normalisation
  differs), an E-step on unchanged parameters returns the previous result, and the bound of a
  component whose mean and span are unchanged is reused. These are the same values recomputed.

Paths: float64 input starts on the pruned E-step and switches for good to the dense one (all pairs,
components batched in one GEMM ``Z @ [P_1 ... P_b]``) once an E-step keeps more than half of the
pairs (well-populated components, where the bound cannot prune). Float32 input is computed and
returned in float32 as scikit-learn does, always on the dense path (the bound needs float64
accuracy). The caller is expected to limit BLAS threads (NLEEP wraps it in ``threadpool_limits(1)``).
Memory: the (K, d, d) precision factors (scikit-learn keeps three such arrays), a few (N, K) arrays
and temporaries of about ``CHUNK_ELEMENTS`` elements; no N x K x d array is formed.
"""
from __future__ import annotations

import dataclasses
import math
import warnings
from numbers import Integral, Real

import numpy as np
import scipy.linalg
import scipy.sparse
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

__all__ = ["gmm_posteriors", "UNDERFLOW_MARGIN", "CHUNK_ELEMENTS"]

#: a pair whose log-probability bound lies this many nats below the sample's best exact
#: log-probability is pruned: exp(<= -800) is exactly 0.0 in float64 (anything below -745.2 is);
#: the 55-nat slack absorbs rounding in the log-determinants and log-weights
UNDERFLOW_MARGIN = 800.0

#: temporaries of the batched GEMMs hold at most about this many elements (32 MiB in float64)
CHUNK_ELEMENTS = 1 << 22

#: singular directions of a component's scatter whose summed energy is at most this fraction of
#: reg_covar go to the isotropic part of the bound instead of its span
_NEGLIGIBLE_SCATTER = 1e-3

#: an E-step that keeps more than this fraction of the pairs switches EM to the dense E-step
_DENSE_FRACTION = 0.5

#: a component is evaluated with one full N x d x d GEMM when more than this fraction of rows are kept
_FULL_ROWS_FRACTION = 0.25

_NOT_PD_MESSAGE = (
    "Fitting the mixture model failed because some components have ill-defined empirical covariance "
    "(for instance caused by singleton or collapsed samples). Try to decrease the number of "
    "components, increase reg_covar, or scale the input data.")
_FLOAT32_ADVICE = " The numerical accuracy can also be improved by passing float64 data instead of float32."
_NOT_CONVERGED_MESSAGE = ("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.")


def gmm_posteriors(Z, n_components, *, random_state=0, tol=1e-3, reg_covar=1e-6,
                   max_iter=100) -> np.ndarray:
    """Posteriors (N, K) of a full-covariance GMM fitted by EM on ``Z`` (N, d); = scikit-learn's.

    Same result, to rounding, as ``GaussianMixture(n_components, covariance_type="full", tol=tol,
    reg_covar=reg_covar, max_iter=max_iter, random_state=random_state).fit(Z).predict_proba(Z)``
    (module docstring: algorithm and why it is faster). ``random_state``: int, ``None`` or a
    ``numpy.random.RandomState`` (consumed by the KMeans initialisation, as in scikit-learn).
    Float32 input is computed and returned in float32, anything else in float64; ``Z`` is never
    modified. Emits ``sklearn.exceptions.ConvergenceWarning`` when EM stops after ``max_iter``
    iterations without converging; ``max_iter=0`` gives the posteriors of the initialisation.
    Raises ``ValueError`` for invalid input, ``n_components > n_samples``, or a covariance that
    is not positive definite (increase ``reg_covar``).
    """
    X = _check_samples(Z)
    K, tol, reg_covar, max_iter = _check_parameters(X, n_components, tol, reg_covar, max_iter)
    labels = KMeans(n_clusters=K, n_init=1, random_state=check_random_state(random_state)).fit(X).labels_
    em = _ExpectationMaximisation(X, K, reg_covar)
    mixture = em.m_step(_Responsibilities(comp=labels, rows=np.arange(X.shape[0]), n_components=K,
                                          value=np.ones(X.shape[0], dtype=X.dtype)),
                        normalise_weights=False)
    lower_bound, converged = -np.inf, max_iter == 0
    for _ in range(max_iter):
        previous = lower_bound
        resp, log_norm = em.e_step(mixture)
        mixture = em.m_step(resp, normalise_weights=True)
        lower_bound = np.mean(log_norm)
        if abs(lower_bound - previous) < tol:
            converged = True
            break
    if not converged:
        warnings.warn(_NOT_CONVERGED_MESSAGE, ConvergenceWarning)
    resp, _ = em.e_step(mixture)
    return resp.to_dense(X.shape[0])


# ----------------------------------------------------------------------------- validation
def _check_samples(Z) -> np.ndarray:
    X = np.asarray(Z)
    if X.ndim != 2:
        raise ValueError(f"Z must be a 2-D array (n_samples, n_features), got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or np.iscomplexobj(X):
        raise ValueError(f"Z must be a real numeric array, got dtype {X.dtype}")
    if X.dtype != np.float32:
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
        raise ValueError(f"n_components={n_components} exceeds n_samples={X.shape[0]}: a mixture "
                         f"needs at least as many samples as components")
    for name, value in (("tol", tol), ("reg_covar", reg_covar)):
        if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= value < math.inf:
            raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, Integral) or max_iter < 0:
        raise ValueError(f"max_iter must be an integer >= 0, got {max_iter!r}")
    return int(n_components), float(tol), float(reg_covar), int(max_iter)


# ----------------------------------------------------------------------------- state
@dataclasses.dataclass
class _Responsibilities:
    """(component, row[, value]) triplets sorted by component, then row (canonical order, so two
    equal sets compare equal array by array); ``value=None``: just pairs to evaluate."""

    comp: np.ndarray
    rows: np.ndarray
    n_components: int
    value: np.ndarray | None = None

    def __post_init__(self):
        order = np.lexsort((self.rows, self.comp))
        self.comp, self.rows = self.comp[order], self.rows[order]
        if self.value is not None:
            self.value = self.value[order]

    def segments(self) -> np.ndarray:
        """(K + 1,) offsets: component k owns entries ``ptr[k]:ptr[k + 1]``."""
        counts = np.bincount(self.comp, minlength=self.n_components)
        return np.concatenate(([0], np.cumsum(counts)))

    def equals(self, other: _Responsibilities) -> bool:
        return (self.n_components == other.n_components and np.array_equal(self.comp, other.comp)
                and np.array_equal(self.rows, other.rows) and np.array_equal(self.value, other.value))

    def to_dense(self, n_samples: int) -> np.ndarray:
        out = np.zeros((n_samples, self.n_components), dtype=self.value.dtype)
        out[self.rows, self.comp] = self.value
        return out


@dataclasses.dataclass(frozen=True)
class _SpanBound:
    """Per-component data of the Mahalanobis lower bound (module docstring), float64."""

    inv_trace: np.ndarray    # (K,)  1 / t_k
    perp_coef: np.ndarray    # (K,)  1/c_k - 1/t_k, or 0 when the span term is not used
    basis: np.ndarray        # (d, S) the Q_k of the components with a span, side by side
    ptr: np.ndarray          # (K + 1,) Q_k = basis[:, ptr[k]:ptr[k + 1]]

    def unchanged(self, means, other: _SpanBound, other_means) -> np.ndarray:
        """(K,) bool: component k's bound is the same function of z in ``self`` and ``other``."""
        same = (np.all(means == other_means, axis=1) & (self.inv_trace == other.inv_trace)
                & (self.perp_coef == other.perp_coef))
        lens, other_lens = np.diff(self.ptr), np.diff(other.ptr)
        same &= lens == other_lens
        comps = np.flatnonzero(same & (lens > 0))
        cols = _segment_columns(self.ptr, comps)
        other_cols = _segment_columns(other.ptr, comps)
        equal = np.all(self.basis[:, cols] == other.basis[:, other_cols], axis=0)
        owner = np.repeat(comps, lens[comps])
        same[np.unique(owner[~equal])] = False
        return same


def _segment_columns(ptr, comps) -> np.ndarray:
    """Concatenated ``arange(ptr[k], ptr[k + 1])`` for k in ``comps``."""
    lens = ptr[comps + 1] - ptr[comps]
    starts = np.repeat(ptr[comps] - np.concatenate(([0], np.cumsum(lens)[:-1])), lens)
    return starts + np.arange(lens.sum())


@dataclasses.dataclass(frozen=True)
class _Mixture:
    """Parameters after one M-step."""

    nk: np.ndarray              # (K,)       sum_i r_ik + 10 eps
    log_weights: np.ndarray     # (K,)
    means: np.ndarray           # (K, d)
    prec_chol: np.ndarray       # (K, d, d)  P_k = L_k^{-T}, upper triangular
    log_det: np.ndarray         # (K,)       sum_j log (P_k)_jj
    means_prec: np.ndarray      # (K, d)     mu_k^T P_k
    bound: _SpanBound | None    # float64 fits on the pruned path


# ----------------------------------------------------------------------------- EM steps
class _ExpectationMaximisation:
    """E- and M-steps on fixed samples ``X``, remembering the last results (see "Repeated work"
    in the module docstring) and whether the pruned E-step still pays."""

    def __init__(self, X: np.ndarray, n_components: int, reg_covar: float):
        self.X, self.K, self.reg_covar = X, n_components, reg_covar
        self.prune = X.dtype == np.float64
        self._last_m = None      # (responsibilities, normalise_weights, mixture)
        self._last_e = None      # (mixture, (responsibilities, log_norm))
        self._bounds = None      # (means, _SpanBound, (N, K) Mahalanobis lower bounds) of the last call

    # ---------------------------------------------------------------- M-step
    def m_step(self, resp: _Responsibilities, *, normalise_weights: bool) -> _Mixture:
        """scikit-learn's ``_estimate_gaussian_parameters`` + ``_compute_precision_cholesky`` on the
        non-zero responsibilities; ``normalise_weights=False`` is the initialisation (w = n_k / N)."""
        if self._last_m is not None and self._last_m[0].equals(resp):
            _, normalised, mixture = self._last_m
            if normalised != normalise_weights:
                mixture = dataclasses.replace(mixture, log_weights=self._log_weights(mixture.nk, normalise_weights))
        else:
            mixture = self._estimate_parameters(resp, normalise_weights)
        self._last_m = (resp, normalise_weights, mixture)
        return mixture

    def _log_weights(self, nk, normalise: bool) -> np.ndarray:
        return np.log(nk / (nk.sum() if normalise else self.X.shape[0]))

    def _estimate_parameters(self, resp: _Responsibilities, normalise_weights: bool) -> _Mixture:
        X, K, reg_covar = self.X, self.K, self.reg_covar
        N, d = X.shape
        dtype = X.dtype
        nk = np.bincount(resp.comp, weights=resp.value, minlength=K).astype(dtype)
        nk += 10 * np.finfo(dtype).eps
        means = (scipy.sparse.csr_array((resp.value, (resp.comp, resp.rows)), shape=(K, N)) @ X)
        means /= nk[:, None]
        ptr = resp.segments()
        prec_chol = np.empty((K, d, d), dtype=dtype)
        potrf, trtri = scipy.linalg.get_lapack_funcs(("potrf", "trtri"), dtype=dtype)
        bounds = [] if self.prune else None
        for k in range(K):
            rows, w = resp.rows[ptr[k]:ptr[k + 1]], resp.value[ptr[k]:ptr[k + 1]]
            diff = X[rows] - means[k]
            cov = ((w * diff.T) @ diff) / nk[k]
            cov.flat[::d + 1] += reg_covar
            if bounds is not None:
                bounds.append(_span_bound(diff, w / nk[k], float(np.trace(cov)), reg_covar))
            chol, info = potrf(cov, lower=1, clean=1, overwrite_a=1)   # scipy.linalg.cholesky's call
            if info == 0:
                inv, info = trtri(chol, lower=1, overwrite_c=1)          # L^{-1}, upper triangle 0
            if info != 0:
                raise ValueError(_not_pd_message(dtype))
            prec_chol[k] = inv.T
        log_det = np.log(np.diagonal(prec_chol, axis1=1, axis2=2)).sum(axis=1)
        return _Mixture(nk=nk, log_weights=self._log_weights(nk, normalise_weights), means=means,
                        prec_chol=prec_chol, log_det=log_det,
                        means_prec=np.einsum("kd,kde->ke", means, prec_chol),
                        bound=None if bounds is None else _stack_bounds(bounds, d))

    # ---------------------------------------------------------------- E-step
    def e_step(self, mixture: _Mixture):
        """(responsibilities, log_prob_norm (N,)) of scikit-learn's ``_estimate_log_prob_resp``."""
        if self._last_e is not None and self._last_e[0] is mixture:
            return self._last_e[1]
        if self.prune and mixture.bound is not None:
            resp, log_norm, kept = self._pruned_e_step(mixture)
            if kept > _DENSE_FRACTION:
                self.prune, self._bounds = False, None
        else:
            resp, log_norm = _dense_e_step(self.X, mixture)
        self._last_e = (mixture, (resp, log_norm))
        return resp, log_norm

    def _pruned_e_step(self, mixture: _Mixture):
        X, K = self.X, self.K
        N, d = X.shape
        const = mixture.log_det + mixture.log_weights - 0.5 * d * math.log(2 * math.pi)
        upper = self._mahalanobis_lower_bounds(mixture) * -0.5                      # (N, K)
        upper += const
        first = np.argmax(upper, axis=1)
        probe = _Responsibilities(comp=first, rows=np.arange(N), n_components=K)
        best = np.empty(N)
        best[probe.rows] = _pair_weighted_log_prob(X, mixture, probe)
        keep = upper >= (best - UNDERFLOW_MARGIN)[:, None]
        keep[np.arange(N), first] = True
        rows, comp = np.nonzero(keep)
        pairs = _Responsibilities(comp=comp, rows=rows, n_components=K)
        wlp = _pair_weighted_log_prob(X, mixture, pairs)
        log_norm = _segment_logsumexp(wlp, pairs.rows, N)
        with np.errstate(under="ignore"):
            value = np.exp(wlp - log_norm[pairs.rows])
        nz = value != 0
        resp = _Responsibilities(comp=pairs.comp[nz], rows=pairs.rows[nz], value=value[nz], n_components=K)
        return resp, log_norm, comp.shape[0] / (N * K)

    def _mahalanobis_lower_bounds(self, mixture: _Mixture) -> np.ndarray:
        """(N, K) lower bounds on (z_i - mu_k)^T S_k^{-1} (z_i - mu_k); a component whose mean and
        span are those of the previous call keeps its column."""
        if self._bounds is None:
            lower = np.empty((self.X.shape[0], self.K))
            todo = np.arange(self.K)
        else:
            means, bound, lower = self._bounds
            todo = np.flatnonzero(~mixture.bound.unchanged(mixture.means, bound, means))
        if todo.size:
            _fill_mahalanobis_lower_bounds(self.X, mixture, todo, lower)
        self._bounds = (mixture.means, mixture.bound, lower)
        return lower


def _not_pd_message(dtype) -> str:
    return _NOT_PD_MESSAGE + (_FLOAT32_ADVICE if dtype == np.float32 else "")


# ----------------------------------------------------------------------------- the bound
def _span_bound(diff, scale, trace: float, reg_covar: float):
    """(1/t_k, 1/c_k - 1/t_k or 0, Q_k (d, q) or None) of the bound in the module docstring.

    ``diff`` (s, d): the rows z_i - mu_k with non-zero responsibility; ``scale`` (s,): r_ik / n_k;
    ``trace``: tr(S_k) of the regularised covariance.
    """
    s, d = diff.shape
    eps = np.finfo(np.float64).eps
    if s > d:
        return 1.0 / trace, 0.0, None              # 1/t with t = tr(S_k) >= lambda_max(S_k)
    if s:
        _, sing, vt = np.linalg.svd(np.sqrt(scale)[:, None] * diff, full_matrices=False)
        tail = np.cumsum((sing ** 2)[::-1])                        # energy of the smallest directions
        n_dropped = int(np.searchsorted(tail, _NEGLIGIBLE_SCATTER * reg_covar, side="right"))
        delta = float(tail[n_dropped - 1]) if n_dropped else 0.0
        rank = s - n_dropped
    else:
        delta, rank = 0.0, 0
    # rounding allowance: the computed S_k and its Cholesky factor are exact for a matrix within
    # about d eps tr(S_k) (backward error); the SVD's within eps ||W||^2 <= eps tr(S_k)
    c = (reg_covar + delta) * (1 + 1e-9) + 64 * d * eps * trace
    t = trace + c                                  # >= lambda_max(A + c I) = mu_max + c
    if rank > d // 2 or not c > 0:
        return 1.0 / t, 0.0, None
    return 1.0 / t, 1.0 / c - 1.0 / t, (vt[:rank].T if rank else None)


def _stack_bounds(bounds, d: int) -> _SpanBound:
    inv_trace = np.array([b[0] for b in bounds])
    perp_coef = np.array([b[1] for b in bounds])
    bases = [b[2] for b in bounds if b[2] is not None]
    lens = np.array([0 if b[2] is None else b[2].shape[1] for b in bounds], dtype=np.int64)
    return _SpanBound(inv_trace=inv_trace, perp_coef=perp_coef,
                      basis=np.concatenate(bases, axis=1) if bases else np.empty((d, 0)),
                      ptr=np.concatenate(([0], np.cumsum(lens))))


def _fill_mahalanobis_lower_bounds(X, mixture: _Mixture, comps: np.ndarray, out: np.ndarray) -> None:
    """``out[:, comps]`` = the bound ``||v||^2 / t_k + (1/c_k - 1/t_k) max(0, ||v||^2 - ||Q_k^T v||^2)``,
    v = z_i - mu_k, shrunk by its own rounding error (the cancellation in ||z||^2 - 2 z.mu + ||mu||^2)."""
    N, d = X.shape
    eps = np.finfo(np.float64).eps
    bound = mixture.bound
    x_sq = np.einsum("ij,ij->i", X, X)
    lens = np.diff(bound.ptr)
    # component blocks whose distance and projection temporaries stay within CHUNK_ELEMENTS
    cost = 1 + lens[comps]
    block_of = np.cumsum(cost) // max(1, CHUNK_ELEMENTS // N)
    shrink = 1.0 - 64 * d * eps                    # relative rounding of the products below
    for block in np.unique(block_of):
        ks = comps[block_of == block]
        mu = mixture.means[ks]
        # ||x - mu||^2 = ||x||^2 + ||mu||^2 - 2 x.mu, lowered by its rounding error 8 (d + 2) eps (...)
        lowered = 1.0 - 8 * (d + 2) * eps
        dist = X @ mu.T
        dist *= -2.0
        dist += lowered * x_sq[:, None]
        dist += lowered * np.einsum("kd,kd->k", mu, mu)
        spans = np.flatnonzero(bound.perp_coef[ks])
        sel = slice(None) if spans.size == ks.size else spans       # a view when every one has a span
        if spans.size:
            perp = _span_sq_norms(X, mixture, ks[spans])
            np.subtract(dist[:, sel], perp, out=perp)
            np.maximum(perp, 0.0, out=perp)
            perp *= shrink * bound.perp_coef[ks[spans]]
        np.maximum(dist, 0.0, out=dist)
        dist *= shrink * bound.inv_trace[ks]
        if spans.size:
            dist[:, sel] += perp
        out[:, ks] = dist


def _span_sq_norms(X, mixture: _Mixture, ks: np.ndarray) -> np.ndarray:
    """(N, len(ks)) ``||Q_k^T (z_i - mu_k)||^2`` (0 for components without a span basis)."""
    bound = mixture.bound
    lens = np.diff(bound.ptr)[ks]
    out = np.zeros((X.shape[0], ks.shape[0]))
    if not lens.sum():
        return out
    cols = _segment_columns(bound.ptr, ks)
    owner = np.repeat(np.arange(ks.shape[0]), lens)                  # local component of each column
    Q = bound.basis[:, cols]
    proj = X @ Q
    proj -= np.einsum("jd,dj->j", mixture.means[ks[owner]], Q)
    np.square(proj, out=proj)
    has = np.flatnonzero(lens)
    out[:, has] = np.add.reduceat(proj, np.concatenate(([0], np.cumsum(lens[has])[:-1])), axis=1)
    return out


# ----------------------------------------------------------------------------- exact evaluation
def _pair_weighted_log_prob(X, mixture: _Mixture, pairs: _Responsibilities) -> np.ndarray:
    """log w_k + log N(z_i; mu_k, S_k) for the (component-major) pairs, with scikit-learn's formula
    ``-0.5 (d log 2 pi + ||z P_k - mu_k P_k||^2) + log_det_k + log w_k``."""
    N, d = X.shape
    out = np.empty(pairs.comp.shape[0], dtype=X.dtype)
    ptr = pairs.segments()
    log_2pi = d * math.log(2 * math.pi)
    for k in np.flatnonzero(np.diff(ptr)):
        rows = pairs.rows[ptr[k]:ptr[k + 1]]
        if rows.shape[0] > _FULL_ROWS_FRACTION * N:
            y = (X @ mixture.prec_chol[k])[rows]
        else:
            y = X[rows] @ mixture.prec_chol[k]
        y -= mixture.means_prec[k]
        maha = np.sum(np.square(y), axis=1)
        out[ptr[k]:ptr[k + 1]] = -0.5 * (log_2pi + maha) + mixture.log_det[k] + mixture.log_weights[k]
    return out


def _segment_logsumexp(values, rows, n_rows) -> np.ndarray:
    """Per-row logsumexp of ``values`` grouped by ``rows`` (every row present at least once), in
    scikit-learn's ``_logsumexp`` formulation: with m the row maximum and n_max its multiplicity,
    ``log1p(sum_{v != m} exp(v - m) / n_max) + log(n_max) + m``."""
    order = np.argsort(rows, kind="stable")
    v = values[order]
    counts = np.bincount(rows, minlength=n_rows)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    vmax = np.maximum.reduceat(v, starts)
    vmax_rep = np.repeat(vmax, counts)
    is_max = v == vmax_rep
    n_max = np.add.reduceat(is_max.astype(v.dtype), starts)
    with np.errstate(under="ignore"):
        e = np.exp(np.where(is_max, -np.inf, v - vmax_rep))
    s = np.add.reduceat(e, starts)
    s = np.where(s == 0, s, s / n_max)
    return np.log1p(s) + np.log(n_max) + vmax


def _dense_e_step(X, mixture: _Mixture):
    """scikit-learn's E-step on all N x K pairs, components batched in one GEMM per chunk."""
    N, d = X.shape
    K = mixture.means.shape[0]
    maha = np.empty((N, K), dtype=X.dtype)
    chunk = max(1, min(K, CHUNK_ELEMENTS // (N * d)))
    for k0 in range(0, K, chunk):
        k1 = min(K, k0 + chunk)
        P = mixture.prec_chol[k0:k1].transpose(1, 0, 2).reshape(d, (k1 - k0) * d)   # [P_k0 .. P_k1-1]
        y = X @ P
        y -= mixture.means_prec[k0:k1].reshape(-1)
        np.square(y, out=y)
        maha[:, k0:k1] = y.reshape(N, k1 - k0, d).sum(axis=2)
    wlp = -0.5 * (d * math.log(2 * math.pi) + maha) + mixture.log_det
    wlp += mixture.log_weights
    log_norm = _dense_logsumexp(wlp)
    with np.errstate(under="ignore"):
        resp = np.exp(wlp - log_norm[:, None])
    comp, rows = np.nonzero(resp.T)
    return (_Responsibilities(comp=comp, rows=rows, value=resp[rows, comp], n_components=K),
            log_norm)


def _dense_logsumexp(a) -> np.ndarray:
    """Row logsumexp of (N, K) ``a`` in scikit-learn's formulation (see :func:`_segment_logsumexp`)."""
    amax = a.max(axis=1, keepdims=True)
    is_max = a == amax
    n_max = is_max.sum(axis=1, dtype=a.dtype, keepdims=True)
    with np.errstate(under="ignore"):
        e = np.exp(np.where(is_max, -np.inf, a - amax))
    s = e.sum(axis=1, keepdims=True)
    s = np.where(s == 0, s, s / n_max)
    return (np.log1p(s) + np.log(n_max) + amax)[:, 0]
