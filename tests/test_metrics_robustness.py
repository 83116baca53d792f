"""Metric edge cases (issue 9, item 5): degenerate inputs raise a ValueError naming the problem, and
every metric that is mathematically invariant to a transformation of its inputs is numerically so.

``INVARIANCES`` is the table of ``docs/metrics.md`` ("Invariances and input domain"): for each
registered metric, the transformations that leave it unchanged in exact arithmetic. Each entry is
checked here over offsets up to 1e6 and scales 1e-100 .. 1e100 (and, for the ones a metric does not
have, the outcome must still be a finite number or a ValueError: see test_metrics_properties.py).
"""
import warnings

import numpy as np
import pytest

import metrics
from test_metrics_support import make_task

#: transformations under which each metric is invariant in exact arithmetic (derivations in
#: docs/metrics.md). shift: X + c (one offset per column); scale: a X; column_scale: X diag(d);
#: rotation: X Q (Q orthogonal); y_shift / y_scale: the same on each label embedding's columns.
INVARIANCES = {
    "emms": {"shift", "scale", "rotation", "y_shift", "y_scale"},     # Ledoit-Wolf ridge on centred X
    "emms_evidence": {"shift", "scale", "column_scale", "y_shift", "y_scale"},
    "emms_ols": {"shift", "scale", "column_scale", "rotation", "y_shift", "y_scale"},
    "emms_onestep": {"shift", "scale", "column_scale", "rotation", "y_shift", "y_scale"},
    "hscore": {"shift", "scale", "column_scale", "rotation"},
    "hscore_reg": {"shift", "scale", "rotation"},
    "logme": {"scale", "rotation"},
    "logme_flabel": {"scale", "rotation"},
    "transrate": {"shift", "rotation"},
    "transrate_flabel": {"shift", "scale", "column_scale", "y_shift", "y_scale"},
    "sfda": {"shift"},                      # rotation only approximately (3-step power iteration)
    "parc": {"shift", "scale"},             # not rotation: PCA sign convention enters the row correlations
    "nleep": {"shift"},                     # rotation up to KMeans ties (not checked)
    "leep": set(),                          # probabilities: domain-checked instead
    "nce": set(),
}

SCALES = [1e-100, 1e-30, 1e-3, 7.0, 1e30, 1e100]
OFFSETS = [1e3, 1e6]
RTOL = 1e-6


def call(name, inputs):
    fn = metrics.get_metric(name)
    return fn(**{k: inputs[k] for k in fn.requires})


def outcome(name, inputs):
    """The score, or the ValueError subclass and message; any warning is an error."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            value = call(name, inputs)
        except ValueError as exc:
            return type(exc), str(exc)
    assert isinstance(value, float) and np.isfinite(value), (name, value)
    return value


def assert_same(name, base, other, what):
    if isinstance(base, tuple):
        assert isinstance(other, tuple) and other[0] is base[0], (name, what, base, other)
    else:
        assert not isinstance(other, tuple), (name, what, other)
        assert other == pytest.approx(base, rel=RTOL, abs=1e-9), (name, what)


def transforms(task, kind, rng):
    """Yield (description, transformed inputs) for one kind of transformation."""
    X, Y = task["features"], task["label_embeddings"]
    N, D = X.shape
    E, K = Y.shape[1:]
    if kind == "shift":
        for c in OFFSETS:
            yield f"X + {c:g}", dict(task, features=X + c * rng.uniform(0.5, 1.0, D))
    elif kind == "scale":
        for a in SCALES:
            yield f"X * {a:g}", dict(task, features=X * a)
    elif kind == "column_scale":
        yield "X diag(1e-2..1e2)", dict(task, features=X * rng.permutation(np.geomspace(1e-2, 1e2, D)))
    elif kind == "rotation":
        Q = np.linalg.qr(rng.standard_normal((D, D)))[0]
        yield "X Q", dict(task, features=X @ Q)
    elif kind == "y_shift":
        for c in OFFSETS:
            yield f"Y + {c:g}", dict(task, label_embeddings=Y + c * rng.uniform(0.5, 1.0, (E, K)))
    elif kind == "y_scale":
        for a in SCALES:
            yield f"Y * {a:g}", dict(task, label_embeddings=Y * a)
        yield "Y diag(1e-2..1e2)", dict(task, label_embeddings=Y * np.geomspace(1e-2, 1e2, E * K).reshape(E, K))


def test_every_registered_metric_has_its_invariances_stated():
    assert set(metrics.list_metrics()) == set(INVARIANCES)


@pytest.mark.parametrize("shape", [(150, 8), (30, 45)], ids=["N>D", "N<D"])
@pytest.mark.parametrize("kind", ["shift", "scale", "column_scale", "rotation", "y_shift", "y_scale"])
def test_mathematical_invariances_hold_numerically(kind, shape):
    n, d = shape
    task = make_task(n=n, d=d, c=3, e=4, k=2, seed=3)
    rng = np.random.default_rng(7)
    names = [m for m, inv in INVARIANCES.items() if kind in inv]
    cases = list(transforms(task, kind, rng))
    for name in names:
        base = outcome(name, task)
        for what, inputs in cases:
            assert_same(name, base, outcome(name, inputs), what)


def test_sfda_constant_features_raise_instead_of_nan():
    for n in (60, 2):
        with pytest.raises(metrics.DegenerateInputError, match="features are constant"):
            metrics.sfda(np.ones((n, 8)), np.arange(n) % 3)


def test_sfda_one_sample_per_class_raises_instead_of_nan():
    X = np.random.default_rng(0).standard_normal((2, 8))
    with pytest.raises(metrics.DegenerateInputError, match="within-class scatter is 0"):
        metrics.sfda(X, np.array([0, 1]))


def test_sfda_large_offset_keeps_precision():
    rng = np.random.default_rng(0)
    y = np.arange(60) % 3
    X = rng.standard_normal((60, 8))
    X[:, :3] += 6 * np.eye(3)[y]
    ref = metrics.sfda(X, y)
    assert ref > 0.99
    assert metrics.sfda(X + 1e8, y) == pytest.approx(ref, rel=1e-6)       # was 0.70
    # not scale-invariant (shrinkage exp(-5 lambda_max) has units), but finite at every scale
    for a in (1e-100, 1e100):
        assert np.isfinite(metrics.sfda(X * a, y))


@pytest.mark.parametrize("name", [m for m in INVARIANCES if "features" in metrics.get_metric(m).requires])
@pytest.mark.parametrize("factor", [1e200, 1e-200])
def test_features_beyond_the_float64_safe_range_raise(name, factor):
    task = make_task(n=60, d=6, c=3, e=4, k=2)
    with pytest.raises(ValueError, match="largest magnitude"):
        call(name, dict(task, features=task["features"] * factor))
    # the prepared path reports the same
    with pytest.raises(ValueError, match="largest magnitude"):
        metrics.prepare_features(task["features"] * factor)


def test_largest_accepted_magnitude_works_for_the_scale_invariant_metrics():
    task = make_task(n=80, d=6, c=3, e=4, k=2)
    X = task["features"] / np.abs(task["features"]).max() * 0.9e150       # just inside the range
    for name, inv in INVARIANCES.items():
        if "scale" in inv:
            assert outcome(name, dict(task, features=X)) == pytest.approx(outcome(name, task), rel=RTOL), name
    # hscore_reg reported a singular covariance at 1e150 and overflowed beyond 1e77
    assert metrics.hscore_regularized(X, task["labels"]) == pytest.approx(
        metrics.hscore_regularized(task["features"], task["labels"]), rel=RTOL)


@pytest.mark.parametrize("name", [m for m in INVARIANCES if "label_embeddings" in metrics.get_metric(m).requires])
def test_constant_label_embeddings_raise(name):
    task = make_task(n=60, d=6, c=3, e=4, k=2)
    Y = np.ones_like(task["label_embeddings"]) * np.arange(1.0, 5.0)[None, :, None]
    with pytest.raises(ValueError, match="label embeddings are constant across samples"):
        call(name, dict(task, label_embeddings=Y))


@pytest.mark.parametrize("name", ["emms", "emms_evidence", "emms_ols", "emms_onestep", "transrate_flabel"])
def test_one_constant_embedding_raises_for_the_z_scoring_metrics(name):
    """z-scoring turns a constant embedding into zeros, which every model fits exactly: EMMS put all
    simplex weight on it and reported the best possible score (-0.0)."""
    task = make_task(n=60, d=6, c=3, e=4, k=2)
    Y = task["label_embeddings"].copy()
    Y[:, :, 1] = 0.5
    with pytest.raises(ValueError, match=r"constant across samples \(embedding\(s\) k = \[1\]"):
        call(name, dict(task, label_embeddings=Y))


def test_constant_features_have_a_defined_value_or_raise():
    """Constant features carry no information: the metrics whose formula is defined there give its
    value (the lowest H-score and TransRate, 0; EMMS the null-model fit), the others say so."""
    task = make_task(n=60, d=6, c=3, e=4, k=2)
    const = dict(task, features=np.full((60, 6), 0.1))     # 0.1 * 60 / 60 != 0.1 in floating point
    assert outcome("hscore", const) == 0.0
    assert outcome("transrate", const) == 0.0
    assert outcome("transrate_flabel", const) == 0.0
    for name in ("sfda", "nleep", "hscore_reg"):
        assert outcome(name, const)[0] is metrics.DegenerateInputError
    for name in ("emms", "emms_evidence", "emms_ols", "emms_onestep"):
        assert outcome(name, const) < outcome(name, task)


def test_logme_is_scale_invariant_at_small_scales():
    task = make_task(n=120, d=8, c=3)
    X, y = task["features"], task["labels"]
    assert metrics.logme(X * 1e-10, y) == pytest.approx(metrics.logme(X, y), rel=1e-9)   # was the null limit


def test_logme_rejects_an_offset_that_hides_the_spread():
    task = make_task(n=120, d=8, c=3)
    X, y = task["features"], task["labels"]
    assert np.isfinite(metrics.logme(X + 1e6, y))
    with pytest.raises(ValueError, match="common offset"):
        metrics.logme(X + 1e8, y)
    assert np.isfinite(metrics.logme(np.ones((120, 8)), y))        # exactly constant is exact


def test_source_probabilities_are_domain_checked():
    task = make_task(n=60, d=6, c=3)
    P = task["source_probs"]
    bad = {
        "negative": (P - 0.01, "negative"),
        "logits": (np.log(P), "negative"),
        "unnormalised": (P * 2, "sum to 1"),
        "nan": (np.where(np.eye(60, P.shape[1], dtype=bool), np.nan, P), "NaN"),
    }
    for name in ("leep", "nce"):
        for what, (Q, msg) in bad.items():
            with pytest.raises(ValueError, match=msg):
                call(name, dict(task, source_probs=Q))
        assert np.isfinite(call(name, task))


def test_emms_certificate_tolerates_rounding_of_an_almost_exact_fit():
    """Found by the property test: with a near-exact fit, the fixed-point certificate compared
    rounding noise (3.0e-17 < 5.4e-17) and raised RuntimeError."""
    X = np.array([[1000002.2262462744], [999999.1515466723], [1000000.3804721244]])
    Y = np.array([[[1.3456126749811732, -1.606211769040608]],
                  [[2.4386548001537918, -1.580066339216535]],
                  [[1.4252390740252434, -1.5331042684555551]]])
    for name in ("emms_ols", "emms_onestep", "emms", "emms_evidence"):
        value = outcome(name, dict(features=X, label_embeddings=Y))
        assert not isinstance(value, tuple) or issubclass(value[0], ValueError), name


@pytest.mark.parametrize("name", ["emms", "emms_evidence", "emms_ols", "emms_onestep", "transrate_flabel"])
def test_numerically_constant_columns_are_dropped_by_z_scoring(name):
    """Real MiniLM label embeddings have dimensions of std 1e-33 (noise of the text model): z-scoring
    must not blow them up to unit variance; such a column counts as constant (as a zero column)."""
    task = make_task(n=80, d=6, c=4, e=4, k=2)
    rng = np.random.default_rng(1)
    noisy, zero = task["label_embeddings"].copy(), task["label_embeddings"].copy()
    noisy[:, 0, 0] = 1e-33 * rng.standard_normal(80)
    zero[:, 0, 0] = 0.0
    assert outcome(name, dict(task, label_embeddings=noisy)) == pytest.approx(
        outcome(name, dict(task, label_embeddings=zero)), rel=1e-12)
    Xn, Xz = task["features"].copy(), task["features"].copy()
    Xn[:, 1] = 3.0 + 1e-12 * rng.standard_normal(80)
    Xz[:, 1] = 3.0
    assert outcome(name, dict(task, features=Xn)) == pytest.approx(outcome(name, dict(task, features=Xz)), rel=1e-9)
