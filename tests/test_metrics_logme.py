import numpy as np
import pytest
import scipy.optimize

import metrics
from test_metrics_support import load_benchmark_module, make_task


def direct_evidence(X, y, log_alpha, log_beta):
    """log evidence / N from its definition (posterior mean by a D x D solve, slogdet)."""
    a, b = np.exp(log_alpha), np.exp(log_beta)
    N, D = X.shape
    A = a * np.eye(D) + b * X.T @ X
    m = b * np.linalg.solve(A, X.T @ y)
    return (D / 2 * np.log(a) + N / 2 * np.log(b) - N / 2 * np.log(2 * np.pi)
            - b / 2 * np.sum((y - X @ m) ** 2) - a / 2 * m @ m - 0.5 * np.linalg.slogdet(A)[1]) / N


def direct_max(X, y):
    """Numerical maximum over a box of log alpha, log beta (outside it the direct D x D formula loses
    precision; the evidence is flat there anyway)."""
    best = -np.inf
    for x0 in [(0.0, 0.0), (4.0, -2.0), (-4.0, 3.0)]:
        res = scipy.optimize.minimize(lambda p: -direct_evidence(X, y, *p), x0, method="Nelder-Mead",
                                      bounds=[(-15, 15), (-15, 12)],
                                      options=dict(xatol=1e-9, fatol=1e-13, maxiter=4000))
        best = max(best, -res.fun)
    return best


@pytest.mark.parametrize("n,d", [(60, 10), (40, 40), (15, 40), (12, 30)])
@pytest.mark.parametrize("signal", [2.0, 0.3])
def test_logme_equals_direct_maximum_of_evidence(n, d, signal):
    rng = np.random.default_rng(n * d)
    X = rng.standard_normal((n, d))
    y = X @ (signal * rng.standard_normal(d)) + rng.standard_normal(n)
    ours = metrics.logme(X, y[:, None])
    best = direct_max(X, y)
    assert ours >= best - 1e-7          # never below a found maximum
    assert ours == pytest.approx(best, abs=1e-6)


def test_logme_classification_is_mean_of_one_hot_regressions():
    t = make_task()
    X, y = t["features"], t["labels"]
    onehot = np.eye(4)[y]
    per_class = [direct_max(X, onehot[:, c]) for c in range(4)]
    assert metrics.logme(X, y) == pytest.approx(np.mean(per_class), abs=1e-6)
    assert metrics.logme(X, y) == pytest.approx(metrics.logme(X, onehot), abs=1e-12)


def test_logme_matches_published_loop_when_n_greater_than_d():
    bench = load_benchmark_module()
    t = make_task(n=500, d=30, c=5)
    ref = bench.reference_logme_per_class(t["features"], t["labels"])[0]
    assert metrics.logme(t["features"], t["labels"]) == pytest.approx(ref, abs=1e-6)
    Y = t["label_embeddings"].reshape(500, -1)
    ref_reg = bench.reference_logme_per_class(t["features"], Y, regression=True)[0]
    assert metrics.logme(t["features"], Y) == pytest.approx(ref_reg, abs=1e-6)


def test_published_loop_overestimates_when_n_less_than_d():
    """The reference drops (D - N) log(alpha) terms: its value exceeds the true maximum evidence."""
    bench = load_benchmark_module()
    t = make_task(n=20, d=60, c=3)
    ref = bench.reference_logme_per_class(t["features"], t["labels"])[0]
    ours = metrics.logme(t["features"], t["labels"])
    onehot = np.eye(3)[t["labels"]]
    found = np.mean([direct_max(t["features"], onehot[:, c]) for c in range(3)])
    assert found - 1e-7 <= ours <= found + 1e-4     # (the supremum may lie at beta -> inf, outside the box)
    assert ref > ours + 1.0


def test_logme_regression_vectorised_equals_per_column():
    t = make_task()
    Y = t["label_embeddings"][:, :, 0]
    whole = metrics.logme(t["features"], Y)
    cols = [metrics.logme(t["features"], Y[:, [j]]) for j in range(Y.shape[1])]
    assert whole == pytest.approx(np.mean(cols), abs=1e-12)


def test_logme_rejects_ambiguous_float_labels_and_zero_targets():
    t = make_task()
    with pytest.raises(ValueError, match="1-D"):
        metrics.logme(t["features"], t["labels"].astype(float))
    with pytest.raises(ValueError, match="zero"):
        metrics.logme(t["features"], np.zeros((300, 2)))


def test_logme_flabel_is_logme_on_all_embedding_columns():
    t = make_task()
    Y = t["label_embeddings"]
    expected = np.mean([metrics.logme(t["features"], Y[:, :, k]) for k in range(Y.shape[2])])
    assert metrics.logme_flabel(t["features"], Y) == pytest.approx(expected, abs=1e-12)


def test_logme_no_signal_reaches_the_null_model_limit():
    """Features carrying nothing of the target: the maximum is the limit alpha -> inf (m = 0),
    N/2 log beta - N/2 log 2 pi - beta/2 ||y||^2 with beta = N / ||y||^2 (hand-computed below)."""
    rng = np.random.default_rng(0)
    n, d = 160, 20
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    Q, _ = np.linalg.qr(X)
    y -= Q @ (Q.T @ y)                                  # X^T y = 0: no signal at all
    y *= 2.0 * np.sqrt(n) / np.linalg.norm(y)          # ||y||^2 = 4 N, so beta = 1/4
    null = 0.5 * np.log(0.25) - 0.5 - 0.5 * np.log(2 * np.pi)     # per sample: -2.1121...
    assert null == pytest.approx(-2.1120857, abs=1e-7)
    assert metrics.logme(X, y[:, None]) == pytest.approx(null, abs=1e-12)


def test_logme_weak_features_finite_without_warnings():
    """20 features, 160 samples, labels independent of the features (the weak-OCR-model case):
    finite, no convergence warning, never below the null-model evidence nor a direct maximum."""
    import warnings
    rng = np.random.default_rng(3)
    X = rng.standard_normal((160, 20))
    y = rng.integers(0, 10, 160)
    onehot = np.eye(10)[y]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        per = metrics.max_log_evidence(X, y)
        reg = metrics.max_log_evidence(X, rng.standard_normal((160, 50)))
    assert np.all(np.isfinite(per)) and np.all(np.isfinite(reg))
    counts = onehot.sum(axis=0)
    null = 0.5 * np.log(160 / counts) - 0.5 - 0.5 * np.log(2 * np.pi)
    assert np.all(per >= null - 1e-12)
    assert np.any(np.isclose(per, null, rtol=0, atol=1e-12))      # some classes sit at the limit
    for c in range(3):
        assert per[c] >= direct_max(X, onehot[:, c]) - 1e-7
