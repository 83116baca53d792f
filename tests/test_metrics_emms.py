import itertools

import numpy as np
import pytest

import metrics
from metrics._linalg import project_simplex
from test_metrics_support import make_task


def zscore(A):
    return (A - A.mean(axis=0)) / (A.std(axis=0) + 1e-8)


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
    published = published_one_step(X, Y)
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
