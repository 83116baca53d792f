"""Bad input, dtype handling, no mutation, label remapping / permutation invariance."""
import numpy as np
import pytest

import metrics
from test_metrics_support import make_task

NAMES = metrics.list_metrics()


def call(name, inputs):
    fn = metrics.get_metric(name)
    return fn(**{k: inputs[k] for k in fn.requires})


@pytest.fixture(scope="module")
def task():
    return make_task(n=200, d=12, c=4, e=5)


@pytest.mark.parametrize("name", NAMES)
def test_inputs_are_not_mutated(name, task):
    copies = {k: v.copy() for k, v in task.items()}
    call(name, task)
    for k in task:
        np.testing.assert_array_equal(task[k], copies[k])


@pytest.mark.parametrize("name", NAMES)
def test_noncontiguous_class_ids_equal_remapped(name, task):
    remap = np.array([0, 2, 7, 11])
    assert call(name, dict(task, labels=remap[task["labels"]])) == pytest.approx(call(name, task), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in {"emms", "emms_onestep", "logme_flabel",
                                                                   "transrate_flabel"}])
def test_label_permutation_invariance(name, task):
    perm = np.array([2, 0, 3, 1])   # renaming classes must not change a classification metric
    assert call(name, dict(task, labels=perm[task["labels"]])) == pytest.approx(call(name, task), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_low_precision_inputs_work(name, dtype, task):
    low = {k: (v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in task.items()}
    if dtype is np.float16:  # float16 softmax rows sum to 1 only within ~1e-3
        low["source_probs"] = task["source_probs"].astype(np.float16)
    ref = call(name, {k: (v.astype(dtype).astype(np.float64) if v.dtype.kind == "f" else v) for k, v in task.items()})
    assert call(name, low) == pytest.approx(ref, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", NAMES)
def test_bad_inputs_raise_value_error(name, task):
    fn = metrics.get_metric(name)
    bad_cases = []
    if "features" in fn.requires:
        X = task["features"].copy()
        X[3, 2] = np.nan
        bad_cases += [(dict(task, features=X), "NaN"),
                      (dict(task, features=task["features"][:-1]), "samples|entries|rows"),
                      (dict(task, features=task["features"][:, :, None]), "2-D"),
                      (dict(task, features=np.empty((0, 12))), "empty|2-D|entries|rows|samples")]
    if "labels" in fn.requires:
        bad_cases += [(dict(task, labels=np.zeros(200, dtype=int)), "class"),
                      (dict(task, labels=task["labels"].reshape(-1, 1)), "1-D|2-D|shape"),
                      (dict(task, labels=task["labels"][:-5]), "samples|entries|rows")]
    if "label_embeddings" in fn.requires:
        bad_cases += [(dict(task, label_embeddings=task["label_embeddings"][:, :, 0]), "3-D"),
                      (dict(task, label_embeddings=task["label_embeddings"][:-1]), "samples")]
    if "source_probs" in fn.requires:
        bad_cases += [(dict(task, source_probs=task["source_probs"] * 2), "sum to 1"),
                      (dict(task, source_probs=np.log(task["source_probs"])), "negative|sum to 1")]
    assert bad_cases
    for inputs, pattern in bad_cases:
        with pytest.raises(ValueError, match=pattern):
            call(name, inputs)


def test_float_labels_rejected_with_hint():
    t = make_task()
    with pytest.raises(ValueError, match="integer"):
        metrics.transrate(t["features"], t["labels"].astype(float))


def test_sample_order_invariance():
    t = make_task(n=200)
    perm = np.random.default_rng(3).permutation(200)
    shuffled = {k: v[perm] for k, v in t.items()}
    for name in ["emms", "logme", "leep", "transrate", "sfda", "hscore", "hscore_reg", "nce", "logme_flabel",
                 "transrate_flabel"]:
        assert metrics.get_metric(name)(**{k: shuffled[k] for k in metrics.get_metric(name).requires}) == \
            pytest.approx(metrics.get_metric(name)(**{k: t[k] for k in metrics.get_metric(name).requires}), rel=1e-8)
