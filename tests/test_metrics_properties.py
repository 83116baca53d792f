"""Property-based test (hypothesis) over every registered metric (issue 9, "Also").

Inputs are drawn over shapes (N from 2, D from 1; N < D and N > D), dtypes (float16/32/64, ints),
scales (1e-100 .. 1e100) and offsets, class layouts (2 classes, many, singleton classes, one class,
unbalanced) and degenerate cases (constant columns, constant / all-zero features, duplicated rows,
NaN / inf, constant label embeddings, one-hot source probabilities). For every metric:

* the outcome is a finite Python float or a ``ValueError`` -- no other exception, no NaN, no
  ``RuntimeWarning`` (overflow / invalid value) on the way;
* one class (for a metric that reads the labels), or NaN / inf in an input the metric reads, is
  always a ``ValueError``;
* the inputs are never modified, and read-only inputs give the same outcome;
* a second call gives a bitwise-equal result (or the same error message);
* the prepared path (``metrics.prepare_features`` / ``prepare_label_embeddings``) gives the same
  outcome, up to rounding (an input that preparing rejects must make the plain call fail too).

Examples are derandomised (fixed sequence, no example database) so CI is deterministic.
"""
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import metrics

NAMES = metrics.list_metrics()

PROPERTY_SETTINGS = settings(max_examples=40, deadline=None, derandomize=True, database=None,
                             suppress_health_check=[HealthCheck.too_slow])

DTYPES = [np.float64, np.float64, np.float64, np.float32, np.float16, np.int64, np.int32]
SCALES = [1e-100, 1e-8, 1e-3, 1.0, 1e3, 1e8, 1e100]
OFFSETS = [0.0, 0.0, 1.0, 1e6]
LAYOUTS = ["two", "many", "singletons", "one", "unbalanced"]
DEGENERATE = ["none", "none", "none", "constant_column", "constant", "zeros", "duplicated_rows",
              "nan", "inf", "constant_embedding", "onehot_probs"]


def _labels(layout: str, n: int, rng: np.random.Generator) -> np.ndarray:
    if layout == "two":
        y = np.arange(n) % 2
    elif layout == "many":
        y = np.arange(n) % max(2, min(6, n // 2))
    elif layout == "singletons":          # every class but one has a single sample
        y = np.minimum(np.arange(n), max(1, n // 2))
    elif layout == "one":
        y = np.zeros(n, dtype=np.int64)
    else:                                 # unbalanced: one big class, a few small ones
        y = np.where(rng.random(n) < 0.8, 0, rng.integers(1, 4, n))
        y[:2] = [0, 1]
    return rng.permutation(y) * 3 + 5     # non-contiguous ids


@st.composite
def metric_inputs(draw):
    n = draw(st.sampled_from([2, 3, 5, 12, 30, 45]))
    d = draw(st.sampled_from([1, 2, 4, 10, 60]))
    e = draw(st.sampled_from([1, 3]))
    k = draw(st.sampled_from([1, 2]))
    cs = draw(st.sampled_from([1, 2, 7]))
    layout = draw(st.sampled_from(LAYOUTS))
    dtype = draw(st.sampled_from(DTYPES))
    scale = draw(st.sampled_from(SCALES))
    offset = draw(st.sampled_from(OFFSETS))
    degenerate = draw(st.sampled_from(DEGENERATE))
    signal = draw(st.sampled_from([0.0, 1.0, 5.0]))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))

    y = _labels(layout, n, rng)
    classes, idx = np.unique(y, return_inverse=True)
    X = rng.standard_normal((n, d))
    X[:, : min(d, classes.size)] += signal * np.eye(classes.size)[idx][:, : min(d, classes.size)]
    X = X * scale + offset
    if degenerate == "constant_column":
        X[:, 0] = 0.1
    elif degenerate == "constant":
        X[:] = X[0]
    elif degenerate == "zeros":
        X[:] = 0.0
    elif degenerate == "duplicated_rows":
        X[n // 2:] = X[: n - n // 2]
    emb = rng.standard_normal((classes.size, e, k)) * draw(st.sampled_from([1e-50, 1.0, 1e50]))
    Y = emb[idx] + draw(st.sampled_from([0.0, 0.1])) * rng.standard_normal((n, e, k))
    if degenerate == "constant_embedding":
        Y[:, :, 0] = Y[0, :, 0]
    logits = rng.standard_normal((n, cs)) * 3
    P = np.exp(logits - logits.max(axis=1, keepdims=True))
    P /= P.sum(axis=1, keepdims=True)
    if degenerate == "onehot_probs":
        P = np.eye(cs)[rng.integers(0, cs, n)]
    if degenerate in ("nan", "inf"):
        bad = np.nan if degenerate == "nan" else np.inf
        target = draw(st.sampled_from(["features", "label_embeddings", "source_probs"]))
        arr = {"features": X, "label_embeddings": Y, "source_probs": P}[target]
        arr.flat[rng.integers(0, arr.size)] = bad
    else:
        target = None
    if np.issubdtype(dtype, np.floating):
        with np.errstate(over="ignore"):
            X = X.astype(dtype)                              # float16 overflow -> inf: a ValueError
    elif target != "features":                               # integers cannot hold NaN / inf
        limit = float(min(np.iinfo(dtype).max, 2 ** 53))
        X = np.clip(np.round(X), -limit, limit).astype(dtype)
    inputs = dict(features=X, labels=y, label_embeddings=Y, source_probs=P)
    return inputs, dict(layout=layout, non_finite=target)


def _outcome(fn, inputs):
    """("value", float) or ("error", type, message); any RuntimeWarning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        try:
            value = fn(**{key: inputs[key] for key in fn.requires})
        except ValueError as exc:
            return ("error", type(exc), str(exc))
    assert isinstance(value, float), f"{fn.metric_name} returned {type(value).__name__}, not float"
    assert np.isfinite(value), f"{fn.metric_name} returned {value}"
    return ("value", value)


def _prepared(inputs):
    """The inputs with features / label embeddings prepared once (None if preparing rejects them)."""
    out = dict(inputs)
    for key, prepare in (("features", metrics.prepare_features),
                         ("label_embeddings", metrics.prepare_label_embeddings)):
        try:
            out[key] = prepare(inputs[key])
        except ValueError:
            out[key] = None
    return out


@pytest.mark.parametrize("name", NAMES)
@PROPERTY_SETTINGS
@given(drawn=metric_inputs())
def test_metric_outcome_is_a_finite_float_or_a_value_error(name, drawn):
    inputs, info = drawn
    fn = metrics.get_metric(name)
    copies = {key: np.array(value, copy=True) for key, value in inputs.items()}

    first = _outcome(fn, inputs)
    if (info["layout"] == "one" and "labels" in fn.requires) or info["non_finite"] in fn.requires:
        assert first[0] == "error", f"{name}: expected a ValueError, got {first}"
    for key in inputs:                                      # never modified
        np.testing.assert_array_equal(inputs[key], copies[key], err_msg=f"{name} modified {key}")

    again = _outcome(fn, inputs)                            # deterministic, bitwise
    if first[0] == "value":
        assert again[0] == "value" and np.float64(again[1]).tobytes() == np.float64(first[1]).tobytes(), \
            f"{name}: re-run gave {again[1]!r} after {first[1]!r}"
    else:
        assert again == first

    frozen = {key: np.array(value, copy=True) for key, value in inputs.items()}
    for value in frozen.values():
        value.setflags(write=False)
    assert _outcome(fn, frozen) == first, f"{name}: read-only inputs changed the outcome"

    shared = _prepared(inputs)
    if any(shared[key] is None for key in fn.requires):     # preparing rejected an input
        assert first[0] == "error", f"{name}: accepted an input that prepare_* rejects: {first}"
        return
    via_prepared = _outcome(fn, shared)
    assert via_prepared[0] == first[0], f"{name}: array path {first}, prepared path {via_prepared}"
    if first[0] == "value":
        assert via_prepared[1] == pytest.approx(first[1], rel=1e-6, abs=1e-9)
    else:
        assert issubclass(via_prepared[1], ValueError)
