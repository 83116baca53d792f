import itertools

import numpy as np
import pytest
import scipy.linalg
import scipy.optimize

import metrics
from metrics._linalg import project_simplex
from test_metrics_support import make_task


def zscore(A):
    """EMMS z-scoring: population std (a constant column stays 0)."""
    std = A.std(axis=0)
    return (A - A.mean(axis=0)) / np.where(std > 0, std, 1.0)


def large_units(A):
    """``A`` in units where the published guard ``std + 1e-8`` is negligible (1e-14 relative); ours
    guards only constant columns, and EMMS is scale-invariant, so the two must then agree."""
    return A * 1e6


def objective(X, Y, t):
    """min_w ||X w - Y t||^2 by an independent lstsq on the z-scored data."""
    Xs, Ys = zscore(X), zscore(Y)
    b = Ys @ t
    w = np.linalg.lstsq(Xs, b, rcond=None)[0]
    return float(np.sum((Xs @ w - b) ** 2))


def published_one_step(Z, Y):
    """Literal re-implementation of the published EMMS procedure (one alternation), on copies."""
    x, y = Z.copy(), Y.copy()
    N, D2, K = y.shape
    for i in range(K):
        y[:, :, i] = (y[:, :, i] - y[:, :, i].mean(axis=0)) / (y[:, :, i].std(axis=0) + 1e-8)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-8)
    lam = np.full(K, 1.0 / K)
    b = y @ lam
    w = np.linalg.lstsq(x, b, rcond=None)[0]
    lam = np.linalg.lstsq(y.reshape(N * D2, K), (x @ w).reshape(N * D2), rcond=None)[0]
    lam = project_simplex(lam)          # sparsemax of a single row
    T = (y @ lam).reshape(N, D2)
    res = np.sum((x @ w - T) ** 2) / N * D2   # operator precedence as published: (RSS / N) * E
    return -res


def simplex_grid(K, steps):
    for c in itertools.product(range(steps + 1), repeat=K - 1):
        if sum(c) <= steps:
            yield np.array(list(c) + [steps - sum(c)], dtype=float) / steps


@pytest.mark.parametrize("K", [2, 3])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_emms_reaches_simplex_constrained_optimum(K, seed):
    rng = np.random.default_rng(seed)
    t = make_task(n=120, d=8, e=5, k=K, seed=seed)
    X, Y = t["features"], t["label_embeddings"]
    # make the embeddings differ in quality so the optimum is not trivially uniform
    Y = Y + rng.uniform(0, 2, K) * rng.standard_normal(Y.shape)
    N, E = Y.shape[:2]
    score, w = metrics.emms(X, Y, return_weights=True)
    assert w.shape == (K,) and np.all(w >= 0) and w.sum() == pytest.approx(1.0)
    assert score == pytest.approx(-objective(X, Y, w) / (N * E), rel=1e-10)
    grid_best = min(objective(X, Y, g) for g in simplex_grid(K, 200 if K == 2 else 60))
    assert -score * N * E <= grid_best * (1 + 1e-10)
    assert -score * N * E == pytest.approx(grid_best, rel=2e-3)
    # projected-gradient (KKT) residual of t^T G t over the simplex, G from the independent objective
    G = np.empty((K, K))
    for i in range(K):
        for j in range(K):
            e_i, e_j = np.eye(K)[i], np.eye(K)[j]
            G[i, j] = 0.25 * (objective(X, Y, e_i + e_j) - objective(X, Y, e_i - e_j))
    step = 1.0 / np.abs(G).max()
    assert np.linalg.norm(w - project_simplex(w - step * 2 * G @ w)) < 1e-8


def test_emms_onestep_matches_published_procedure():
    t = make_task(n=200, d=10, e=6, k=3)
    X, Y = t["features"], t["label_embeddings"]
    Y = Y * np.array([1.0, 2.0, 0.5]) + np.random.default_rng(1).standard_normal(Y.shape) * [0.1, 1.0, 3.0]
    E = Y.shape[1]
    published = published_one_step(large_units(X), large_units(Y))
    assert metrics.emms(X, Y, max_iter=1) * E ** 2 == pytest.approx(published, rel=1e-10)
    assert metrics.emms_onestep(X, Y) == metrics.emms(X, Y, max_iter=1)
    # one step never beats the converged optimum
    assert metrics.emms(X, Y) >= metrics.emms(X, Y, max_iter=1) - 1e-12


def test_emms_single_embedding_is_plain_regression():
    t = make_task(k=1)
    X, Y = t["features"], t["label_embeddings"]
    N, E = Y.shape[:2]
    expected = -objective(X, Y, np.ones(1)) / (N * E)
    assert metrics.emms(X, Y) == pytest.approx(expected, rel=1e-10)
    assert metrics.emms(X, Y, max_iter=1) == pytest.approx(expected, rel=1e-10)
    assert metrics.emms(X, [Y[:, :, 0]]) == pytest.approx(expected, rel=1e-10)


def test_emms_list_input_equals_array():
    t = make_task()
    Y = t["label_embeddings"]
    assert metrics.emms(t["features"], [Y[:, :, k] for k in range(3)]) == metrics.emms(t["features"], Y)


def test_emms_degenerate_when_features_span_all_samples():
    t = make_task(n=30, d=40)
    with pytest.raises(ValueError, match="degenerate"):
        metrics.emms(t["features"], t["label_embeddings"])
    # D = N - 1 is already exact after centring
    with pytest.raises(ValueError, match="degenerate"):
        metrics.emms(t["features"][:41], t["label_embeddings"][:41])


def test_emms_ridge_is_penalised_objective():
    t = make_task(n=30, d=40)
    X, Y = t["features"], t["label_embeddings"]
    lam = 0.1
    score, w = metrics.emms(X, Y, ridge=lam, return_weights=True)
    Xs, b = zscore(X), zscore(Y) @ w
    N, E = b.shape
    coef = np.linalg.solve(Xs.T @ Xs + lam * N * np.eye(Xs.shape[1]), Xs.T @ b)
    penalised = np.sum((Xs @ coef - b) ** 2) + lam * N * np.sum(coef ** 2)
    assert score == pytest.approx(-penalised / (N * E), rel=1e-8)
    assert score < 0
    # informative features still beat noise under the ridge
    assert score > metrics.emms(t["noise"], Y, ridge=lam)
    # one-step with ridge: residual of the ridge fit against the sparsemax t
    Ys = zscore(Y)
    K = Ys.shape[2]
    b0 = Ys @ np.full(K, 1.0 / K)
    fit0 = Xs @ np.linalg.solve(Xs.T @ Xs + lam * N * np.eye(Xs.shape[1]), Xs.T @ b0)
    t1 = project_simplex(np.linalg.lstsq(Ys.reshape(N * E, K), fit0.reshape(-1), rcond=None)[0])
    expected = -np.sum((fit0 - Ys @ t1) ** 2) / (N * E)
    assert metrics.emms(X, Y, ridge=lam, max_iter=1) == pytest.approx(expected, rel=1e-8)


# ---------------------------------------------------------------- ridge="auto" (evidence-chosen ridge)
def pooled_log_evidence(X, Y):
    """Independent pooled log evidence ``L(log alpha, log beta)`` of all E*K z-scored label columns,
    in sample space.

    Each centred column lives in the (N-1)-dim complement of the all-ones vector: project onto an
    orthonormal basis P of it, then y_c ~ N(0, Xc Xc^T / alpha + I / beta) for every column; the
    covariance is diagonalised once (eigh of the (N-1) x (N-1) kernel, test only).
    """
    Xs, Ys = zscore(X), zscore(Y)
    N = Xs.shape[0]
    P = scipy.linalg.null_space(np.ones((1, N)))          # (N, N-1)
    Xc, Yc = P.T @ Xs, P.T @ Ys.reshape(N, -1)
    lam, U = np.linalg.eigh(Xc @ Xc.T)
    lam = np.maximum(lam, 0.0)
    proj2 = ((U.T @ Yc) ** 2).sum(axis=1)                 # summed over the T columns
    T = Yc.shape[1]

    def L(log_alpha, log_beta):
        var = lam / np.exp(log_alpha) + 1.0 / np.exp(log_beta)
        return -0.5 * T * np.sum(np.log(2 * np.pi * var)) - 0.5 * np.sum(proj2 / var)
    return L


@pytest.mark.parametrize("n, d", [(200, 8), (40, 100)])
def test_emms_auto_ridge_maximises_pooled_evidence(n, d):
    t = make_task(n=n, d=d, e=4)
    X, Y = t["features"], t["label_embeddings"]
    score, w, ridge = metrics.emms(X, Y, ridge="auto", return_weights=True)
    assert 0 < ridge < np.inf
    evidence = pooled_log_evidence(X, Y)
    neg = lambda p: -evidence(*p)
    start = np.array([0.0, 0.0])
    opt = scipy.optimize.minimize(neg, start, method="Nelder-Mead",
                                  options=dict(xatol=1e-9, fatol=1e-10, maxiter=5000))
    assert opt.success
    t_opt = np.exp(opt.x[0] - opt.x[1])                      # alpha / beta
    assert ridge * n == pytest.approx(t_opt, rel=1e-4)
    # the library's alpha/beta (with beta maximised for it) is a stationary point and no worse than scipy
    profile = lambda log_t: -scipy.optimize.minimize_scalar(
        lambda lb: neg((log_t + lb, lb)), bracket=(opt.x[1] - 1, opt.x[1] + 1), tol=1e-12).fun
    log_t = np.log(ridge * n)
    assert profile(log_t) >= -opt.fun - 1e-7 * abs(opt.fun)
    h = 1e-4
    assert abs(profile(log_t + h) - profile(log_t - h)) / (2 * h) < 1e-4 * abs(opt.fun)
    # then exactly the fixed-ridge score
    assert score == metrics.emms(X, Y, ridge=ridge)
    assert np.array_equal(w, metrics.emms(X, Y, ridge=ridge, return_weights=True)[1])


def test_emms_auto_close_to_ols_for_many_samples():
    t = make_task(n=3000, d=10)
    X, Y = t["features"], t["label_embeddings"]
    score, _, ridge = metrics.emms(X, Y, ridge="auto", return_weights=True)
    assert ridge < 1e-2
    assert score == pytest.approx(metrics.emms(X, Y), rel=1e-2)
    assert score <= metrics.emms(X, Y)              # the penalised objective is never below OLS


def test_emms_auto_defined_when_features_span_all_samples():
    t = make_task(n=60, d=500)
    X, Y = t["features"], t["label_embeddings"]
    with pytest.raises(ValueError, match="degenerate"):
        metrics.emms(X, Y)
    score = metrics.emms(X, Y, ridge="auto")
    assert np.isfinite(score) and score < 0
    assert score > metrics.emms(t["noise"], Y, ridge="auto")       # informative above noise
    # rank(X) = N - 1 exactly (D = N - 1) is fine too
    s41 = metrics.emms(t["features"][:41, :40], Y[:41], ridge="auto")
    assert np.isfinite(s41) and s41 < 0


def test_emms_auto_pure_noise_is_null_model():
    t = make_task(n=2000, d=10)
    Y = t["label_embeddings"]
    score, w, ridge = metrics.emms(t["noise"], Y, ridge="auto", return_weights=True)
    assert ridge == np.inf                                          # alpha -> inf: w = 0
    Ys = zscore(Y)
    N, E, _ = Ys.shape
    assert score == pytest.approx(-np.sum((Ys @ w) ** 2) / (N * E), rel=1e-10)


def test_emms_auto_factorises_only_the_smaller_gram_side(monkeypatch):
    """Every matrix factorised on the auto path is min(N, D) square: N x N here (D > N), no D x D."""
    shapes = []

    def recording(fn):
        def wrapper(a, *args, **kwargs):
            shapes.append(np.shape(a))
            return fn(a, *args, **kwargs)
        return wrapper

    for name in ("eigh", "cholesky", "svd", "qr", "lu_factor"):
        monkeypatch.setattr(scipy.linalg, name, recording(getattr(scipy.linalg, name)))
    for name in ("eigh", "cholesky", "svd", "qr", "slogdet", "inv", "solve"):
        monkeypatch.setattr(np.linalg, name, recording(getattr(np.linalg, name)))
    t = make_task(n=50, d=120)
    metrics.emms(t["features"], t["label_embeddings"], ridge="auto")
    assert shapes and set(shapes) == {(50, 50)}


def test_emms_auto_does_not_mutate_and_validates():
    t = make_task(n=60, d=100)
    X, Y = t["features"], t["label_embeddings"]
    Xc, Yc = X.copy(), Y.copy()
    metrics.emms(X, Y, ridge="auto")
    metrics.emms(X, Y, ridge="auto", max_iter=1)
    np.testing.assert_array_equal(X, Xc)
    np.testing.assert_array_equal(Y, Yc)
    for bad in ("Auto", "evidence", -1.0, 0.0, np.inf):
        with pytest.raises(ValueError, match="ridge"):
            metrics.emms(X, Y, ridge=bad)
    # default return is unchanged; auto adds the ridge
    assert len(metrics.emms(X, Y, ridge=0.1, return_weights=True)) == 2
    assert len(metrics.emms(X, Y, ridge="auto", return_weights=True)) == 3


def test_emms_registry_entries():
    t = make_task(n=300, d=16)
    X, Y = t["features"], t["label_embeddings"]
    assert metrics.get_metric("emms")(features=X, label_embeddings=Y) == metrics.emms(
        X, Y, ridge="ledoit_wolf", standardise=False)
    assert metrics.get_metric("emms_evidence")(features=X, label_embeddings=Y) == metrics.emms(X, Y, ridge="auto")
    assert metrics.get_metric("emms_ols")(features=X, label_embeddings=Y) == metrics.emms(X, Y)
    assert metrics.get_metric("emms_onestep")(features=X, label_embeddings=Y) == metrics.emms(X, Y, max_iter=1)
    small = make_task(n=60, d=200)
    assert np.isfinite(metrics.get_metric("emms")(features=small["features"],
                                                  label_embeddings=small["label_embeddings"]))
    with pytest.raises(ValueError, match="degenerate"):
        metrics.get_metric("emms_ols")(features=small["features"], label_embeddings=small["label_embeddings"])


def test_benchmark_original_logme_reference_agrees():
    """The benchmark's ORIGINAL LogME loop (sample-space residual, 1% stop, +1e-5 guards) scores like
    metrics.logme when N > D, up to its early stopping."""
    from test_metrics_support import load_benchmark_module
    bench = load_benchmark_module()
    t = make_task(n=400, d=12)
    orig, n_done, _ = bench.reference_logme_original(t["features"], t["labels"])
    assert n_done == 4
    assert orig == pytest.approx(metrics.logme(t["features"], t["labels"]), abs=1e-3)
    Y = t["label_embeddings"].reshape(400, -1)
    orig_reg, n_reg, _ = bench.reference_logme_original(t["features"], Y, regression=True, max_targets=5)
    assert n_reg == 5
    assert orig_reg == pytest.approx(metrics.logme(t["features"], Y[:, :5]), abs=1e-3)
    assert bench.reference_logme_per_class(t["features"], t["labels"])[0] == pytest.approx(orig, abs=1e-3)
