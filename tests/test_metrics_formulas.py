"""Known values and literal re-implementations for LEEP, NCE, TransRate, H-score, SFDA, PARC, NLEEP."""
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from sklearn.covariance import ledoit_wolf

import metrics
from test_metrics_support import load_benchmark_module, make_task


def test_leep_hand_computed():
    P = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    y = np.array([0, 1, 0])
    joint = np.array([[0.9 + 0.6, 0.1 + 0.4], [0.2, 0.8]]) / 3
    cond = joint / joint.sum(axis=0)
    expected = np.mean([np.log(P[i] @ cond[y[i]]) for i in range(3)])
    assert metrics.leep(P, y) == pytest.approx(expected, rel=1e-12)


def test_leep_perfect_source_is_zero():
    y = np.array([0, 1, 2, 1, 0])
    assert metrics.leep(np.eye(3)[y], y) == pytest.approx(0.0, abs=1e-12)


def test_nce_hand_computed():
    z = np.array([0, 0, 1, 1])
    y = np.array([0, 1, 1, 1])
    # P(y|z=0) = (1/2, 1/2), P(y|z=1) = (0, 1):  -H(Y|Z) = 1/2 * log(1/2)
    assert metrics.nce(z, y) == pytest.approx(0.5 * np.log(0.5), rel=1e-12)
    assert metrics.nce(y, y) == pytest.approx(0.0, abs=1e-12)
    assert metrics.nce(np.zeros(4, dtype=int), y) == pytest.approx(
        np.sum([p * np.log(p) for p in (0.25, 0.75)]), rel=1e-12)
    P = np.eye(2)[z] * 0.9 + 0.05
    assert metrics.nce_from_probs(P, y) == metrics.nce(z, y)


@pytest.mark.parametrize("n,d", [(300, 16), (60, 80)])
def test_transrate_equals_naive_d_by_d(n, d):
    bench = load_benchmark_module()
    t = make_task(n=n, d=d)
    assert metrics.transrate(t["features"], t["labels"]) == pytest.approx(
        bench.reference_transrate_naive(t["features"], t["labels"]), rel=1e-10)


def test_transrate_flabel_is_gaussian_mutual_information_for_small_eps():
    rng = np.random.default_rng(0)
    n = 4000
    X = rng.standard_normal((n, 2))
    Y = (X @ np.array([[1.0], [0.5]]) + rng.standard_normal((n, 1)))[:, :, None]
    Z = np.hstack([X, Y[:, :, 0]])
    S = np.cov(Z, rowvar=False, bias=True)
    mi = 0.5 * np.log(np.linalg.det(S[:2, :2]) * S[2, 2] / np.linalg.det(S))
    assert metrics.transrate_flabel(X, Y, eps=1e-9) == pytest.approx(mi, rel=1e-4)
    # dual branch (N <= D + E) agrees with the Schur-complement branch
    t = make_task(n=25, d=12, e=15)
    Xs, Ys = t["features"], t["label_embeddings"]
    direct = []
    for k in range(3):
        zs = lambda A: (A - A.mean(0)) / A.std(0)
        R = lambda A: 0.5 * np.linalg.slogdet(np.eye(A.shape[1]) + A.T @ A / (25 * 1e-4))[1]
        direct.append(R(zs(Xs)) + R(zs(Ys[:, :, k])) - R(np.hstack([zs(Xs), zs(Ys[:, :, k])])))
    assert metrics.transrate_flabel(Xs, Ys) == pytest.approx(np.mean(direct), rel=1e-9)


def test_hscore_matches_pinv_formula():
    t = make_task(n=250, d=10)
    X, y = t["features"], t["labels"]
    Xc = X - X.mean(0)
    g = np.zeros_like(X)
    for c in np.unique(y):
        g[y == c] = Xc[y == c].mean(0)
    expected = np.trace(np.linalg.pinv(np.cov(Xc, rowvar=False, bias=True)) @ np.cov(g, rowvar=False, bias=True))
    assert metrics.hscore(X, y) == pytest.approx(expected, rel=1e-9)
    cov_lw, a = ledoit_wolf(Xc)
    expected_reg = np.trace(np.linalg.inv(cov_lw) @ ((1 - a) * np.cov(g, rowvar=False, bias=True)))
    assert metrics.hscore_regularized(X, y) == pytest.approx(expected_reg, rel=1e-9)
    # rank-deficient features: duplicated columns do not change H-score (pseudo-inverse)
    assert metrics.hscore(np.hstack([X, X[:, :3]]), y) == pytest.approx(expected, rel=1e-7)


def _literal_sfda(X, y):
    """SFDA following the published steps literally (generalised eigh, St / Sb, ConfMix loop)."""
    def cov(A, shrink=None):
        S = np.cov(A.T, bias=1)
        if shrink is None:
            return S
        out = (1 - shrink) * S
        out.flat[:: S.shape[0] + 1] += shrink * np.trace(S) / S.shape[0]
        return out

    def fit_predict(X, y, shrink):
        classes = np.unique(y)
        priors = np.array([np.mean(y == c) for c in classes])
        means = np.array([X[y == c].mean(0) for c in classes])
        Sw = sum(p * cov(X[y == c]) for p, c in zip(priors, classes))
        if shrink is None:
            x = Sw.sum(axis=1)
            for _ in range(3):
                yy = Sw @ x; yy /= np.linalg.norm(yy)
                x = Sw @ yy; x /= np.linalg.norm(x)
            shrink = max(np.exp(-5 * (x @ Sw @ yy)), 1e-10)
        St = cov(X, shrink)
        Sw_s = (1 - shrink) * Sw
        Sw_s.flat[:: Sw.shape[0] + 1] += shrink * np.trace(Sw) / Sw.shape[0]
        evals, evecs = scipy.linalg.eigh(St - Sw_s, Sw_s)
        evecs = evecs[:, np.argsort(evals)[::-1]]
        coef = means @ evecs @ evecs.T
        intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
        s = X @ coef.T + intercept
        p = np.exp(s - s.max(1, keepdims=True))
        return p / p.sum(1, keepdims=True), shrink

    n = len(y)
    prob, shrink = fit_predict(X, y, None)
    prob = np.exp(prob) / np.exp(prob).sum(axis=1, keepdims=True)
    classes = np.unique(y)
    means = np.array([X[y == c].mean(0) for c in classes])
    X = X.copy()
    for i, c in enumerate(classes):
        idx = np.where(y == c)[0]
        other = (means.sum(0) - means[i]) / (len(classes) - 1)
        conf = prob[idx, i][:, None]
        X[idx] = conf * X[idx] + (1 - conf) * other
    prob, _ = fit_predict(X, y, shrink)
    return np.mean(prob[np.arange(n), np.searchsorted(classes, y)])


def test_sfda_matches_literal_generalised_eigh_route():
    t = make_task(n=240, d=10, signal=1.0)
    assert metrics.sfda(t["features"], t["labels"]) == pytest.approx(_literal_sfda(t["features"], t["labels"]), rel=1e-8)


def test_parc_matches_corrcoef_definition_and_subsamples():
    from sklearn.decomposition import PCA
    t = make_task(n=150, d=40)
    X, y = t["features"], t["labels"]
    F = PCA(n_components=32, random_state=0).fit_transform(X)
    F = (F - F.mean(0)) / F.std(0)
    iu = np.triu_indices(150, 1)
    expected = 100 * scipy.stats.spearmanr((1 - np.corrcoef(F))[iu], (1 - np.corrcoef(np.eye(4)[y]))[iu]).statistic
    assert metrics.parc(X, y) == pytest.approx(expected, rel=1e-8)
    # above max_samples a seeded subsample is used: deterministic, and equal to PARC of that subset
    rows = np.sort(np.random.default_rng(5).choice(150, 100, replace=False))
    sub = metrics.parc(X, y, max_samples=100, random_state=5)
    assert sub == metrics.parc(X, y, max_samples=100, random_state=5)
    assert sub == pytest.approx(metrics.parc(X[rows], y[rows], random_state=5), rel=1e-10)


def test_nleep_is_deterministic_and_uses_log():
    t = make_task(n=200, d=8)
    a = metrics.nleep(t["features"], t["labels"], component_ratio=2, random_state=1)
    assert a == metrics.nleep(t["features"], t["labels"], component_ratio=2, random_state=1)
    assert a <= 0.0
    with pytest.raises(ValueError, match="components"):
        metrics.nleep(t["features"][:10], t["labels"][:10], component_ratio=5)


def test_nleep_pca_and_default_match_the_published_pipeline():
    from sklearn.decomposition import PCA
    from sklearn.mixture import GaussianMixture
    from metrics.leep import leep
    from metrics.nleep import pca_keep_variance
    rng = np.random.default_rng(5)
    for n, d in [(400, 30), (60, 90)]:
        X = rng.standard_normal((n, d)) @ rng.standard_normal((d, d))
        expected = PCA(n_components=0.8, svd_solver="full").fit_transform(X)
        got = pca_keep_variance(X, 0.8)
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-9 * np.abs(expected).max())
    t = make_task()
    X, y = t["features"], t["labels"]
    Z = PCA(n_components=0.8, svd_solver="full").fit_transform(X)
    P = GaussianMixture(n_components=8, random_state=0).fit(Z).predict_proba(Z)
    assert metrics.nleep(X, y, component_ratio=2) == pytest.approx(leep(P, y), abs=1e-8)
    diag = metrics.nleep(X, y, component_ratio=2, covariance_type="diag")
    assert np.isfinite(diag) and diag <= 0
    with pytest.raises(ValueError, match="covariance_type"):
        metrics.nleep(X, y, covariance_type="banded")


def test_parc_point_biserial_equals_scipy_spearman_with_and_without_ties():
    import scipy.stats
    from sklearn.decomposition import PCA
    from metrics.nleep import principal_components
    rng = np.random.default_rng(11)
    X = rng.standard_normal((80, 12))
    y = rng.integers(0, 4, 80)
    for feats in (X, np.vstack([X[:40], X[:40]])):           # the second has tied RDM entries
        # the metric's exact PCA: scikit-learn's axes and signs, but bitwise-equal rows for equal
        # inputs (scikit-learn's SVD route breaks some of the exact ties of the duplicated rows)
        F = principal_components(metrics.prepare_features(feats), 12)
        np.testing.assert_allclose(F, PCA(n_components=12, random_state=0).fit_transform(feats), atol=1e-10)
        F = (F - F.mean(axis=0)) / F.std(axis=0)
        F -= F.mean(axis=1, keepdims=True)
        F /= np.linalg.norm(F, axis=1, keepdims=True)
        iu = np.triu_indices(80, 1)
        rdm_f = (1.0 - F @ F.T)[iu]                           # same rounding as the metric: exact ties
        rdm_y = np.where(y[iu[0]] == y[iu[1]], 0.0, 4.0 / 3.0)
        expected = 100.0 * scipy.stats.spearmanr(rdm_f, rdm_y).statistic
        assert metrics.parc(feats, y) == pytest.approx(expected, rel=1e-8)
