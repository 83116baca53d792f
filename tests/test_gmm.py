"""metrics._gmm.gmm_posteriors: the same posteriors as scikit-learn's GaussianMixture (full
covariance), to rounding, on well-populated, degenerate (NLEEP-like) and float32 fits; the pruning
bound is a true lower bound; validation and warnings."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture

from metrics._gmm import (_ExpectationMaximisation, _Responsibilities, _dense_e_step,
                          _fill_mahalanobis_lower_bounds, gmm_posteriors)
from metrics._validation import check_labels
from metrics.leep import leep_from_encoded

POSTERIOR_ATOL = 1e-8
NLEEP_ATOL = 1e-10


def _sklearn_posteriors(Z, K, random_state=0, **kw):
    """The reference; ``random_state=0`` as in gmm_posteriors (GaussianMixture's default is None)."""
    return GaussianMixture(n_components=K, covariance_type="full", random_state=random_state,
                           **kw).fit(Z).predict_proba(Z)


def _class_data(N, d, C, seed, *, spread=0.5, decay=0.5):
    """Samples with a decaying spectrum around C class means (like PCA-reduced features)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, N)
    X = (rng.standard_normal((N, d)) + spread * rng.standard_normal((C, d))[y]) * np.arange(1, d + 1) ** -decay
    return X, y


def _assert_same_as_sklearn(Z, K, y, **kw):
    ours = gmm_posteriors(Z, K, **kw)
    ref = _sklearn_posteriors(Z, K, **kw)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    np.testing.assert_allclose(ours, ref, rtol=0, atol=POSTERIOR_ATOL)
    enc = check_labels(y)
    assert abs(leep_from_encoded(ours, enc) - leep_from_encoded(ref, enc)) <= NLEEP_ATOL
    return ours


def test_well_populated_components_match_sklearn():
    X, y = _class_data(2000, 8, 5, seed=0, spread=3.0, decay=0.0)
    P = _assert_same_as_sklearn(X, 5, y)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert 0.0 < P.max() and np.mean((P > 1e-6) & (P < 1 - 1e-6)) > 0.01      # genuinely soft posteriors


def test_degenerate_nleep_regime_matches_sklearn():
    """K = 500 components for N = 2000 samples in d = 40: ~4 samples per component, rank-deficient
    covariances (regularised by reg_covar only): the regime where the bound prunes nearly all pairs."""
    X, y = _class_data(2000, 40, 100, seed=1)
    P = _assert_same_as_sklearn(X, 500, y)
    assert set(np.unique(P)) <= {0.0, 1.0}                      # frozen hard assignment, like sklearn's


def test_dimension_above_points_per_component_matches_sklearn():
    X, y = _class_data(600, 30, 12, seed=2)
    _assert_same_as_sklearn(X, 60, y)                           # 10 samples per component < d = 30


def test_soft_responsibilities_on_the_pruned_path_match_sklearn():
    """20 far-apart blobs, 3 components each: soft responsibilities within a blob over ~26 EM
    iterations, every pair across blobs certified zero by the bound (pruned E-steps throughout)."""
    rng = np.random.default_rng(13)
    y = rng.integers(0, 20, 1000)
    X = rng.standard_normal((1000, 5)) + 1000 * rng.standard_normal((20, 5))[y]
    P = _assert_same_as_sklearn(X, 60, y)
    assert np.mean((P > 1e-6) & (P < 1 - 1e-6)) > 0.01


@pytest.mark.parametrize("random_state", [1, 7, 12345])
def test_random_states_match_sklearn(random_state):
    X, y = _class_data(1500, 20, 10, seed=3, spread=1.5, decay=0.3)
    _assert_same_as_sklearn(X, 50, y, random_state=random_state)


def test_randomstate_instance_is_used_like_sklearn():
    X, _ = _class_data(800, 10, 8, seed=4, spread=2.0, decay=0.0)
    ours = gmm_posteriors(X, 16, random_state=np.random.RandomState(5))
    ref = _sklearn_posteriors(X, 16, random_state=np.random.RandomState(5))
    np.testing.assert_allclose(ours, ref, rtol=0, atol=POSTERIOR_ATOL)


def test_tol_reg_covar_and_slow_convergence_match_sklearn():
    X, y = _class_data(1000, 12, 6, seed=5, spread=1.0, decay=0.2)
    _assert_same_as_sklearn(X, 12, y, tol=1e-6, reg_covar=1e-3)


def test_float32_input_is_computed_in_float32_like_sklearn():
    X, _ = _class_data(1000, 6, 4, seed=6, spread=3.0, decay=0.0)
    X32 = X.astype(np.float32)
    ours = gmm_posteriors(X32, 4)
    ref = _sklearn_posteriors(X32, 4)
    assert ours.dtype == ref.dtype == np.float32
    # float32 rounding (eps 1.2e-7) in log-probabilities of magnitude ~10 -> posterior differences ~1e-6
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-4)
    np.testing.assert_array_equal(ours.argmax(axis=1), ref.argmax(axis=1))


def test_deterministic_and_input_untouched():
    X, _ = _class_data(500, 10, 5, seed=7)
    X.flags.writeable = False
    a = gmm_posteriors(X, 25, random_state=3)
    b = gmm_posteriors(X, 25, random_state=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, gmm_posteriors(X, 25, random_state=4))


def test_max_iter_warning_and_initialisation_match_sklearn():
    X, _ = _class_data(600, 5, 3, seed=8, spread=1.0, decay=0.0)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        ours = gmm_posteriors(X, 6, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ref = _sklearn_posteriors(X, 6, max_iter=1)
    np.testing.assert_allclose(ours, ref, rtol=0, atol=POSTERIOR_ATOL)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)           # max_iter=0: no warning
        ours0 = gmm_posteriors(X, 6, max_iter=0)
        ref0 = _sklearn_posteriors(X, 6, max_iter=0)
    np.testing.assert_allclose(ours0, ref0, rtol=0, atol=POSTERIOR_ATOL)


def test_not_positive_definite_covariance_advises_reg_covar():
    X = np.repeat(np.random.default_rng(9).standard_normal((4, 3)), 5, axis=0)   # 4 points, 5 copies each
    with pytest.raises(ValueError, match="reg_covar"):
        _sklearn_posteriors(X, 4, reg_covar=0.0)                  # the reference fails the same way
    with pytest.raises(ValueError, match="increase reg_covar"):
        gmm_posteriors(X, 4, reg_covar=0.0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_components=11), r"n_components=11 exceeds n_samples=10"),
    (dict(n_components=0), "n_components must be a positive integer"),
    (dict(n_components=2.0), "n_components must be a positive integer"),
    (dict(n_components=2, tol=-1.0), "tol must be"),
    (dict(n_components=2, reg_covar=float("nan")), "reg_covar must be"),
    (dict(n_components=2, max_iter=-1), "max_iter must be"),
])
def test_invalid_parameters(kwargs, match):
    X = np.random.default_rng(0).standard_normal((10, 2))
    K = kwargs.pop("n_components")
    with pytest.raises(ValueError, match=match):
        gmm_posteriors(X, K, **kwargs)


@pytest.mark.parametrize("Z, match", [
    (np.zeros(10), "2-D"),
    (np.zeros((1, 3)), "at least 2 samples"),
    (np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 1.0]]), "NaN"),
    (np.array([["a", "b"], ["c", "d"]]), "numeric"),
])
def test_invalid_samples(Z, match):
    with pytest.raises(ValueError, match=match):
        gmm_posteriors(Z, 1)


@pytest.mark.parametrize("N, d, K, seed", [(400, 12, 80, 10), (400, 12, 8, 11), (300, 40, 100, 12)])
def test_pruning_bound_is_a_lower_bound(N, d, K, seed):
    """The Mahalanobis lower bound never exceeds the exact value, for components from one-hot
    (rank-deficient) and soft (after one dense E-step) responsibilities."""
    X, _ = _class_data(N, d, max(2, K // 5), seed=seed)
    labels = np.random.default_rng(seed).integers(0, K, N)
    labels[:K] = np.arange(K)
    em = _ExpectationMaximisation(X, K, 1e-6)
    hard = em.m_step(_Responsibilities(comp=labels, rows=np.arange(N), n_components=K,
                                       value=np.ones(N)), normalise_weights=False)
    soft = em.m_step(_dense_e_step(X, hard)[0], normalise_weights=True)
    for mixture in (hard, soft):
        exact = np.stack([np.sum((X @ P - mP) ** 2, axis=1)
                          for P, mP in zip(mixture.prec_chol, mixture.means_prec)], axis=1)
        lower = np.empty((N, K))
        _fill_mahalanobis_lower_bounds(X, mixture, np.arange(K), lower)
        assert np.all(lower >= 0) and np.all(lower <= exact)
        if mixture is hard and N / K <= d / 4:
            # few samples per component: most pairs are certified > 1600 units away (prunable)
            assert np.mean(lower > 1600) > 0.5


def test_bound_reuse_detects_exactly_the_changed_components():
    """A component's cached bound column is reused only when its mean and span data are identical."""
    X, _ = _class_data(300, 12, 10, seed=14)
    K = 60
    labels = np.arange(300) % K
    em = _ExpectationMaximisation(X, K, 1e-6)
    resp = _Responsibilities(comp=labels, rows=np.arange(300), n_components=K, value=np.ones(300))
    a = em.m_step(resp, normalise_weights=False)
    moved = labels.copy()
    moved[[0, 1]] = moved[[1, 0]]                               # samples 0 and 1 swap components 0 and 1
    b = _ExpectationMaximisation(X, K, 1e-6).m_step(
        _Responsibilities(comp=moved, rows=np.arange(300), n_components=K, value=np.ones(300)),
        normalise_weights=False)
    same = b.bound.unchanged(b.means, a.bound, a.means)
    np.testing.assert_array_equal(np.flatnonzero(~same), [0, 1])
    assert a.bound.unchanged(a.means, a.bound, a.means).all()
