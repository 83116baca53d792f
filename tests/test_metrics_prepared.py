"""Shared, cached inputs (metrics.PreparedFeatures / PreparedLabelEmbeddings): the same scores as
plain arrays, no state leaking between metrics, exact grouping of repeated label-embedding rows."""
import numpy as np
import pytest
import scipy.stats
from sklearn.covariance import ledoit_wolf

import metrics
import metrics._prepared as prepared_mod
from metrics.hscore import ledoit_wolf_shrinkage
from metrics.parc import spearman_two_valued
from test_metrics_support import make_task


def _class_indexed_task(n, d, c=5, e=7, k=3, seed=0):
    """Features plus label embeddings that are class embeddings indexed by the labels (C distinct rows)."""
    t = make_task(n=n, d=d, c=c, e=e, k=k, seed=seed)
    class_emb = np.random.default_rng(seed + 1).standard_normal((c, e, k)).astype(np.float32)
    t["label_embeddings"] = class_emb[t["labels"]]
    return t


def _call(name, inputs):
    fn = metrics.get_metric(name)
    return fn(**{key: inputs[key] for key in fn.requires})


@pytest.mark.parametrize("n, d", [(240, 16), (40, 60)])          # N > D and N < D (dual / ridge paths)
def test_every_metric_scores_the_same_on_arrays_and_on_one_shared_prepared_object(n, d):
    t = _class_indexed_task(n, d)
    original = {k: np.array(v, copy=True) for k, v in t.items()}
    shared = dict(t, features=metrics.prepare_features(t["features"]),
                  label_embeddings=metrics.prepare_label_embeddings(t["label_embeddings"]))
    for name in metrics.list_metrics():
        try:
            plain = _call(name, t)
        except metrics.DegenerateInputError:
            with pytest.raises(metrics.DegenerateInputError):
                _call(name, shared)
            continue
        assert _call(name, shared) == pytest.approx(plain, rel=1e-9, abs=1e-12), name
    for k, v in original.items():                               # the caller's arrays are untouched
        np.testing.assert_array_equal(t[k], v)
    F = shared["features"]
    # computed once, kept (on the smaller Gram side: N x N when N <= D)
    spectra = {"centred_eigh", "standardised_eigh"} if F.side == "primal" else {"centred_dual_eigh",
                                                                                  "standardised_dual_eigh"}
    assert {"gram_eigh"} | spectra <= set(F._cache)
    for value in F._cache.values():
        for a in (value if isinstance(value, tuple) else (value,)):
            if isinstance(a, np.ndarray):
                assert not a.flags.writeable


@pytest.mark.parametrize("name", ["emms", "emms_ols", "emms_onestep", "logme_flabel", "transrate_flabel"])
def test_grouped_label_embeddings_match_the_per_sample_computation(name, monkeypatch):
    t = _class_indexed_task(300, 12)
    grouped = metrics.prepare_label_embeddings(t["label_embeddings"])
    assert grouped.grouped and grouped.rows.shape[0] == 5 and grouped.counts.sum() == 300
    monkeypatch.setattr(prepared_mod, "GROUPING_MAX_FRACTION", 0.0)           # force one row per sample
    per_sample = metrics.prepare_label_embeddings(t["label_embeddings"])
    assert not per_sample.grouped
    a = _call(name, dict(t, label_embeddings=grouped))
    b = _call(name, dict(t, label_embeddings=per_sample))
    assert a == pytest.approx(b, rel=1e-10)


def test_row_grouping_is_exact_and_refuses_hash_collisions():
    rng = np.random.default_rng(0)
    table = rng.standard_normal((4, 6))
    index = rng.integers(0, 4, 50)
    first, inverse, counts = prepared_mod._distinct_rows(table[index])
    np.testing.assert_array_equal(table[index][first][inverse], table[index])
    assert counts.sum() == 50 and len(first) == len(np.unique(index))
    # two different rows with the same hash are never merged: the grouping is refused
    rows = np.array([[1.0, 2.0, 3.0], [1.0, 5.0, 3.0]] * 10)
    probe = np.array([1.0, 0.0, 0.0])                            # both rows hash to 1.0
    assert prepared_mod._distinct_rows(rows, probe) is None
    assert prepared_mod._distinct_rows(rows) is not None         # the default probe separates them
    # all-distinct rows are not grouped
    assert prepared_mod._distinct_rows(rng.standard_normal((30, 6))) is None


def test_prepared_label_embeddings_validate_and_expand():
    Y = np.repeat(np.arange(6.0).reshape(2, 3, 1), 5, axis=0)    # 10 samples, 2 distinct rows
    P = metrics.prepare_label_embeddings(Y)
    assert P.shape == (10, 3, 1) and P.grouped
    np.testing.assert_array_equal(P.full(), Y)
    assert metrics.prepare_label_embeddings(P) is P
    with pytest.raises(ValueError, match="samples but the features have 11"):
        metrics.prepare_label_embeddings(P, 11)
    with pytest.raises(ValueError, match="NaN"):
        metrics.prepare_label_embeddings(np.full((4, 2, 1), np.nan))
    with pytest.raises(ValueError, match="3-D"):
        metrics.prepare_label_embeddings(np.zeros((4, 2)))


def test_prepared_features_copy_validate_and_are_read_only():
    X = np.random.default_rng(0).standard_normal((30, 4))
    F = metrics.prepare_features(X)
    X[0, 0] = 1e6                                                # the caller changes their array later
    assert F.X[0, 0] != 1e6
    assert metrics.prepare_features(F) is F
    with pytest.raises(ValueError):
        F.X[0, 0] = 0.0
    with pytest.raises(ValueError, match="NaN"):
        metrics.prepare_features(np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="at least 3 samples"):
        metrics.parc(metrics.prepare_features(np.eye(2)), np.array([0, 1]))
    Xc = F.X - F.X.mean(axis=0)
    np.testing.assert_allclose(F.centred_gram(), Xc.T @ Xc, rtol=1e-12, atol=1e-12)
    Z = Xc / Xc.std(axis=0)
    np.testing.assert_allclose(F.standardised_gram(), Z.T @ Z, rtol=1e-10)
    np.testing.assert_allclose(F.zscored(), Z, rtol=1e-12)


@pytest.mark.parametrize("n, d", [(200, 5), (30, 50), (100, 1)])
def test_ledoit_wolf_shrinkage_equals_scikit_learn(n, d):
    rng = np.random.default_rng(n + d)
    X = rng.standard_normal((n, d)) * np.linspace(1, 5, d) + 3.0
    cov, expected = ledoit_wolf(X - X.mean(axis=0), assume_centered=True)
    shrinkage, mu = ledoit_wolf_shrinkage(metrics.prepare_features(X))
    assert shrinkage == pytest.approx(expected, rel=1e-10, abs=1e-14)
    assert mu == pytest.approx(np.trace(np.atleast_2d(np.cov(X, rowvar=False, bias=True))) / d, rel=1e-10)


def test_two_valued_spearman_equals_scipy_with_ties():
    rng = np.random.default_rng(3)
    for values in (rng.standard_normal(2000), np.round(rng.standard_normal(2000), 1), rng.integers(0, 3, 2000) * 1.0):
        for p in (0.1, 0.5, 0.9):
            indicator = rng.random(2000) < p
            expected = scipy.stats.spearmanr(values, indicator.astype(float)).statistic
            assert spearman_two_valued(values, indicator) == pytest.approx(expected, rel=1e-10, abs=1e-13)
    assert np.isnan(spearman_two_valued(rng.standard_normal(10), np.ones(10, dtype=bool)))
    assert np.isnan(spearman_two_valued(np.ones(10), np.arange(10) < 5))
