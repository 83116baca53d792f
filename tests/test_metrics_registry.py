import numpy as np
import pytest

import metrics
from metrics.registry import CANONICAL_INPUTS, register_metric
from test_metrics_support import make_task

EXPECTED = {"emms", "emms_evidence", "emms_ols", "emms_onestep", "logme", "logme_flabel", "transrate_flabel", "leep", "nleep", "transrate",
            "sfda", "parc", "nce", "hscore", "hscore_reg"}


def call(name, inputs):
    fn = metrics.get_metric(name)
    return fn(**{k: inputs[k] for k in fn.requires})


def test_registry_contents_and_contract():
    assert set(metrics.list_metrics()) == EXPECTED
    assert metrics.list_metrics() == sorted(metrics.METRICS)
    for name, fn in metrics.METRICS.items():
        assert fn.requires and set(fn.requires) <= set(CANONICAL_INPUTS), name
    assert metrics.get_metric("nce").requires == ("source_probs", "labels")
    assert set(metrics.get_metric("emms").requires) == {"features", "label_embeddings"}


def test_unknown_metric_lists_available():
    with pytest.raises(KeyError, match="available: .*emms"):
        metrics.get_metric("no_such_metric")


def test_registering_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        register_metric("logme", requires=("features", "labels"))(lambda features, labels: 0.0)
    with pytest.raises(ValueError, match="requires"):
        register_metric("brand_new", requires=("images",))
    with pytest.raises(TypeError):
        metrics.METRICS["x"] = None     # read-only view
    assert "brand_new" not in metrics.METRICS


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_informative_features_rank_above_noise(name):
    t = make_task(n=300, d=16)
    informative = call(name, t)
    noisy = call(name, dict(t, features=t["noise"]))
    assert isinstance(informative, float)
    if name in {"leep", "nce"}:    # depend on source_probs only: compare informative vs shuffled probs
        shuffled = dict(t, source_probs=t["source_probs"][np.random.default_rng(0).permutation(300)])
        noisy = call(name, shuffled)
    assert informative > noisy + 1e-3, (name, informative, noisy)
